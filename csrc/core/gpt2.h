/*
 * gpt2.h — the model's internal state, shared by gpt2.c (math driver) and checkpoint.c (files).
 * Not a public header: callers use llmpy.h.
 */
#ifndef LLMPY_GPT2_H
#define LLMPY_GPT2_H

#include <stddef.h>
#include <stdint.h>

#include "core/llmpy.h"
#include "core/ops.h"

// Reference-counted backend memory (activations that Python may still be viewing).
// Not thread-safe: one model is driven by one thread at a time (the bindings hold the GIL
// whenever they take or drop a reference).
struct llm_block {
    int refs;
    void *ptr;
    size_t bytes;
    const llm_ops *ops;
};

// ----------------------------------------------------------------------------
// data parallelism: what dist_plan.c plugs into the one backward and the one optimizer step

// A range of the flat buffers that the optimizer step updates, and where its AdamW moments are.
typedef struct gpt2_part {
    int tensor;    // llm_tensor_id
    size_t offset; // first element in the flat buffers (params, grads, master)
    size_t n;      // elements
    size_t moment; // first element of its moments in m->m / m->v
} gpt2_part;

// Installed by llm_dist_attach with several ranks (m->dist); every hook returns a status.
typedef struct gpt2_dist {
    void *ctx;
    // llm_backward, first thing: refuses a backward while reductions are under way
    llm_status (*backward_begin)(void *ctx);
    // llm_backward: the gradients of layer l are final (l = L-1 .. 0), then l = -1 (wte, wpe,
    // lnfw, lnfb, after the encoder backward)
    llm_status (*grads_ready)(void *ctx, int layer);
    // llm_step, before it reads a gradient: every reduction started and complete
    llm_status (*reduce)(void *ctx);
    // llm_step: *sq (this rank's squared gradient norm over its parts) <- the total over the ranks
    llm_status (*sum_norm)(void *ctx, double *sq);
    // llm_step: AdamW is done for parts[0..k] (the plan may start gathering them while the rest
    // is updated)
    llm_status (*updated)(void *ctx, size_t k);
    // llm_step, after AdamW: the parameters the other ranks updated
    llm_status (*gather)(void *ctx);
    // llm_zero_grad: reductions under way are completed first (they write the gradients)
    llm_status (*quiesce)(void *ctx);
    const gpt2_part *parts; // what this rank updates, in moment order
    size_t nparts;
    int whole;           // parts are the 16 whole tensors, moments in the flat layout (no ZeRO-1 shard)
    size_t moment_elems; // elements of m and v this rank keeps
} gpt2_dist;

struct llm_model {
    llm_config cfg;
    const llm_ops *ops;
    char device[16];
    char precision[8]; // "fp32" or "bf16"

    // parameters, gradients and AdamW moments: one contiguous buffer each, 16 tensors in
    // llm.c order; sizes[i] counts elements (wte with Vp rows).
    size_t sizes[LLM_NUM_TENSORS];
    size_t offsets[LLM_NUM_TENSORS];
    size_t total;     // elements in each of params/grads/master/m/v
    size_t xsize;     // bytes of one floatX element (ops->dtype)
    floatX *params;   // what the ops compute with
    floatX *grads;
    float *master;    // fp32 master weights under mixed precision (NULL when params are fp32)
    float *m, *v;     // allocated on the first step()
    int64_t t;        // AdamW steps taken
    int has_grad;     // a backward() ran since the last zero_grad()/creation
    // zero_grad() ran and no backward() completed since: the gradients are zero but their memory
    // is not cleared; the next backward writes them (ops.h: LLM_MM_WRITE_DWEIGHT), and anything
    // that shows them first clears it (gpt2_grads_readable).
    int grads_zero;
    int norm_ready;   // llm_grad_norm() ran since the last backward(): the gradients are averaged
    float grad_norm;  // (data parallelism) and this is their norm, which the next llm_step uses
    // >= 0: the last backward wrote the gradients (the first after zero_grad) and summed the
    // squares of those gpt2_summed_by_backward names as it stored them (ops->matmul_backward_sq):
    // the norm then adds the other tensors' only. Negative otherwise, and always on a model whose
    // gradient memory was handed out (llm_model_tensor: a caller may write into it) or with data
    // parallelism.
    double weights_sq;
    int grads_shown;  // llm_model_tensor gave out the gradient pointers (host memory)

    // activations of the last forward, sized for act_BT / act_T (grown on demand)
    llm_block *act;   // inputs, targets, per-layer activations
    llm_block *out;   // logits (B,T,Vp) then losses (B,T): what Python views
    void *scratch;    // backward-only buffers, allocated on first backward
    size_t scratch_bytes;
    void *att_scratch; // the attention op's temporary memory (ops->attention_scratch_bytes)
    size_t att_scratch_bytes;
    int B, T;         // shape of the last forward (0 = none yet)
    int has_targets;  // the last forward had targets
    float loss;       // mean loss of the last forward with targets
    // 1 after a backward on a backend with ops->lm_head_in_place: the logits buffer holds their
    // gradient, so the logits are refused (LLM_ESTATE) until the next forward resets this.
    int logits_overwritten;
    // The token ids of the last forward in host memory (B*T), grown on demand: the CUDA encoder
    // backward buckets them on the host, and reading them back from the device would cost a
    // synchronisation. Unused (NULL) on host-memory backends, whose act->inputs is host memory.
    int32_t *inputs_host;
    size_t inputs_host_cap; // ids it can hold
    size_t moment_elems;    // elements of m and v: total, or a ZeRO-1 shard (dist_plan.c)
    // data parallelism (dist_plan.c): hooks when there are ranks to talk to (NULL otherwise) and
    // the plan that owns them, freed with the model
    const gpt2_dist *dist;
    void *dist_plan;
    void (*dist_free)(void *plan);
    // the model file this model was loaded from (checkpoint.c: llm_model_load_state refuses a
    // training state saved with another one): 0 none (created), 1 a file without checksums, 2 one
    // with checksums, which origin_crc (payload) and origin_header_crc hold
    int origin;
    uint32_t origin_crc, origin_header_crc;
    char origin_path[512]; // for messages (truncated when longer)
};

// Allocates the model (parameters zero, grads zero) for a checked configuration on the backend
// registered for (device, precision); precision NULL = the device's default.
llm_status gpt2_alloc(llm_model **out, const llm_config *cfg, const char *device, const char *precision);
// Parameters as host fp32, elements [offset, offset + n) of the flat layout: set (the master copy
// and the compute copy) and get (from the master copy when there is one).
llm_status gpt2_set_params(llm_model *m, size_t offset, const float *src, size_t n);
llm_status gpt2_get_params(const llm_model *m, size_t offset, float *dst, size_t n);
// residual = inp1 + inp2, then out = layernorm(residual): the backend's fused op where it has one,
// else the two ops (shapes as ops.h's residual_layernorm_forward; residual may alias inp1 or inp2).
llm_status gpt2_residual_layernorm(const llm_ops *ops, floatX *residual, floatX *out, float *mean, float *rstd,
                                   const floatX *inp1, const floatX *inp2, const floatX *w, const floatX *b, int B,
                                   int T, int C);
// splitmix64's finaliser: well-mixed 64 bits of x (initialisation and rounding seeds).
uint64_t gpt2_mix64(uint64_t x);
// The transformer blocks' four weight matrices (qkv, attention projection, fc, fc projection),
// whose gradients matmul_backward writes whole on the first backward after zero_grad.
static inline int gpt2_block_matrix(int i) {
    return i == LLM_QKVW || i == LLM_ATTPROJW || i == LLM_FCW || i == LLM_FCPROJW;
}
// The gradients whose squares llm_backward sums into weights_sq: the block matrices and wte
// (its lm_head product, and the rows the encoder backward adds to).
static inline int gpt2_summed_by_backward(int i) { return i == LLM_WTE || gpt2_block_matrix(i); }

#endif // LLMPY_GPT2_H
