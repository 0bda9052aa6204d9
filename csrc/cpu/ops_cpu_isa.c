/*
 * ops_cpu_isa.c — one instruction-set variant's table of CPU ops, and the reductions: the
 * gradient norm (norm_squared) and the sum of the losses (sum_f32).
 *
 * Compiled once per ISA variant, like the op files (see cpu_ops.h): cpu_isa_ops becomes
 * cpu_isa_ops_avx512, cpu_isa_ops_avx2, ... and ops_cpu.c forwards the public table
 * llm_cpu_ops to the variant it picks at run time. Memory is the same for every variant and
 * lives in ops_cpu.c.
 */
#include "core/common.h"
#include "core/ops.h"
#include "cpu_ops.h"

// ----------------------------------------------------------------------------
// reductions

llm_status cpu_norm_squared(double *out, const float *x, size_t N) {
    double sum = 0.0;
#pragma omp parallel for simd reduction(+ : sum) if (N >= 65536) // a row of wte (gpt2.c) is not worth a fork
    for (long long i = 0; i < (long long)N; i++) sum += (double)x[i] * x[i];
    *out = sum;
    return LLM_OK;
}

// One thread, in cpu_sum's fixed lane order: the result does not depend on the thread count.
// The model sums B*T losses with it (tens of thousands of floats: microseconds).
llm_status cpu_sum_f32(double *out, const float *x, size_t N) {
    *out = N ? cpu_sum(x, N) : 0.0;
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// the table

#define CPU_STR_(x) #x
#define CPU_STR(x) CPU_STR_(x)

const cpu_kernels cpu_isa_ops = {
#ifdef LLMPY_CPU_ISA
    .name = CPU_STR(LLMPY_CPU_ISA),
#else
    .name = "generic",
#endif
    .encoder_forward = cpu_encoder_forward,
    .encoder_backward = cpu_encoder_backward,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward = cpu_layernorm_backward,
    .matmul_forward = cpu_matmul_forward,
    .matmul_backward = cpu_matmul_backward,
#if defined(LLMPY_CPU_ISA) && defined(__AVX2__) // the x86 variants
    .matmul_backward_sq = cpu_matmul_backward_sq,
#endif
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .gelu_forward = cpu_gelu_forward,
    .gelu_backward = cpu_gelu_backward,
    .residual_forward = cpu_residual_forward,
    .residual_backward = cpu_residual_backward,
    .crossentropy_forward = cpu_crossentropy_forward,
    .crossentropy_backward = cpu_crossentropy_backward,
    .crossentropy_backward_cols = cpu_crossentropy_backward_cols,
    .adamw_update = cpu_adamw_update,
    .norm_squared = cpu_norm_squared,
    .sum_f32 = cpu_sum_f32,
    .encoder_at = cpu_encoder_at,
    .attention_cached = cpu_attention_cached,
    .matmul_rows = cpu_matmul_rows,
    .matmul_rows_bf16_path = cpu_matmul_rows_bf16_path,
};
