/*
 * residual.cu — residual connection on CUDA: out = inp1 + inp2, elementwise (mirrors
 * csrc/cpu/residual.c).
 *
 * Shapes: out, inp1, inp2, dinp1, dinp2, dout: (N), floatX (fp32 or bf16), fp32 arithmetic.
 * out may alias inp1 or inp2 (each element is read, then written, by the same thread; the
 * pointers are deliberately not __restrict__).
 * Gradient convention (ops.h): dinp1 += dout, dinp2 += dout (activation gradients, accumulated).
 *
 * 128-bit loads/stores when every pointer is 16-byte aligned; the N % P tail is done by the
 * first threads of block 0.
 */
#include "cuda_ops.cuh"

#define RESIDUAL_THREADS 256

// ----------------------------------------------------------------------------
// kernels

template <typename floatX, int P>
static __global__ void residual_forward_kernel(floatX *out, const floatX *inp1, const floatX *inp2, size_t N) {
    const size_t packs = N / P, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < packs; i += stride) {
        const Pack<floatX, P> a = load_pack<floatX, P>(inp1 + i * P), b = load_pack<floatX, P>(inp2 + i * P);
        Pack<floatX, P> o;
#pragma unroll
        for (int k = 0; k < P; k++) o.v[k] = from_f32<floatX>(to_f32(a.v[k]) + to_f32(b.v[k]));
        store_pack<floatX, P>(out + i * P, o);
    }
    const size_t i = packs * P + threadIdx.x; // tail
    if (blockIdx.x == 0 && i < N) out[i] = from_f32<floatX>(to_f32(inp1[i]) + to_f32(inp2[i]));
}

template <typename floatX, int P>
static __global__ void residual_backward_kernel(floatX *dinp1, floatX *dinp2, const floatX *dout, size_t N) {
    const size_t packs = N / P, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < packs; i += stride) {
        const Pack<floatX, P> d = load_pack<floatX, P>(dout + i * P);
        Pack<floatX, P> g1 = load_pack<floatX, P>(dinp1 + i * P);
#pragma unroll
        for (int k = 0; k < P; k++) g1.v[k] = from_f32<floatX>(to_f32(g1.v[k]) + to_f32(d.v[k]));
        store_pack<floatX, P>(dinp1 + i * P, g1);
        // dinp2 is loaded after dinp1 is stored, so that dinp1 == dinp2 adds dout twice
        Pack<floatX, P> g2 = load_pack<floatX, P>(dinp2 + i * P);
#pragma unroll
        for (int k = 0; k < P; k++) g2.v[k] = from_f32<floatX>(to_f32(g2.v[k]) + to_f32(d.v[k]));
        store_pack<floatX, P>(dinp2 + i * P, g2);
    }
    const size_t i = packs * P + threadIdx.x; // tail
    if (blockIdx.x == 0 && i < N) {
        const float d = to_f32(dout[i]);
        dinp1[i] = from_f32<floatX>(to_f32(dinp1[i]) + d);
        dinp2[i] = from_f32<floatX>(to_f32(dinp2[i]) + d);
    }
}

// ----------------------------------------------------------------------------
// launchers

template <typename floatX>
static void residual_forward_launch(floatX *out, const floatX *inp1, const floatX *inp2, size_t N,
                                    cudaStream_t stream) {
    constexpr int P = pack128<floatX>();
    if (aligned16(out, inp1, inp2))
        residual_forward_kernel<floatX, P><<<grid_for(N / P, RESIDUAL_THREADS), RESIDUAL_THREADS, 0, stream>>>(
            out, inp1, inp2, N);
    else
        residual_forward_kernel<floatX, 1><<<grid_for(N, RESIDUAL_THREADS), RESIDUAL_THREADS, 0, stream>>>(
            out, inp1, inp2, N);
}

template <typename floatX>
static void residual_backward_launch(floatX *dinp1, floatX *dinp2, const floatX *dout, size_t N,
                                     cudaStream_t stream) {
    constexpr int P = pack128<floatX>();
    if (aligned16(dinp1, dinp2, dout))
        residual_backward_kernel<floatX, P><<<grid_for(N / P, RESIDUAL_THREADS), RESIDUAL_THREADS, 0, stream>>>(
            dinp1, dinp2, dout, N);
    else
        residual_backward_kernel<floatX, 1><<<grid_for(N, RESIDUAL_THREADS), RESIDUAL_THREADS, 0, stream>>>(
            dinp1, dinp2, dout, N);
}

// ----------------------------------------------------------------------------
// entries

template <typename floatX>
llm_status cuda_residual_forward(floatX *out, const floatX *inp1, const floatX *inp2, size_t N,
                                 cudaStream_t stream) {
    if (N == 0) return LLM_OK;
    if (!out || !inp1 || !inp2) return llm_fail(LLM_EINVAL, "residual_forward: NULL pointer");
    residual_forward_launch(out, inp1, inp2, N, stream);
    CUDA_TRY_LAUNCH("residual_forward");
    return LLM_OK;
}

template <typename floatX>
llm_status cuda_residual_backward(floatX *dinp1, floatX *dinp2, const floatX *dout, size_t N, cudaStream_t stream) {
    if (N == 0) return LLM_OK;
    if (!dinp1 || !dinp2 || !dout) return llm_fail(LLM_EINVAL, "residual_backward: NULL pointer");
    residual_backward_launch(dinp1, dinp2, dout, N, stream);
    CUDA_TRY_LAUNCH("residual_backward");
    return LLM_OK;
}

template llm_status cuda_residual_forward<float>(float *, const float *, const float *, size_t, cudaStream_t);
template llm_status cuda_residual_forward<bf16>(bf16 *, const bf16 *, const bf16 *, size_t, cudaStream_t);
template llm_status cuda_residual_backward<float>(float *, float *, const float *, size_t, cudaStream_t);
template llm_status cuda_residual_backward<bf16>(bf16 *, bf16 *, const bf16 *, size_t, cudaStream_t);
