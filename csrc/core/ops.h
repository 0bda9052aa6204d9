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
 *   - parameter gradients accumulate: dweight += ..., dbias += ... (gradient accumulation over
 *     micro-batches, and wte's two uses, encoder and lm_head, add into one buffer) — except
 *     matmul_backward's dweight with LLM_MM_WRITE_DWEIGHT, which the first backward after
 *     zero_grad uses to write the weight gradients instead of zeroing them, then adding.
 *   - activation gradients are WRITTEN (=) where the model writes a buffer once, so that it
 *     never has to zero it first: gelu_backward's dinp, attention_backward's dqkv,
 *     crossentropy_backward(_cols)'s dlogits (padding columns set to 0), and matmul_backward's
 *     dinp when called with accumulate = 0. "Written" means every element is stored and the
 *     previous contents are never read (garbage, NaN included, cannot leak into the result).
 *   - activation gradients ACCUMULATE (+=) where several contributions meet: layernorm_backward's
 *     dinp (it is the residual stream, which gpt2.c zeroes once per backward), residual_backward,
 *     and matmul_backward's dinp with accumulate = 1.
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
#include "core/llmpy.h"

#ifdef __cplusplus
extern "C" {
#endif

// A parameter/gradient/activation element: fp32 or bf16, per the table's dtype.
typedef void floatX;

// matmul_backward's flags (bits; 0 = dinp written, dweight accumulated)
enum { LLM_MM_ACCUMULATE_DINP = 1, LLM_MM_WRITE_DWEIGHT = 2 };

typedef struct llm_ops {
    const char *name;   // "cpu", "cuda"
    llm_dtype dtype;    // element type of every floatX buffer
    int host_memory;    // 1: buffers are host memory that callers may read and write directly
    // How llm_backward runs the classifier (lm_head + cross-entropy) backward:
    //   1: in place, in two ops over the whole padded vocabulary: crossentropy_backward_cols with
    //      v0 = 0, n = Vp and dlogits == logits (the gradient overwrites the logits, which the
    //      model then refuses to show until the next forward), then one matmul_backward over
    //      all Vp columns that writes dln (accumulate = 0). No (B,T,Vp) buffer besides the
    //      logits; one rounding of dln (GPUs: few launches, fp32 accumulation inside the GEMM).
    //   0: a vocabulary slice of about 2^21 elements at a time into a scratch buffer, dln
    //      accumulated over the slices; the logits stay readable after backward, and a second
    //      backward of the same forward is allowed (the CPU: csrc/cpu/ops_cpu.c says why).
    int lm_head_in_place;

    // --- memory ---------------------------------------------------------------
    llm_status (*alloc)(void **out, size_t bytes);         // zero-filled; *out NULL on failure
    void (*free)(void *p);
    llm_status (*zero)(void *p, size_t bytes);
    // raw byte copies between host and backend memory (synchronous)
    llm_status (*to_device)(void *dst, const void *src_host, size_t bytes);
    llm_status (*to_host)(void *dst_host, const void *src, size_t bytes);
    // backend memory to backend memory (ordered with the ops; regions must not overlap)
    llm_status (*copy)(void *dst, const void *src, size_t bytes);
    // element copies with conversion: host fp32 <-> backend floatX (round to nearest even)
    llm_status (*upload_f32)(floatX *dst, const float *src_host, size_t N);
    llm_status (*download_f32)(float *dst_host, const floatX *src, size_t N);

    // --- encoder: token + position embeddings ----------------------------------
    // out: (B,T,C), inp: (B,T), wte: (Vp,C), wpe: (maxT,C)
    llm_status (*encoder_forward)(floatX *out, const int32_t *inp, const floatX *wte, const floatX *wpe,
                                  int B, int T, int C);
    // dwte: (Vp,C), dwpe: (maxT,C) accumulated; dout: (B,T,C), inp: (B,T) in backend memory;
    // inp_host: the same ids in host memory, or NULL. A backend that sorts the ids on the host
    // (CUDA) uses inp_host when given, so it need not copy them back and wait for the device;
    // with NULL it copies inp itself (synchronising).
    llm_status (*encoder_backward)(floatX *dwte, floatX *dwpe, const floatX *dout, const int32_t *inp,
                                   const int32_t *inp_host, int B, int T, int C);

    // --- layernorm (eps 1e-5, biased variance) ---------------------------------
    // out: (B,T,C), mean/rstd: (B,T), inp: (B,T,C), weight/bias: (C)
    llm_status (*layernorm_forward)(floatX *out, float *mean, float *rstd, const floatX *inp,
                                    const floatX *weight, const floatX *bias, int B, int T, int C);
    // dinp: (B,T,C) accumulated (+=), dweight/dbias: (C), dout/inp: (B,T,C), weight: (C), mean/rstd: (B,T)
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
    // flags (LLM_MM_*, below; 0: dinp written, dweight accumulated): LLM_MM_ACCUMULATE_DINP adds to
    // dinp (+=) instead of writing it; LLM_MM_WRITE_DWEIGHT writes dweight (= dout^T @ inp, its
    // previous contents never read) instead of adding to it. dbias always accumulates.
    llm_status (*matmul_backward)(floatX *dinp, floatX *dweight, floatX *dbias, const floatX *dout,
                                  const floatX *inp, const floatX *weight, int B, int T, int C, int OC,
                                  int flags);
    // optional: matmul_backward that also sets *dweight_sq (a host double) to the sum of the
    // squares of dweight after the call, computed as it is stored: the gradient norm then needs no
    // pass over the weight gradients. *dweight_sq < 0 where the variant in use does not compute
    // it (the CPU's generic variant); it is then matmul_backward alone.
    llm_status (*matmul_backward_sq)(floatX *dinp, floatX *dweight, floatX *dbias, const floatX *dout,
                                     const floatX *inp, const floatX *weight, int B, int T, int C, int OC,
                                     int flags, double *dweight_sq);
    // optional: pre = inp @ weight^T + bias; out = gelu(pre) (the MLP's first matmul and its GELU
    // in one call). out must be exactly gelu_forward(pre): gelu_backward differentiates that
    // function. pre, out: (B,T,OC); other shapes as matmul_forward.
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
    // dqkv: (B,T,3C) written (=); dout: (B,T,C), qkv: (B,T,3C), out: (B,T,C) and state as the
    // forward left them
    llm_status (*attention_backward)(floatX *dqkv, void *scratch, const floatX *dout, const floatX *qkv,
                                     const floatX *out, const void *state, int B, int T, int C, int NH);

    // --- GELU, tanh approximation ----------------------------------------------
    // out/inp: (N)
    llm_status (*gelu_forward)(floatX *out, const floatX *inp, size_t N);
    // dinp: (N) written (=) dout * gelu'(inp); inp/dout: (N); dinp may alias dout
    llm_status (*gelu_backward)(floatX *dinp, const floatX *inp, const floatX *dout, size_t N);

    // --- residual: out = inp1 + inp2 (out may alias either input) ---------------
    llm_status (*residual_forward)(floatX *out, const floatX *inp1, const floatX *inp2, size_t N);
    // dinp1/dinp2: (N) accumulated (+=), dout: (N)
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
    // With v0 = 0 and n = Vp, dlogits may alias logits: the whole gradient is then written in
    // place of the logits in one pass (lm_head_in_place; the losses are left unchanged).
    llm_status (*crossentropy_backward_cols)(floatX *dlogits, const floatX *logits, const float *losses,
                                             const int32_t *targets, float dloss, int B, int T, int V,
                                             int Vp, int v0, int n);

    // --- AdamW (PyTorch semantics, decoupled weight decay, bias correction) -----
    // params/grads: (N) floatX; m/v: (N) fp32; grads are multiplied by grad_scale first; t >= 1 is
    // the step number. master: (N) fp32 master weights, or NULL when dtype is fp32 (params are
    // then the master copy). With a master copy the update is done on it in fp32 and params
    // receive it rounded stochastically to floatX: element i draws its random bits from
    // (seed, index0 + i), so with index0 = the first element's index in its tensor, a tensor
    // updated in parts (ZeRO-1 shards over several ranks) rounds exactly as it does whole.
    llm_status (*adamw_update)(floatX *params, float *master, const floatX *grads, float *m, float *v,
                               size_t N, float lr, float beta1, float beta2, float eps, float weight_decay,
                               float grad_scale, int64_t t, uint32_t seed, uint64_t index0);
    // *out (host) = sum of x[i]^2 in double precision (fp32 at least); x: (N)
    llm_status (*norm_squared)(double *out, const floatX *x, size_t N);
    // *out (host) = sum of x[i], accumulated in double; x: (N) fp32 in backend memory (the
    // per-position losses). Deterministic: the same bits for the same x, run to run. Reduces where
    // x lives and returns one number, so a mean loss costs one copy (one synchronisation).
    llm_status (*sum_f32)(double *out, const float *x, size_t N);

    // --- generation with a KV cache (csrc/core/generate.c) ----------------------
    // Optional as a group: NULL where a backend has no generation (llm_gen_create then says so).
    // The cache of one layer is two buffers, keys and values, each (S,NH,maxT,hs) floatX: S sequence
    // slots of maxT positions. N sequences take part in a call; sequence n lives in slot rows[n]
    // (distinct, in [0,S)) and its T tokens sit at positions pos[n] .. pos[n]+T-1 (pos[n] + T <= maxT).
    // rows, pos: (N) int32 in backend memory.
    //
    // out: (N,T,C) = wte[inp[n,t]] + wpe[pos[n]+t]; inp: (N,T), wte: (Vp,C), wpe: (maxT,C)
    llm_status (*encoder_at)(floatX *out, const int32_t *inp, const int32_t *pos, const floatX *wte,
                             const floatX *wpe, int N, int T, int C);
    // Writes the keys and values of qkv (N,T,3C) into slot rows[n] at positions pos[n]+t, then
    // out (N,T,C) = causal attention (scale 1/sqrt(hs)) of each query (n,t) over the keys and values
    // of its slot at positions 0 .. pos[n]+t. kcache, vcache: (S,NH,maxT,hs).
    llm_status (*attention_cached)(floatX *out, floatX *kcache, floatX *vcache, const floatX *qkv,
                                   const int32_t *rows, const int32_t *pos, int N, int T, int C, int NH,
                                   int maxT);
    // out (M,OC) = inp (M,C) @ weight^T + bias, for a few rows (decoding: M = sequences): each weight
    // is read once for all M rows (no packing). weight: (OC,C) of element type wtype (the table's
    // dtype, or LLM_BF16 when matmul_rows_bf16 is set), bias: (OC) floatX or NULL.
    llm_status (*matmul_rows)(floatX *out, const floatX *inp, const void *weight, llm_dtype wtype,
                              const floatX *bias, int M, int C, int OC);
    int matmul_rows_bf16; // 1: matmul_rows takes bf16 weights whatever the table's dtype
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
