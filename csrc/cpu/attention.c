/*
 * attention.c — causal multi-head self-attention on the CPU.
 *
 * Shapes (letters defined in ops.h; hs = C/NH):
 *   qkv: (B,T,3C) = [q | k | v]; head h of q, k, v is channels h*hs .. (h+1)*hs of its third
 *   att: (B,NH,T,T) softmax probabilities, row t holds 0 at columns t2 > t (causal)
 *   out: (B,T,C), head h at channels h*hs .. (h+1)*hs
 *   att[b,h,t,t2] = softmax over t2 <= t of (q_t . k_t2) / sqrt(hs);  out_t = sum_t2 att * v_t2
 * Gradient convention (ops.h): dqkv is written (=), never read: the model writes it once per
 * layer. Each (b, h) owns its channels of dq, dk, dv (one thread writes them): a query block
 * writes its rows of dq; dk and dv accumulate over the query blocks, the first block writes
 * its rows and the later rows are cleared first. Every product that starts a buffer writes it
 * (cpu_gemm_serial's store) rather than adding to zeros.
 *
 * Both passes work on blocks of QB queries of one (b, h) and express the products as small
 * matrix products on strided views of qkv, run by matmul.c's blocked GEMM (cpu_gemm_serial):
 * a block of queries t0..t0+QB only sees keys 0..t0+QB, so the causal structure costs nothing
 * beyond the diagonal block. Per block, with P the probabilities and dO the output gradient:
 *   forward   S = Q K^T,   P = softmax(S * scale) (masked),   O = P V
 *   backward  dP = dO V^T, dS = P * (dP - rowsum(P * dP)) * scale   (softmax backward)
 *             dQ += dS K,  dK += dS^T Q,  dV += P^T dO
 * The forward is parallel over (b, h, query block). In the backward, dK and dV of a key
 * receive contributions from every later query block, so it is parallel over (b, h) pairs,
 * which own disjoint channels of dqkv. Each thread uses its GEMM scratch and a QB x T block of
 * score gradients from cpu_scratch (LLM_ENOMEM if they cannot be allocated the first time).
 * Row sums are accumulated in double.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "cpu_ops.h"

#define QB 64 // queries per block

// ----------------------------------------------------------------------------
// helpers

// sum of a[i] * b[i] in double, in 8 independent lanes so the loop vectorises
static double dot_f64(const float *a, const float *b, size_t n) {
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) lane[l] += (double)a[i + l] * b[i + l];
    double s = 0.0;
    for (; i < n; i++) s += (double)a[i] * b[i];
    return s + cpu_lanes_total(lane);
}

// Scaled, causally masked softmax of one row of scores in place: row[0..t] becomes the
// probabilities, row[t+1..T) zero.
static void softmax_row(float *row, size_t t, size_t T, float scale) {
    const size_t n = t + 1;
    for (size_t i = 0; i < n; i++) row[i] *= scale;
#ifdef CPU_NEON
    const float m = cpu_neon_max(row, n);
    cpu_neon_exp_shift(row, row, n, m, 1.0f);
#else
    const float m = cpu_max(row, n);
    for (size_t i = 0; i < n; i++) row[i] = cpu_expf(row[i] - m);
#endif
    const float inv = (float)(1.0 / cpu_sum(row, n));
    for (size_t i = 0; i < n; i++) row[i] *= inv;
    memset(row + n, 0, (T - n) * sizeof(float));
}

// ----------------------------------------------------------------------------
// forward

llm_status cpu_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH) {
    const size_t hs = (size_t)(C / NH), C3 = 3 * (size_t)C, Tz = (size_t)T;
    const float scale = 1.0f / sqrtf((float)hs);
    const size_t blocks = (Tz + QB - 1) / QB;
    const long long units = (long long)B * NH * (long long)blocks;
    int failed = 0;

#pragma omp parallel
    {
        float *scratch = cpu_scratch(0, cpu_gemm_scratch_floats());
        if (!scratch) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (long long u = 0; u < units; u++) {
            if (!scratch) continue;
            // u = (b * NH + h) * blocks + i; the late (long) query blocks are handed out first
            const size_t bh = (size_t)u / blocks, blk = blocks - 1 - (size_t)u % blocks;
            const size_t b = bh / (size_t)NH, h = bh % (size_t)NH;
            const size_t t0 = blk * QB, qb = Tz - t0 < QB ? Tz - t0 : QB, nk = t0 + qb;
            const float *q = qkv + b * Tz * C3 + h * hs, *k = q + C, *v = q + 2 * (size_t)C;
            float *p = att + (bh * Tz + t0) * Tz; // rows t0 .. t0+qb of this head
            float *o = out + (b * Tz + t0) * (size_t)C + h * hs;

            // S = Q_blk K^T over keys 0..nk (written), then the masked softmax of each row
            cpu_gemm_serial(p, Tz, (cpu_view){q + t0 * C3, C3, 1}, (cpu_view){k, 1, C3}, qb, nk, hs, 1, scratch);
            for (size_t r = 0; r < qb; r++) softmax_row(p + r * Tz, t0 + r, Tz, scale);

            // O_blk = P V (written)
            cpu_gemm_serial(o, (size_t)C, (cpu_view){p, Tz, 1}, (cpu_view){v, C3, 1}, qb, hs, nk, 1, scratch);
        }
    }
    if (failed) return llm_fail(LLM_ENOMEM, "attention_forward: out of memory for scratch");
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// backward

llm_status cpu_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att,
                                  int B, int T, int C, int NH) {
    const size_t hs = (size_t)(C / NH), C3 = 3 * (size_t)C, Tz = (size_t)T;
    const float scale = 1.0f / sqrtf((float)hs);
    const long long pairs = (long long)B * NH;
    int failed = 0;

#pragma omp parallel
    {
        float *scratch = cpu_scratch(0, cpu_gemm_scratch_floats());
        float *ds = cpu_scratch(1, (size_t)QB * Tz); // score gradients of one query block
        if (!scratch || !ds) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (long long bh = 0; bh < pairs; bh++) {
            if (!scratch || !ds) continue;
            const size_t b = (size_t)bh / (size_t)NH, h = (size_t)bh % (size_t)NH;
            const float *q = qkv + b * Tz * C3 + h * hs, *k = q + C, *v = q + 2 * (size_t)C;
            float *dq = dqkv + b * Tz * C3 + h * hs, *dk = dq + C, *dv = dq + 2 * (size_t)C;
            // dK, dV accumulate over the query blocks; the first one writes its rows, the later
            // rows start from 0 (dqkv is written, not accumulated: never from garbage)
            for (size_t t = QB; t < Tz; t++) {
                memset(dk + t * C3, 0, hs * sizeof(float));
                memset(dv + t * C3, 0, hs * sizeof(float));
            }

            for (size_t t0 = 0; t0 < Tz; t0 += QB) {
                const size_t qb = Tz - t0 < QB ? Tz - t0 : QB, nk = t0 + qb;
                const float *p = att + ((size_t)bh * Tz + t0) * Tz;
                const float *g = dout + (b * Tz + t0) * (size_t)C + h * hs; // dO rows of the block

                // dP = dO_blk V^T (written)
                cpu_gemm_serial(ds, Tz, (cpu_view){g, (size_t)C, 1}, (cpu_view){v, 1, C3}, qb, nk, hs, 1, scratch);

                // dS = P * (dP - rowsum(P * dP)) * scale; P is 0 above the diagonal, so is dS
                for (size_t r = 0; r < qb; r++) {
                    const float *pr = p + r * Tz;
                    float *dr = ds + r * Tz;
                    const float row_term = (float)dot_f64(pr, dr, t0 + r + 1);
                    for (size_t i = 0; i < nk; i++) dr[i] = pr[i] * (dr[i] - row_term) * scale;
                }

                // dQ_blk += dS K,  dK += dS^T Q_blk,  dV += P^T dO_blk
                // (dQ's rows of this block are written by this block alone; dK, dV's rows
                // t0 .. t0+qb are new here, and were cleared beforehand, unless t0 = 0)
                cpu_gemm_serial(dq + t0 * C3, C3, (cpu_view){ds, Tz, 1}, (cpu_view){k, C3, 1}, qb, hs, nk, 1, scratch);
                cpu_gemm_serial(dk, C3, (cpu_view){ds, 1, Tz}, (cpu_view){q + t0 * C3, C3, 1}, nk, hs, qb, t0 == 0,
                                scratch);
                cpu_gemm_serial(dv, C3, (cpu_view){p, 1, Tz}, (cpu_view){g, (size_t)C, 1}, nk, hs, qb, t0 == 0, scratch);
            }
        }
    }
    if (failed) return llm_fail(LLM_ENOMEM, "attention_backward: out of memory for scratch");
    return LLM_OK;
}
