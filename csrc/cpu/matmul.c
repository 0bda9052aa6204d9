/*
 * matmul.c — fully connected layer on the CPU: out = inp @ weight^T + bias.
 *
 * Shapes (letters defined in ops.h):
 *   out: (B,T,OC)   inp: (B,T,C)   weight: (OC,C)   bias: (OC) or NULL
 * Gradient convention (ops.h): dweight += (or = with LLM_MM_WRITE_DWEIGHT: the first backward
 * after zero_grad) and dbias += (parameters); dinp is written (=) unless the flags hold
 * LLM_MM_ACCUMULATE_DINP (its previous contents are then never read: store, below);
 * dinp and dbias may be NULL in the backward, then they are skipped.
 *
 * All three products reduce to one routine, gemm(): c (M,N) += a (M,K) @ b (K,N) (or, with
 * store, c = bias + a @ b), where a and b are strided views so that transposes cost nothing:
 *   forward  out    (BT,OC)  = bias + inp (BT,C) @ weight^T (C,OC)
 *   backward dinp   (BT,C) (+)= dout (BT,OC) @ weight   (OC,C)   (store unless accumulating)
 *            dweight(OC,C) (+)= dout^T(OC,BT) @ inp      (BT,C)   (store when written)
 *
 * The GEMM follows the blocked layout of Goto / BLIS, with the loops ordered for the short,
 * wide products of training (M = B*T of a few hundred rows against weights of millions):
 *   for each KB-deep block of the reduction (c is swept once per KB)
 *     for each block of up to a_rows() rows of a: pack them, KC-slice by KC-slice, once
 *       for each NC-column block of c:
 *         for each KC slice: pack the KC x NC slice of b into NR-column panels, then
 *           for each MC rows, each NR panel, each MR panel: the micro-kernel
 * so a is packed once, b once per block of rows (once, for the model's shapes), and the
 * ma x NC block of c stays in cache across the KC slices. When the rows of a are contiguous
 * along k (the forward, dinp, most of attention) a is not packed at all: the micro-kernel
 * broadcasts its elements from where they are, which costs the same as from a packed panel
 * (a broadcast is a plain load) and spares a pass over a per thread. While the micro-kernels
 * work on one block of b, the next one is prefetched into L2 a few lines per call: b is
 * usually a weight, read from memory once per step, and packing would otherwise wait for it.
 * The micro-kernel multiplies one MR-row panel of a by one NR-column panel of b, keeping the
 * MR x NR tile of c in registers (b's panel is read contiguously; edges are zero padded, and
 * rows of a past the edge repeat a valid row whose results are dropped); the first slice of a
 * store writes c instead of adding to it, which spares the forward a pass over its output. It
 * is written with GCC/Clang vector extensions (plain C elsewhere), which the compiler turns
 * into broadcast loads + vector FMAs; its tile follows the vector registers of the ISA
 * variant being compiled (cpu_ops.h), measured with dev/cpu/matmul.c (1 core, CPU time):
 *   AVX-512: 6 x 64 (24 of 32 zmm accumulate; 5-20% above 8 x 32, 12 x 32 and 8 x 48)
 *   AVX2:    4 x 24 (12 of 16 ymm; 3 loads + 4 broadcasts per 12 FMAs; 5-20% above 6 x 16,
 *            3 x 32, 8 x 8 and 12 x 8)
 *   baseline: 4 x 8.
 * The blocks: KC 256 (a KC x NR panel of b stays in L1: 24 KiB for AVX2; 64 KiB for AVX-512,
 * which streams it from L2 at no measurable cost; on x86 a reduction of up to 384 is one
 * slice, KC_ONE), MC 96, NC 480-512 (KC x NC of b, 0.5 MiB,
 * stays in L2 with a's rows and c's block; AVX2 takes 192 columns when a's block has at most 512
 * rows, NC_SHORT); AVX-512 takes NC 256: with the next block of b
 * prefetched beside it and a whole step's weights streaming through, the smaller block keeps
 * L2 from thrashing (a d6 training step ~5% faster, 124M ~1%; dev/cpu/step.c, 2 threads). The
 * packed block of a (ABUF) is 2 MiB; AVX2 packs 1 MiB of it at a time (ABUF_PACKED), whose
 * smaller blocks of a and c then stay in L2 too. These sizes were tuned on a 2 MiB L2 (Intel
 * Xeon); on Zen 3's 512 KiB L2, NC 192 everywhere and 512 KiB of packed a measured no clear
 * difference in a d6 step (dev/bench/RESULTS.md, issue 21, runs O and P). Packing weight^T
 * into b's panels transposes 8x8 / 16x16 tiles with AVX shuffles where the variant has them.
 * The neon variant (aarch64) brings
 * its own 8 x 12 micro-kernel written with NEON intrinsics (24 of the 32 q registers
 * accumulate), which reads a packed panel of a (a is always packed there, with 4x4
 * transposes), from matmul_neon.h.
 *
 * Threads. c is cut into tm x tn rectangles, one per thread, each running the serial
 * algorithm above on its own packing scratch (cpu_scratch, allocated once per thread). The
 * grid is chosen per call by a small cost model — multiply-adds of the largest rectangle plus
 * the packing each thread repeats — so that for the shapes of training both cores are busy
 * even when M = B*T is only 256: the forward and dinp split the columns (the weight is packed
 * and read from memory once in total), dweight splits its rows.
 * Reductions are fp32 (as in every BLAS); dbias sums in double. Each element of c is reduced
 * by one thread in a fixed order (KC slices in order), so results do not depend on the
 * number of threads. cpu_gemm_serial() exposes the single-threaded driver to attention.c.
 *
 * cpu_matmul_backward_sq also sums the squares of dweight as its tiles are stored (each tile
 * right after its last KC slice, from L1): the model's gradient norm then needs no pass over the
 * weight gradients, ~0.5 GB read per GPT-2 124M step (~1.5 % of an AVX2 step, dev/cpu/step.c).
 *
 * dev/cpu/matmul.c times this file's GEMM on the model's shapes and checks it.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/common.h"
#include "cpu_ops.h"

// ----------------------------------------------------------------------------
// blocking parameters

#if defined(CPU_NEON) // aarch64, neon variant: matmul_neon.h
#define MR 8
#define NR 12   // three 128-bit vectors
#define NC 504  // a multiple of NR near 512
#elif defined(__AVX512F__)
#define VL_ 16 // floats per vector register
#ifndef MR
#define MR 6  // micro-tile rows (broadcast from a)
#endif
#ifndef NR
#define NR 64 // micro-tile columns (vector loads from packed b), a multiple of the vector width
#endif
#ifndef NC
#define NC 256
#endif
#elif defined(__AVX2__) || defined(__AVX__)
#define VL_ 8
#ifndef MR
#define MR 4
#endif
#ifndef NR
#define NR 24
#endif
#ifndef NC
#define NC 480
#endif
#ifndef NC_SHORT
// narrower blocks of b for blocks of at most NC_SHORT_M rows of a (the 124M forward's M = 256):
// b's next block, prefetched while this one is used, then stays in L2 with a and c (pack_b
// waits less for the weight; AVX2 124M forward ~3 % faster, dev/cpu/step.c, 12 pairs)
#define NC_SHORT 192
#endif
#ifndef ABUF_PACKED
// 1 MiB of packed a (dweight's dout^T): with the block of c it then stays in the 2 MiB L2
// beside b's (dev/cpu/matmul.c, 2 threads: dweight ~2-7 % faster on the 124M shapes)
#define ABUF_PACKED (256 * 1024)
#endif
#else
#define VL_ 4
#ifndef MR
#define MR 4
#endif
#ifndef NR
#define NR 8
#endif
#endif
#ifndef KC
#define KC 256 // reduction slice: an MR x KC panel of a and a KC x NR panel of b stay in L1
#endif
#ifndef MC
#define MC 96  // rows of a swept while one panel of b stays in L1 (MC x KC stays in L2)
#endif
#ifndef NC
#define NC 512 // columns of a packed block of b (KC x NC stays in L2), a multiple of NR
#endif
#ifndef KB
#define KB 1024 // reduction depth of a packed block of a; c is swept once per KB
#endif
// A reduction of up to KC_ONE is one slice rather than a KC slice and a short one: c is then
// written once instead of written and read back (the d6 model's K = 384: its lm_head forward,
// whose ma x NC block of c does not stay in L2, ~13% faster). x86 variants only: the generic
// variant keeps the summation order tests/test_golden_run.py pins bit for bit.
#ifndef KC_ONE
#if defined(__AVX2__)
#define KC_ONE (KC + KC / 2)
#else
#define KC_ONE KC
#endif
#endif
#define ABUF (512 * 1024) // floats of a packed block of a (2 MB: rows x depth, sits in L2/L3)
#ifndef ABUF_PACKED
#define ABUF_PACKED ABUF // the part of it a block of packed rows may use (a read in place: ABUF)
#endif
#ifndef NC_SHORT
#define NC_SHORT NC
#endif
#ifndef NC_SHORT_M
#define NC_SHORT_M 512
#endif
_Static_assert(MC % MR == 0 && NC % NR == 0 && KB % KC == 0, "blocks must hold whole micro-panels");
_Static_assert(NC_SHORT % NR == 0 && NC_SHORT <= NC, "blocks must hold whole micro-panels");
_Static_assert(ABUF_PACKED / KB >= MC, "the packed block of a must hold at least MC rows");

#if (defined(__GNUC__) || defined(__clang__)) && !defined(CPU_NEON)
// GCC/Clang vector extensions: one vector register of the ISA, NV of them per row of the tile.
// The packed panels are 64-byte aligned; rows of c and of the source matrices are not (vec_u).
#define VL VL_
#define NV (NR / VL)
_Static_assert(NR % VL == 0, "NR must be a multiple of the vector width");
typedef float vec __attribute__((vector_size(VL * sizeof(float))));
typedef float vec_u __attribute__((vector_size(VL * sizeof(float)), aligned(4)));
#endif

// rows of a packed block of a, rounded up to whole micro-panels
static size_t ma_padded(size_t ma) { return (ma + MR - 1) / MR * MR; }

// Fused multiply-add where the hardware has it (fmaf is a slow library call otherwise).
#ifdef FP_FAST_FMAF
#define MADD(a, b, c) fmaf((a), (b), (c))
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

#ifdef CPU_NEON
#include "matmul_neon.h" // transpose4 (packing), micro_kernel and zeros (below)
#endif

// ----------------------------------------------------------------------------
// packing

// Transposes that turn row-major tiles into the k-major panels, 8 or 16 floats at a time
// (AVX/AVX-512 shuffles: about 4 shuffles per 16 floats, against one load and one store per
// element in scalar code). Without AVX the packing loops below are plain C.
#if defined(__AVX__)
#include <immintrin.h>
#define HAVE_T8 1
// out[kk][r] = in[r][kk] for an 8 x 8 tile: in rows r = src[r] + k, 8 floats each; out rows
// at dst + kk * ld, 8 floats each.
static inline void transpose8(const float *const *src, size_t k, float *dst, size_t ld) {
    __m256 r[8], t[8], u[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src[i] + k);
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);     // per lane: r0[0] r1[0] r0[1] r1[1]
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]); // r0[2] r1[2] r0[3] r1[3]
    }
    for (int g = 0; g < 2; g++) { // rows 4g .. 4g+3: u[4g + c] holds element c of each lane
        u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        _mm256_storeu_ps(dst + (size_t)c * ld, _mm256_permute2f128_ps(u[c], u[4 + c], 0x20));
        _mm256_storeu_ps(dst + (size_t)(c + 4) * ld, _mm256_permute2f128_ps(u[c], u[4 + c], 0x31));
    }
}
#endif

#if defined(__AVX512F__)
#define HAVE_T16 1
// The same for a 16 x 16 tile.
static inline void transpose16(const float *const *src, size_t k, float *dst, size_t ld) {
    __m512 r[16], t[16], u[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src[i] + k);
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 4; g++) { // u[4g + c], lane L: rows 4g .. 4g+3 at element 4L + c
        __m512d a0 = _mm512_castps_pd(t[4 * g]), a1 = _mm512_castps_pd(t[4 * g + 1]);
        __m512d a2 = _mm512_castps_pd(t[4 * g + 2]), a3 = _mm512_castps_pd(t[4 * g + 3]);
        u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
        u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
        u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
        u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
    }
    for (int c = 0; c < 4; c++) { // gather lane L of u[c], u[4+c], u[8+c], u[12+c]: element 4L + c
        __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88), v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xdd);
        __m512 v2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
        __m512 v3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xdd);
        _mm512_storeu_ps(dst + (size_t)(c + 0) * ld, _mm512_shuffle_f32x4(v0, v2, 0x88));
        _mm512_storeu_ps(dst + (size_t)(c + 4) * ld, _mm512_shuffle_f32x4(v1, v3, 0x88));
        _mm512_storeu_ps(dst + (size_t)(c + 8) * ld, _mm512_shuffle_f32x4(v0, v2, 0xdd));
        _mm512_storeu_ps(dst + (size_t)(c + 12) * ld, _mm512_shuffle_f32x4(v1, v3, 0xdd));
    }
}
#endif

// dst[(panel * kc + k) * MR + r] = a(i0 + panel * MR + r, k0 + k); rows past mc are zero.
// On x86 only views whose rows are not contiguous along k are packed (a_direct): in training,
// dout^T of dweight, whose columns are contiguous along i. Those are read a group of panels at
// a time (PACK_A_ROWS consecutive floats of each column: whole cache lines), so that each line
// of a is loaded once; one panel at a time, a line would come back from L2 once per panel in
// it. The neon micro-kernel reads packed panels only: there rows contiguous along k are
// interleaved too, 4 x 4 transposes at a time.
#define PACK_A_ROWS (32 / MR > 0 ? 32 / MR * MR : MR)
#define PACK_A_AHEAD 8 // runs ahead (d6 step: pack_a 2.3 -> 1.7 % of the time, 124M 1.2 -> 1.0 %)
static void pack_a(float *restrict dst, cpu_view a, size_t i0, size_t mc, size_t k0, size_t kc) {
    if (a.cs == 1) { // rows contiguous along k: interleave MR rows
        for (size_t p = 0; p < mc; p += MR) {
            const size_t rows = mc - p < MR ? mc - p : MR;
            float *d = dst + p * kc;
            const float *src[MR];
            for (size_t r = 0; r < MR; r++) src[r] = a.p + (i0 + p + (r < rows ? r : 0)) * a.rs + k0;
            size_t k = 0;
#if defined(HAVE_T4) && MR % 4 == 0
            if (rows == MR)
                for (; k + 4 <= kc; k += 4)
                    for (size_t rh = 0; rh < MR; rh += 4) transpose4(src + rh, k, d + k * MR + rh, MR);
#endif
            for (; k < kc; k++)
                for (size_t r = 0; r < MR; r++) d[k * MR + r] = r < rows ? src[r][k] : 0.0f;
        }
        return;
    }
    for (size_t g = 0; g < mc; g += PACK_A_ROWS) { // columns contiguous along i (a transposed view)
        const size_t gend = mc - g < PACK_A_ROWS ? mc : g + PACK_A_ROWS;
        for (size_t k = 0; k < kc; k++) {
            const float *src = a.p + (k0 + k) * a.cs + (i0 + g) * a.rs;
#if defined(__GNUC__) || defined(__clang__)
            if (a.rs == 1) { // the runs lie a row of dout apart, too far for the hardware prefetcher
                const float *ahead = src + PACK_A_AHEAD * a.cs;
                __builtin_prefetch(ahead);
                __builtin_prefetch(ahead + PACK_A_ROWS - 1);
            }
#endif
            for (size_t p = g; p < gend; p += MR, src += MR * a.rs) {
                const size_t rows = gend - p < MR ? gend - p : MR;
                float *d = dst + p * kc + k * MR;
                if (a.rs == 1 && rows == MR) {
                    for (size_t r = 0; r < MR; r++) d[r] = src[r];
                } else {
                    for (size_t r = 0; r < MR; r++) d[r] = r < rows ? src[r * a.rs] : 0.0f;
                }
            }
        }
    }
}

// dst[(panel * kc + k) * NR + j] = b(k0 + k, j0 + panel * NR + j); columns past nc are zero.
static void pack_b(float *restrict dst, cpu_view b, size_t k0, size_t kc, size_t j0, size_t nc) {
    for (size_t q = 0; q < nc; q += NR) {
        size_t cols = nc - q < NR ? nc - q : NR;
        float *d = dst + q * kc;
        if (b.cs == 1) { // rows of b contiguous along j: NR-float runs
            for (size_t k = 0; k < kc; k++) {
                const float *src = b.p + (k0 + k) * b.rs + j0 + q;
                float *dk = d + k * NR;
                if (cols == NR) {
#ifdef VL
                    for (int v = 0; v < NV; v++) ((vec *)dk)[v] = ((const vec_u *)src)[v];
#elif defined(CPU_NEON)
                    for (size_t j = 0; j < NR; j += 4) vst1q_f32(dk + j, vld1q_f32(src + j));
#else
                    for (size_t j = 0; j < NR; j++) dk[j] = src[j];
#endif
                } else {
                    for (size_t j = 0; j < NR; j++) dk[j] = j < cols ? src[j] : 0.0f;
                }
            }
        } else { // columns of b contiguous along k (e.g. weight^T): transposed tile by tile
            const float *src[NR];
            for (size_t j = 0; j < NR; j++) src[j] = b.p + (j0 + q + (j < cols ? j : 0)) * b.cs + k0 * b.rs;
            size_t k = 0;
            if (b.rs == 1 && cols == NR) {
#if defined(HAVE_T16) && NR % 16 == 0
                for (; k + 16 <= kc; k += 16)
                    for (size_t jh = 0; jh < NR; jh += 16) transpose16(src + jh, k, d + k * NR + jh, NR);
#elif defined(HAVE_T8) && NR % 8 == 0
                for (; k + 8 <= kc; k += 8)
                    for (size_t jh = 0; jh < NR; jh += 8) transpose8(src + jh, k, d + k * NR + jh, NR);
#elif defined(HAVE_T4) && NR % 4 == 0
                for (; k + 4 <= kc; k += 4)
                    for (size_t jh = 0; jh < NR; jh += 4) transpose4(src + jh, k, d + k * NR + jh, NR);
#endif
                for (; k + 8 <= kc; k += 8)
                    for (size_t j = 0; j < NR; j++)
                        for (size_t kk = 0; kk < 8; kk++) d[(k + kk) * NR + j] = src[j][k + kk];
            }
            for (; k < kc; k++)
                for (size_t j = 0; j < NR; j++) d[k * NR + j] = src[j][k * b.rs];
            if (cols < NR)
                for (size_t k2 = 0; k2 < kc; k2++)
                    for (size_t j = cols; j < NR; j++) d[k2 * NR + j] = 0.0f;
        }
    }
}

// ----------------------------------------------------------------------------
// micro-kernel: c[0:mr, 0:nr] += a_panel (MR x kc) @ b_panel (kc x NR)

#if defined(CPU_NEON)
// micro_kernel: matmul_neon.h, included above
#elif defined(__GNUC__) || defined(__clang__)
// GCC/Clang vector extensions (vec, see above): each row of the tile is NV vectors, so the
// accumulators live in NV*MR registers whatever the auto-vectoriser would have decided.

static const float zeros[NR];

// x in every lane: a broadcast load. Not (vec){0} + x, which is an addition the compiler must
// keep (0 + -0 is +0) and which then takes an FMA port once per broadcast; x - 0 is x for
// every x, so the subtraction folds away.
static inline vec splat(float x) { return x - (vec){0}; }

// Row i of the a panel: element k is arow[i][k * astep] (a packed panel: arow[i] = panel + i,
// astep = MR; rows of a row-major a read in place: astep = 1). Rows past mr repeat a valid row.
// init == NULL: c += a @ b; otherwise c = init (a row of nr floats, repeated) + a @ b
static void micro_kernel(size_t kc, const float *const *arow, size_t astep, const float *restrict b, float *restrict c,
                         size_t ldc, size_t mr, size_t nr, const float *init) {
    vec acc[MR][NV];
    const float *ar[MR];
    for (int i = 0; i < MR; i++) {
        ar[i] = arow[i];
        for (int v = 0; v < NV; v++) acc[i][v] = (vec){0};
    }
    if (!init) // the tile of c is read at the end: fetch its lines into L1 while the products run
        for (size_t i = 0; i < mr; i++)
            for (size_t j = 0; j < nr; j += 16) __builtin_prefetch(c + i * ldc + j, 1, 3);

    for (size_t k = 0; k < kc; k++) {
        vec bk[NV];
        for (int v = 0; v < NV; v++) bk[v] = *(const vec *)(b + k * NR + v * VL);
        for (int i = 0; i < MR; i++) {
            const vec ai = splat(ar[i][k * astep]); // broadcast
            for (int v = 0; v < NV; v++) acc[i][v] += ai * bk[v]; // contracted to FMA (-ffp-contract)
        }
    }

    if (mr == MR && nr == NR) {
        if (init) {
            vec iv[NV];
            for (int v = 0; v < NV; v++) iv[v] = *(const vec_u *)(init + v * VL);
            for (int i = 0; i < MR; i++) {
                vec_u *ci = (vec_u *)(c + i * ldc);
                for (int v = 0; v < NV; v++) ci[v] = iv[v] + acc[i][v];
            }
        } else {
            for (int i = 0; i < MR; i++) {
                vec_u *ci = (vec_u *)(c + i * ldc);
                for (int v = 0; v < NV; v++) ci[v] += acc[i][v];
            }
        }
    } else {
        // (stored as vectors: a memcpy from acc would keep acc in memory on every path)
        float tile[MR][NR] __attribute__((aligned(64)));
        for (int i = 0; i < MR; i++)
            for (int v = 0; v < NV; v++) *(vec *)&tile[i][v * VL] = acc[i][v];
        for (size_t i = 0; i < mr; i++)
            for (size_t j = 0; j < nr; j++) c[i * ldc + j] = (init ? init[j] : c[i * ldc + j]) + tile[i][j];
    }
}
#else
static const float zeros[NR];

// arow, astep: as above. init == NULL: c += a @ b; otherwise c = init (a row of nr floats,
// repeated) + a @ b
static void micro_kernel(size_t kc, const float *const *arow, size_t astep, const float *restrict b, float *restrict c,
                         size_t ldc, size_t mr, size_t nr, const float *init) {
    float acc[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = 0.0f;
    for (size_t k = 0; k < kc; k++)
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) acc[i][j] = MADD(arow[i][k * astep], b[k * NR + j], acc[i][j]);
    for (size_t i = 0; i < mr; i++)
        for (size_t j = 0; j < nr; j++) c[i * ldc + j] = (init ? init[j] : c[i * ldc + j]) + acc[i][j];
}
#endif

// ----------------------------------------------------------------------------
// the serial algorithm on one rectangle of c

#define SCRATCH_FLOATS ((size_t)KC_ONE * NC + (size_t)ABUF) // packed b block + packed a block

// The reduction slice for a block of depth kbl: KC, or all of it when it is at most KC_ONE.
static size_t slice_depth(size_t kbl) { return kbl <= KC_ONE ? kbl : KC; }

// Rows and depth of the packed a block for a reduction of length K: up to KB deep, and as many
// rows (a multiple of MC) as fit in ABUF floats.
static size_t a_depth(size_t K) { return K < KB ? K : KB; }
static size_t a_rows(size_t K, int direct) {
    return (direct ? ABUF : ABUF_PACKED) / ((a_depth(K) + KC - 1) / KC * KC) / MC * MC;
}

// Whether a is read in place rather than packed: when its rows are contiguous along k, the
// micro-kernel's broadcasts read them directly (a broadcast load costs the same from any
// address, and the rows of a block stay in L1/L2 like a packed panel would). pack_a handles
// the other views. The neon micro-kernel reads packed panels only.
#ifdef CPU_NEON
static int a_direct(cpu_view a) { return (void)a, 0; }
#else
static int a_direct(cpu_view a) { return a.cs == 1; }
#endif

// Prefetch of the next block of b into L2 while the micro-kernels work on the current one, a
// few cache lines per micro-kernel call: b is usually a weight matrix, read from memory once,
// and pack_b would otherwise wait for every line of it (a 4-byte element costs about a cycle
// of memory bandwidth per core; the micro-kernels spend ~M/16 cycles on it).
typedef struct b_prefetch {
    const char *p;      // the next line to fetch
    size_t stride;      // bytes between the starts of two runs
    size_t lines;       // cache lines per run
    size_t line, left;  // position of p in its run, runs left (this one included)
    size_t per;         // lines per micro-kernel call
} b_prefetch;

// The block b[k0:k0+kc, j0:j0+nc], to be fetched over `calls` micro-kernel calls (nothing
// when b has no contiguous dimension).
static b_prefetch b_prefetch_plan(cpu_view b, size_t k0, size_t kc, size_t j0, size_t nc, size_t calls) {
    b_prefetch f = {0};
    const float *start = b.p + k0 * b.rs + j0 * b.cs;
    size_t len;
    if (b.cs == 1) { // runs along j, one per row k
        f.stride = b.rs * sizeof(float), f.left = kc, len = nc;
    } else if (b.rs == 1) { // runs along k, one per column j
        f.stride = b.cs * sizeof(float), f.left = nc, len = kc;
    } else {
        return f;
    }
    f.p = (const char *)((uintptr_t)start & ~(uintptr_t)63);
    f.lines = ((uintptr_t)start - (uintptr_t)f.p + len * sizeof(float) + 63) / 64;
    f.per = calls ? (f.lines * f.left + calls - 1) / calls : 0;
    return f;
}

static inline void b_prefetch_some(b_prefetch *f) {
#if defined(__GNUC__) || defined(__clang__)
    for (size_t i = 0; i < f->per && f->left; i++) {
        __builtin_prefetch(f->p + f->line * 64, 0, 2); // into L2
        if (++f->line == f->lines) f->line = 0, f->p += f->stride, f->left--;
    }
#else
    (void)f;
#endif
}

#ifdef VL
#define SQ_LANES VL
#else
#define SQ_LANES 1
#endif
// acc (SQ_LANES doubles) += the squares of the mr x nr tile of c at c (row stride ldc), which was
// just stored and is in L1: a full tile's in fp32 vector lanes first (MR * NV squares per lane).
static void tile_sumsq(double *acc, const float *c, size_t ldc, size_t mr, size_t nr) {
#ifdef VL
    if (mr == MR && nr == NR) {
        vec s[NV] = {{0}}; // NV independent chains of MR multiply-adds
        for (size_t i = 0; i < MR; i++)
            for (int v = 0; v < NV; v++) {
                const vec x = ((const vec_u *)(c + i * ldc))[v];
                s[v] += x * x;
            }
        for (int v = 1; v < NV; v++) s[0] += s[v];
        for (int l = 0; l < VL; l++) acc[l] += (double)s[0][l];
        return;
    }
#endif
    for (size_t i = 0; i < mr; i++)
        for (size_t j = 0; j < nr; j++) acc[0] += (double)c[i * ldc + j] * c[i * ldc + j];
}

// The sum of the squares of c (M,N) with row stride ldc, in one pass.
static double sumsq_rows(const float *c, size_t ldc, size_t M, size_t N) {
    double acc[SQ_LANES] = {0}, t = 0.0;
    for (size_t i = 0; i < M; i++) tile_sumsq(acc, c + i * ldc, ldc, 1, N);
    for (int l = 0; l < SQ_LANES; l++) t += acc[l];
    return t;
}

// c[i0:i0+m, j0:j0+n] += a[i0:i0+m, :] @ b[:, j0:j0+n]; with store, c = bias[j0:j0+n] (or 0) + ...
// With sq, *sq += the sum of the squares of that rectangle of c as it is finally stored (each
// tile squared right after its last KC slice, while it is in L1).
static void gemm_rect(float *c, size_t ldc, cpu_view a, cpu_view b, size_t i0, size_t m, size_t j0, size_t n,
                      size_t K, int store, const float *bias, float *scratch, double *sq) {
    float *pb = scratch, *pa = scratch + (size_t)KC_ONE * NC;
    double sq_acc[SQ_LANES] = {0};
    const int direct = a_direct(a);
    const size_t kbmax = a_depth(K), mamax = a_rows(K, direct);
    for (size_t kb = 0; kb < K; kb += kbmax) { // c is swept once per KB of the reduction
        const size_t kbl = K - kb < kbmax ? K - kb : kbmax, ks = slice_depth(kbl);
        for (size_t ia = i0; ia < i0 + m; ia += mamax) {
            const size_t ma = i0 + m - ia < mamax ? i0 + m - ia : mamax;
            // a[ia:ia+ma, kb:kb+kbl], packed once, as KC slices of ma rows each (unless read in place)
            for (size_t k0 = 0; k0 < kbl && !direct; k0 += ks)
                pack_a(pa + k0 * ma_padded(ma), a, ia, ma, kb + k0, kbl - k0 < ks ? kbl - k0 : ks);
            const size_t ncb = ma <= NC_SHORT_M ? NC_SHORT : NC; // columns per block of b
            for (size_t jb = j0; jb < j0 + n; jb += ncb) {
                const size_t nc = j0 + n - jb < ncb ? j0 + n - jb : ncb;
                for (size_t k0 = 0; k0 < kbl; k0 += ks) { // the ma x nc block of c stays in cache
                    const size_t kc = kbl - k0 < ks ? kbl - k0 : ks;
                    const float *pak = pa + k0 * ma_padded(ma);
                    const int first = store && kb == 0 && k0 == 0; // the first slice writes c
                    const int last = sq && kb + kbl == K && k0 + kc == kbl; // and the last one ends it
                    pack_b(pb, b, kb + k0, kc, jb, nc);
                    // the next block of b: the next KC slice, or the first one of the next NC columns
                    const size_t calls = (ma + MR - 1) / MR * ((nc + NR - 1) / NR);
                    b_prefetch pf = {0};
                    if (k0 + ks < kbl)
                        pf = b_prefetch_plan(b, kb + k0 + ks, kbl - k0 - ks < ks ? kbl - k0 - ks : ks, jb, nc, calls);
                    else if (jb + ncb < j0 + n)
                        pf = b_prefetch_plan(b, kb, ks, jb + ncb,
                                             j0 + n - jb - ncb < ncb ? j0 + n - jb - ncb : ncb, calls);
                    for (size_t ib = 0; ib < ma; ib += MC) {
                        const size_t mc = ma - ib < MC ? ma - ib : MC;
                        for (size_t q = 0; q < nc; q += NR) {
                            const size_t nr = nc - q < NR ? nc - q : NR;
                            for (size_t p = ib; p < ib + mc; p += MR) {
                                const size_t mr = ib + mc - p < MR ? ib + mc - p : MR;
                                const float *init = first ? (bias ? bias + jb + q : zeros) : NULL;
#ifdef CPU_NEON
                                micro_kernel(kc, pak + p * kc, pb + q * kc, c + (ia + p) * ldc + jb + q, ldc, mr, nr,
                                             init);
#else
                                const float *arow[MR];
                                for (size_t r = 0; r < MR; r++)
                                    arow[r] = direct ? a.p + (ia + p + (r < mr ? r : 0)) * a.rs + kb + k0
                                                     : pak + p * kc + r;
                                micro_kernel(kc, arow, direct ? 1 : MR, pb + q * kc, c + (ia + p) * ldc + jb + q, ldc,
                                             mr, nr, init);
#endif
                                if (last) tile_sumsq(sq_acc, c + (ia + p) * ldc + jb + q, ldc, mr, nr);
                                b_prefetch_some(&pf);
                            }
                        }
                    }
                }
            }
        }
    }
    if (sq)
        for (int l = 0; l < SQ_LANES; l++) *sq += sq_acc[l];
}

size_t cpu_gemm_scratch_floats(void) { return SCRATCH_FLOATS; }

// A stored product with K = 0: c = bias (a row of N floats, or 0 when NULL)
static void store_empty(float *c, size_t ldc, size_t M, size_t N, const float *bias) {
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) c[i * ldc + j] = bias ? bias[j] : 0.0f;
}

void cpu_gemm_serial(float *c, size_t ldc, cpu_view a, cpu_view b, size_t M, size_t N, size_t K, int store,
                     float *scratch) {
    if (!M || !N) return;
    if (K) {
        gemm_rect(c, ldc, a, b, 0, M, 0, N, K, store, NULL, scratch, NULL);
    } else if (store) {
        store_empty(c, ldc, M, N, NULL);
    }
}

// ----------------------------------------------------------------------------
// the parallel driver

// Estimated cycles of the slowest thread when c is cut into tm x tn rectangles: its
// multiply-adds (at ~32 per cycle) plus its packing (a once, b once per a_rows() rows), at
// ~0.5 cycle per element (a weight matrix is read from memory; the shuffles of a transpose
// cost a little more).
static double split_cost(cpu_view a, cpu_view b, size_t M, size_t N, size_t K, size_t tm, size_t tn) {
    const size_t pm = (M + MR - 1) / MR, pn = (N + NR - 1) / NR; // micro-panels
    const double m = (double)((pm + tm - 1) / tm * MR), n = (double)((pn + tn - 1) / tn * NR);
    const double pack_a_cost = a_direct(a) ? 0.0 : 0.5, pack_b_cost = b.cs == 1 ? 0.5 : 0.75;
    return m * n * (double)K / 32.0 + m * (double)K * pack_a_cost +
           n * (double)K * ceil(m / (double)a_rows(K, a_direct(a))) * pack_b_cost;
}

// c (M,N) with row stride ldc += a (M,K) @ b (K,N), on all threads. With store, c is
// overwritten instead: c = bias (a row of N floats, or 0 when NULL) + a @ b. With sq, *sq = the
// sum of the squares of the resulting c (threads' partial sums added in a fixed order).
static llm_status gemm(float *c, size_t ldc, cpu_view a, cpu_view b, size_t M, size_t N, size_t K, int store,
                       const float *bias, double *sq) {
    if (M == 0 || N == 0 || K == 0) {
        if (store && K == 0) store_empty(c, ldc, M, N, bias);
        if (sq) *sq = sumsq_rows(c, ldc, M, N);
        return LLM_OK;
    }
#ifdef _OPENMP
    size_t nt = (size_t)omp_get_max_threads();
    if ((double)M * N * K < 1e6) nt = 1; // a fork/join costs more than the work
#else
    size_t nt = 1;
#endif
    size_t tm = 1, tn = nt;
    double best = split_cost(a, b, M, N, K, tm, tn);
    for (size_t d = 2; d <= nt; d++) {
        if (nt % d) continue;
        double cost = split_cost(a, b, M, N, K, d, nt / d);
        if (cost < best) best = cost, tm = d, tn = nt / d;
    }
    const size_t pm = (M + MR - 1) / MR, pn = (N + NR - 1) / NR;
    const long long parts = (long long)(tm * tn);
    int failed = 0;
    double part_sq[64] = {0}; // each part's sum of squares; beyond 64 parts, a pass over c after
    double *const psq = sq && parts <= 64 ? part_sq : NULL;

#pragma omp parallel if (parts > 1) num_threads(parts)
    {
        float *scratch = cpu_scratch(0, SCRATCH_FLOATS);
        if (!scratch) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (long long part = 0; part < parts; part++) {
            if (!scratch) continue;
            // rectangle (part / tn, part % tn) of the grid, in whole micro-panels
            const size_t ri = (size_t)part / tn, rj = (size_t)part % tn;
            const size_t i0 = pm * ri / tm * MR, i1 = pm * (ri + 1) / tm * MR;
            const size_t j0 = pn * rj / tn * NR, j1 = pn * (rj + 1) / tn * NR;
            const size_t m = (i1 < M ? i1 : M) - i0, n = (j1 < N ? j1 : N) - j0;
            if (i0 < M && j0 < N && m && n)
                gemm_rect(c, ldc, a, b, i0, m, j0, n, K, store, bias, scratch, psq ? &psq[part] : NULL);
        }
    }
    if (failed)
        return llm_fail(LLM_ENOMEM, "matmul: out of memory for %zu bytes of scratch", SCRATCH_FLOATS * sizeof(float));
    if (sq) {
        *sq = psq ? 0.0 : sumsq_rows(c, ldc, M, N);
        for (long long p = 0; psq && p < parts; p++) *sq += psq[p];
    }
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// forward

llm_status cpu_matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                              int B, int T, int C, int OC) {
    const size_t BT = (size_t)B * (size_t)T;
    cpu_view a = {inp, (size_t)C, 1};    // (BT, C)
    cpu_view b = {weight, 1, (size_t)C}; // weight^T: (C, OC)
    return gemm(out, (size_t)OC, a, b, BT, (size_t)OC, (size_t)C, 1, bias, NULL); // out = bias + inp @ weight^T
}

// ----------------------------------------------------------------------------
// backward

// dbias[o] += sum over rows of dout[:, o], summed in double; threads own column blocks.
static void bias_backward(float *dbias, const float *dout, size_t BT, size_t OC) {
    enum { CB = 64 };
    const long long blocks = (long long)((OC + CB - 1) / CB);
#pragma omp parallel for if (BT * OC > 65536)
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

// With dweight_sq (NULL: not wanted), *dweight_sq = the sum of the squares of dweight after the
// call, computed as its tiles are stored (the gradient norm without a pass over the gradients).
llm_status cpu_matmul_backward_sq(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                  const float *weight, int B, int T, int C, int OC, int flags, double *dweight_sq) {
    const size_t BT = (size_t)B * (size_t)T;
    if (dinp) { // store: the first KC slice writes dinp, so it needs no zeroing beforehand
        cpu_view a = {dout, (size_t)OC, 1};  // (BT, OC)
        cpu_view b = {weight, (size_t)C, 1}; // (OC, C)
        LLM_TRY(gemm(dinp, (size_t)C, a, b, BT, (size_t)C, (size_t)OC, !(flags & LLM_MM_ACCUMULATE_DINP), NULL, NULL));
    }
    { // store: the same for dweight when it is written, which spares zero_grad a pass over it
        cpu_view a = {dout, 1, (size_t)OC}; // dout^T: (OC, BT)
        cpu_view b = {inp, (size_t)C, 1};   // (BT, C)
        LLM_TRY(gemm(dweight, (size_t)C, a, b, (size_t)OC, (size_t)C, BT, !!(flags & LLM_MM_WRITE_DWEIGHT), NULL,
                     dweight_sq));
    }
    if (dbias) bias_backward(dbias, dout, BT, (size_t)OC);
    return LLM_OK;
}

llm_status cpu_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                               const float *weight, int B, int T, int C, int OC, int flags) {
    return cpu_matmul_backward_sq(dinp, dweight, dbias, dout, inp, weight, B, T, C, OC, flags, NULL);
}
