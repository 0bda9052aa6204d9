/*
 * gpt2.c — the GPT-2 model, written once for every backend.
 *
 * Owns the configuration, the parameter layout (16 tensors in llm.c order, one contiguous
 * buffer), the activations, and the forward / backward / AdamW drivers. All arithmetic goes
 * through the backend's llm_ops table (ops.h); this file only decides what to call on which
 * buffer. Checkpoint files live in checkpoint.c.
 *
 * Shape letters: L layers, B batch, T time, C channels, NH heads, V vocabulary,
 * Vp padded vocabulary (multiple of 128), maxT block size.
 *
 * Reference: Radford et al. 2019 (GPT-2): pre-LayerNorm transformer blocks
 *   x = x + attn(ln1(x)); x = x + mlp(ln2(x)); logits = lnf(x) @ wte^T  (tied head)
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "common.h"
#include "formats.h"
#include "gpt2.h"

// ----------------------------------------------------------------------------
// configuration and parameter layout

const char *const gpt2_tensor_names[LLM_NUM_TENSORS] = {
    "wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
    "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb",
};

// Tensors that get weight decay (the 2-D matrices: embeddings and matmul weights).
static int is_matrix(int i) { return i == 0 || i == 1 || i == 4 || i == 6 || i == 10 || i == 12; }

// Floats of dlogits the backward holds at once (llm_backward: the lm_head runs by vocabulary slices).
#define LM_HEAD_SLICE_FLOATS ((size_t)1 << 20)

// Limits that keep every size product far from overflow.
#define MAX_LAYERS 4096
#define MAX_EMBD (1 << 16)
#define MAX_VOCAB (1 << 24)
#define MAX_BLOCK (1 << 20)

llm_status llm_config_check(llm_config *cfg) {
    if (!cfg) return llm_fail(LLM_EINVAL, "config is NULL");
    if (cfg->n_layer < 1 || cfg->n_layer > MAX_LAYERS)
        return llm_fail(LLM_EINVAL, "n_layer must be in [1, %d], got %d", MAX_LAYERS, cfg->n_layer);
    if (cfg->n_embd < 1 || cfg->n_embd > MAX_EMBD)
        return llm_fail(LLM_EINVAL, "n_embd must be in [1, %d], got %d", MAX_EMBD, cfg->n_embd);
    if (cfg->n_head < 1 || cfg->n_embd % cfg->n_head != 0)
        return llm_fail(LLM_EINVAL, "n_embd (%d) must be divisible by n_head (%d)", cfg->n_embd, cfg->n_head);
    if (cfg->vocab_size < 1 || cfg->vocab_size > MAX_VOCAB)
        return llm_fail(LLM_EINVAL, "vocab_size must be in [1, %d], got %d", MAX_VOCAB, cfg->vocab_size);
    if (cfg->block_size < 1 || cfg->block_size > MAX_BLOCK)
        return llm_fail(LLM_EINVAL, "block_size must be in [1, %d], got %d", MAX_BLOCK, cfg->block_size);
    if (cfg->padded_vocab_size == 0)
        cfg->padded_vocab_size = (cfg->vocab_size + LLM_VOCAB_PAD - 1) / LLM_VOCAB_PAD * LLM_VOCAB_PAD;
    if (cfg->padded_vocab_size < cfg->vocab_size || cfg->padded_vocab_size > MAX_VOCAB + LLM_VOCAB_PAD)
        return llm_fail(LLM_EINVAL, "padded_vocab_size (%d) must be >= vocab_size (%d)",
                        cfg->padded_vocab_size, cfg->vocab_size);
    return LLM_OK;
}

int gpt2_tensor_shape(const llm_config *cfg, int i, int64_t shape[3]) {
    int64_t L = cfg->n_layer, C = cfg->n_embd;
    switch (i) {
    case 0: shape[0] = cfg->padded_vocab_size; shape[1] = C; return 2;   // wte
    case 1: shape[0] = cfg->block_size; shape[1] = C; return 2;          // wpe
    case 4: shape[0] = L; shape[1] = 3 * C; shape[2] = C; return 3;      // qkvw
    case 5: shape[0] = L; shape[1] = 3 * C; return 2;                    // qkvb
    case 6: shape[0] = L; shape[1] = C; shape[2] = C; return 3;          // attprojw
    case 10: shape[0] = L; shape[1] = 4 * C; shape[2] = C; return 3;     // fcw
    case 11: shape[0] = L; shape[1] = 4 * C; return 2;                   // fcb
    case 12: shape[0] = L; shape[1] = C; shape[2] = 4 * C; return 3;     // fcprojw
    case 14: case 15: shape[0] = C; return 1;                            // lnfw, lnfb
    default: shape[0] = L; shape[1] = C; return 2;                       // ln*, attprojb, fcprojb
    }
}

// ----------------------------------------------------------------------------
// backends and memory

static const llm_ops *find_backend(const char *device) {
    if (!device || strcmp(device, "cpu") == 0) return &llm_cpu_ops;
    return NULL;
}

static llm_status block_new(llm_block **out, const llm_ops *ops, size_t bytes) {
    *out = NULL;
    llm_block *b = calloc(1, sizeof *b);
    if (!b) return llm_fail(LLM_ENOMEM, "out of memory allocating a block header");
    llm_status s = ops->alloc(&b->ptr, bytes ? bytes : 1);
    if (s != LLM_OK) { free(b); return s; }
    b->refs = 1;
    b->bytes = bytes;
    b->ops = ops;
    *out = b;
    return LLM_OK;
}

void llm_block_release(llm_block *b) {
    if (b && --b->refs == 0) {
        b->ops->free(b->ptr);
        free(b);
    }
}

llm_status gpt2_alloc(llm_model **out, const llm_config *cfg_in, const char *device) {
    if (!out) return llm_fail(LLM_EINVAL, "output pointer is NULL");
    *out = NULL;
    llm_config cfg = cfg_in ? *cfg_in : (llm_config){0};
    LLM_TRY(llm_config_check(&cfg));
    const llm_ops *ops = find_backend(device);
    if (!ops) {
        if (strcmp(device, "cuda") == 0)
            return llm_fail(LLM_EUNSUPPORTED, "device 'cuda': this llmpy was built without the CUDA backend "
                                              "(rebuild with -DLLMPY_CUDA=ON on a machine with the CUDA toolkit)");
        return llm_fail(LLM_EINVAL, "unknown device '%s' (expected 'cpu' or 'cuda')", device);
    }
    llm_model *m = calloc(1, sizeof *m);
    if (!m) return llm_fail(LLM_ENOMEM, "out of memory allocating the model");
    m->cfg = cfg;
    m->ops = ops;
    strncpy(m->device, ops->name, sizeof m->device - 1);
    size_t total = 0;
    for (int i = 0; i < LLM_NUM_TENSORS; i++) {
        int64_t shape[3];
        int nd = gpt2_tensor_shape(&cfg, i, shape);
        size_t n = 1;
        for (int d = 0; d < nd; d++) n *= (size_t)shape[d];
        m->sizes[i] = n;
        m->offsets[i] = total;
        total += n;
    }
    m->total = total;
    llm_status s = ops->alloc((void **)&m->params, total * sizeof(float));
    if (s == LLM_OK) s = ops->alloc((void **)&m->grads, total * sizeof(float));
    if (s != LLM_OK) {
        llm_model_free(m);
        return llm_fail(LLM_ENOMEM, "out of memory allocating %zu parameters (%.1f MiB each for values and gradients)",
                        total, total * 4.0 / (1 << 20));
    }
    *out = m;
    return LLM_OK;
}

void llm_model_free(llm_model *m) {
    if (!m) return;
    const llm_ops *ops = m->ops;
    ops->free(m->params);
    ops->free(m->grads);
    ops->free(m->m);
    ops->free(m->v);
    ops->free(m->scratch);
    llm_block_release(m->act);
    llm_block_release(m->out);
    free(m);
}

// ----------------------------------------------------------------------------
// deterministic initialisation

// splitmix64: a counter-based generator, so element i's value does not depend on threads.
static uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// Standard normal for (seed, stream, index), Box-Muller on two 53-bit uniforms.
static double normal_at(uint64_t seed, uint64_t stream, uint64_t i) {
    uint64_t base = mix64(seed ^ mix64(stream + 0x1234567ull)) + 2 * i;
    double u1 = ((mix64(base) >> 11) + 1.0) * 0x1.0p-53; // (0, 1]
    double u2 = (mix64(base + 1) >> 11) * 0x1.0p-53;     // [0, 1)
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void init_normal(float *x, size_t n, float std, uint64_t seed, uint64_t stream) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < (int64_t)n; i++) x[i] = (float)(std * normal_at(seed, stream, (uint64_t)i));
}

static void init_const(float *x, size_t n, float value) {
    for (size_t i = 0; i < n; i++) x[i] = value;
}

llm_status llm_model_create(llm_model **out, const llm_config *cfg, const char *device, uint64_t seed) {
    llm_model *m;
    LLM_TRY(gpt2_alloc(&m, cfg, device));
    // build on the host, then copy to the backend tensor by tensor
    size_t largest = 0;
    for (int i = 0; i < LLM_NUM_TENSORS; i++) largest = m->sizes[i] > largest ? m->sizes[i] : largest;
    float *host = malloc(largest * sizeof(float));
    if (!host) { llm_model_free(m); return llm_fail(LLM_ENOMEM, "out of memory initialising parameters"); }
    const float std = 0.02f, proj_std = 0.02f / sqrtf(2.0f * m->cfg.n_layer);
    for (int i = 0; i < LLM_NUM_TENSORS; i++) {
        size_t n = m->sizes[i];
        const char *name = gpt2_tensor_names[i];
        if (i == 0) { // wte: real rows random, padding rows zero
            size_t real = (size_t)m->cfg.vocab_size * m->cfg.n_embd;
            init_normal(host, real, std, seed, i);
            init_const(host + real, n - real, 0.0f);
        } else if (is_matrix(i)) {
            init_normal(host, n, (i == 6 || i == 12) ? proj_std : std, seed, i);
        } else if (strcmp(name + strlen(name) - 1, "w") == 0) { // ln1w, ln2w, lnfw
            init_const(host, n, 1.0f);
        } else {
            init_const(host, n, 0.0f);
        }
        llm_status s = m->ops->to_device(m->params + m->offsets[i], host, n * sizeof(float));
        if (s != LLM_OK) { free(host); llm_model_free(m); return s; }
    }
    free(host);
    *out = m;
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// accessors

llm_config llm_model_config(const llm_model *m) { return m->cfg; }
const char *llm_model_device(const llm_model *m) { return m->device; }
int64_t llm_model_steps(const llm_model *m) { return m->t; }

int64_t llm_model_num_parameters(const llm_model *m) {
    return (int64_t)(m->total - (size_t)(m->cfg.padded_vocab_size - m->cfg.vocab_size) * m->cfg.n_embd);
}

const char *llm_tensor_name(int i) { return i >= 0 && i < LLM_NUM_TENSORS ? gpt2_tensor_names[i] : NULL; }

llm_status llm_model_tensor(llm_model *m, int i, llm_tensor *t) {
    if (!m || !t) return llm_fail(LLM_EINVAL, "model or output is NULL");
    if (i < 0 || i >= LLM_NUM_TENSORS) return llm_fail(LLM_EINVAL, "tensor index %d out of range [0, %d)", i, LLM_NUM_TENSORS);
    t->name = gpt2_tensor_names[i];
    t->data = m->params + m->offsets[i];
    t->grad = m->grads + m->offsets[i];
    t->ndim = gpt2_tensor_shape(&m->cfg, i, t->shape);
    if (i == 0) t->shape[0] = m->cfg.vocab_size; // hide the padding rows
    t->row_stride = 1;
    for (int d = 1; d < t->ndim; d++) t->row_stride *= t->shape[d];
    return LLM_OK;
}

llm_status llm_model_logits(llm_model *m, float **data, int *B, int *T, int *V, int *Vp, llm_block **block) {
    if (!m->B) return llm_fail(LLM_ESTATE, "no logits yet: call forward() first");
    *data = (float *)m->out->ptr;
    *B = m->B; *T = m->T; *V = m->cfg.vocab_size; *Vp = m->cfg.padded_vocab_size;
    m->out->refs++;
    *block = m->out;
    return LLM_OK;
}

llm_status llm_model_losses(llm_model *m, float **data, int *B, int *T, llm_block **block) {
    if (!m->B || !m->has_targets) return llm_fail(LLM_ESTATE, "no losses yet: call forward() with targets first");
    *data = (float *)m->out->ptr + (size_t)m->B * m->T * m->cfg.padded_vocab_size;
    *B = m->B; *T = m->T;
    m->out->refs++;
    *block = m->out;
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// activations: pointers into m->act for the current (B, T)

typedef struct acts {
    int32_t *inputs, *targets; // (B,T)
    float *encoded;            // (B,T,C)
    float *ln1, *ln1_mean, *ln1_rstd; // (L,B,T,C), (L,B,T), (L,B,T)
    float *qkv;                // (L,B,T,3C)
    float *atty;               // (L,B,T,C)
    float *att;                // (L,B,NH,T,T)
    float *res2;               // (L,B,T,C) residual after attention
    float *ln2, *ln2_mean, *ln2_rstd;
    float *fch, *fch_gelu;     // (L,B,T,4C)
    float *res3;               // (L,B,T,C) residual after the MLP
    float *lnf, *lnf_mean, *lnf_rstd; // (B,T,C), (B,T), (B,T)
} acts;

// Lays out the activations at base (or only counts when base is NULL); returns the float count.
static size_t acts_layout(acts *a, float *base, const llm_config *cfg, int B, int T) {
    size_t L = cfg->n_layer, C = cfg->n_embd, NH = cfg->n_head, BT = (size_t)B * T;
    size_t used = 0;
#define TAKE(field, type, count) (a->field = (type *)(base ? base + used : NULL), used += (count))
    TAKE(inputs, int32_t, BT);
    TAKE(targets, int32_t, BT);
    TAKE(encoded, float, BT * C);
    TAKE(ln1, float, L * BT * C);
    TAKE(ln1_mean, float, L * BT);
    TAKE(ln1_rstd, float, L * BT);
    TAKE(qkv, float, L * BT * 3 * C);
    TAKE(atty, float, L * BT * C);
    TAKE(att, float, L * B * NH * T * T);
    TAKE(res2, float, L * BT * C);
    TAKE(ln2, float, L * BT * C);
    TAKE(ln2_mean, float, L * BT);
    TAKE(ln2_rstd, float, L * BT);
    TAKE(fch, float, L * BT * 4 * C);
    TAKE(fch_gelu, float, L * BT * 4 * C);
    TAKE(res3, float, L * BT * C);
    TAKE(lnf, float, BT * C);
    TAKE(lnf_mean, float, BT);
    TAKE(lnf_rstd, float, BT);
#undef TAKE
    return used;
}

// Grows m->act and m->out for (B, T). A block still referenced by Python stays alive.
static llm_status ensure_activations(llm_model *m, int B, int T) {
    acts a;
    size_t need = acts_layout(&a, NULL, &m->cfg, B, T) * sizeof(float);
    if (!m->act || m->act->bytes < need) {
        llm_block_release(m->act);
        m->act = NULL;
        LLM_TRY(block_new(&m->act, m->ops, need));
    }
    size_t need_out = (size_t)B * T * ((size_t)m->cfg.padded_vocab_size + 1) * sizeof(float);
    if (!m->out || m->out->bytes < need_out) {
        llm_block_release(m->out);
        m->out = NULL;
        LLM_TRY(block_new(&m->out, m->ops, need_out));
    }
    return LLM_OK;
}

static float *param(const llm_model *m, int i) { return m->params + m->offsets[i]; }
static float *grad(const llm_model *m, int i) { return m->grads + m->offsets[i]; }

// ----------------------------------------------------------------------------
// forward

static llm_status check_tokens(const int32_t *x, size_t n, int V, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (x[i] < 0 || x[i] >= V)
            return llm_fail(LLM_EINVAL, "%s[%zu] = %d is out of range [0, %d)", what, i, x[i], V);
    return LLM_OK;
}

llm_status llm_forward(llm_model *m, const int32_t *idx, const int32_t *targets, int B, int T, float *loss) {
    if (!m || !idx) return llm_fail(LLM_EINVAL, "model or idx is NULL");
    const llm_config *cfg = &m->cfg;
    if (B < 1 || T < 1) return llm_fail(LLM_EINVAL, "empty batch: B=%d, T=%d (both must be >= 1)", B, T);
    if (T > cfg->block_size)
        return llm_fail(LLM_EINVAL, "sequence length T=%d exceeds block_size=%d", T, cfg->block_size);
    const size_t BT = (size_t)B * T;
    LLM_TRY(check_tokens(idx, BT, cfg->vocab_size, "idx"));
    if (targets) LLM_TRY(check_tokens(targets, BT, cfg->vocab_size, "targets"));

    // a failure below leaves no forward state behind
    m->B = m->T = 0;
    m->has_targets = 0;
    LLM_TRY(ensure_activations(m, B, T));
    const llm_ops *ops = m->ops;
    const int L = cfg->n_layer, C = cfg->n_embd, NH = cfg->n_head, V = cfg->vocab_size, Vp = cfg->padded_vocab_size;
    const size_t BTC = BT * C;
    acts a;
    acts_layout(&a, m->act->ptr, cfg, B, T);
    float *logits = (float *)m->out->ptr, *losses = logits + BT * Vp;

    LLM_TRY(ops->to_device(a.inputs, idx, BT * sizeof(int32_t)));
    if (targets) LLM_TRY(ops->to_device(a.targets, targets, BT * sizeof(int32_t)));

    LLM_TRY(ops->encoder_forward(a.encoded, a.inputs, param(m, 0), param(m, 1), B, T, C));
    const float *residual = a.encoded;
    for (int l = 0; l < L; l++) {
        float *ln1 = a.ln1 + l * BTC, *ln1_mean = a.ln1_mean + l * BT, *ln1_rstd = a.ln1_rstd + l * BT;
        float *qkv = a.qkv + l * BTC * 3, *atty = a.atty + l * BTC;
        float *att = a.att + (size_t)l * B * NH * T * T, *res2 = a.res2 + l * BTC;
        float *ln2 = a.ln2 + l * BTC, *ln2_mean = a.ln2_mean + l * BT, *ln2_rstd = a.ln2_rstd + l * BT;
        float *fch = a.fch + l * BTC * 4, *fch_gelu = a.fch_gelu + l * BTC * 4, *res3 = a.res3 + l * BTC;
        size_t c = (size_t)l * C;

        LLM_TRY(ops->layernorm_forward(ln1, ln1_mean, ln1_rstd, residual, param(m, 2) + c, param(m, 3) + c, B, T, C));
        LLM_TRY(ops->matmul_forward(qkv, ln1, param(m, 4) + c * 3 * C, param(m, 5) + 3 * c, B, T, C, 3 * C));
        LLM_TRY(ops->attention_forward(atty, att, qkv, B, T, C, NH));
        // the projection lands in res2, then the residual is added in place
        LLM_TRY(ops->matmul_forward(res2, atty, param(m, 6) + c * C, param(m, 7) + c, B, T, C, C));
        LLM_TRY(ops->residual_forward(res2, res2, residual, BTC));
        LLM_TRY(ops->layernorm_forward(ln2, ln2_mean, ln2_rstd, res2, param(m, 8) + c, param(m, 9) + c, B, T, C));
        LLM_TRY(ops->matmul_forward(fch, ln2, param(m, 10) + c * 4 * C, param(m, 11) + 4 * c, B, T, C, 4 * C));
        LLM_TRY(ops->gelu_forward(fch_gelu, fch, BTC * 4));
        LLM_TRY(ops->matmul_forward(res3, fch_gelu, param(m, 12) + c * 4 * C, param(m, 13) + c, B, T, 4 * C, C));
        LLM_TRY(ops->residual_forward(res3, res3, res2, BTC));
        residual = res3;
    }
    LLM_TRY(ops->layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, residual, param(m, 14), param(m, 15), B, T, C));
    LLM_TRY(ops->matmul_forward(logits, a.lnf, param(m, 0), NULL, B, T, C, Vp));

    m->B = B;
    m->T = T;
    if (targets) {
        LLM_TRY(ops->crossentropy_forward(losses, logits, a.targets, B, T, V, Vp));
        // mean on the host in double: BT floats, negligible next to the forward (copied a
        // bounded chunk at a time, so the step allocates nothing)
        float host[1024];
        double sum = 0.0;
        for (size_t i0 = 0; i0 < BT; i0 += 1024) {
            size_t n = BT - i0 < 1024 ? BT - i0 : 1024;
            LLM_TRY(ops->to_host(host, losses + i0, n * sizeof(float)));
            for (size_t i = 0; i < n; i++) sum += host[i];
        }
        m->loss = (float)(sum / (double)BT);
        m->has_targets = 1;
        if (loss) *loss = m->loss;
    }
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// backward

llm_status llm_zero_grad(llm_model *m) {
    if (!m) return llm_fail(LLM_EINVAL, "model is NULL");
    LLM_TRY(m->ops->zero(m->grads, m->total * sizeof(float)));
    m->has_grad = 0;
    return LLM_OK;
}

llm_status llm_backward(llm_model *m, float loss_scale) {
    if (!m) return llm_fail(LLM_EINVAL, "model is NULL");
    if (!m->B) return llm_fail(LLM_ESTATE, "backward() needs a forward() first");
    if (!m->has_targets) return llm_fail(LLM_ESTATE, "backward() needs a forward() with targets");
    if (!isfinite(loss_scale)) return llm_fail(LLM_EINVAL, "loss_scale must be finite, got %g", loss_scale);
    const llm_config *cfg = &m->cfg;
    const llm_ops *ops = m->ops;
    const int B = m->B, T = m->T, L = cfg->n_layer, C = cfg->n_embd, NH = cfg->n_head;
    const int V = cfg->vocab_size, Vp = cfg->padded_vocab_size;
    const size_t BT = (size_t)B * T, BTC = BT * C;

    // The lm_head and cross-entropy backward run a slice of vc vocabulary columns at a time, so
    // dlogits exist for one slice only (about LM_HEAD_SLICE_FLOATS floats), never as (BT,Vp).
    size_t vc = LM_HEAD_SLICE_FLOATS / BT / 128 * 128;
    vc = vc < 128 ? 128 : (vc > (size_t)V ? (size_t)V : vc);
    // scratch: dlogits slice (BT,vc), dres/dln/datty (BT,C) each, dqkv (BT,3C), dfch/dfch_gelu (BT,4C) each
    size_t need = (BT * vc + BTC * (3 + 3 + 8)) * sizeof(float);
    if (m->scratch_bytes < need) {
        ops->free(m->scratch);
        m->scratch = NULL;
        m->scratch_bytes = 0;
        LLM_TRY(ops->alloc((void **)&m->scratch, need));
        m->scratch_bytes = need;
    }
    float *dlogits = m->scratch, *dres = dlogits + BT * vc, *dln = dres + BTC, *datty = dln + BTC;
    float *dqkv = datty + BTC, *dfch = dqkv + 3 * BTC, *dfch_gelu = dfch + 4 * BTC;
    acts a;
    acts_layout(&a, m->act->ptr, cfg, B, T);
    const float *logits = (const float *)m->out->ptr, *losses = logits + BT * Vp;

    // the objective is loss_scale * mean over positions; the padding columns (>= V) have zero
    // gradient and are skipped
    LLM_TRY(ops->zero(dln, BTC * sizeof(float)));
    for (size_t v0 = 0; v0 < (size_t)V; v0 += vc) {
        const int n = (int)((size_t)V - v0 < vc ? (size_t)V - v0 : vc);
        LLM_TRY(ops->crossentropy_backward_cols(dlogits, logits, losses, a.targets, loss_scale / (float)BT, B, T, V,
                                                Vp, (int)v0, n));
        LLM_TRY(ops->matmul_backward(dln, grad(m, 0) + v0 * C, NULL, dlogits, a.lnf, param(m, 0) + v0 * C, B, T, C,
                                     n));
    }
    LLM_TRY(ops->zero(dres, BTC * sizeof(float)));
    const float *last = a.res3 + (size_t)(L - 1) * BTC;
    LLM_TRY(ops->layernorm_backward(dres, grad(m, 14), grad(m, 15), dln, last, param(m, 14), a.lnf_mean, a.lnf_rstd, B, T, C));

    // dres carries the gradient of the residual stream from the top down; each residual
    // addition passes it through unchanged, and each LayerNorm adds its input gradient to it.
    for (int l = L - 1; l >= 0; l--) {
        const float *residual = l == 0 ? a.encoded : a.res3 + (size_t)(l - 1) * BTC;
        const float *ln1 = a.ln1 + l * BTC, *ln1_mean = a.ln1_mean + l * BT, *ln1_rstd = a.ln1_rstd + l * BT;
        const float *qkv = a.qkv + l * BTC * 3, *atty = a.atty + l * BTC;
        const float *att = a.att + (size_t)l * B * NH * T * T, *res2 = a.res2 + l * BTC;
        const float *ln2 = a.ln2 + l * BTC, *ln2_mean = a.ln2_mean + l * BT, *ln2_rstd = a.ln2_rstd + l * BT;
        const float *fch = a.fch + l * BTC * 4, *fch_gelu = a.fch_gelu + l * BTC * 4;
        size_t c = (size_t)l * C;

        // MLP: res3 = res2 + fcproj(gelu(fc(ln2(res2))))
        LLM_TRY(ops->zero(dfch_gelu, 4 * BTC * sizeof(float)));
        LLM_TRY(ops->matmul_backward(dfch_gelu, grad(m, 12) + c * 4 * C, grad(m, 13) + c, dres, fch_gelu,
                                     param(m, 12) + c * 4 * C, B, T, 4 * C, C));
        LLM_TRY(ops->zero(dfch, 4 * BTC * sizeof(float)));
        LLM_TRY(ops->gelu_backward(dfch, fch, dfch_gelu, 4 * BTC));
        LLM_TRY(ops->zero(dln, BTC * sizeof(float)));
        LLM_TRY(ops->matmul_backward(dln, grad(m, 10) + c * 4 * C, grad(m, 11) + 4 * c, dfch, ln2,
                                     param(m, 10) + c * 4 * C, B, T, C, 4 * C));
        LLM_TRY(ops->layernorm_backward(dres, grad(m, 8) + c, grad(m, 9) + c, dln, res2, param(m, 8) + c,
                                        ln2_mean, ln2_rstd, B, T, C));
        // attention: res2 = residual + attproj(attn(qkv(ln1(residual))))
        LLM_TRY(ops->zero(datty, BTC * sizeof(float)));
        LLM_TRY(ops->matmul_backward(datty, grad(m, 6) + c * C, grad(m, 7) + c, dres, atty, param(m, 6) + c * C,
                                     B, T, C, C));
        LLM_TRY(ops->zero(dqkv, 3 * BTC * sizeof(float)));
        LLM_TRY(ops->attention_backward(dqkv, datty, qkv, att, B, T, C, NH));
        LLM_TRY(ops->zero(dln, BTC * sizeof(float)));
        LLM_TRY(ops->matmul_backward(dln, grad(m, 4) + c * 3 * C, grad(m, 5) + 3 * c, dqkv, ln1,
                                     param(m, 4) + c * 3 * C, B, T, C, 3 * C));
        LLM_TRY(ops->layernorm_backward(dres, grad(m, 2) + c, grad(m, 3) + c, dln, residual, param(m, 2) + c,
                                        ln1_mean, ln1_rstd, B, T, C));
    }
    LLM_TRY(ops->encoder_backward(grad(m, 0), grad(m, 1), dres, a.inputs, B, T, C));
    m->has_grad = 1;
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// AdamW

llm_status llm_step(llm_model *m, float lr, float beta1, float beta2, float eps, float weight_decay,
                    float grad_clip, float *norm) {
    if (!m) return llm_fail(LLM_EINVAL, "model is NULL");
    if (!m->has_grad) return llm_fail(LLM_ESTATE, "step() needs gradients: call backward() first");
    if (!(lr >= 0.0f) || !isfinite(lr)) return llm_fail(LLM_EINVAL, "lr must be finite and >= 0, got %g", lr);
    if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f))
        return llm_fail(LLM_EINVAL, "betas must be in [0, 1), got (%g, %g)", beta1, beta2);
    if (!(eps >= 0.0f) || !(weight_decay >= 0.0f))
        return llm_fail(LLM_EINVAL, "eps and weight_decay must be >= 0, got %g and %g", eps, weight_decay);
    const llm_ops *ops = m->ops;
    if (!m->m) {
        LLM_TRY(ops->alloc((void **)&m->m, m->total * sizeof(float)));
        LLM_TRY(ops->alloc((void **)&m->v, m->total * sizeof(float)));
    }
    double sq;
    LLM_TRY(ops->norm_squared(&sq, m->grads, m->total));
    float gnorm = (float)sqrt(sq);
    // PyTorch's clip_grad_norm_: scale = min(1, max_norm / (norm + 1e-6))
    float scale = 1.0f;
    if (grad_clip > 0.0f) {
        float c = grad_clip / (gnorm + 1e-6f);
        scale = c < 1.0f ? c : 1.0f;
    }
    m->t++;
    for (int i = 0; i < LLM_NUM_TENSORS; i++) {
        size_t o = m->offsets[i];
        LLM_TRY(ops->adamw_update(m->params + o, m->grads + o, m->m + o, m->v + o, m->sizes[i], lr, beta1, beta2,
                                  eps, is_matrix(i) ? weight_decay : 0.0f, scale, m->t));
    }
    if (norm) *norm = gnorm;
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// runtime

void llm_set_num_threads(int n) {
#ifdef _OPENMP
    if (n >= 1) omp_set_num_threads(n);
#else
    (void)n;
#endif
}

int llm_get_num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int llm_build_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

const char *llm_build_compiler(void) {
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown";
#endif
}

int llm_build_has_cuda(void) {
#ifdef LLMPY_HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

int llm_build_has_mpi(void) {
#ifdef LLMPY_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}
