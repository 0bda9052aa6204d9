/*
 * cuda_ops.cuh — the CUDA op entry points, one file each (cuda/<op>.cu), as templates over the
 * element type floatX (float or __nv_bfloat16; each file instantiates both). ops_cuda.cu wraps
 * them into the two llm_ops tables. Semantics, shapes and the gradient convention are those of
 * csrc/core/ops.h; every pointer is device memory; every entry validates its sizes (LLM_EINVAL),
 * checks its launches and library calls (LLM_EBACKEND) and runs asynchronously on `stream`
 * unless its comment says otherwise. Scratch memory (common.cuh) assumes that all ops run on
 * one stream, llm_cuda_stream.
 */
#ifndef LLMPY_CUDA_OPS_CUH
#define LLMPY_CUDA_OPS_CUH

#include "common.cuh"

// --- encoder.cu ---------------------------------------------------------------
template <typename floatX>
llm_status cuda_encoder_forward(floatX *out, const int32_t *inp, const floatX *wte, const floatX *wpe, int B,
                                int T, int C, cudaStream_t stream);
// The token ids are bucketed on the host: from inp_host when given (no synchronisation), else
// copied back from inp (synchronises the stream).
template <typename floatX>
llm_status cuda_encoder_backward(floatX *dwte, floatX *dwpe, const floatX *dout, const int32_t *inp,
                                 const int32_t *inp_host, int B, int T, int C, cudaStream_t stream);

// --- layernorm.cu -------------------------------------------------------------
template <typename floatX>
llm_status cuda_layernorm_forward(floatX *out, float *mean, float *rstd, const floatX *inp, const floatX *weight,
                                  const floatX *bias, int B, int T, int C, cudaStream_t stream);
template <typename floatX>
llm_status cuda_layernorm_backward(floatX *dinp, floatX *dweight, floatX *dbias, const floatX *dout,
                                   const floatX *inp, const floatX *weight, const float *mean, const float *rstd,
                                   int B, int T, int C, cudaStream_t stream);
template <typename floatX>
llm_status cuda_residual_layernorm_forward(floatX *residual, floatX *out, float *mean, float *rstd,
                                           const floatX *inp1, const floatX *inp2, const floatX *weight,
                                           const floatX *bias, int B, int T, int C, cudaStream_t stream);

// --- matmul.cu ----------------------------------------------------------------
template <typename floatX>
llm_status cuda_matmul_forward(floatX *out, const floatX *inp, const floatX *weight, const floatX *bias, int B,
                               int T, int C, int OC, cudaStream_t stream);
template <typename floatX>
llm_status cuda_matmul_backward(floatX *dinp, floatX *dweight, floatX *dbias, const floatX *dout,
                                const floatX *inp, const floatX *weight, int B, int T, int C, int OC, int accumulate,
                                cudaStream_t stream);
template <typename floatX>
llm_status cuda_matmul_gelu_forward(floatX *pre, floatX *out, const floatX *inp, const floatX *weight,
                                    const floatX *bias, int B, int T, int C, int OC, cudaStream_t stream);

// --- attention.cu (reference attention: saves the (B,NH,T,T) probabilities) --------------
template <typename floatX> size_t cuda_attention_state_bytes(int B, int T, int C, int NH);
template <typename floatX> size_t cuda_attention_scratch_bytes(int B, int T, int C, int NH);
template <typename floatX>
llm_status cuda_attention_forward(floatX *out, void *state, void *scratch, const floatX *qkv, int B, int T, int C,
                                  int NH, cudaStream_t stream);
template <typename floatX>
llm_status cuda_attention_backward(floatX *dqkv, void *scratch, const floatX *dout, const floatX *qkv,
                                   const floatX *out, const void *state, int B, int T, int C, int NH,
                                   cudaStream_t stream);

// --- gelu.cu ------------------------------------------------------------------
template <typename floatX>
llm_status cuda_gelu_forward(floatX *out, const floatX *inp, size_t N, cudaStream_t stream);
template <typename floatX>
llm_status cuda_gelu_backward(floatX *dinp, const floatX *inp, const floatX *dout, size_t N, cudaStream_t stream);

// --- residual.cu --------------------------------------------------------------
template <typename floatX>
llm_status cuda_residual_forward(floatX *out, const floatX *inp1, const floatX *inp2, size_t N,
                                 cudaStream_t stream);
template <typename floatX>
llm_status cuda_residual_backward(floatX *dinp1, floatX *dinp2, const floatX *dout, size_t N, cudaStream_t stream);

// --- crossentropy.cu ----------------------------------------------------------
template <typename floatX>
llm_status cuda_crossentropy_forward(float *losses, const floatX *logits, const int32_t *targets, int B, int T,
                                     int V, int Vp, cudaStream_t stream);
template <typename floatX>
llm_status cuda_crossentropy_backward(floatX *dlogits, const floatX *logits, const int32_t *targets, float dloss,
                                      int B, int T, int V, int Vp, cudaStream_t stream);
template <typename floatX>
llm_status cuda_crossentropy_backward_cols(floatX *dlogits, const floatX *logits, const float *losses,
                                           const int32_t *targets, float dloss, int B, int T, int V, int Vp,
                                           int v0, int n, cudaStream_t stream);

// --- adamw.cu -----------------------------------------------------------------
template <typename floatX>
llm_status cuda_adamw_update(floatX *params, float *master, const floatX *grads, float *m, float *v, size_t N,
                             float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                             int64_t t, uint32_t seed, uint64_t index0, cudaStream_t stream);

// --- global_norm.cu -------------------------------------------------------------
// *out (host) = sum of x^2; synchronises the stream.
template <typename floatX>
llm_status cuda_norm_squared(double *out, const floatX *x, size_t N, cudaStream_t stream);
// *out (host) = sum of x (fp32), reduced on the device in double; synchronises the stream.
llm_status cuda_sum_f32(double *out, const float *x, size_t N, cudaStream_t stream);

// --- decode.cu: generation with a KV cache (ops.h, "generation") ------------------------
template <typename floatX>
llm_status cuda_encoder_at(floatX *out, const int32_t *inp, const int32_t *pos, const floatX *wte, const floatX *wpe,
                           int N, int T, int C, cudaStream_t stream);
template <typename floatX>
llm_status cuda_attention_cached(floatX *out, floatX *kcache, floatX *vcache, const floatX *qkv, const int32_t *rows,
                                 const int32_t *pos, int N, int T, int C, int NH, int maxT, cudaStream_t stream);
// weight: wtype LLM_BF16 (either table) or LLM_F32 (the fp32 table)
template <typename floatX>
llm_status cuda_matmul_rows(floatX *out, const floatX *inp, const void *weight, llm_dtype wtype, const floatX *bias,
                            int M, int C, int OC, cudaStream_t stream);

#endif // LLMPY_CUDA_OPS_CUH
