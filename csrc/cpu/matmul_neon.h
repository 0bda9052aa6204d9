/*
 * matmul_neon.h — the NEON pieces of matmul.c's blocked GEMM, for the `neon` CPU variant: the
 * 8 x 12 micro-kernel and the 4 x 4 transpose of the packing routines.
 *
 * Not an interface: matmul.c includes it in its `#ifdef CPU_NEON` section, after MR, NR and the
 * packed-panel layouts are defined there (see matmul.c for the algorithm around these pieces).
 *
 * Micro-kernel. AArch64 has 32 vector registers of 128 bits. The 8 x 12 tile of c takes 24 of
 * them (8 rows of 3 vectors) and one k step of the packed panels 5 more (8 floats of a, 12 of
 * b). Each step is 24 vfmaq_laneq_f32: row i of the tile += b[k][0:12] * a[k][i], the element
 * of a used straight from its lane, with no broadcast. As in the portable kernel, each
 * element of c is reduced over k in order with one fused multiply-add per step, so the sums
 * are those of the generic variant wherever its compiler fuses a * b + c too (GCC does on
 * aarch64); tests/c/test_cpu_isa.c compares the two.
 */
#ifndef LLMPY_CPU_MATMUL_NEON_H
#define LLMPY_CPU_MATMUL_NEON_H

#include <arm_neon.h>

#if MR != 8 || NR != 12
#error "matmul_neon.h is written for an 8 x 12 micro-tile"
#endif

// ----------------------------------------------------------------------------
// packing

#define HAVE_T4 1
// out[kk][r] = in[r][kk] for a 4 x 4 tile: in rows r = src[r] + k, 4 floats each; out rows at
// dst + kk * ld, 4 floats each.
static inline void transpose4(const float *const *src, size_t k, float *dst, size_t ld) {
    const float32x4_t r0 = vld1q_f32(src[0] + k), r1 = vld1q_f32(src[1] + k);
    const float32x4_t r2 = vld1q_f32(src[2] + k), r3 = vld1q_f32(src[3] + k);
    // t0 = r0[0] r1[0] r0[2] r1[2], t1 = r0[1] r1[1] r0[3] r1[3], t2 and t3 the same for r2, r3
    const float64x2_t t0 = vreinterpretq_f64_f32(vtrn1q_f32(r0, r1)), t1 = vreinterpretq_f64_f32(vtrn2q_f32(r0, r1));
    const float64x2_t t2 = vreinterpretq_f64_f32(vtrn1q_f32(r2, r3)), t3 = vreinterpretq_f64_f32(vtrn2q_f32(r2, r3));
    vst1q_f32(dst + 0 * ld, vreinterpretq_f32_f64(vtrn1q_f64(t0, t2)));
    vst1q_f32(dst + 1 * ld, vreinterpretq_f32_f64(vtrn1q_f64(t1, t3)));
    vst1q_f32(dst + 2 * ld, vreinterpretq_f32_f64(vtrn2q_f64(t0, t2)));
    vst1q_f32(dst + 3 * ld, vreinterpretq_f32_f64(vtrn2q_f64(t1, t3)));
}

// ----------------------------------------------------------------------------
// micro-kernel: c[0:mr, 0:nr] += a_panel (MR x kc) @ b_panel (kc x NR)

static const float zeros[NR];

// init == NULL: c += a @ b; otherwise c = init (a row of nr floats, repeated) + a @ b
static void micro_kernel(size_t kc, const float *restrict a, const float *restrict b, float *restrict c, size_t ldc,
                         size_t mr, size_t nr, const float *init) {
    float32x4_t acc[MR][3];
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = acc[i][2] = vdupq_n_f32(0.0f);

    for (size_t k = 0; k < kc; k++) {
        const float32x4_t a0 = vld1q_f32(a + k * MR), a1 = vld1q_f32(a + k * MR + 4);
        const float32x4_t b0 = vld1q_f32(b + k * NR), b1 = vld1q_f32(b + k * NR + 4), b2 = vld1q_f32(b + k * NR + 8);
// row i of the tile += b * a[k][i], a[k][i] being lane `lane` of av (an immediate operand)
#define NEON_ROW(i, av, lane)                                                                                          \
    acc[i][0] = vfmaq_laneq_f32(acc[i][0], b0, av, lane);                                                              \
    acc[i][1] = vfmaq_laneq_f32(acc[i][1], b1, av, lane);                                                              \
    acc[i][2] = vfmaq_laneq_f32(acc[i][2], b2, av, lane);
        NEON_ROW(0, a0, 0) NEON_ROW(1, a0, 1) NEON_ROW(2, a0, 2) NEON_ROW(3, a0, 3)
        NEON_ROW(4, a1, 0) NEON_ROW(5, a1, 1) NEON_ROW(6, a1, 2) NEON_ROW(7, a1, 3)
#undef NEON_ROW
    }

    if (mr == MR && nr == NR) {
        for (int i = 0; i < MR; i++) {
            float *ci = c + i * ldc;
            for (int j = 0; j < 3; j++) {
                const float32x4_t base = vld1q_f32(init ? init + 4 * j : ci + 4 * j);
                vst1q_f32(ci + 4 * j, vaddq_f32(base, acc[i][j]));
            }
        }
    } else {
        float tile[MR][NR];
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < 3; j++) vst1q_f32(&tile[i][4 * j], acc[i][j]);
        for (size_t i = 0; i < mr; i++)
            for (size_t j = 0; j < nr; j++) c[i * ldc + j] = (init ? init[j] : c[i * ldc + j]) + tile[i][j];
    }
}

#endif // LLMPY_CPU_MATMUL_NEON_H
