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

// ----------------------------------------------------------------------------
// forward

llm_status cpu_gelu_forward(float *out, const float *inp, size_t N) {
#pragma omp parallel for
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
