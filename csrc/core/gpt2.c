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

#include "core/common.h"
#include "core/formats.h"
#include "core/gpt2.h"

// ----------------------------------------------------------------------------
// configuration and parameter layout

// Elements of dlogits the backward holds at once when a backend runs the lm_head backward by
// vocabulary slices (ops->lm_head_in_place == 0): 8 MiB in fp32. Larger slices mean fewer,
// larger GEMMs (the d6 CPU step ~1.4% faster than with 2^20; 124M unchanged; dev/cpu/step.c).
#define LM_HEAD_SLICE_ELEMS ((size_t)1 << 21)

// Limits that keep every size product far from overflow.
#define MAX_LAYERS 4096
#define MAX_EMBD (1 << 16)
#define MAX_VOCAB (1 << 24)
#define MAX_BLOCK (1 << 20)

static const struct {
    const char *name;
    int n_layer, n_head, n_embd;
} PRESETS[] = {{"d12", 12, 12, 768}, {"d24", 24, 16, 1024}, {"d36", 36, 20, 1280}, {"d48", 48, 25, 1600}};
enum { NPRESETS = sizeof PRESETS / sizeof PRESETS[0] };

const char *llm_config_preset_name(int i) { return i >= 0 && i < NPRESETS ? PRESETS[i].name : NULL; }

llm_status llm_config_preset(const char *name, llm_config *out) {
    for (int i = 0; i < NPRESETS; i++)
        if (name && out && !strcmp(name, PRESETS[i].name)) {
            *out = (llm_config){PRESETS[i].n_layer, PRESETS[i].n_head, PRESETS[i].n_embd, 50257, 1024, 0};
            return LLM_OK;
        }
    return llm_fail(LLM_EINVAL, "--model must be d12, d24, d36 or d48 (GPT-2's shapes), got '%s'",
                    name ? name : "(null)");
}

llm_status llm_config_check(llm_config *cfg) {
    if (!cfg) return llm_fail(LLM_EINVAL, "config is NULL");
    if (cfg->n_layer < 1 || cfg->n_layer > MAX_LAYERS)
        return llm_fail(LLM_EINVAL, "n_layer must be in [1, %d], got %d", MAX_LAYERS, cfg->n_layer);
    if (cfg->n_embd < 1 || cfg->n_embd > MAX_EMBD)
        return llm_fail(LLM_EINVAL, "n_embd must be in [1, %d], got %d", MAX_EMBD, cfg->n_embd);
    if (cfg->n_head < 1) return llm_fail(LLM_EINVAL, "n_head must be >= 1, got %d", cfg->n_head);
    if (cfg->n_embd % cfg->n_head != 0)
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

// ----------------------------------------------------------------------------
// backends and memory

// Backends by (device, precision). The CPU's fp32 table is always there; others register at
// load time (ops.h: llm_register_backend).
#define MAX_BACKENDS 8
typedef struct backend_entry {
    char device[16];
    char precision[8];
    const llm_ops *ops;
} backend_entry;
static backend_entry backends[MAX_BACKENDS] = {{"cpu", "fp32", &llm_cpu_ops}};
static int num_backends = 1;

llm_status llm_register_backend(const char *device, const char *precision, const llm_ops *ops) {
    if (!device || !precision || !ops) return llm_fail(LLM_EINVAL, "register_backend: NULL argument");
    if (strlen(device) >= sizeof backends[0].device || strlen(precision) >= sizeof backends[0].precision)
        return llm_fail(LLM_EINVAL, "register_backend: name too long ('%s', '%s')", device, precision);
    if (strcmp(precision, "fp32") != 0 && strcmp(precision, "bf16") != 0)
        return llm_fail(LLM_EINVAL, "register_backend: precision must be 'fp32' or 'bf16', got '%s'", precision);
    if (ops->dtype != (strcmp(precision, "bf16") == 0 ? LLM_BF16 : LLM_F32))
        return llm_fail(LLM_EINVAL, "register_backend: table dtype does not match precision '%s'", precision);
    int i = 0;
    while (i < num_backends && !(strcmp(backends[i].device, device) == 0 && strcmp(backends[i].precision, precision) == 0))
        i++;
    if (i == MAX_BACKENDS) return llm_fail(LLM_EINVAL, "register_backend: more than %d backends", MAX_BACKENDS);
    strcpy(backends[i].device, device);
    strcpy(backends[i].precision, precision);
    backends[i].ops = ops;
    if (i == num_backends) num_backends++;
    return LLM_OK;
}

static const backend_entry *find_backend(const char *device, const char *precision) {
    for (int i = 0; i < num_backends; i++)
        if (strcmp(backends[i].device, device) == 0 && strcmp(backends[i].precision, precision) == 0)
            return &backends[i];
    return NULL;
}

static int device_known(const char *device) {
    for (int i = 0; i < num_backends; i++)
        if (strcmp(backends[i].device, device) == 0) return 1;
    return 0;
}

// The entry for (device, precision); precision NULL: bf16 where the device has it, else fp32.
// bf16 is the fast path on CUDA; its fp32 table is for parity, not speed (CUBLAS_COMPUTE_32F
// without TF32: no tensor cores; attention on CUDA cores; cuda/ops_cuda.h).
static llm_status pick_backend(const backend_entry **out, const char *device, const char *precision) {
    if (!device) device = "cpu";
    if (!device_known(device)) {
        if (strcmp(device, "cuda") == 0)
            return llm_fail(LLM_EUNSUPPORTED,
                            "device 'cuda' is not available: llmpy was built without the CUDA backend, or the "
                            "CUDA backend found no GPU (llmpy.cuda_available() tells; rebuild with "
                            "-DLLMPY_CUDA=ON on a machine with the CUDA toolkit)");
        return llm_fail(LLM_EINVAL, "unknown device '%s' (expected 'cpu' or 'cuda')", device);
    }
    if (!precision) precision = find_backend(device, "bf16") ? "bf16" : "fp32";
    if (strcmp(precision, "fp32") != 0 && strcmp(precision, "bf16") != 0)
        return llm_fail(LLM_EINVAL, "unknown precision '%s' (expected 'fp32' or 'bf16')", precision);
    *out = find_backend(device, precision);
    if (!*out)
        return llm_fail(LLM_EUNSUPPORTED, "precision '%s' is not available on device '%s'%s", precision, device,
                        strcmp(device, "cpu") == 0 ? " (the CPU backend computes in fp32)" : "");
    return LLM_OK;
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

llm_status gpt2_alloc(llm_model **out, const llm_config *cfg_in, const char *device, const char *precision) {
    if (!out) return llm_fail(LLM_EINVAL, "output pointer is NULL");
    *out = NULL;
    llm_config cfg = cfg_in ? *cfg_in : (llm_config){0};
    LLM_TRY(llm_config_check(&cfg));
    const backend_entry *be;
    LLM_TRY(pick_backend(&be, device, precision));
    const llm_ops *ops = be->ops;
    llm_model *m = calloc(1, sizeof *m);
    if (!m) return llm_fail(LLM_ENOMEM, "out of memory allocating the model");
    m->cfg = cfg;
    m->ops = ops;
    m->xsize = llm_dtype_size(ops->dtype);
    m->weights_sq = -1.0; // no backward has summed anything
    strcpy(m->device, be->device);
    strcpy(m->precision, be->precision);
    size_t total = 0;
    for (int i = 0; i < LLM_NUM_TENSORS; i++) {
        int64_t shape[3];
        int nd = llm_tensor_shape(&cfg, i, shape);
        size_t n = 1;
        for (int d = 0; d < nd; d++) n *= (size_t)shape[d];
        m->sizes[i] = n;
        m->offsets[i] = total;
        total += n;
    }
    m->total = total;
    llm_status s = ops->alloc(&m->params, total * m->xsize);
    if (s == LLM_OK) s = ops->alloc(&m->grads, total * m->xsize);
    if (s == LLM_OK && ops->dtype != LLM_F32) s = ops->alloc((void **)&m->master, total * sizeof(float));
    if (s != LLM_OK) {
        llm_model_free(m);
        return llm_fail(LLM_ENOMEM, "out of memory allocating %zu parameters (%.1f MiB each for values and gradients)",
                        total, total * (double)m->xsize / (1 << 20));
    }
    *out = m;
    return LLM_OK;
}

llm_status gpt2_set_params(llm_model *m, size_t offset, const float *src, size_t n) {
    if (offset > m->total || n > m->total - offset)
        return llm_fail(LLM_EINVAL, "parameter range [%zu, %zu) outside [0, %zu)", offset, offset + n, m->total);
    if (m->master) LLM_TRY(m->ops->to_device(m->master + offset, src, n * sizeof(float)));
    return m->ops->upload_f32((char *)m->params + offset * m->xsize, src, n);
}

llm_status gpt2_get_params(const llm_model *m, size_t offset, float *dst, size_t n) {
    if (offset > m->total || n > m->total - offset)
        return llm_fail(LLM_EINVAL, "parameter range [%zu, %zu) outside [0, %zu)", offset, offset + n, m->total);
    if (m->master) return m->ops->to_host(dst, m->master + offset, n * sizeof(float));
    return m->ops->download_f32(dst, (const char *)m->params + offset * m->xsize, n);
}

void llm_model_free(llm_model *m) {
    if (!m) return;
    if (m->dist_free) m->dist_free(m->dist_plan);
    const llm_ops *ops = m->ops;
    ops->free(m->params);
    ops->free(m->grads);
    ops->free(m->master);
    ops->free(m->m);
    ops->free(m->v);
    ops->free(m->scratch);
    ops->free(m->att_scratch);
    free(m->inputs_host);
    llm_block_release(m->act);
    llm_block_release(m->out);
    free(m);
}

// ----------------------------------------------------------------------------
// deterministic initialisation

// splitmix64: a counter-based generator, so element i's value does not depend on threads.
uint64_t gpt2_mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// Standard normal for (seed, stream, index), Box-Muller on two 53-bit uniforms.
static double normal_at(uint64_t seed, uint64_t stream, uint64_t i) {
    uint64_t base = gpt2_mix64(seed ^ gpt2_mix64(stream + 0x1234567ull)) + 2 * i;
    double u1 = ((gpt2_mix64(base) >> 11) + 1.0) * 0x1.0p-53; // (0, 1]
    double u2 = (gpt2_mix64(base + 1) >> 11) * 0x1.0p-53;     // [0, 1)
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void init_normal(float *x, size_t n, float std, uint64_t seed, uint64_t stream) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < (int64_t)n; i++) x[i] = (float)(std * normal_at(seed, stream, (uint64_t)i));
}

static void init_const(float *x, size_t n, float value) {
    for (size_t i = 0; i < n; i++) x[i] = value;
}

// Elements of tensor i that llm_model_tensor shows: rows of the padded vocabulary (wte's) are
// hidden beyond vocab_size.
static size_t visible_size(const llm_model *m, int i) {
    if (llm_tensor_spec_of(i)->dims[0] != LLM_DIM_VP) return m->sizes[i];
    return m->sizes[i] / (size_t)m->cfg.padded_vocab_size * (size_t)m->cfg.vocab_size;
}

llm_status llm_model_create(llm_model **out, const llm_config *cfg, const char *device, const char *precision,
                            uint64_t seed) {
    if (!out) return llm_fail(LLM_EINVAL, "output pointer is NULL");
    *out = NULL;
    llm_model *m;
    LLM_TRY(gpt2_alloc(&m, cfg, device, precision));
    // build on the host, then copy to the backend tensor by tensor
    size_t largest = 0;
    for (int i = 0; i < LLM_NUM_TENSORS; i++) largest = m->sizes[i] > largest ? m->sizes[i] : largest;
    float *host = malloc(largest * sizeof(float));
    if (!host) { llm_model_free(m); return llm_fail(LLM_ENOMEM, "out of memory initialising parameters"); }
    const float std = 0.02f, proj_std = 0.02f / sqrtf(2.0f * m->cfg.n_layer);
    for (int i = 0; i < LLM_NUM_TENSORS; i++) {
        size_t n = m->sizes[i], real = visible_size(m, i); // wte: the padding rows stay zero
        switch (llm_tensor_spec_of(i)->init) {
        case LLM_INIT_NORMAL: init_normal(host, real, std, seed, i); break;
        case LLM_INIT_NORMAL_RESIDUAL: init_normal(host, real, proj_std, seed, i); break;
        case LLM_INIT_ONE: init_const(host, real, 1.0f); break;
        case LLM_INIT_ZERO: init_const(host, real, 0.0f); break;
        }
        init_const(host + real, n - real, 0.0f);
        llm_status s = gpt2_set_params(m, m->offsets[i], host, n);
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
const char *llm_model_precision(const llm_model *m) { return m->precision; }
int llm_model_host_fp32(const llm_model *m) { return m->ops->host_memory && m->ops->dtype == LLM_F32; }
int64_t llm_model_steps(const llm_model *m) { return m->t; }

int64_t llm_model_num_parameters(const llm_model *m) {
    return (int64_t)(m->total - (size_t)(m->cfg.padded_vocab_size - m->cfg.vocab_size) * m->cfg.n_embd);
}

// The gradients' memory made to show what they are: cleared if zero_grad() left them zero
// without clearing them (llm_zero_grad).
static llm_status gpt2_grads_readable(llm_model *m) {
    if (!m->grads_zero) return LLM_OK;
    LLM_TRY(m->ops->zero(m->grads, m->total * m->xsize));
    m->grads_zero = 0;
    return LLM_OK;
}

llm_status llm_model_tensor_info(llm_model *m, int i, llm_tensor *t) {
    if (!m || !t) return llm_fail(LLM_EINVAL, "model or output is NULL");
    if (i < 0 || i >= LLM_NUM_TENSORS) return llm_fail(LLM_EINVAL, "tensor index %d out of range [0, %d)", i, LLM_NUM_TENSORS);
    t->name = llm_tensor_name(i);
    t->data = (char *)m->params + m->offsets[i] * m->xsize;
    t->grad = NULL;
    t->dtype = m->ops->dtype;
    t->host = m->ops->host_memory;
    t->ndim = llm_tensor_shape(&m->cfg, i, t->shape);
    if (llm_tensor_spec_of(i)->dims[0] == LLM_DIM_VP) t->shape[0] = m->cfg.vocab_size; // hide the padding rows
    t->row_stride = 1;
    for (int d = 1; d < t->ndim; d++) t->row_stride *= t->shape[d];
    return LLM_OK;
}

llm_status llm_model_tensor(llm_model *m, int i, llm_tensor *t) {
    LLM_TRY(llm_model_tensor_info(m, i, t));
    LLM_TRY(gpt2_grads_readable(m)); // t->grad is a pointer callers read
    if (m->ops->host_memory) { // ... and may write: the norm is then always a pass over the gradients
        m->grads_shown = 1;
        m->weights_sq = -1.0;
    }
    t->grad = (char *)m->grads + m->offsets[i] * m->xsize;
    return LLM_OK;
}

llm_status llm_model_read_tensor(llm_model *m, int i, int grad, float *dst) {
    if (!m || !dst) return llm_fail(LLM_EINVAL, "model or destination is NULL");
    if (i < 0 || i >= LLM_NUM_TENSORS) return llm_fail(LLM_EINVAL, "tensor index %d out of range [0, %d)", i, LLM_NUM_TENSORS);
    size_t o = m->offsets[i], n = visible_size(m, i);
    if (!grad) return gpt2_get_params(m, o, dst, n);
    LLM_TRY(gpt2_grads_readable(m));
    return m->ops->download_f32(dst, (const char *)m->grads + o * m->xsize, n);
}

llm_status llm_model_write_tensor(llm_model *m, int i, const float *src) {
    if (!m || !src) return llm_fail(LLM_EINVAL, "model or source is NULL");
    if (i < 0 || i >= LLM_NUM_TENSORS) return llm_fail(LLM_EINVAL, "tensor index %d out of range [0, %d)", i, LLM_NUM_TENSORS);
    return gpt2_set_params(m, m->offsets[i], src, visible_size(m, i));
}

void llm_model_last_shape(const llm_model *m, int *B, int *T, int *has_targets) {
    *B = m->B;
    *T = m->T;
    *has_targets = m->has_targets;
}

static llm_status host_views_only(const llm_model *m) {
    if (!m->ops->host_memory || m->ops->dtype != LLM_F32)
        return llm_fail(LLM_EUNSUPPORTED, "activations of a %s/%s model live on the device: copy them "
                                          "(llm_model_copy_logits/losses)", m->device, m->precision);
    return LLM_OK;
}

// LLM_ESTATE when the last backward wrote the logits' gradient over them (ops->lm_head_in_place);
// `what` is what the caller wanted.
static llm_status logits_readable(const llm_model *m, const char *what) {
    if (!m->logits_overwritten) return LLM_OK;
    return llm_fail(LLM_ESTATE, "%s: on this backend (%s/%s) the last backward() overwrote the logits with their "
                    "gradient; run forward() again", what, m->device, m->precision);
}

llm_status llm_model_logits(llm_model *m, float **data, int *B, int *T, int *V, int *Vp, llm_block **block) {
    if (!m->B) return llm_fail(LLM_ESTATE, "no logits yet: call forward() first");
    LLM_TRY(logits_readable(m, "no logits"));
    LLM_TRY(host_views_only(m));
    *data = (float *)m->out->ptr;
    *B = m->B; *T = m->T; *V = m->cfg.vocab_size; *Vp = m->cfg.padded_vocab_size;
    m->out->refs++;
    *block = m->out;
    return LLM_OK;
}

llm_status llm_model_losses(llm_model *m, float **data, int *B, int *T, llm_block **block) {
    if (!m->B || !m->has_targets) return llm_fail(LLM_ESTATE, "no losses yet: call forward() with targets first");
    LLM_TRY(host_views_only(m));
    *data = (float *)m->out->ptr + (size_t)m->B * m->T * m->cfg.padded_vocab_size;
    *B = m->B; *T = m->T;
    m->out->refs++;
    *block = m->out;
    return LLM_OK;
}

llm_status llm_model_copy_logits(llm_model *m, float *dst) {
    if (!m) return llm_fail(LLM_EINVAL, "model is NULL");
    if (!m->B) return llm_fail(LLM_ESTATE, "no logits yet: call forward() first");
    LLM_TRY(logits_readable(m, "no logits"));
    if (!dst) return llm_fail(LLM_EINVAL, "destination is NULL");
    const size_t V = m->cfg.vocab_size, Vp = m->cfg.padded_vocab_size, rows = (size_t)m->B * m->T;
    const char *logits = m->out->ptr;
    if (V == Vp) return m->ops->download_f32(dst, logits, rows * Vp);
    // whole rows through a bounded staging buffer, then drop the padding columns
    size_t chunk = ((size_t)1 << 20) / Vp;
    chunk = chunk ? chunk : 1;
    float *stage = malloc(chunk * Vp * sizeof(float));
    if (!stage) return llm_fail(LLM_ENOMEM, "out of memory copying logits");
    llm_status s = LLM_OK;
    for (size_t r0 = 0; s == LLM_OK && r0 < rows; r0 += chunk) {
        size_t n = rows - r0 < chunk ? rows - r0 : chunk;
        s = m->ops->download_f32(stage, logits + r0 * Vp * m->xsize, n * Vp);
        for (size_t r = 0; s == LLM_OK && r < n; r++) memcpy(dst + (r0 + r) * V, stage + r * Vp, V * sizeof(float));
    }
    free(stage);
    return s;
}

llm_status llm_model_copy_losses(llm_model *m, float *dst) {
    if (!m) return llm_fail(LLM_EINVAL, "model is NULL");
    if (!m->B || !m->has_targets) return llm_fail(LLM_ESTATE, "no losses yet: call forward() with targets first");
    if (!dst) return llm_fail(LLM_EINVAL, "destination is NULL");
    const size_t rows = (size_t)m->B * m->T;
    const char *losses = (const char *)m->out->ptr + rows * m->cfg.padded_vocab_size * m->xsize;
    return m->ops->to_host(dst, losses, rows * sizeof(float));
}

// ----------------------------------------------------------------------------
// activations: pointers into m->act for the current (B, T)

typedef struct acts {
    int32_t *inputs, *targets; // (B,T)
    floatX *encoded;           // (B,T,C)
    floatX *ln1;               // (L,B,T,C)
    float *ln1_mean, *ln1_rstd; // (L,B,T)
    floatX *qkv;               // (L,B,T,3C)
    floatX *atty;              // (L,B,T,C)
    void *att;                 // L x the attention op's saved state (ops->attention_state_bytes)
    floatX *res2;              // (L,B,T,C) residual after attention
    floatX *ln2;
    float *ln2_mean, *ln2_rstd;
    floatX *fch, *fch_gelu;    // (L,B,T,4C)
    floatX *res3;              // (L,B,T,C) residual after the MLP
    floatX *lnf;               // (B,T,C)
    float *lnf_mean, *lnf_rstd; // (B,T)
} acts;

// Lays out the activations at base (or only counts when base is NULL); returns the byte count.
// Every buffer starts on a 256-byte boundary (vector loads on every backend).
static size_t acts_layout(acts *a, void *base, const llm_model *m, int B, int T) {
    const llm_config *cfg = &m->cfg;
    const size_t L = cfg->n_layer, C = cfg->n_embd, BT = (size_t)B * T, xs = m->xsize;
    const size_t att = m->ops->attention_state_bytes(B, T, cfg->n_embd, cfg->n_head);
    size_t used = 0;
#define TAKE(field, bytes) \
    (a->field = base ? (void *)((char *)base + used) : NULL, used += ((bytes) + 255) / 256 * 256)
    TAKE(inputs, BT * sizeof(int32_t));
    TAKE(targets, BT * sizeof(int32_t));
    TAKE(encoded, BT * C * xs);
    TAKE(ln1, L * BT * C * xs);
    TAKE(ln1_mean, L * BT * sizeof(float));
    TAKE(ln1_rstd, L * BT * sizeof(float));
    TAKE(qkv, L * BT * 3 * C * xs);
    TAKE(atty, L * BT * C * xs);
    TAKE(att, L * att);
    TAKE(res2, L * BT * C * xs);
    TAKE(ln2, L * BT * C * xs);
    TAKE(ln2_mean, L * BT * sizeof(float));
    TAKE(ln2_rstd, L * BT * sizeof(float));
    TAKE(fch, L * BT * 4 * C * xs);
    TAKE(fch_gelu, L * BT * 4 * C * xs);
    TAKE(res3, L * BT * C * xs);
    TAKE(lnf, BT * C * xs);
    TAKE(lnf_mean, BT * sizeof(float));
    TAKE(lnf_rstd, BT * sizeof(float));
#undef TAKE
    return used;
}

// Bytes of the logits (B,T,Vp) floatX, rounded up so the fp32 losses after them stay aligned.
static size_t logits_bytes(const llm_model *m, int B, int T) {
    return ((size_t)B * T * m->cfg.padded_vocab_size * m->xsize + 255) / 256 * 256;
}

// Grows m->act, m->out and the attention scratch for (B, T). A block still referenced by
// Python stays alive.
static llm_status ensure_activations(llm_model *m, int B, int T) {
    acts a;
    size_t need = acts_layout(&a, NULL, m, B, T);
    if (!m->act || m->act->bytes < need) {
        llm_block_release(m->act);
        m->act = NULL;
        LLM_TRY(block_new(&m->act, m->ops, need));
    }
    size_t need_out = logits_bytes(m, B, T) + (size_t)B * T * sizeof(float);
    if (!m->out || m->out->bytes < need_out) {
        llm_block_release(m->out);
        m->out = NULL;
        LLM_TRY(block_new(&m->out, m->ops, need_out));
    }
    size_t need_att = m->ops->attention_scratch_bytes(B, T, m->cfg.n_embd, m->cfg.n_head);
    if (m->att_scratch_bytes < need_att) {
        m->ops->free(m->att_scratch);
        m->att_scratch = NULL;
        m->att_scratch_bytes = 0;
        LLM_TRY(m->ops->alloc(&m->att_scratch, need_att));
        m->att_scratch_bytes = need_att;
    }
    return LLM_OK;
}

// Element i of a floatX buffer (pointer arithmetic in bytes: the element size is the backend's).
#define AT(p, i) ((floatX *)((char *)(p) + (size_t)(i) * xs))
// Parameter / gradient tensor k, from element i on.
#define PARAM(k, i) AT(m->params, m->offsets[k] + (size_t)(i))
#define GRAD(k, i) AT(m->grads, m->offsets[k] + (size_t)(i))

// residual = inp1 + inp2, then out = layernorm(residual): one fused op where the backend has it
// (gpt2.h; generate.c uses it too).
llm_status gpt2_residual_layernorm(const llm_ops *ops, floatX *residual, floatX *out, float *mean, float *rstd,
                                     const floatX *inp1, const floatX *inp2, const floatX *w, const floatX *b, int B,
                                     int T, int C) {
    if (ops->residual_layernorm_forward)
        return ops->residual_layernorm_forward(residual, out, mean, rstd, inp1, inp2, w, b, B, T, C);
    LLM_TRY(ops->residual_forward(residual, inp1, inp2, (size_t)B * T * C));
    return ops->layernorm_forward(out, mean, rstd, residual, w, b, B, T, C);
}

// ----------------------------------------------------------------------------
// forward

// The model sees only the batch: a bad id is named by its place in it (row, position). Where the
// batch comes from a token shard, the data loader checks first and names the shard and the offset
// (llm_dataloader_set_vocab).
static llm_status check_tokens(const int32_t *x, size_t n, int T, int V, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (x[i] < 0 || x[i] >= V)
            return llm_fail(LLM_EINVAL, "%s[%zu] = %d is out of range [0, %d) (row %zu, position %zu): token ids "
                            "must be below the model's vocab_size", what, i, x[i], V, i / (size_t)T, i % (size_t)T);
    return LLM_OK;
}

llm_status llm_forward(llm_model *m, const int32_t *idx, const int32_t *targets, int B, int T, float *loss) {
    if (!m || !idx) return llm_fail(LLM_EINVAL, "model or idx is NULL");
    const llm_config *cfg = &m->cfg;
    if (B < 1 || T < 1) return llm_fail(LLM_EINVAL, "empty batch: B=%d, T=%d (both must be >= 1)", B, T);
    if (T > cfg->block_size)
        return llm_fail(LLM_EINVAL, "sequence length T=%d exceeds block_size=%d", T, cfg->block_size);
    const size_t BT = (size_t)B * T;
    LLM_TRY(check_tokens(idx, BT, T, cfg->vocab_size, "idx"));
    if (targets) LLM_TRY(check_tokens(targets, BT, T, cfg->vocab_size, "targets"));

    // a failure below leaves no forward state behind
    m->B = m->T = 0;
    m->has_targets = 0;
    m->logits_overwritten = 0;
    LLM_TRY(ensure_activations(m, B, T));
    const llm_ops *ops = m->ops;
    if (!ops->host_memory) { // keep the ids on the host for the encoder backward
        if (m->inputs_host_cap < BT) {
            int32_t *p = realloc(m->inputs_host, BT * sizeof(int32_t));
            if (!p) return llm_fail(LLM_ENOMEM, "out of memory for a host copy of %zu token ids", BT);
            m->inputs_host = p;
            m->inputs_host_cap = BT;
        }
        memcpy(m->inputs_host, idx, BT * sizeof(int32_t));
    }
    const size_t xs = m->xsize;
    const int L = cfg->n_layer, C = cfg->n_embd, NH = cfg->n_head, V = cfg->vocab_size, Vp = cfg->padded_vocab_size;
    const size_t BTC = BT * C, att_bytes = ops->attention_state_bytes(B, T, C, NH);
    acts a;
    acts_layout(&a, m->act->ptr, m, B, T);
    floatX *logits = m->out->ptr;
    float *losses = (float *)((char *)m->out->ptr + logits_bytes(m, B, T));

    LLM_TRY(ops->to_device(a.inputs, idx, BT * sizeof(int32_t)));
    if (targets) LLM_TRY(ops->to_device(a.targets, targets, BT * sizeof(int32_t)));

    LLM_TRY(ops->encoder_forward(a.encoded, a.inputs, PARAM(LLM_WTE, 0), PARAM(LLM_WPE, 0), B, T, C));
    // layer 0's first LayerNorm; the later ones are fused with the residual addition before them
    LLM_TRY(ops->layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, a.encoded, PARAM(LLM_LN1W, 0), PARAM(LLM_LN1B, 0), B, T, C));
    const floatX *residual = a.encoded;
    for (int l = 0; l < L; l++) {
        floatX *ln1 = AT(a.ln1, l * BTC), *qkv = AT(a.qkv, l * BTC * 3), *atty = AT(a.atty, l * BTC);
        void *att = (char *)a.att + (size_t)l * att_bytes;
        floatX *res2 = AT(a.res2, l * BTC), *ln2 = AT(a.ln2, l * BTC);
        float *ln2_mean = a.ln2_mean + l * BT, *ln2_rstd = a.ln2_rstd + l * BT;
        floatX *fch = AT(a.fch, l * BTC * 4), *fch_gelu = AT(a.fch_gelu, l * BTC * 4), *res3 = AT(a.res3, l * BTC);
        size_t c = (size_t)l * C;

        LLM_TRY(ops->matmul_forward(qkv, ln1, PARAM(LLM_QKVW, c * 3 * C), PARAM(LLM_QKVB, 3 * c), B, T, C, 3 * C));
        LLM_TRY(ops->attention_forward(atty, att, m->att_scratch, qkv, B, T, C, NH));
        // the projection lands in res2, then the residual is added in place
        LLM_TRY(ops->matmul_forward(res2, atty, PARAM(LLM_ATTPROJW, c * C), PARAM(LLM_ATTPROJB, c), B, T, C, C));
        LLM_TRY(gpt2_residual_layernorm(ops, res2, ln2, ln2_mean, ln2_rstd, res2, residual, PARAM(LLM_LN2W, c), PARAM(LLM_LN2B, c), B, T,
                                   C));
        if (ops->matmul_gelu_forward) {
            LLM_TRY(ops->matmul_gelu_forward(fch, fch_gelu, ln2, PARAM(LLM_FCW, c * 4 * C), PARAM(LLM_FCB, 4 * c), B, T, C,
                                             4 * C));
        } else {
            LLM_TRY(ops->matmul_forward(fch, ln2, PARAM(LLM_FCW, c * 4 * C), PARAM(LLM_FCB, 4 * c), B, T, C, 4 * C));
            LLM_TRY(ops->gelu_forward(fch_gelu, fch, BTC * 4));
        }
        LLM_TRY(ops->matmul_forward(res3, fch_gelu, PARAM(LLM_FCPROJW, c * 4 * C), PARAM(LLM_FCPROJB, c), B, T, 4 * C, C));
        if (l + 1 < L) // res3 += res2, then the next layer's ln1
            LLM_TRY(gpt2_residual_layernorm(ops, res3, AT(a.ln1, (l + 1) * BTC), a.ln1_mean + (l + 1) * BT,
                                       a.ln1_rstd + (l + 1) * BT, res3, res2, PARAM(LLM_LN1W, c + C), PARAM(LLM_LN1B, c + C), B, T,
                                       C));
        else // res3 += res2, then the final LayerNorm
            LLM_TRY(gpt2_residual_layernorm(ops, res3, a.lnf, a.lnf_mean, a.lnf_rstd, res3, res2, PARAM(LLM_LNFW, 0),
                                       PARAM(LLM_LNFB, 0), B, T, C));
        residual = res3;
    }
    LLM_TRY(ops->matmul_forward(logits, a.lnf, PARAM(LLM_WTE, 0), NULL, B, T, C, Vp));

    m->B = B;
    m->T = T;
    if (targets) {
        LLM_TRY(ops->crossentropy_forward(losses, logits, a.targets, B, T, V, Vp));
        // the mean, reduced where the losses live: one number crosses to the host
        double sum;
        LLM_TRY(ops->sum_f32(&sum, losses, BT));
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
    if (m->dist) LLM_TRY(m->dist->quiesce(m->dist->ctx)); // reductions under way write the gradients
    m->grads_zero = 1; // cleared by the next backward's writes, or by gpt2_grads_readable
    m->has_grad = 0;
    m->norm_ready = 0;
    m->weights_sq = -1.0;
    return LLM_OK;
}

// The first backward after zero_grad writes the gradients of the five weight matrices
// (matmul_backward with LLM_MM_WRITE_DWEIGHT) and clears the rest, which the ops add into: the
// biases, the LayerNorm parameters, wpe (the encoder adds its first T rows), and wte's padding
// rows when the classifier backward skips them (sliced: it covers the first V rows only). Those
// are under 2 % of a GPT-2's parameters; a full clear would write all of them once more.
static llm_status clear_added_grads(llm_model *m, int lm_head_rows) {
    const size_t xs = m->xsize;
    for (int i = 0; i < LLM_NUM_TENSORS; i++) {
        if (gpt2_block_matrix(i)) continue;
        size_t skip = i == LLM_WTE ? (size_t)lm_head_rows * m->cfg.n_embd : 0;
        LLM_TRY(m->ops->zero(AT(m->grads, m->offsets[i] + skip), (m->sizes[i] - skip) * xs));
    }
    return LLM_OK;
}

// matmul_backward; while *sq >= 0, the squares of the dweight it stores are added to *sq
// (ops->matmul_backward_sq), and *sq turns negative where the backend's variant does not sum them.
static llm_status mm_backward(const llm_ops *ops, double *sq, floatX *dinp, floatX *dweight, floatX *dbias,
                              const floatX *dout, const floatX *inp, const floatX *weight, int B, int T, int C,
                              int OC, int flags) {
    if (*sq < 0.0) return ops->matmul_backward(dinp, dweight, dbias, dout, inp, weight, B, T, C, OC, flags);
    double part;
    LLM_TRY(ops->matmul_backward_sq(dinp, dweight, dbias, dout, inp, weight, B, T, C, OC, flags, &part));
    *sq = part < 0.0 ? -1.0 : *sq + part;
    return LLM_OK;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

// The sum of the squares of wte's gradient rows at rows[0:n] (distinct ids).
static llm_status wte_rows_sq(const llm_model *m, const int32_t *rows, size_t n, double *out) {
    const size_t C = (size_t)m->cfg.n_embd, xs = m->xsize;
    *out = 0.0;
    for (size_t i = 0; i < n; i++) {
        double row;
        LLM_TRY(m->ops->norm_squared(&row, GRAD(LLM_WTE, (size_t)rows[i] * C), C));
        *out += row;
    }
    return LLM_OK;
}

// The encoder backward, and *sq (when >= 0: the backward's running sum, which includes wte's
// lm_head product) kept true: wte's rows the encoder adds to (the distinct input ids) are taken
// out of it before and put back after. *sq turns negative if their list cannot be allocated.
static llm_status encoder_backward_sq(llm_model *m, const floatX *dres, const int32_t *inputs,
                                      const int32_t *inputs_host, int B, int T, double *sq) {
    const llm_ops *ops = m->ops;
    const size_t xs = m->xsize, n = (size_t)B * T;
    int32_t *rows = *sq >= 0.0 ? malloc(n * sizeof *rows) : NULL;
    if (!rows) *sq = -1.0;
    size_t distinct = 0;
    if (rows) {
        memcpy(rows, inputs_host, n * sizeof *rows);
        qsort(rows, n, sizeof *rows, cmp_i32);
        for (size_t i = 0; i < n; i++)
            if (!i || rows[i] != rows[i - 1]) rows[distinct++] = rows[i];
    }
    double before = 0.0, after = 0.0;
    llm_status s = rows ? wte_rows_sq(m, rows, distinct, &before) : LLM_OK;
    if (s == LLM_OK)
        s = ops->encoder_backward(GRAD(LLM_WTE, 0), GRAD(LLM_WPE, 0), dres, inputs, inputs_host, B, T, m->cfg.n_embd);
    if (s == LLM_OK && rows) s = wte_rows_sq(m, rows, distinct, &after);
    if (s == LLM_OK && rows) *sq = fmax(*sq - before + after, 0.0);
    free(rows);
    return s;
}

llm_status llm_backward(llm_model *m, float loss_scale) {
    if (!m) return llm_fail(LLM_EINVAL, "model is NULL");
    if (!m->B) return llm_fail(LLM_ESTATE, "backward() needs a forward() first");
    if (!m->has_targets) return llm_fail(LLM_ESTATE, "backward() needs a forward() with targets");
    LLM_TRY(logits_readable(m, "backward() needs a new forward()"));
    if (!isfinite(loss_scale)) return llm_fail(LLM_EINVAL, "loss_scale must be finite, got %g", loss_scale);
    const gpt2_dist *dist = m->dist; // data parallelism: each layer's gradients are announced when final
    if (dist) LLM_TRY(dist->backward_begin(dist->ctx));
    const llm_config *cfg = &m->cfg;
    const llm_ops *ops = m->ops;
    const size_t xs = m->xsize;
    const int B = m->B, T = m->T, L = cfg->n_layer, C = cfg->n_embd, NH = cfg->n_head;
    const int V = cfg->vocab_size, Vp = cfg->padded_vocab_size;
    const size_t BT = (size_t)B * T, BTC = BT * C, att_bytes = ops->attention_state_bytes(B, T, C, NH);

    // The lm_head backward in place of the logits (ops.h: lm_head_in_place), or vc vocabulary
    // columns at a time: dlogits then exist for one slice only (~LM_HEAD_SLICE_ELEMS elements).
    size_t vc = ops->lm_head_in_place ? 0 : LM_HEAD_SLICE_ELEMS / BT / 128 * 128;
    if (!ops->lm_head_in_place) vc = vc < 128 ? 128 : (vc > (size_t)V ? (size_t)V : vc);
    // scratch: dlogits slice (BT,vc), dres/dln/datty (BT,C) each, dqkv (BT,3C), dfch/dfch_gelu (BT,4C) each
    size_t need = (BT * vc + BTC * (3 + 3 + 8)) * xs;
    if (m->scratch_bytes < need) {
        ops->free(m->scratch);
        m->scratch = NULL;
        m->scratch_bytes = 0;
        LLM_TRY(ops->alloc(&m->scratch, need));
        m->scratch_bytes = need;
    }
    floatX *dlogits = m->scratch, *dres = AT(dlogits, BT * vc), *dln = AT(dres, BTC), *datty = AT(dln, BTC);
    floatX *dqkv = AT(datty, BTC), *dfch = AT(dqkv, 3 * BTC), *dfch_gelu = AT(dfch, 4 * BTC);
    acts a;
    acts_layout(&a, m->act->ptr, m, B, T);
    floatX *logits = m->out->ptr;
    const float *losses = (const float *)((const char *)m->out->ptr + logits_bytes(m, B, T));
    const float dloss = loss_scale / (float)BT; // the objective is loss_scale * mean over positions
    const int32_t *inputs_host = ops->host_memory ? a.inputs : m->inputs_host; // for the encoder backward
    // The first backward after zero_grad writes the weight gradients (clear_added_grads); the
    // next ones, gradient accumulation, add to them. grads_zero stays set until this succeeds.
    const int write_dw = m->grads_zero ? LLM_MM_WRITE_DWEIGHT : 0;
    if (write_dw) LLM_TRY(clear_added_grads(m, ops->lm_head_in_place ? Vp : V));
    // the squares of the weight matrices' and wte's gradients, summed as they are written (see
    // gpt2.h: weights_sq); -1: not summed
    m->weights_sq = -1.0;
    double wsq = write_dw && !dist && !m->grads_shown && ops->matmul_backward_sq ? 0.0 : -1.0;

    // Buffers written by one op and read by the next are written (=), never zeroed first
    // (ops.h): only dres, which every LayerNorm backward adds into, starts from zero.
    if (ops->lm_head_in_place) {
        // dlogits (BT,Vp) over the logits in one pass (padding columns 0), then dln (BT,C) =
        // dlogits @ wte in one GEMM over all Vp columns: one rounding of dln, and dwte += dlogits^T lnf.
        m->logits_overwritten = 1; // from here on, even if an op below fails
        LLM_TRY(ops->crossentropy_backward_cols(logits, logits, losses, a.targets, dloss, B, T, V, Vp, 0, Vp));
        LLM_TRY(mm_backward(ops, &wsq, dln, GRAD(LLM_WTE, 0), NULL, logits, a.lnf, PARAM(LLM_WTE, 0), B, T, C, Vp, write_dw));
    } else {
        // the padding columns (>= V) have zero gradient and are skipped; the first slice writes dln
        for (size_t v0 = 0; v0 < (size_t)V; v0 += vc) {
            const int n = (int)((size_t)V - v0 < vc ? (size_t)V - v0 : vc);
            LLM_TRY(ops->crossentropy_backward_cols(dlogits, logits, losses, a.targets, dloss, B, T, V, Vp, (int)v0, n));
            LLM_TRY(mm_backward(ops, &wsq, dln, GRAD(LLM_WTE, v0 * C), NULL, dlogits, a.lnf, PARAM(LLM_WTE, v0 * C), B, T, C,
                                n, (v0 > 0 ? LLM_MM_ACCUMULATE_DINP : 0) | write_dw));
        }
    }
    LLM_TRY(ops->zero(dres, BTC * xs));
    const floatX *last = AT(a.res3, (size_t)(L - 1) * BTC);
    LLM_TRY(ops->layernorm_backward(dres, GRAD(LLM_LNFW, 0), GRAD(LLM_LNFB, 0), dln, last, PARAM(LLM_LNFW, 0), a.lnf_mean, a.lnf_rstd, B,
                                    T, C));

    // dres carries the gradient of the residual stream from the top down; each residual
    // addition passes it through unchanged, and each LayerNorm adds its input gradient to it.
    for (int l = L - 1; l >= 0; l--) {
        const floatX *residual = l == 0 ? a.encoded : AT(a.res3, (size_t)(l - 1) * BTC);
        const floatX *ln1 = AT(a.ln1, l * BTC), *qkv = AT(a.qkv, l * BTC * 3), *atty = AT(a.atty, l * BTC);
        const float *ln1_mean = a.ln1_mean + l * BT, *ln1_rstd = a.ln1_rstd + l * BT;
        const void *att = (const char *)a.att + (size_t)l * att_bytes;
        const floatX *res2 = AT(a.res2, l * BTC), *ln2 = AT(a.ln2, l * BTC);
        const float *ln2_mean = a.ln2_mean + l * BT, *ln2_rstd = a.ln2_rstd + l * BT;
        const floatX *fch = AT(a.fch, l * BTC * 4), *fch_gelu = AT(a.fch_gelu, l * BTC * 4);
        size_t c = (size_t)l * C;

        // MLP: res3 = res2 + fcproj(gelu(fc(ln2(res2)))); dfch_gelu, dfch, dln written
        LLM_TRY(mm_backward(ops, &wsq, dfch_gelu, GRAD(LLM_FCPROJW, c * 4 * C), GRAD(LLM_FCPROJB, c), dres, fch_gelu,
                            PARAM(LLM_FCPROJW, c * 4 * C), B, T, 4 * C, C, write_dw));
        LLM_TRY(ops->gelu_backward(dfch, fch, dfch_gelu, 4 * BTC));
        LLM_TRY(mm_backward(ops, &wsq, dln, GRAD(LLM_FCW, c * 4 * C), GRAD(LLM_FCB, 4 * c), dfch, ln2, PARAM(LLM_FCW, c * 4 * C), B,
                            T, C, 4 * C, write_dw));
        LLM_TRY(ops->layernorm_backward(dres, GRAD(LLM_LN2W, c), GRAD(LLM_LN2B, c), dln, res2, PARAM(LLM_LN2W, c), ln2_mean, ln2_rstd, B, T,
                                        C));
        // attention: res2 = residual + attproj(attn(qkv(ln1(residual)))); datty, dqkv, dln written
        LLM_TRY(mm_backward(ops, &wsq, datty, GRAD(LLM_ATTPROJW, c * C), GRAD(LLM_ATTPROJB, c), dres, atty,
                            PARAM(LLM_ATTPROJW, c * C), B, T, C, C, write_dw));
        LLM_TRY(ops->attention_backward(dqkv, m->att_scratch, datty, qkv, atty, att, B, T, C, NH));
        LLM_TRY(mm_backward(ops, &wsq, dln, GRAD(LLM_QKVW, c * 3 * C), GRAD(LLM_QKVB, 3 * c), dqkv, ln1, PARAM(LLM_QKVW, c * 3 * C),
                            B, T, C, 3 * C, write_dw));
        LLM_TRY(ops->layernorm_backward(dres, GRAD(LLM_LN1W, c), GRAD(LLM_LN1B, c), dln, residual, PARAM(LLM_LN1W, c), ln1_mean, ln1_rstd, B,
                                        T, C));
        if (dist) LLM_TRY(dist->grads_ready(dist->ctx, l));
    }
    LLM_TRY(encoder_backward_sq(m, dres, a.inputs, inputs_host, B, T, &wsq));
    m->has_grad = 1;
    m->grads_zero = 0;
    m->norm_ready = 0;
    m->weights_sq = wsq;
    if (dist) LLM_TRY(dist->grads_ready(dist->ctx, -1));
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// runtime

llm_status llm_set_num_threads(int n) {
    if (n < 1) return llm_fail(LLM_EINVAL, "number of threads must be >= 1, got %d", n);
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    return LLM_OK;
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
