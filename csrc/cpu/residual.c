/*
 * residual.c — residual connection on the CPU: out = inp1 + inp2, elementwise.
 *
 * Shapes: out, inp1, inp2, dinp1, dinp2, dout: (N).
 * out may alias inp1 or inp2 (the pointers are deliberately not restrict-qualified: each
 * element is read before it is written, which is all an in-place add needs).
 * Gradient convention (ops.h): dinp1 += dout, dinp2 += dout (activation gradients, accumulated).
 */
#include "cpu_ops.h"

// ----------------------------------------------------------------------------
// forward

llm_status cpu_residual_forward(float *out, const float *inp1, const float *inp2, size_t N) {
#pragma omp parallel for if (N >= CPU_PAR_MIN_ELEMS)
    for (long long i = 0; i < (long long)N; i++) out[i] = inp1[i] + inp2[i];
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// backward

llm_status cpu_residual_backward(float *dinp1, float *dinp2, const float *dout, size_t N) {
#pragma omp parallel for
    for (long long i = 0; i < (long long)N; i++) {
        dinp1[i] += dout[i];
        dinp2[i] += dout[i];
    }
    return LLM_OK;
}
