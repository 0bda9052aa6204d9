/*
 * cpu_ops.h — the CPU backend's ops, one source file each (csrc/cpu/<op>.c).
 *
 * Every function has exactly the signature of the matching llm_ops member in csrc/ops.h,
 * where the shapes and the gradient convention are documented; ops_cpu.c collects them
 * into the table llm_cpu_ops. Pointers are host memory. Shape letters: see ops.h.
 */
#ifndef LLMPY_CPU_OPS_H
#define LLMPY_CPU_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "../llmpy.h"

#ifdef __cplusplus
extern "C" {
#endif

// --- memory (ops_cpu.c) ---------------------------------------------------------
llm_status cpu_alloc(void **out, size_t bytes);
void cpu_free(void *p);
llm_status cpu_zero(void *p, size_t bytes);
llm_status cpu_to_device(void *dst, const void *src_host, size_t bytes);
llm_status cpu_to_host(void *dst_host, const void *src, size_t bytes);

// --- encoder.c ------------------------------------------------------------------
llm_status cpu_encoder_forward(float *out, const int32_t *inp, const float *wte, const float *wpe,
                               int B, int T, int C);
llm_status cpu_encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *inp,
                                int B, int T, int C);

// --- layernorm.c ----------------------------------------------------------------
llm_status cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                                 const float *weight, const float *bias, int B, int T, int C);
llm_status cpu_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                  const float *inp, const float *weight, const float *mean,
                                  const float *rstd, int B, int T, int C);

// --- matmul.c -------------------------------------------------------------------
llm_status cpu_matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                              int B, int T, int C, int OC);
llm_status cpu_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, int B, int T, int C, int OC);

// --- attention.c ----------------------------------------------------------------
llm_status cpu_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH);
llm_status cpu_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att,
                                  int B, int T, int C, int NH);

// --- gelu.c ---------------------------------------------------------------------
llm_status cpu_gelu_forward(float *out, const float *inp, size_t N);
llm_status cpu_gelu_backward(float *dinp, const float *inp, const float *dout, size_t N);

// --- residual.c -----------------------------------------------------------------
llm_status cpu_residual_forward(float *out, const float *inp1, const float *inp2, size_t N);
llm_status cpu_residual_backward(float *dinp1, float *dinp2, const float *dout, size_t N);

// --- crossentropy.c -------------------------------------------------------------
llm_status cpu_crossentropy_forward(float *losses, const float *logits, const int32_t *targets,
                                    int B, int T, int V, int Vp);
llm_status cpu_crossentropy_backward(float *dlogits, const float *logits, const int32_t *targets,
                                     float dloss, int B, int T, int V, int Vp);

// --- adamw.c --------------------------------------------------------------------
llm_status cpu_adamw_update(float *params, const float *grads, float *m, float *v, size_t N,
                            float lr, float beta1, float beta2, float eps, float weight_decay,
                            float grad_scale, int64_t t);

// --- ops_cpu.c ------------------------------------------------------------------
llm_status cpu_norm_squared(double *out, const float *x, size_t N);

#ifdef __cplusplus
}
#endif
#endif // LLMPY_CPU_OPS_H
