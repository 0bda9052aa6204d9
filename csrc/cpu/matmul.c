/*
 * matmul.c — fully connected layer on the CPU: out = inp @ weight^T + bias.
 *
 * Shapes (letters defined in ops.h):
 *   out: (B,T,OC)   inp: (B,T,C)   weight: (OC,C)   bias: (OC) or NULL
 * Gradient convention (ops.h): dweight += and dbias += (parameters), dinp += (activation);
 * dinp and dbias may be NULL in the backward, then they are skipped.
 *
 * All three products reduce to one routine, gemm_acc(): c (M,N) += a (M,K) @ b (K,N), where
 * a and b are strided views so that transposes cost nothing:
 *   forward  out    (BT,OC) += inp   (BT,C)  @ weight^T (C,OC)    [after out = bias]
 *   backward dinp   (BT,C)  += dout  (BT,OC) @ weight   (OC,C)
 *            dweight(OC,C)  += dout^T(OC,BT) @ inp      (BT,C)
 * gemm_acc follows the classic blocked layout (Goto / BLIS): the output is cut into MC x NC
 * tiles shared out among threads; for each KC slice of the reduction the thread packs its
 * slice of a into MR-row panels and of b into NR-column panels (thread-local scratch, zero
 * padded at the edges) so that the micro-kernel reads both contiguously. The micro-kernel
 * keeps an MR x NR tile of c in registers; its inner loop over NR contiguous columns is
 * plain C that the compiler turns into vector FMAs (-O3 -march=native).
 * Reductions are fp32 (as in every BLAS); dbias sums in double. Each element of c is reduced
 * by one thread in a fixed order, so results do not depend on the number of threads.
 * cpu_gemm_serial() exposes the single-threaded driver to attention.c (see cpu_ops.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common.h"
#include "cpu_ops.h"

// ----------------------------------------------------------------------------
// blocking parameters

#define MR 6    // micro-tile rows (broadcast from packed a)
#define NR 32   // micro-tile columns (vector loads from packed b), a multiple of the vector width
#define KC 256  // reduction slice: an MR x KC panel of a and a KC x NR panel of b stay in L1/L2
#define MC 96   // rows of a thread's tile, a multiple of MR
#define NC 512  // columns of a thread's tile, a multiple of NR

// Fused multiply-add where the hardware has it (fmaf is a slow library call otherwise).
#ifdef FP_FAST_FMAF
#define MADD(a, b, c) fmaf((a), (b), (c))
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

// ----------------------------------------------------------------------------
// packing

// dst[(panel * kc + k) * MR + r] = a(i0 + panel * MR + r, k0 + k); rows past m are zero.
static void pack_a(float *restrict dst, cpu_view a, size_t i0, size_t mc, size_t k0, size_t kc) {
    for (size_t p = 0; p < mc; p += MR) {
        size_t rows = mc - p < MR ? mc - p : MR;
        float *d = dst + p * kc;
        if (a.cs == 1) { // rows contiguous along k: walk each row
            for (size_t r = 0; r < rows; r++) {
                const float *src = a.p + (i0 + p + r) * a.rs + k0;
                for (size_t k = 0; k < kc; k++) d[k * MR + r] = src[k];
            }
        } else { // columns contiguous along i (a transposed view)
            for (size_t k = 0; k < kc; k++) {
                const float *src = a.p + (k0 + k) * a.cs + (i0 + p) * a.rs;
                for (size_t r = 0; r < rows; r++) d[k * MR + r] = src[r * a.rs];
            }
        }
        for (size_t r = rows; r < MR; r++)
            for (size_t k = 0; k < kc; k++) d[k * MR + r] = 0.0f;
    }
}

// dst[(panel * kc + k) * NR + j] = b(k0 + k, j0 + panel * NR + j); columns past n are zero.
static void pack_b(float *restrict dst, cpu_view b, size_t k0, size_t kc, size_t j0, size_t nc) {
    for (size_t q = 0; q < nc; q += NR) {
        size_t cols = nc - q < NR ? nc - q : NR;
        float *d = dst + q * kc;
        if (b.cs == 1) { // rows of b contiguous along j
            for (size_t k = 0; k < kc; k++) {
                const float *src = b.p + (k0 + k) * b.rs + j0 + q;
                float *dk = d + k * NR;
                size_t j = 0;
                for (; j < cols; j++) dk[j] = src[j];
                for (; j < NR; j++) dk[j] = 0.0f;
            }
        } else { // columns of b contiguous along k (b is a transposed view, e.g. weight^T)
            for (size_t j = 0; j < cols; j++) {
                const float *src = b.p + (j0 + q + j) * b.cs + k0 * b.rs;
                for (size_t k = 0; k < kc; k++) d[k * NR + j] = src[k * b.rs];
            }
            for (size_t j = cols; j < NR; j++)
                for (size_t k = 0; k < kc; k++) d[k * NR + j] = 0.0f;
        }
    }
}

// ----------------------------------------------------------------------------
// micro-kernel: c[0:mr, 0:nr] += a_panel (MR x kc) @ b_panel (kc x NR)

static void micro_kernel(size_t kc, const float *restrict a, const float *restrict b,
                         float *restrict c, size_t ldc, size_t mr, size_t nr) {
    float acc[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = 0.0f;

    for (size_t k = 0; k < kc; k++) {
        const float *ak = a + k * MR;
        const float *bk = b + k * NR;
        for (int i = 0; i < MR; i++) {
            float ai = ak[i];
            for (int j = 0; j < NR; j++) acc[i][j] = MADD(ai, bk[j], acc[i][j]);
        }
    }

    if (mr == MR && nr == NR) {
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) c[i * ldc + j] += acc[i][j];
    } else {
        for (size_t i = 0; i < mr; i++)
            for (size_t j = 0; j < nr; j++) c[i * ldc + j] += acc[i][j];
    }
}

// ----------------------------------------------------------------------------
// tiles and the two drivers

#define SCRATCH_FLOATS ((size_t)MC * KC + (size_t)KC * NC) // packed a slice + packed b slice
_Static_assert(SCRATCH_FLOATS * sizeof(float) % 64 == 0, "aligned_alloc needs a multiple of the alignment");

// c[i0:i0+mc, j0:j0+nc] += a[i0:i0+mc, :] @ b[:, j0:j0+nc], one KC slice of the reduction at a time.
static void gemm_tile(float *c, size_t ldc, cpu_view a, cpu_view b, size_t i0, size_t mc, size_t j0, size_t nc,
                      size_t K, float *scratch) {
    float *pa = scratch, *pb = scratch + (size_t)MC * KC;
    for (size_t k0 = 0; k0 < K; k0 += KC) {
        size_t kc = K - k0 < KC ? K - k0 : KC;
        pack_a(pa, a, i0, mc, k0, kc);
        pack_b(pb, b, k0, kc, j0, nc);
        for (size_t q = 0; q < nc; q += NR) {
            size_t nr = nc - q < NR ? nc - q : NR;
            for (size_t p = 0; p < mc; p += MR) {
                size_t mr = mc - p < MR ? mc - p : MR;
                micro_kernel(kc, pa + p * kc, pb + q * kc, c + (i0 + p) * ldc + j0 + q, ldc, mr, nr);
            }
        }
    }
}

size_t cpu_gemm_scratch_floats(void) { return SCRATCH_FLOATS; }

void cpu_gemm_serial(float *c, size_t ldc, cpu_view a, cpu_view b, size_t M, size_t N, size_t K, float *scratch) {
    for (size_t j0 = 0; j0 < N; j0 += NC)
        for (size_t i0 = 0; i0 < M; i0 += MC)
            gemm_tile(c, ldc, a, b, i0, M - i0 < MC ? M - i0 : MC, j0, N - j0 < NC ? N - j0 : NC, K, scratch);
}

// Parallel version: the MC x NC tiles of c are shared out among threads, each with its own scratch.
static llm_status gemm_acc(float *c, size_t ldc, cpu_view a, cpu_view b, size_t M, size_t N, size_t K) {
    if (M == 0 || N == 0 || K == 0) return LLM_OK;
    const size_t tiles_m = (M + MC - 1) / MC;
    const long long tiles = (long long)(tiles_m * ((N + NC - 1) / NC));
    int failed = 0;

#pragma omp parallel
    {
        float *scratch = aligned_alloc(64, SCRATCH_FLOATS * sizeof(float));
        if (!scratch) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (long long tile = 0; tile < tiles; tile++) {
            if (!scratch) continue;
            // consecutive tiles share the same b columns (n-major order), so b stays cached
            size_t i0 = ((size_t)tile % tiles_m) * MC;
            size_t j0 = ((size_t)tile / tiles_m) * NC;
            gemm_tile(c, ldc, a, b, i0, M - i0 < MC ? M - i0 : MC, j0, N - j0 < NC ? N - j0 : NC, K, scratch);
        }
        free(scratch);
    }
    if (failed)
        return llm_fail(LLM_ENOMEM, "matmul: out of memory for %zu bytes of scratch", SCRATCH_FLOATS * sizeof(float));
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// forward

llm_status cpu_matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                              int B, int T, int C, int OC) {
    const size_t BT = (size_t)B * (size_t)T;
    // out = bias (or 0), then out += inp @ weight^T
#pragma omp parallel for
    for (long long r = 0; r < (long long)BT; r++) {
        float *o = out + (size_t)r * OC;
        if (bias) memcpy(o, bias, (size_t)OC * sizeof(float));
        else memset(o, 0, (size_t)OC * sizeof(float));
    }
    cpu_view a = {inp, (size_t)C, 1};    // (BT, C)
    cpu_view b = {weight, 1, (size_t)C}; // weight^T: (C, OC)
    return gemm_acc(out, (size_t)OC, a, b, BT, (size_t)OC, (size_t)C);
}

// ----------------------------------------------------------------------------
// backward

// dbias[o] += sum over rows of dout[:, o], summed in double; threads own column blocks.
static void bias_backward(float *dbias, const float *dout, size_t BT, size_t OC) {
    enum { CB = 64 };
    const long long blocks = (long long)((OC + CB - 1) / CB);
#pragma omp parallel for
    for (long long blk = 0; blk < blocks; blk++) {
        size_t o0 = (size_t)blk * CB;
        size_t n = OC - o0 < CB ? OC - o0 : CB;
        double acc[CB] = {0};
        for (size_t r = 0; r < BT; r++) {
            const float *d = dout + r * OC + o0;
            for (size_t j = 0; j < n; j++) acc[j] += d[j];
        }
        for (size_t j = 0; j < n; j++) dbias[o0 + j] += (float)acc[j];
    }
}

llm_status cpu_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, int B, int T, int C, int OC) {
    const size_t BT = (size_t)B * (size_t)T;
    if (dinp) {
        cpu_view a = {dout, (size_t)OC, 1};  // (BT, OC)
        cpu_view b = {weight, (size_t)C, 1}; // (OC, C)
        LLM_TRY(gemm_acc(dinp, (size_t)C, a, b, BT, (size_t)C, (size_t)OC));
    }
    {
        cpu_view a = {dout, 1, (size_t)OC}; // dout^T: (OC, BT)
        cpu_view b = {inp, (size_t)C, 1};   // (BT, C)
        LLM_TRY(gemm_acc(dweight, (size_t)C, a, b, (size_t)OC, (size_t)C, BT));
    }
    if (dbias) bias_backward(dbias, dout, BT, (size_t)OC);
    return LLM_OK;
}
