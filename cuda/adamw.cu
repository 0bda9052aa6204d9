/*
 * adamw.cu — one AdamW step on CUDA, PyTorch's torch.optim.AdamW semantics (mirrors
 * csrc/cpu/adamw.c), over all N elements in one launch.
 *
 * Shapes: params, grads: (N) floatX; m, v: (N) fp32; master: (N) fp32 or NULL.
 *   g = grad * grad_scale
 *   p = p * (1 - lr * weight_decay)                 (decoupled weight decay, applied first)
 *   m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2
 *   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * Gradient convention: grads are read only; params, master, m and v are updated in place.
 * Mixed precision (master != NULL): p is read from and written to the fp32 master copy; params
 * receive it rounded stochastically to floatX with random bits hash(seed, i), so the rounding
 * is unbiased and reproducible for a given seed. Without a master copy (the fp32 mode) params
 * are the master: updated in fp32 directly (a bf16 table without master would round its
 * params stochastically too). The bias corrections are computed in double on the host; the
 * per-element arithmetic is fp32. One thread per element, grid-stride (memory bound).
 */
#include <math.h>

#include "cuda_ops.cuh"

#define ADAMW_THREADS 512

// ----------------------------------------------------------------------------
// kernel

struct AdamWArgs {
    float beta1, beta2, eps, grad_scale;
    float decay;    // 1 - lr * weight_decay
    float step;     // lr / (1 - beta1^t)
    float bc2_sqrt; // sqrt(1 - beta2^t)
    uint32_t seed;
    uint64_t index0; // element i of the call is element index0 + i of its tensor (rounding bits)
};

// Writes an updated parameter: fp32 as is, bf16 rounded stochastically.
__device__ __forceinline__ void store_param(float *p, float x, uint32_t, size_t) { *p = x; }
__device__ __forceinline__ void store_param(bf16 *p, float x, uint32_t seed, size_t i) {
    *p = round_stochastic(x, hash_index(seed, i));
}

template <typename floatX, bool MASTER>
static __global__ void adamw_kernel(floatX *params, float *master, const floatX *grads, float *m, float *v, size_t N,
                                    AdamWArgs a) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < N; i += stride) {
        const float g = to_f32(grads[i]) * a.grad_scale;
        const float mi = a.beta1 * m[i] + (1.0f - a.beta1) * g;
        const float vi = a.beta2 * v[i] + (1.0f - a.beta2) * g * g;
        float p = (MASTER ? master[i] : to_f32(params[i])) * a.decay;
        p -= a.step * mi / (sqrtf(vi) / a.bc2_sqrt + a.eps);
        m[i] = mi;
        v[i] = vi;
        if (MASTER) master[i] = p;
        store_param(params + i, p, a.seed, a.index0 + i);
    }
}

// ----------------------------------------------------------------------------
// launcher

template <typename floatX>
static void adamw_launch(floatX *params, float *master, const floatX *grads, float *m, float *v, size_t N,
                         const AdamWArgs &a, cudaStream_t stream) {
    const unsigned grid = grid_for(N, ADAMW_THREADS);
    if (master)
        adamw_kernel<floatX, true><<<grid, ADAMW_THREADS, 0, stream>>>(params, master, grads, m, v, N, a);
    else
        adamw_kernel<floatX, false><<<grid, ADAMW_THREADS, 0, stream>>>(params, master, grads, m, v, N, a);
}

// ----------------------------------------------------------------------------
// entry

template <typename floatX>
llm_status cuda_adamw_update(floatX *params, float *master, const floatX *grads, float *m, float *v, size_t N,
                             float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                             int64_t t, uint32_t seed, uint64_t index0, cudaStream_t stream) {
    if (t < 1) return llm_fail(LLM_EINVAL, "adamw_update: step t must be >= 1 (got %lld)", (long long)t);
    if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f))
        return llm_fail(LLM_EINVAL, "adamw_update: betas must lie in [0, 1) (got %g, %g)", beta1, beta2);
    if (N == 0) return LLM_OK;
    if (!params || !grads || !m || !v) return llm_fail(LLM_EINVAL, "adamw_update: NULL pointer");
    AdamWArgs a;
    a.beta1 = beta1;
    a.beta2 = beta2;
    a.eps = eps;
    a.grad_scale = grad_scale;
    a.decay = (float)(1.0 - (double)lr * weight_decay);
    a.step = (float)((double)lr / (1.0 - pow((double)beta1, (double)t)));
    a.bc2_sqrt = (float)sqrt(1.0 - pow((double)beta2, (double)t));
    a.seed = seed;
    a.index0 = index0;
    adamw_launch(params, master, grads, m, v, N, a, stream);
    CUDA_TRY_LAUNCH("adamw_update");
    return LLM_OK;
}

template llm_status cuda_adamw_update<float>(float *, float *, const float *, float *, float *, size_t, float, float,
                                             float, float, float, float, int64_t, uint32_t, uint64_t,
                                             cudaStream_t);
template llm_status cuda_adamw_update<bf16>(bf16 *, float *, const bf16 *, float *, float *, size_t, float, float,
                                            float, float, float, float, int64_t, uint32_t, uint64_t,
                                            cudaStream_t);
