/*
 * neon.h — NEON (AArch64 Advanced SIMD) math shared by the op files of the `neon` CPU variant:
 * the exponential four lanes at a time, and the softmax building blocks made of it.
 *
 * Included by cpu_ops.h when CPU_NEON is defined (the neon variant, or native on aarch64; see
 * cpu_ops.h), so that each op file's `#ifdef CPU_NEON` section can use it. Every routine
 * computes what its portable twin in cpu_ops.h computes — the same formula and the same range
 * handling — and differs from it by rounding only (summation order, fused multiply-adds);
 * tests/c/test_cpu_isa.c bounds the difference. Why intrinsics at all: GCC 12 at -O3 leaves
 * every loop that calls cpu_expf scalar on aarch64 (GELU, softmax, cross-entropy), and the
 * in-order double sums of layernorm too; the loops that it does vectorise (residual, AdamW,
 * cpu_sum) keep their portable C.
 */
#ifndef LLMPY_CPU_NEON_H
#define LLMPY_CPU_NEON_H

#include <arm_neon.h>
#include <math.h>
#include <stddef.h>

// ----------------------------------------------------------------------------
// exponential

// exp(x) in each lane, cpu_expf's algorithm: x clamped to [-87.3, 88.4], n = round(x / ln2),
// r = x - n ln2 (ln2 in two parts), Cephes' degree-7 polynomial for e^r, times 2^n assembled in
// the exponent bits; 0 below -87.3, inf above 88.4, NaN stays NaN (vmaxq/vminq propagate it).
static inline float32x4_t cpu_neon_expf(float32x4_t x) {
    const float32x4_t lo = vdupq_n_f32(-87.33654f), hi = vdupq_n_f32(88.37626f);
    const float32x4_t xc = vminq_f32(vmaxq_f32(x, lo), hi);
    const float32x4_t n = vrndnq_f32(vmulq_n_f32(xc, 1.44269504088896341f)); // in [-126, 127]
    float32x4_t r = vfmsq_f32(xc, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vaddq_f32(vfmaq_f32(r, vmulq_f32(p, r), r), vdupq_n_f32(1.0f)); // p r^2 + r + 1
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23); // 2^n
    float32x4_t y = vmulq_f32(p, vreinterpretq_f32_s32(e));
    y = vbslq_f32(vcgtq_f32(x, hi), vdupq_n_f32(INFINITY), y);
    y = vbslq_f32(vcltq_f32(x, lo), vdupq_n_f32(0.0f), y);
    return y;
}

// ----------------------------------------------------------------------------
// softmax building blocks

// Maximum of x[0:n] (n >= 1); a NaN anywhere gives NaN.
static inline float cpu_neon_max(const float *x, size_t n) {
    size_t i = 0;
    float m = x[0];
    if (n >= 16) {
        float32x4_t m0 = vld1q_f32(x), m1 = vld1q_f32(x + 4), m2 = vld1q_f32(x + 8), m3 = vld1q_f32(x + 12);
        for (i = 16; i + 16 <= n; i += 16) {
            m0 = vmaxq_f32(m0, vld1q_f32(x + i));
            m1 = vmaxq_f32(m1, vld1q_f32(x + i + 4));
            m2 = vmaxq_f32(m2, vld1q_f32(x + i + 8));
            m3 = vmaxq_f32(m3, vld1q_f32(x + i + 12));
        }
        m = vmaxvq_f32(vmaxq_f32(vmaxq_f32(m0, m1), vmaxq_f32(m2, m3)));
    }
    for (; i < n; i++) m = x[i] > m || isnan(x[i]) ? x[i] : m;
    return m;
}

// Sum over i of exp(x[i] - shift), in double (eight lanes).
static inline double cpu_neon_sum_exp(const float *x, size_t n, float shift) {
    const float32x4_t s = vdupq_n_f32(shift);
    float64x2_t a0 = vdupq_n_f64(0.0), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float32x4_t e0 = cpu_neon_expf(vsubq_f32(vld1q_f32(x + i), s));
        const float32x4_t e1 = cpu_neon_expf(vsubq_f32(vld1q_f32(x + i + 4), s));
        a0 = vaddq_f64(a0, vcvt_f64_f32(vget_low_f32(e0)));
        a1 = vaddq_f64(a1, vcvt_high_f64_f32(e0));
        a2 = vaddq_f64(a2, vcvt_f64_f32(vget_low_f32(e1)));
        a3 = vaddq_f64(a3, vcvt_high_f64_f32(e1));
    }
    double sum = vaddvq_f64(vaddq_f64(vaddq_f64(a0, a1), vaddq_f64(a2, a3)));
    for (; i < n; i++) sum += cpu_expf(x[i] - shift);
    return sum;
}

// dst[i] = exp(x[i] - shift) * scale for i < n; dst may alias x.
static inline void cpu_neon_exp_shift(float *dst, const float *x, size_t n, float shift, float scale) {
    const float32x4_t s = vdupq_n_f32(shift);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float32x4_t e0 = cpu_neon_expf(vsubq_f32(vld1q_f32(x + i), s));
        const float32x4_t e1 = cpu_neon_expf(vsubq_f32(vld1q_f32(x + i + 4), s));
        vst1q_f32(dst + i, vmulq_n_f32(e0, scale));
        vst1q_f32(dst + i + 4, vmulq_n_f32(e1, scale));
    }
    for (; i < n; i++) dst[i] = cpu_expf(x[i] - shift) * scale;
}

#endif // LLMPY_CPU_NEON_H
