/*
 * attention.c — causal multi-head self-attention on the CPU.
 *
 * Shapes (letters defined in ops.h; hs = C/NH):
 *   qkv: (B,T,3C) = [q | k | v]; head h of q, k, v is channels h*hs .. (h+1)*hs of its third
 *   att: (B,NH,T,T) softmax probabilities, row t holds 0 at columns t2 > t (causal)
 *   out: (B,T,C), head h at channels h*hs .. (h+1)*hs
 *   att[b,h,t,t2] = softmax over t2 <= t of (q_t . k_t2) / sqrt(hs);  out_t = sum_t2 att * v_t2
 * Gradient convention (ops.h): dqkv += (activation gradient, accumulated).
 *
 * The backward uses the stored probabilities; with p = att row t and g = dout_t:
 *   dp[t2] = g . v_t2,   ds[t2] = p[t2] * (dp[t2] - sum_j p[j] dp[j])   (softmax backward)
 *   dv_t2 += p[t2] g,    dq_t += scale * sum_t2 ds[t2] k_t2,   dk_t2 += scale * ds[t2] q_t
 * dk and dv of one position receive contributions from every later query, so the backward is
 * parallel over (b, h) pairs, which own disjoint channels of dqkv; each thread needs one
 * T-length row of scratch for ds. Softmax sums are accumulated in double.
 */
#include <math.h>
#include <stdlib.h>

#include "../common.h"
#include "cpu_ops.h"

// ----------------------------------------------------------------------------
// helpers

// Dot product with eight independent partial sums, which the compiler vectorises (a single
// running sum cannot be reordered without -ffast-math).
static float dot(const float *a, const float *b, int n) {
    float part[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) part[l] += a[i + l] * b[i + l];
    float s = 0.0f;
    for (; i < n; i++) s += a[i] * b[i];
    return s + ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
}

// y += alpha * x
static void axpy(float *restrict y, float alpha, const float *restrict x, int n) {
    for (int i = 0; i < n; i++) y[i] += alpha * x[i];
}

// ----------------------------------------------------------------------------
// forward

llm_status cpu_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH) {
    const int hs = C / NH;
    const size_t C3 = 3 * (size_t)C;
    const float scale = 1.0f / sqrtf((float)hs);
    const long long rows = (long long)B * NH * T;

#pragma omp parallel for schedule(dynamic, 8)
    for (long long row = 0; row < rows; row++) {
        // row = (b * NH + h) * T + t
        const size_t t = (size_t)(row % T);
        const size_t h = (size_t)((row / T) % NH);
        const size_t b = (size_t)(row / ((long long)T * NH));
        const float *base = qkv + b * T * C3;
        const float *q = base + t * C3 + h * hs;
        float *p = att + (size_t)row * T;

        // scores and their maximum
        float maxv = -INFINITY;
        for (size_t t2 = 0; t2 <= t; t2++) {
            const float *k = base + t2 * C3 + C + h * hs;
            float s = dot(q, k, hs) * scale;
            p[t2] = s;
            if (s > maxv) maxv = s;
        }
        // normalised probabilities; zeros above the diagonal
        double sum = 0.0;
        for (size_t t2 = 0; t2 <= t; t2++) {
            float e = expf(p[t2] - maxv);
            p[t2] = e;
            sum += e;
        }
        const float inv = (float)(1.0 / sum);
        for (size_t t2 = 0; t2 <= t; t2++) p[t2] *= inv;
        for (size_t t2 = t + 1; t2 < (size_t)T; t2++) p[t2] = 0.0f;

        // weighted sum of values
        float *o = out + (b * T + t) * C + h * hs;
        for (int i = 0; i < hs; i++) o[i] = 0.0f;
        for (size_t t2 = 0; t2 <= t; t2++) axpy(o, p[t2], base + t2 * C3 + 2 * (size_t)C + h * hs, hs);
    }
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// backward

llm_status cpu_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att,
                                  int B, int T, int C, int NH) {
    const int hs = C / NH;
    const size_t C3 = 3 * (size_t)C;
    const float scale = 1.0f / sqrtf((float)hs);
    const long long pairs = (long long)B * NH;
    int failed = 0;

#pragma omp parallel
    {
        float *ds = malloc((size_t)T * sizeof(float)); // one row of score gradients
        if (!ds) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (long long bh = 0; bh < pairs; bh++) {
            if (!ds) continue;
            const size_t b = (size_t)(bh / NH), h = (size_t)(bh % NH);
            const float *base = qkv + b * T * C3;
            float *dbase = dqkv + b * T * C3;
            for (size_t t = 0; t < (size_t)T; t++) {
                const float *p = att + ((size_t)bh * T + t) * T;
                const float *g = dout + (b * T + t) * C + h * hs;
                const float *q = base + t * C3 + h * hs;
                float *dq = dbase + t * C3 + h * hs;

                // dp = g . v, and the softmax backward's row term sum_j p[j] dp[j]
                double pdp = 0.0;
                for (size_t t2 = 0; t2 <= t; t2++) {
                    const float *v = base + t2 * C3 + 2 * (size_t)C + h * hs;
                    float dp = dot(g, v, hs);
                    ds[t2] = dp;
                    pdp += (double)p[t2] * dp;
                    axpy(dbase + t2 * C3 + 2 * (size_t)C + h * hs, p[t2], g, hs); // dv
                }
                const float row_term = (float)pdp;
                for (size_t t2 = 0; t2 <= t; t2++) {
                    float d = p[t2] * (ds[t2] - row_term) * scale;
                    const float *k = base + t2 * C3 + C + h * hs;
                    axpy(dq, d, k, hs);                                 // dq
                    axpy(dbase + t2 * C3 + C + h * hs, d, q, hs);       // dk
                }
            }
        }
        free(ds);
    }
    if (failed) return llm_fail(LLM_ENOMEM, "attention_backward: out of memory for a %d-float row", T);
    return LLM_OK;
}
