/*
 * common.cuh — what every CUDA op file shares: error checks that return llm_status (library
 * code never exits), the element types and their conversions, 128-bit vector packs, warp and
 * block reductions, stochastic rounding, and the backend's global stream and scratch memory.
 *
 * Element types: each op is a template over `floatX` (float or __nv_bfloat16) and is
 * instantiated for both; ops_cuda.cu builds one llm_ops table per precision. Arithmetic is
 * always fp32: load with to_f32(), compute, store with from_f32() (round to nearest even).
 *
 * Vector packs: Pack<T, P> holds P elements and is loaded/stored as one P*sizeof(T)-byte access
 * (16 bytes = 128 bits for P = pack128<T>()). A kernel templated on P runs with P = 1 (scalar,
 * any alignment) or P = pack128<T>() when every pointer it touches is 16-byte aligned and the
 * row lengths are multiples of P; the launcher checks that (aligned16()) and picks.
 *
 * Global state (defined in context.cu): one device, one stream, one cuBLAS(Lt) handle per
 * process, and grow-on-demand scratch buffers that ops use for partial sums. Scratch contract:
 * an op obtains each scratch buffer at most once per call and uses it only inside that call
 * (every op runs on llm_cuda_stream, so the next op's use is ordered after this one's).
 */
#ifndef LLMPY_CUDA_COMMON_CUH
#define LLMPY_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"
#include "core/ops.h"

// ----------------------------------------------------------------------------
// error checks: turn a failing CUDA call into an llm_status with a message

// Sync mode: 1 when LLMPY_CUDA_SYNC=1 was set at llm_cuda_init (ops_cuda.cu; dev/cuda programs
// define it as 0). Then every op of the tables synchronises and checks after itself, so that a
// kernel fault is reported by the op that launched it instead of by some later call.
extern int llm_cuda_sync_ops;

// Errors raised by a kernel while it runs: asynchronous (whichever later call synchronises or
// launches reports them, so they need not concern that call) and sticky (the context is dead:
// every later call returns them too; the process must be restarted).
static inline bool cuda_error_is_async(cudaError_t err) {
    switch (err) {
    case cudaErrorECCUncorrectable:
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchTimeout:
    case cudaErrorAssert:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorLaunchFailure:
        return true;
    default:
        return false;
    }
}

// What to append to the message of err: outside sync mode an asynchronous error names the wrong
// culprit, so say how to find the right one.
static inline const char *cuda_error_hint(cudaError_t err) {
    if (!cuda_error_is_async(err) || llm_cuda_sync_ops) return "";
    return " (raised by a kernel that ran earlier, not necessarily by this call; set LLMPY_CUDA_SYNC=1 to find "
           "the op that failed)";
}

static inline llm_status cuda_check(cudaError_t err, const char *what, const char *file, int line) {
    if (err == cudaSuccess) return LLM_OK;
    return llm_fail(LLM_EBACKEND, "CUDA error in %s (%s:%d): %s%s", what, file, line, cudaGetErrorString(err),
                    cuda_error_hint(err));
}
// Returns from the calling function when the CUDA call fails.
#define CUDA_TRY(call)                                                                  \
    do {                                                                                \
        llm_status s_ = cuda_check((call), #call, __FILE__, __LINE__);                  \
        if (s_ != LLM_OK) return s_;                                                    \
    } while (0)
// After a kernel launch: catches bad launch configurations.
#define CUDA_TRY_LAUNCH(what)                                                           \
    do {                                                                                \
        llm_status s_ = cuda_check(cudaGetLastError(), what, __FILE__, __LINE__);       \
        if (s_ != LLM_OK) return s_;                                                    \
    } while (0)

// ----------------------------------------------------------------------------
// the backend's global state (context.cu): one device, one stream per process

extern cudaStream_t llm_cuda_stream;
extern int llm_cuda_sm_count;

// Scratch buffers, grown on demand (never shrunk), zero-filled only when first allocated.
// Device scratch: partial sums, staging, index lists. Host scratch: pinned memory for the few
// ops that move small results or index lists between host and device (encoder backward,
// norm_squared, sum_f32). Host scratch contract: copies into it and out of it are issued on
// llm_cuda_stream, so they are ordered among themselves; but the host itself may write it only
// once no copy issued earlier still reads it. encoder_backward, the one op that writes it on the
// host and uploads from it without waiting, records an event behind its upload and waits for
// that event before writing again (encoder.cu); an op that adds host-side writes must do the same.
llm_status cuda_device_scratch(void **out, size_t bytes);
llm_status cuda_host_scratch(void **out, size_t bytes);

// ----------------------------------------------------------------------------
// element types

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(bf16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float x) { return __float2bfloat16_rn(x); }

// Name of an element type, for messages.
template <typename T> inline const char *dtype_name();
template <> inline const char *dtype_name<float>() { return "fp32"; }
template <> inline const char *dtype_name<bf16>() { return "bf16"; }

// ----------------------------------------------------------------------------
// vector packs

template <typename T, int P> struct alignas(sizeof(T) * P) Pack {
    T v[P];
};
// Elements of T in 128 bits.
template <typename T> __host__ __device__ constexpr int pack128() { return (int)(16 / sizeof(T)); }

template <typename T, int P> __device__ __forceinline__ Pack<T, P> load_pack(const T *p) {
    return *reinterpret_cast<const Pack<T, P> *>(p);
}
// Streaming load (evict-first): for data read exactly once.
template <typename T, int P> __device__ __forceinline__ Pack<T, P> load_pack_cs(const T *p) {
    if constexpr (sizeof(Pack<T, P>) == 16) {
        int4 r = __ldcs(reinterpret_cast<const int4 *>(p));
        return *reinterpret_cast<Pack<T, P> *>(&r);
    } else {
        return *reinterpret_cast<const Pack<T, P> *>(p);
    }
}
template <typename T, int P> __device__ __forceinline__ void store_pack(T *p, const Pack<T, P> &x) {
    *reinterpret_cast<Pack<T, P> *>(p) = x;
}

// True when every pointer is 16-byte aligned (NULL counts as aligned).
inline bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }
template <typename... Ps> inline bool aligned16(const void *p, Ps... rest) { return aligned16(p) && aligned16(rest...); }

// ----------------------------------------------------------------------------
// reductions (every lane of the warp / thread of the block must call them)

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// Online softmax statistics: (m, s) stands for sum_i exp(x_i - m) = s. Merging two keeps the
// larger maximum and rescales the other sum. m = -inf with s = 0 is the empty set.
__device__ __forceinline__ void softmax_merge(float &m, float &s, float m2, float s2) {
    const float mn = fmaxf(m, m2);
    if (mn == -INFINITY) return; // both empty
    s = s * expf(m - mn) + s2 * expf(m2 - mn);
    m = mn;
}
__device__ __forceinline__ void warp_softmax_merge(float &m, float &s) {
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        softmax_merge(m, s, m2, s2);
    }
}

// Sum over the block; blockDim.x must be a multiple of 32 (at most 1024). Every thread gets the
// result. Safe to call repeatedly (the shared buffer is guarded by barriers).
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float partial[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    v = warp_sum(v);
    __syncthreads(); // a previous call may still be reading partial
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < nwarps ? partial[lane] : 0.0f;
    return warp_sum(v);
}
// Block-wide online softmax merge; same contract as block_sum.
__device__ __forceinline__ void block_softmax_merge(float &m, float &s) {
    __shared__ float pm[32], ps[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    warp_softmax_merge(m, s);
    __syncthreads();
    if (lane == 0) pm[warp] = m, ps[warp] = s;
    __syncthreads();
    m = lane < nwarps ? pm[lane] : -INFINITY;
    s = lane < nwarps ? ps[lane] : 0.0f;
    warp_softmax_merge(m, s);
}

// ----------------------------------------------------------------------------
// stochastic rounding fp32 -> bf16

// A 32-bit hash of (seed, index): the SplitMix64 finaliser over both, well mixed in every bit.
__device__ __forceinline__ uint32_t hash_index(uint32_t seed, uint64_t i) {
    uint64_t z = i + 0x9E3779B97F4A7C15ull * ((uint64_t)seed + 1u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (uint32_t)(z >> 32);
}
// Rounds x up or down to a neighbouring bf16 with probabilities that make the result unbiased:
// add 16 random bits below the bf16 mantissa, then truncate. rnd: uniform 32-bit random.
__device__ __forceinline__ bf16 round_stochastic(float x, uint32_t rnd) {
    uint32_t bits = __float_as_uint(x);
    if ((bits & 0x7f800000u) == 0x7f800000u) return __float2bfloat16_rn(x); // inf, nan
    bits += rnd & 0xffffu;
    bits &= 0xffff0000u;
    return __ushort_as_bfloat16((unsigned short)(bits >> 16));
}

// ----------------------------------------------------------------------------
// launch helpers

// Blocks for n units of work at `per_block` units per block, for grid-stride loops: enough to
// fill the device several times over, no more (gridDim.x stays far below its limit).
inline unsigned grid_for(size_t n, size_t per_block) {
    size_t g = (n + per_block - 1) / per_block;
    size_t cap = (size_t)(llm_cuda_sm_count > 0 ? llm_cuda_sm_count : 132) * 32;
    if (g > cap) g = cap;
    return (unsigned)(g > 0 ? g : 1);
}

#endif // LLMPY_CUDA_COMMON_CUH
