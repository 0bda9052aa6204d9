/*
 * adamw.c — one AdamW step on the CPU, with PyTorch's torch.optim.AdamW semantics.
 *
 * Shapes: params, grads, m, v: (N). t >= 1 is the step number (bias correction).
 *   g = grad * grad_scale
 *   p -= lr * weight_decay * p                      (decoupled weight decay, applied first)
 *   m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2
 *   p -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
 * Gradient convention: grads are read only; params, m and v are updated in place.
 * Per-element arithmetic is done in double and rounded once when stored — except in the
 * AVX2 and AVX-512 variants, which compute in fp32 like PyTorch's fused AdamW: there the
 * update is half the CPU time (a double square root and division cover 4 lanes of a ymm
 * register, fp32 ones 8, at similar cost), ~4 % of a GPT-2 124M step at B*T = 256, for an error
 * of a few fp32 ulps of the update itself, far below the rounding of the parameter. The
 * generic variant keeps double (its results are pinned bit for bit by tests/test_golden_run.py).
 */
#include <math.h>

#include "cpu_ops.h"

// ----------------------------------------------------------------------------
// update

llm_status cpu_adamw_update(float *params, const float *grads, float *m, float *v, size_t N,
                            float lr, float beta1, float beta2, float eps, float weight_decay,
                            float grad_scale, int64_t t) {
    const double b1 = beta1, b2 = beta2;
    const double bc1 = 1.0 - pow(b1, (double)t);
    const double bc2_sqrt = sqrt(1.0 - pow(b2, (double)t));
    const double step = (double)lr / bc1;
    const double decay = 1.0 - (double)lr * weight_decay;
#if defined(__AVX2__)
    const float b1f = beta1, b2f = beta2, c1f = 1.0f - beta1, c2f = 1.0f - beta2; // exact for beta >= 0.5
    const float stepf = (float)step, inv_bc2f = (float)(1.0 / bc2_sqrt), decayf = (float)decay;
#pragma omp parallel for
    for (long long i = 0; i < (long long)N; i++) {
        float g = grads[i] * grad_scale;
        float mi = b1f * m[i] + c1f * g;
        float vi = b2f * v[i] + c2f * g * g;
        float p = params[i] * decayf;
        p -= stepf * mi / (sqrtf(vi) * inv_bc2f + eps);
        m[i] = mi;
        v[i] = vi;
        params[i] = p;
    }
#else
#pragma omp parallel for
    for (long long i = 0; i < (long long)N; i++) {
        double g = (double)grads[i] * grad_scale;
        double mi = b1 * m[i] + (1.0 - b1) * g;
        double vi = b2 * v[i] + (1.0 - b2) * g * g;
        double p = params[i] * decay;
        p -= step * mi / (sqrt(vi) / bc2_sqrt + eps);
        m[i] = (float)mi;
        v[i] = (float)vi;
        params[i] = (float)p;
    }
#endif
    return LLM_OK;
}
