/*
 * gelu.cu — GELU activation, tanh approximation, on CUDA (mirrors csrc/cpu/gelu.c).
 *
 * Shapes: out, inp, dinp, dout: (N) elementwise, floatX (fp32 or bf16), fp32 arithmetic.
 *   gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
 * computed as in the CPU backend through 0.5 (1 + tanh(u)) = s = 1 / (1 + e), e = exp(-2u):
 *   gelu(x) = x s,   gelu'(x) = s + 2 x s (1 - s) du/dx,   1 - s = e s
 * (one exponential, no cancellation in the negative tail).
 * Gradient convention (ops.h): dinp = dout * gelu'(inp) (activation gradient, written; its
 * previous contents are never read). out may alias inp, and dinp may alias dout: each element
 * is read before it is written, by the same thread.
 * This is also the GELU of matmul_gelu_forward (matmul.cu), so the backward differentiates
 * exactly the function the forward applied.
 *
 * Kernels move 128 bits per load/store when the pointers are 16-byte aligned (Pack<floatX, P>);
 * the N % P elements of the tail are done by the first threads of block 0.
 */
#include "cuda_ops.cuh"

#define GELU_SCALE 0.7978845608028654f // sqrt(2/pi)
#define GELU_CUBE 0.044715f
#define GELU_EXP_CLAMP 80.0f           // exp(80) is finite; beyond it s is 1 or ~0 anyway
#define GELU_THREADS 256

// ----------------------------------------------------------------------------
// the math

// e = exp(-2u), clamped so that e and e * s stay finite.
__device__ __forceinline__ float gelu_exp(float x) {
    float m2u = -2.0f * GELU_SCALE * (x + GELU_CUBE * x * x * x);
    m2u = fminf(fmaxf(m2u, -GELU_EXP_CLAMP), GELU_EXP_CLAMP);
    return expf(m2u);
}
__device__ __forceinline__ float gelu_value(float x) { return x / (1.0f + gelu_exp(x)); }
__device__ __forceinline__ float gelu_derivative(float x) {
    const float e = gelu_exp(x);
    const float s = 1.0f / (1.0f + e);
    const float dudx = GELU_SCALE * (1.0f + 3.0f * GELU_CUBE * x * x);
    return s + 2.0f * x * (e * s) * s * dudx;
}

// ----------------------------------------------------------------------------
// kernels

template <typename floatX, int P>
static __global__ void gelu_forward_kernel(floatX *out, const floatX *inp, size_t N) {
    const size_t packs = N / P, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < packs; i += stride) {
        const Pack<floatX, P> x = load_pack_cs<floatX, P>(inp + i * P);
        Pack<floatX, P> o;
#pragma unroll
        for (int k = 0; k < P; k++) o.v[k] = from_f32<floatX>(gelu_value(to_f32(x.v[k])));
        store_pack<floatX, P>(out + i * P, o);
    }
    const size_t i = packs * P + threadIdx.x; // tail
    if (blockIdx.x == 0 && i < N) out[i] = from_f32<floatX>(gelu_value(to_f32(inp[i])));
}

template <typename floatX, int P>
static __global__ void gelu_backward_kernel(floatX *dinp, const floatX *inp, const floatX *dout, size_t N) {
    const size_t packs = N / P, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < packs; i += stride) {
        const Pack<floatX, P> x = load_pack_cs<floatX, P>(inp + i * P);
        const Pack<floatX, P> d = load_pack<floatX, P>(dout + i * P);
        Pack<floatX, P> g;
#pragma unroll
        for (int k = 0; k < P; k++) g.v[k] = from_f32<floatX>(gelu_derivative(to_f32(x.v[k])) * to_f32(d.v[k]));
        store_pack<floatX, P>(dinp + i * P, g);
    }
    const size_t i = packs * P + threadIdx.x; // tail
    if (blockIdx.x == 0 && i < N) dinp[i] = from_f32<floatX>(gelu_derivative(to_f32(inp[i])) * to_f32(dout[i]));
}

// ----------------------------------------------------------------------------
// launchers

template <typename floatX>
static void gelu_forward_launch(floatX *out, const floatX *inp, size_t N, cudaStream_t stream) {
    constexpr int P = pack128<floatX>();
    if (aligned16(out, inp))
        gelu_forward_kernel<floatX, P><<<grid_for(N / P, GELU_THREADS), GELU_THREADS, 0, stream>>>(out, inp, N);
    else
        gelu_forward_kernel<floatX, 1><<<grid_for(N, GELU_THREADS), GELU_THREADS, 0, stream>>>(out, inp, N);
}

template <typename floatX>
static void gelu_backward_launch(floatX *dinp, const floatX *inp, const floatX *dout, size_t N, cudaStream_t stream) {
    constexpr int P = pack128<floatX>();
    if (aligned16(dinp, inp, dout))
        gelu_backward_kernel<floatX, P><<<grid_for(N / P, GELU_THREADS), GELU_THREADS, 0, stream>>>(dinp, inp, dout, N);
    else
        gelu_backward_kernel<floatX, 1><<<grid_for(N, GELU_THREADS), GELU_THREADS, 0, stream>>>(dinp, inp, dout, N);
}

// ----------------------------------------------------------------------------
// entries

template <typename floatX>
llm_status cuda_gelu_forward(floatX *out, const floatX *inp, size_t N, cudaStream_t stream) {
    if (N == 0) return LLM_OK;
    if (!out || !inp) return llm_fail(LLM_EINVAL, "gelu_forward: NULL pointer");
    gelu_forward_launch(out, inp, N, stream);
    CUDA_TRY_LAUNCH("gelu_forward");
    return LLM_OK;
}

template <typename floatX>
llm_status cuda_gelu_backward(floatX *dinp, const floatX *inp, const floatX *dout, size_t N, cudaStream_t stream) {
    if (N == 0) return LLM_OK;
    if (!dinp || !inp || !dout) return llm_fail(LLM_EINVAL, "gelu_backward: NULL pointer");
    gelu_backward_launch(dinp, inp, dout, N, stream);
    CUDA_TRY_LAUNCH("gelu_backward");
    return LLM_OK;
}

template llm_status cuda_gelu_forward<float>(float *, const float *, size_t, cudaStream_t);
template llm_status cuda_gelu_forward<bf16>(bf16 *, const bf16 *, size_t, cudaStream_t);
template llm_status cuda_gelu_backward<float>(float *, const float *, const float *, size_t, cudaStream_t);
template llm_status cuda_gelu_backward<bf16>(bf16 *, const bf16 *, const bf16 *, size_t, cudaStream_t);
