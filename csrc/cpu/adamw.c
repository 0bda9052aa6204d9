/*
 * adamw.c — one AdamW step on the CPU, with PyTorch's torch.optim.AdamW semantics.
 *
 * Shapes: params, grads, m, v: (N). t >= 1 is the step number (bias correction).
 *   g = grad * grad_scale
 *   p -= lr * weight_decay * p                      (decoupled weight decay, applied first)
 *   m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2
 *   p -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
 * Gradient convention: grads are read only; params, m and v are updated in place.
 * Per-element arithmetic is done in double and rounded once when stored.
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
    return LLM_OK;
}
