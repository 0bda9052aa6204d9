/*
 * ops_cpu.c — the CPU backend's llm_ops table: host memory functions, the gradient-norm
 * reduction, and pointers to the ops in the other csrc/cpu/ files (declared in cpu_ops.h).
 *
 * Memory is plain host memory, 64-byte aligned (a cache line, and the widest vector load) and
 * zero-filled on allocation; "device" copies are memcpy.
 */
#include <stdlib.h>
#include <string.h>

#include "../common.h"
#include "../ops.h"
#include "cpu_ops.h"

#define CPU_ALIGN 64

// ----------------------------------------------------------------------------
// memory

llm_status cpu_alloc(void **out, size_t bytes) {
    *out = NULL;
    // aligned_alloc wants a multiple of the alignment; guard the round-up against overflow
    if (bytes > SIZE_MAX - CPU_ALIGN)
        return llm_fail(LLM_ENOMEM, "cpu_alloc: cannot allocate %zu bytes", bytes);
    size_t rounded = (bytes + CPU_ALIGN - 1) / CPU_ALIGN * CPU_ALIGN;
    if (rounded == 0) rounded = CPU_ALIGN;
#if defined(_MSC_VER)
    void *p = _aligned_malloc(rounded, CPU_ALIGN);
#else
    void *p = aligned_alloc(CPU_ALIGN, rounded);
#endif
    if (!p) return llm_fail(LLM_ENOMEM, "cpu_alloc: out of memory allocating %zu bytes", bytes);
    memset(p, 0, rounded);
    *out = p;
    return LLM_OK;
}

void cpu_free(void *p) {
#if defined(_MSC_VER)
    _aligned_free(p);
#else
    free(p);
#endif
}

llm_status cpu_zero(void *p, size_t bytes) {
    if (bytes) memset(p, 0, bytes);
    return LLM_OK;
}

llm_status cpu_to_device(void *dst, const void *src_host, size_t bytes) {
    if (bytes && dst != src_host) memcpy(dst, src_host, bytes);
    return LLM_OK;
}

llm_status cpu_to_host(void *dst_host, const void *src, size_t bytes) {
    if (bytes && dst_host != src) memcpy(dst_host, src, bytes);
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// reductions

llm_status cpu_norm_squared(double *out, const float *x, size_t N) {
    double sum = 0.0;
#pragma omp parallel for simd reduction(+ : sum)
    for (long long i = 0; i < (long long)N; i++) sum += (double)x[i] * x[i];
    *out = sum;
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// the table

const llm_ops llm_cpu_ops = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .to_device = cpu_to_device,
    .to_host = cpu_to_host,
    .encoder_forward = cpu_encoder_forward,
    .encoder_backward = cpu_encoder_backward,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward = cpu_layernorm_backward,
    .matmul_forward = cpu_matmul_forward,
    .matmul_backward = cpu_matmul_backward,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .gelu_forward = cpu_gelu_forward,
    .gelu_backward = cpu_gelu_backward,
    .residual_forward = cpu_residual_forward,
    .residual_backward = cpu_residual_backward,
    .crossentropy_forward = cpu_crossentropy_forward,
    .crossentropy_backward = cpu_crossentropy_backward,
    .adamw_update = cpu_adamw_update,
    .norm_squared = cpu_norm_squared,
};
