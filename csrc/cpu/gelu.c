/*
 * gelu.c — GELU activation, tanh approximation, on the CPU.
 *
 * Shapes: out, inp, dinp, dout: (N) elementwise.
 *   gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
 *   gelu'(x) = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
 * Gradient convention (ops.h): dinp = dout * gelu'(inp) (activation gradient, written: the
 * model writes this buffer once per layer). dinp may alias dout.
 *
 * Computed through the identity 0.5 (1 + tanh(u)) = sigmoid(2u) = 1 / (1 + e), e = exp(-2u):
 *   gelu(x) = x s,   gelu'(x) = s + 2 x s (1 - s) du/dx,   s = 1 / (1 + e),  1 - s = e s
 * which needs one exponential (cpu_expf, vectorised; libm's tanhf is a scalar call) and has
 * no cancellation in the negative tail, where 1 + tanh(u) would lose all its digits.
 * The neon variant computes the same formulas four lanes at a time with NEON intrinsics
 * (cpu_neon_expf, neon.h): GCC leaves these loops scalar on aarch64.
 */
#include "cpu_ops.h"

#define GELU_SCALE 0.7978845608028654f // sqrt(2/pi)
#define GELU_CUBE 0.044715f
// |2u| is clamped here: exp(80) is finite, and beyond it s is 1 or below 1e-34 anyway
#define GELU_EXP_CLAMP 80.0f

// e = exp(-2u) for the input x, clamped so that e and e * s stay finite.
static inline float gelu_exp(float x) {
    float m2u = -2.0f * GELU_SCALE * (x + GELU_CUBE * x * x * x);
    // m2u = clamp(m2u, -CLAMP, CLAMP), NaN stays NaN: as bit masks, which GCC vectorises (with
    // ?: it folds the clamped cases to constants and branches to them; see cpu_expf)
    const float hi = GELU_EXP_CLAMP, lo = -GELU_EXP_CLAMP;
    uint32_t bits, hib, lob, over = 0u - (uint32_t)(m2u > hi), under = 0u - (uint32_t)(m2u < lo);
    memcpy(&bits, &m2u, sizeof bits);
    memcpy(&hib, &hi, sizeof hib);
    memcpy(&lob, &lo, sizeof lob);
    bits = (bits & ~(over | under)) | (hib & over) | (lob & under);
    memcpy(&m2u, &bits, sizeof m2u);
    return cpu_expf(m2u);
}

#ifdef CPU_NEON
// gelu_exp, four lanes at a time
static inline float32x4_t gelu_exp4(float32x4_t x) {
    const float32x4_t x3 = vmulq_f32(vmulq_f32(x, x), x);
    float32x4_t m2u = vmulq_n_f32(vfmaq_n_f32(x, x3, GELU_CUBE), -2.0f * GELU_SCALE);
    m2u = vminq_f32(vmaxq_f32(m2u, vdupq_n_f32(-GELU_EXP_CLAMP)), vdupq_n_f32(GELU_EXP_CLAMP));
    return cpu_neon_expf(m2u);
}

// ----------------------------------------------------------------------------
// forward and backward, NEON: blocks of four elements, the last N % 4 as in the generic code

llm_status cpu_gelu_forward(float *out, const float *inp, size_t N) {
    const long long blocks = (long long)(N / 4);
#pragma omp parallel for
    for (long long q = 0; q < blocks; q++) {
        const float32x4_t x = vld1q_f32(inp + 4 * q);
        vst1q_f32(out + 4 * q, vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0f), gelu_exp4(x))));
    }
    for (size_t i = (size_t)blocks * 4; i < N; i++) out[i] = inp[i] / (1.0f + gelu_exp(inp[i]));
    return LLM_OK;
}

llm_status cpu_gelu_backward(float *dinp, const float *inp, const float *dout, size_t N) {
    const long long blocks = (long long)(N / 4);
#pragma omp parallel for
    for (long long q = 0; q < blocks; q++) {
        const float32x4_t x = vld1q_f32(inp + 4 * q), one = vdupq_n_f32(1.0f);
        const float32x4_t e = gelu_exp4(x);
        const float32x4_t s = vdivq_f32(one, vaddq_f32(one, e));
        const float32x4_t dudx = vmulq_n_f32(vfmaq_f32(one, vmulq_n_f32(x, 3.0f * GELU_CUBE), x), GELU_SCALE);
        // s + 2 x (e s) s dudx
        const float32x4_t grad = vfmaq_f32(s, vmulq_f32(vmulq_n_f32(x, 2.0f), vmulq_f32(e, s)), vmulq_f32(s, dudx));
        vst1q_f32(dinp + 4 * q, vmulq_f32(grad, vld1q_f32(dout + 4 * q)));
    }
    for (size_t i = (size_t)blocks * 4; i < N; i++) {
        float x = inp[i];
        float e = gelu_exp(x);
        float s = 1.0f / (1.0f + e);
        float dudx = GELU_SCALE * (1.0f + 3.0f * GELU_CUBE * x * x);
        dinp[i] = (s + 2.0f * x * (e * s) * s * dudx) * dout[i];
    }
    return LLM_OK;
}

#else // the portable code

// ----------------------------------------------------------------------------
// forward

llm_status cpu_gelu_forward(float *out, const float *inp, size_t N) {
#pragma omp parallel for if (N >= CPU_PAR_MIN_ELEMS)
    for (long long i = 0; i < (long long)N; i++) {
        float x = inp[i];
        out[i] = x / (1.0f + gelu_exp(x));
    }
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// backward

llm_status cpu_gelu_backward(float *dinp, const float *inp, const float *dout, size_t N) {
#pragma omp parallel for
    for (long long i = 0; i < (long long)N; i++) {
        float x = inp[i];
        float e = gelu_exp(x);
        float s = 1.0f / (1.0f + e);
        float dudx = GELU_SCALE * (1.0f + 3.0f * GELU_CUBE * x * x);
        float grad = s + 2.0f * x * (e * s) * s * dudx;
        dinp[i] = grad * dout[i];
    }
    return LLM_OK;
}
#endif
