/*
 * global_norm.cu — the reductions whose result the host needs, on CUDA: the sum of squares of a
 * buffer for the global gradient norm (ops.h norm_squared), and the sum of the fp32 losses for
 * the mean loss (ops.h sum_f32). The CPU backend has both in csrc/cpu/ops_cpu_isa.c.
 *
 * norm_squared: x (N) floatX; *out a host double. Two-stage deterministic reduction: a fixed grid (a function of N and the SM count only)
 * where each block sums the squares of a grid-stride share of x in fp32 and writes one fp32
 * partial; the partials are copied to pinned host memory and summed in double there. No
 * atomics, so the result is identical run to run. The call synchronises the stream (its result
 * is a host value). 128-bit loads when x is 16-byte aligned.
 *
 * sum_f32: x (N) fp32; *out a host double. Reduced entirely on the device, in double: a fixed
 * grid (a function of N and the SM count) of blocks each summing a grid-stride share into one
 * double partial, then one block summing the partials in a fixed order into one double, of
 * which 8 bytes are copied to the host (one synchronisation, however large N is). No atomics:
 * the same bits run to run.
 */
#include "cuda_ops.cuh"

#define NORM_THREADS 512
#define SUM_THREADS 256
#define SUM_MAX_BLOCKS 1024 // partials the second stage sums (SUM_THREADS threads, 4 each)

// ----------------------------------------------------------------------------
// kernels

template <typename floatX, int P>
static __global__ void norm_squared_kernel(float *partial, const floatX *x, size_t N) {
    const size_t packs = N / P, stride = (size_t)gridDim.x * blockDim.x;
    float acc = 0.0f;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < packs; i += stride) {
        const Pack<floatX, P> v = load_pack_cs<floatX, P>(x + i * P);
#pragma unroll
        for (int k = 0; k < P; k++) {
            const float f = to_f32(v.v[k]);
            acc += f * f;
        }
    }
    const size_t i = packs * P + threadIdx.x; // tail
    if (blockIdx.x == 0 && i < N) {
        const float f = to_f32(x[i]);
        acc += f * f;
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// Sum over the block in double; blockDim.x a multiple of 32 (at most 1024). Every thread gets
// the result. One call per kernel (the shared buffer is not guarded for reuse).
__device__ __forceinline__ double block_sum_f64(double v) {
    __shared__ double partial[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < nwarps ? partial[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// partial[block] = sum of the block's grid-stride share of x, in double.
static __global__ void sum_partial_kernel(double *partial, const float *x, size_t N) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    double acc = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < N; i += stride) acc += (double)x[i];
    acc = block_sum_f64(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// *out = sum of partial[0..n), one block, fixed order.
static __global__ void sum_finish_kernel(double *out, const double *partial, int n) {
    double acc = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
    acc = block_sum_f64(acc);
    if (threadIdx.x == 0) *out = acc;
}

// ----------------------------------------------------------------------------
// launchers

template <typename floatX>
static unsigned norm_squared_launch(float *partial, const floatX *x, size_t N, cudaStream_t stream) {
    constexpr int P = pack128<floatX>();
    if (aligned16(x)) {
        const unsigned grid = grid_for(N / P, NORM_THREADS);
        norm_squared_kernel<floatX, P><<<grid, NORM_THREADS, 0, stream>>>(partial, x, N);
        return grid;
    }
    const unsigned grid = grid_for(N, NORM_THREADS);
    norm_squared_kernel<floatX, 1><<<grid, NORM_THREADS, 0, stream>>>(partial, x, N);
    return grid;
}

// The grid norm_squared_launch will use (at most), to size the partials.
template <typename floatX> static unsigned norm_squared_grid(size_t N) { return grid_for(N, NORM_THREADS); }

// Blocks of sum_partial_kernel for N elements: enough to fill the device, at most SUM_MAX_BLOCKS.
static unsigned sum_grid(size_t N) {
    const unsigned g = grid_for(N, SUM_THREADS);
    return g < SUM_MAX_BLOCKS ? g : SUM_MAX_BLOCKS;
}

// out[0] = sum of x; partial: sum_grid(N) doubles.
static void sum_launch(double *out, double *partial, const float *x, size_t N, cudaStream_t stream) {
    const unsigned grid = sum_grid(N);
    sum_partial_kernel<<<grid, SUM_THREADS, 0, stream>>>(partial, x, N);
    sum_finish_kernel<<<1, SUM_THREADS, 0, stream>>>(out, partial, (int)grid);
}

// ----------------------------------------------------------------------------
// entries

template <typename floatX>
llm_status cuda_norm_squared(double *out, const floatX *x, size_t N, cudaStream_t stream) {
    if (!out) return llm_fail(LLM_EINVAL, "norm_squared: NULL result pointer");
    *out = 0.0;
    if (N == 0) return LLM_OK;
    if (!x) return llm_fail(LLM_EINVAL, "norm_squared: NULL pointer");
    const size_t max_grid = norm_squared_grid<floatX>(N);
    void *dpart, *hpart;
    LLM_TRY(cuda_device_scratch(&dpart, max_grid * sizeof(float)));
    LLM_TRY(cuda_host_scratch(&hpart, max_grid * sizeof(float)));
    const unsigned grid = norm_squared_launch((float *)dpart, x, N, stream);
    CUDA_TRY_LAUNCH("norm_squared");
    CUDA_TRY(cudaMemcpyAsync(hpart, dpart, grid * sizeof(float), cudaMemcpyDeviceToHost, stream));
    CUDA_TRY(cudaStreamSynchronize(stream));
    double sum = 0.0;
    for (unsigned b = 0; b < grid; b++) sum += (double)((const float *)hpart)[b];
    *out = sum;
    return LLM_OK;
}

llm_status cuda_sum_f32(double *out, const float *x, size_t N, cudaStream_t stream) {
    if (!out) return llm_fail(LLM_EINVAL, "sum_f32: NULL result pointer");
    *out = 0.0;
    if (N == 0) return LLM_OK;
    if (!x) return llm_fail(LLM_EINVAL, "sum_f32: NULL pointer");
    void *dbuf, *hbuf;
    LLM_TRY(cuda_device_scratch(&dbuf, ((size_t)sum_grid(N) + 1) * sizeof(double)));
    LLM_TRY(cuda_host_scratch(&hbuf, sizeof(double)));
    double *dsum = (double *)dbuf, *partial = dsum + 1;
    sum_launch(dsum, partial, x, N, stream);
    CUDA_TRY_LAUNCH("sum_f32");
    // stream-ordered behind any copy still reading the host scratch (encoder.cu), then waited for
    CUDA_TRY(cudaMemcpyAsync(hbuf, dsum, sizeof(double), cudaMemcpyDeviceToHost, stream));
    CUDA_TRY(cudaStreamSynchronize(stream));
    *out = *(const double *)hbuf;
    return LLM_OK;
}

template llm_status cuda_norm_squared<float>(double *, const float *, size_t, cudaStream_t);
template llm_status cuda_norm_squared<bf16>(double *, const bf16 *, size_t, cudaStream_t);
