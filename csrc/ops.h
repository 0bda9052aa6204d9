/*
 * ops.h — the backend interface. gpt2.c calls every op through an llm_ops table;
 * each backend (csrc/cpu, later cuda/) fills one. Pointers are in the backend's memory.
 *
 * Shape letters (defined once here and used in every op file):
 *   B batch, T time (sequence length), C channels, NH heads, hs = C/NH head size,
 *   OC output channels of a matmul, V vocabulary, Vp padded vocabulary, N element count.
 *
 * Gradient convention (every op):
 *   - parameter gradients accumulate:          dweight += ..., dbias += ...
 *   - activation gradients accumulate as well: dinp += ...   (the model zeroes them first)
 *   - exception: crossentropy_backward(_cols) WRITES dlogits (=), padding columns set to 0.
 * Every op returns LLM_OK or an error status (the CPU ops cannot fail once gpt2.c has
 * validated sizes; the table is status-returning for backends that can, e.g. CUDA).
 */
#ifndef LLMPY_OPS_H
#define LLMPY_OPS_H

#include <stddef.h>
#include <stdint.h>
#include "llmpy.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct llm_ops {
    const char *name; // "cpu", "cuda"

    // --- memory ---------------------------------------------------------------
    llm_status (*alloc)(void **out, size_t bytes);         // zero-filled; *out NULL on failure
    void (*free)(void *p);
    llm_status (*zero)(void *p, size_t bytes);
    llm_status (*to_device)(void *dst, const void *src_host, size_t bytes);
    llm_status (*to_host)(void *dst_host, const void *src, size_t bytes);

    // --- encoder: token + position embeddings ----------------------------------
    // out: (B,T,C), inp: (B,T), wte: (Vp,C), wpe: (maxT,C)
    llm_status (*encoder_forward)(float *out, const int32_t *inp, const float *wte, const float *wpe,
                                  int B, int T, int C);
    // dwte: (Vp,C), dwpe: (maxT,C), dout: (B,T,C), inp: (B,T)
    llm_status (*encoder_backward)(float *dwte, float *dwpe, const float *dout, const int32_t *inp,
                                   int B, int T, int C);

    // --- layernorm (eps 1e-5, biased variance) ---------------------------------
    // out: (B,T,C), mean/rstd: (B,T), inp: (B,T,C), weight/bias: (C)
    llm_status (*layernorm_forward)(float *out, float *mean, float *rstd, const float *inp,
                                    const float *weight, const float *bias, int B, int T, int C);
    // dinp: (B,T,C), dweight/dbias: (C), dout/inp: (B,T,C), weight: (C), mean/rstd: (B,T)
    llm_status (*layernorm_backward)(float *dinp, float *dweight, float *dbias, const float *dout,
                                     const float *inp, const float *weight, const float *mean,
                                     const float *rstd, int B, int T, int C);

    // --- matmul: out = inp @ weight^T + bias -----------------------------------
    // out: (B,T,OC), inp: (B,T,C), weight: (OC,C), bias: (OC) or NULL
    llm_status (*matmul_forward)(float *out, const float *inp, const float *weight, const float *bias,
                                 int B, int T, int C, int OC);
    // dinp: (B,T,C) or NULL, dweight: (OC,C), dbias: (OC) or NULL, dout: (B,T,OC), inp: (B,T,C), weight: (OC,C)
    llm_status (*matmul_backward)(float *dinp, float *dweight, float *dbias, const float *dout,
                                  const float *inp, const float *weight, int B, int T, int C, int OC);

    // --- causal multi-head self-attention, scale 1/sqrt(hs) --------------------
    // out: (B,T,C), att: (B,NH,T,T) softmax probabilities (entries above the diagonal are 0),
    // qkv: (B,T,3C) laid out as [q | k | v], each (NH, hs)
    llm_status (*attention_forward)(float *out, float *att, const float *qkv, int B, int T, int C, int NH);
    // dqkv: (B,T,3C), dout: (B,T,C), qkv: (B,T,3C), att: (B,NH,T,T) from the forward
    llm_status (*attention_backward)(float *dqkv, const float *dout, const float *qkv, const float *att,
                                     int B, int T, int C, int NH);

    // --- GELU, tanh approximation ----------------------------------------------
    // out/inp: (N)
    llm_status (*gelu_forward)(float *out, const float *inp, size_t N);
    // dinp/inp/dout: (N)
    llm_status (*gelu_backward)(float *dinp, const float *inp, const float *dout, size_t N);

    // --- residual: out = inp1 + inp2 (out may alias either input) ---------------
    llm_status (*residual_forward)(float *out, const float *inp1, const float *inp2, size_t N);
    // dinp1/dinp2/dout: (N)
    llm_status (*residual_backward)(float *dinp1, float *dinp2, const float *dout, size_t N);

    // --- softmax + cross-entropy over the first V of Vp logits ------------------
    // losses: (B,T), logits: (B,T,Vp), targets: (B,T) in [0,V)
    llm_status (*crossentropy_forward)(float *losses, const float *logits, const int32_t *targets,
                                       int B, int T, int V, int Vp);
    // dlogits: (B,T,Vp) written: (softmax - onehot) * dloss, zero on the padding columns.
    // dloss is the gradient of the objective w.r.t. each position's loss (same for all positions).
    llm_status (*crossentropy_backward)(float *dlogits, const float *logits, const int32_t *targets,
                                        float dloss, int B, int T, int V, int Vp);
    // The same gradient for the vocabulary columns v0 .. v0+n only, so that the model can run the
    // lm_head backward a slice of the vocabulary at a time instead of storing (B,T,Vp) dlogits.
    // dlogits: (B,T,n) written (row stride n), zero on columns >= V; logits: (B,T,Vp);
    // losses: (B,T) as crossentropy_forward wrote them (the softmax is rebuilt from them:
    // logsumexp = loss + logit[target]); targets: (B,T); 0 <= v0, v0 + n <= Vp.
    llm_status (*crossentropy_backward_cols)(float *dlogits, const float *logits, const float *losses,
                                             const int32_t *targets, float dloss, int B, int T, int V,
                                             int Vp, int v0, int n);

    // --- AdamW (PyTorch semantics, decoupled weight decay, bias correction) -----
    // params/grads/m/v: (N); grads are multiplied by grad_scale first; t >= 1 is the step number.
    llm_status (*adamw_update)(float *params, const float *grads, float *m, float *v, size_t N,
                               float lr, float beta1, float beta2, float eps, float weight_decay,
                               float grad_scale, int64_t t);
    // *out (host) = sum of x[i]^2 in double precision; x: (N)
    llm_status (*norm_squared)(double *out, const float *x, size_t N);
} llm_ops;

// The CPU backend's table (csrc/cpu/ops_cpu.c).
extern const llm_ops llm_cpu_ops;

#ifdef __cplusplus
}
#endif
#endif // LLMPY_OPS_H
