/*
 * ops.h — the backend interface. gpt2.c calls every op through an llm_ops table;
 * each backend (csrc/cpu, cuda/) fills one. Pointers are in the backend's memory.
 *
 * Shape letters (defined once here and used in every op file):
 *   B batch, T time (sequence length), C channels, NH heads, hs = C/NH head size,
 *   OC output channels of a matmul, V vocabulary, Vp padded vocabulary, N element count.
 *
 * Element types. Parameters, gradients and activations are `floatX`: fp32 on the CPU, fp32 or
 * bf16 on CUDA (the table's `dtype` says which; a backend offers one table per precision).
 * floatX is declared as void so that one table type serves every precision: a backend casts
 * to its element type, gpt2.c only does pointer arithmetic in bytes (ops->dtype's size).
 * Always fp32 (`float`): LayerNorm statistics, per-position losses, AdamW moments and the fp32
 * master copy of the parameters that mixed precision keeps.
 *
 * Gradient convention (every op):
 *   - parameter gradients accumulate:          dweight += ..., dbias += ...
 *   - activation gradients accumulate as well: dinp += ...   (the model zeroes them first)
 *   - exception: crossentropy_backward(_cols) WRITES dlogits (=), padding columns set to 0.
 * Every op returns LLM_OK or an error status (the CPU ops cannot fail once gpt2.c has
 * validated sizes; CUDA ops report launch and library errors).
 *
 * Optional members (may be NULL; gpt2.c then composes the unfused ops): the fused ops below
 * marked "optional".
 */
#ifndef LLMPY_OPS_H
#define LLMPY_OPS_H

#include <stddef.h>
#include <stdint.h>
#include "llmpy.h"

#ifdef __cplusplus
extern "C" {
#endif

// A parameter/gradient/activation element: fp32 or bf16, per the table's dtype.
typedef void floatX;

typedef struct llm_ops {
    const char *name;   // "cpu", "cuda"
    llm_dtype dtype;    // element type of every floatX buffer
    int host_memory;    // 1: buffers are host memory that callers may read and write directly

    // --- memory ---------------------------------------------------------------
    llm_status (*alloc)(void **out, size_t bytes);         // zero-filled; *out NULL on failure
    void (*free)(void *p);
    llm_status (*zero)(void *p, size_t bytes);
    // raw byte copies between host and backend memory (synchronous)
    llm_status (*to_device)(void *dst, const void *src_host, size_t bytes);
    llm_status (*to_host)(void *dst_host, const void *src, size_t bytes);
    // element copies with conversion: host fp32 <-> backend floatX (round to nearest even)
    llm_status (*upload_f32)(floatX *dst, const float *src_host, size_t N);
    llm_status (*download_f32)(float *dst_host, const floatX *src, size_t N);

    // --- encoder: token + position embeddings ----------------------------------
    // out: (B,T,C), inp: (B,T), wte: (Vp,C), wpe: (maxT,C)
    llm_status (*encoder_forward)(floatX *out, const int32_t *inp, const floatX *wte, const floatX *wpe,
                                  int B, int T, int C);
    // dwte: (Vp,C), dwpe: (maxT,C), dout: (B,T,C), inp: (B,T)
    llm_status (*encoder_backward)(floatX *dwte, floatX *dwpe, const floatX *dout, const int32_t *inp,
                                   int B, int T, int C);

    // --- layernorm (eps 1e-5, biased variance) ---------------------------------
    // out: (B,T,C), mean/rstd: (B,T), inp: (B,T,C), weight/bias: (C)
    llm_status (*layernorm_forward)(floatX *out, float *mean, float *rstd, const floatX *inp,
                                    const floatX *weight, const floatX *bias, int B, int T, int C);
    // dinp: (B,T,C), dweight/dbias: (C), dout/inp: (B,T,C), weight: (C), mean/rstd: (B,T)
    llm_status (*layernorm_backward)(floatX *dinp, floatX *dweight, floatX *dbias, const floatX *dout,
                                     const floatX *inp, const floatX *weight, const float *mean,
                                     const float *rstd, int B, int T, int C);
    // optional: residual = inp1 + inp2, then out = layernorm(residual); shapes as above
    // (residual may alias inp1 or inp2).
    llm_status (*residual_layernorm_forward)(floatX *residual, floatX *out, float *mean, float *rstd,
                                             const floatX *inp1, const floatX *inp2, const floatX *weight,
                                             const floatX *bias, int B, int T, int C);

    // --- matmul: out = inp @ weight^T + bias -----------------------------------
    // out: (B,T,OC), inp: (B,T,C), weight: (OC,C), bias: (OC) or NULL
    llm_status (*matmul_forward)(floatX *out, const floatX *inp, const floatX *weight, const floatX *bias,
                                 int B, int T, int C, int OC);
    // dinp: (B,T,C) or NULL, dweight: (OC,C), dbias: (OC) or NULL, dout: (B,T,OC), inp: (B,T,C), weight: (OC,C)
    llm_status (*matmul_backward)(floatX *dinp, floatX *dweight, floatX *dbias, const floatX *dout,
                                  const floatX *inp, const floatX *weight, int B, int T, int C, int OC);
    // optional: pre = inp @ weight^T + bias; out = gelu(pre) (the MLP's first matmul with a GELU
    // epilogue). pre, out: (B,T,OC); other shapes as matmul_forward.
    llm_status (*matmul_gelu_forward)(floatX *pre, floatX *out, const floatX *inp, const floatX *weight,
                                      const floatX *bias, int B, int T, int C, int OC);

    // --- causal multi-head self-attention, scale 1/sqrt(hs) --------------------
    // The backend decides what the forward saves for the backward ("state", per layer: the CPU
    // keeps the (B,NH,T,T) probabilities, a flash kernel only the (B,NH,T) logsumexp) and what
    // temporary memory it needs ("scratch", shared by all layers, contents not preserved).
    size_t (*attention_state_bytes)(int B, int T, int C, int NH);
    size_t (*attention_scratch_bytes)(int B, int T, int C, int NH);
    // out: (B,T,C), qkv: (B,T,3C) laid out as [q | k | v], each (NH, hs)
    llm_status (*attention_forward)(floatX *out, void *state, void *scratch, const floatX *qkv,
                                    int B, int T, int C, int NH);
    // dqkv: (B,T,3C), dout: (B,T,C), qkv: (B,T,3C), out: (B,T,C) and state as the forward left them
    llm_status (*attention_backward)(floatX *dqkv, void *scratch, const floatX *dout, const floatX *qkv,
                                     const floatX *out, const void *state, int B, int T, int C, int NH);

    // --- GELU, tanh approximation ----------------------------------------------
    // out/inp: (N)
    llm_status (*gelu_forward)(floatX *out, const floatX *inp, size_t N);
    // dinp/inp/dout: (N)
    llm_status (*gelu_backward)(floatX *dinp, const floatX *inp, const floatX *dout, size_t N);

    // --- residual: out = inp1 + inp2 (out may alias either input) ---------------
    llm_status (*residual_forward)(floatX *out, const floatX *inp1, const floatX *inp2, size_t N);
    // dinp1/dinp2/dout: (N)
    llm_status (*residual_backward)(floatX *dinp1, floatX *dinp2, const floatX *dout, size_t N);

    // --- softmax + cross-entropy over the first V of Vp logits ------------------
    // losses: (B,T), logits: (B,T,Vp), targets: (B,T) in [0,V)
    llm_status (*crossentropy_forward)(float *losses, const floatX *logits, const int32_t *targets,
                                       int B, int T, int V, int Vp);
    // dlogits: (B,T,Vp) written: (softmax - onehot) * dloss, zero on the padding columns.
    // dloss is the gradient of the objective w.r.t. each position's loss (same for all positions).
    llm_status (*crossentropy_backward)(floatX *dlogits, const floatX *logits, const int32_t *targets,
                                        float dloss, int B, int T, int V, int Vp);
    // The same gradient for the vocabulary columns v0 .. v0+n only, so that the model can run the
    // lm_head backward a slice of the vocabulary at a time instead of storing (B,T,Vp) dlogits.
    // dlogits: (B,T,n) written (row stride n), zero on columns >= V; logits: (B,T,Vp);
    // losses: (B,T) as crossentropy_forward wrote them (the softmax is rebuilt from them:
    // logsumexp = loss + logit[target]); targets: (B,T); 0 <= v0, v0 + n <= Vp.
    llm_status (*crossentropy_backward_cols)(floatX *dlogits, const floatX *logits, const float *losses,
                                             const int32_t *targets, float dloss, int B, int T, int V,
                                             int Vp, int v0, int n);

    // --- AdamW (PyTorch semantics, decoupled weight decay, bias correction) -----
    // params/grads: (N) floatX; m/v: (N) fp32; grads are multiplied by grad_scale first; t >= 1 is
    // the step number. master: (N) fp32 master weights, or NULL when dtype is fp32 (params are
    // then the master copy). With a master copy the update is done on it in fp32 and params
    // receive it rounded stochastically to floatX; seed makes that rounding reproducible.
    llm_status (*adamw_update)(floatX *params, float *master, const floatX *grads, float *m, float *v,
                               size_t N, float lr, float beta1, float beta2, float eps, float weight_decay,
                               float grad_scale, int64_t t, uint32_t seed);
    // *out (host) = sum of x[i]^2 in double precision (fp32 at least); x: (N)
    llm_status (*norm_squared)(double *out, const floatX *x, size_t N);
} llm_ops;

// Size in bytes of one element of a dtype.
static inline size_t llm_dtype_size(llm_dtype d) { return d == LLM_BF16 ? 2 : 4; }

// The CPU backend's table (csrc/cpu/ops_cpu.c).
extern const llm_ops llm_cpu_ops;

// Other backends (CUDA) are compiled into separate extension modules; they register their
// tables under a device name ("cuda") and a precision ("fp32", "bf16") at load time.
// Registering the same (device, precision) again replaces the entry. At most 8 entries.
llm_status llm_register_backend(const char *device, const char *precision, const llm_ops *ops);

#ifdef __cplusplus
}
#endif
#endif // LLMPY_OPS_H
