/*
 * gelu.c — GELU activation, tanh approximation, on the CPU.
 *
 * Shapes: out, inp, dinp, dout: (N) elementwise.
 *   gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
 *   gelu'(x) = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
 * Gradient convention (ops.h): dinp += dout * gelu'(inp) (activation gradient, accumulated).
 */
#include <math.h>

#include "cpu_ops.h"

#define GELU_SCALE 0.7978845608028654f // sqrt(2/pi)
#define GELU_CUBE 0.044715f

// ----------------------------------------------------------------------------
// forward

llm_status cpu_gelu_forward(float *out, const float *inp, size_t N) {
#pragma omp parallel for
    for (long long i = 0; i < (long long)N; i++) {
        float x = inp[i];
        float u = GELU_SCALE * (x + GELU_CUBE * x * x * x);
        out[i] = 0.5f * x * (1.0f + tanhf(u));
    }
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// backward

llm_status cpu_gelu_backward(float *dinp, const float *inp, const float *dout, size_t N) {
#pragma omp parallel for
    for (long long i = 0; i < (long long)N; i++) {
        float x = inp[i];
        float th = tanhf(GELU_SCALE * (x + GELU_CUBE * x * x * x));
        float dudx = GELU_SCALE * (1.0f + 3.0f * GELU_CUBE * x * x);
        float grad = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * dudx;
        dinp[i] += grad * dout[i];
    }
    return LLM_OK;
}
