/*
 * crossentropy.c — softmax + cross-entropy loss over the vocabulary on the CPU.
 *
 * Shapes (letters defined in ops.h):
 *   losses: (B,T)   logits, dlogits: (B,T,Vp)   targets: (B,T) in [0,V)
 * Only the first V of the Vp columns of each row are real; the padding columns are ignored
 * by the forward and receive a zero gradient.
 *   loss = logsumexp(logits[0:V]) - logits[target]
 *   dlogits = (softmax(logits[0:V]) - onehot(target)) * dloss
 * Gradient convention: the exception to ops.h's rule — crossentropy_backward WRITES dlogits
 * (=), it does not accumulate. dloss is the gradient of the objective w.r.t. each position's
 * loss (e.g. 1/(B*T) for a mean), the same for all positions.
 *
 * The max-shifted exponentials (cpu_expf, vectorised) are summed in double; rows are
 * independent (parallel). The neon variant computes the maxima and exponentials with NEON
 * intrinsics (neon.h), which GCC does not generate for these loops on aarch64.
 * dlogits may alias logits (each element is read before it is written).
 *
 * crossentropy_backward_cols computes the same gradient for a slice of columns v0 .. v0+n
 * into a (B,T,n) buffer, in one pass over that slice: the row's log-sum-exp is rebuilt from
 * the forward's loss (lse = loss + logit[target]), so no max or sum is recomputed. The model
 * uses it to run the lm_head backward a vocabulary slice at a time (gpt2.c).
 */
#include <math.h>

#include "cpu_ops.h"

// ----------------------------------------------------------------------------
// forward

llm_status cpu_crossentropy_forward(float *losses, const float *logits, const int32_t *targets,
                                    int B, int T, int V, int Vp) {
    const long long BT = (long long)B * T;
#pragma omp parallel for
    for (long long r = 0; r < BT; r++) {
        const float *x = logits + (size_t)r * Vp;
#ifdef CPU_NEON
        const float m = cpu_neon_max(x, (size_t)V);
        const double s = cpu_neon_sum_exp(x, (size_t)V, m);
#else
        const float m = cpu_max(x, (size_t)V);
        const double s = cpu_sum_exp(x, (size_t)V, m);
#endif
        losses[r] = (float)(log(s) + (double)m - (double)x[targets[r]]);
    }
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// backward

llm_status cpu_crossentropy_backward(float *dlogits, const float *logits, const int32_t *targets,
                                     float dloss, int B, int T, int V, int Vp) {
    const long long BT = (long long)B * T;
#pragma omp parallel for
    for (long long r = 0; r < BT; r++) {
        const float *x = logits + (size_t)r * Vp;
        float *dx = dlogits + (size_t)r * Vp;
#ifdef CPU_NEON
        const float m = cpu_neon_max(x, (size_t)V);
        cpu_neon_exp_shift(dx, x, (size_t)V, m, 1.0f); // unnormalised softmax
#else
        const float m = cpu_max(x, (size_t)V);
        for (int i = 0; i < V; i++) dx[i] = cpu_expf(x[i] - m); // unnormalised softmax
#endif
        const float scale = (float)(1.0 / cpu_sum(dx, (size_t)V)) * dloss;
        for (int i = 0; i < V; i++) dx[i] *= scale;
        dx[targets[r]] -= dloss;
        for (int i = V; i < Vp; i++) dx[i] = 0.0f;
    }
    return LLM_OK;
}

llm_status cpu_crossentropy_backward_cols(float *dlogits, const float *logits, const float *losses,
                                          const int32_t *targets, float dloss, int B, int T, int V, int Vp,
                                          int v0, int n) {
    const long long BT = (long long)B * T;
    const int real = V - v0 < n ? (V - v0 > 0 ? V - v0 : 0) : n; // columns below V
    (void)Vp;
#pragma omp parallel for if (BT * (long long)n > 32768)
    for (long long r = 0; r < BT; r++) {
        const float *xr = logits + (size_t)r * Vp;
        const float *x = xr + v0;
        float *dx = dlogits + (size_t)r * n;
        // the slice of a row is short (a few KiB) and rows lie far apart, too little for the
        // hardware prefetcher: fetch the next row's slice and target logit while this one runs
        if (r + 1 < BT) {
            const float *next = x + Vp;
            for (int i = 0; i < real; i += 16) CPU_PREFETCH(next + i);
            CPU_PREFETCH(xr + Vp + targets[r + 1]);
        }
        const float lse = (float)((double)losses[r] + (double)xr[targets[r]]);
#ifdef CPU_NEON
        cpu_neon_exp_shift(dx, x, (size_t)real, lse, dloss);
#else
        for (int i = 0; i < real; i++) dx[i] = cpu_expf(x[i] - lse) * dloss;
#endif
        for (int i = real; i < n; i++) dx[i] = 0.0f;
        const int t = targets[r] - v0;
        if (t >= 0 && t < real) dx[t] -= dloss;
    }
    return LLM_OK;
}
