/*
 * generate.c — inference with a KV cache, written once for every backend (llmpy.h: llm_gen_*).
 *
 * The same GPT-2 forward as gpt2.c, organised for generation: no activations are kept for a
 * backward, and the keys and values of every position are kept in a cache instead, so that the
 * next token of a sequence costs one pass over the weights (decode) rather than a forward over
 * the whole sequence. Every op goes through the backend's llm_ops table (ops.h, "generation").
 *
 * Shape letters (gpt2.c): L layers, C channels, NH heads, hs = C/NH, V vocabulary, maxT the
 * cache's positions per slot, S its slots; N sequences in a call, T tokens each, R = N*T rows.
 *
 * Cache: one backend buffer, per layer l the keys (S,NH,maxT,hs) then the values (same shape).
 * Slot s holds len[s] tokens; positions >= len[s] may hold leftovers (a padded prefill, an older
 * sequence) that are never read: attention reads positions 0 .. pos, after writing pos.
 *
 * Prefill (prompts of different lengths): the prompts run together, right-padded to the longest
 * one (causal attention: padding after a prompt cannot change it), in chunks of at most
 * PREFILL_ROWS rows; a chunk holds only the prompts not yet finished, and the keys and values of
 * earlier chunks are read back from the cache. Its matrices are products of many rows, done by
 * the backend's GEMM (matmul_forward) on the model's parameters; the residual row of each
 * prompt's last token is kept for the logits.
 * Decode: one row per sequence; every matrix product is matmul_rows (a GEMV that reads each
 * weight once for all rows), on the decode weights: the model's parameters, or a bf16 copy made
 * by llm_gen_create (half the bytes per token where the backend multiplies bf16 directly,
 * ops->matmul_rows_bf16). Chunks of up to GEMV_ROWS rows (a one-token prompt) take that path too.
 * The logits are lnf(x) @ wte^T over the first V rows of wte, with the decode weights.
 */
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/common.h"
#include "core/gpt2.h"

#define PREFILL_ROWS 1024 // rows of one prefill chunk (bounds the activations of a prefill)
#define GEMV_ROWS 16      // products of at most this many rows use matmul_rows (16-token prompt: 81 -> ~55 ms)

// The matrices decode reads, in the decode weights (the rest — embeddings for the lookup,
// biases, LayerNorm parameters — always come from the model).
static const int decode_matrices[] = {LLM_QKVW, LLM_ATTPROJW, LLM_FCW, LLM_FCPROJW, LLM_WTE};
#define NUM_DECODE_MATRICES (int)(sizeof decode_matrices / sizeof decode_matrices[0])

struct llm_gen {
    llm_model *m;
    const llm_ops *ops;
    llm_dtype wtype;   // element type of the decode weights
    size_t wsize;      // its bytes
    void *copy;        // converted decode weights (backend memory), NULL: the model's parameters
    size_t copy_bytes;
    const void *w[LLM_NUM_TENSORS]; // the decode weights of each matrix in decode_matrices
    // the cache
    int S, maxT;
    void *cache;
    size_t cache_bytes;
    int32_t *len; // (S) host: tokens each slot holds
    // work memory: activations of up to `rows` rows and `seqs` sequences
    void *work;
    size_t work_bytes;
    int rows, seqs;
    int32_t *host_ints; // staging of the ids, slots and positions of a call (host)
    size_t host_ints_cap;
};

// ----------------------------------------------------------------------------
// the decode weights

static size_t matrix_elems(const llm_model *m, int k) {
    // wte: the lm_head reads its first V rows only
    if (k == LLM_WTE) return (size_t)m->cfg.vocab_size * m->cfg.n_embd;
    return m->sizes[k];
}

// bf16 copies of the decode matrices, converted on the host a chunk at a time (from the fp32
// master copy where the model keeps one).
static llm_status convert_weights(llm_gen *g) {
    llm_model *m = g->m;
    size_t total = 0;
    for (int i = 0; i < NUM_DECODE_MATRICES; i++) total += (matrix_elems(m, decode_matrices[i]) + 127) / 128 * 128;
    LLM_TRY(g->ops->alloc(&g->copy, total * sizeof(uint16_t)));
    g->copy_bytes = total * sizeof(uint16_t);
    enum { CHUNK = 1 << 20 };
    float *f = malloc(CHUNK * sizeof(float));
    uint16_t *h = g->ops->host_memory ? NULL : malloc(CHUNK * sizeof(uint16_t));
    if (!f || (!g->ops->host_memory && !h)) {
        free(f);
        free(h);
        return llm_fail(LLM_ENOMEM, "out of memory converting the weights to bf16");
    }
    llm_status s = LLM_OK;
    uint16_t *dst = g->copy;
    for (int i = 0; s == LLM_OK && i < NUM_DECODE_MATRICES; i++) {
        const int k = decode_matrices[i];
        const size_t n = matrix_elems(m, k);
        g->w[k] = dst;
        for (size_t o = 0; s == LLM_OK && o < n; o += CHUNK) {
            const size_t c = n - o < CHUNK ? n - o : CHUNK;
            s = gpt2_get_params(m, m->offsets[k] + o, f, c);
            if (s != LLM_OK) break;
            if (g->ops->host_memory) { // convert straight into place
                llm_f32_to_bf16(dst + o, f, c);
            } else {
                llm_f32_to_bf16(h, f, c);
                s = g->ops->to_device(dst + o, h, c * sizeof(uint16_t));
            }
        }
        dst += (n + 127) / 128 * 128;
    }
    free(f);
    free(h);
    return s;
}

llm_status llm_gen_create(llm_gen **out, llm_model *m, const char *weights) {
    if (!out) return llm_fail(LLM_EINVAL, "output pointer is NULL");
    *out = NULL;
    if (!m) return llm_fail(LLM_EINVAL, "model is NULL");
    const llm_ops *ops = m->ops;
    if (!ops->encoder_at || !ops->attention_cached || !ops->matmul_rows)
        return llm_fail(LLM_EUNSUPPORTED, "the %s backend has no generation ops (ops.h: encoder_at, "
                        "attention_cached, matmul_rows)", m->device);
    if (!weights) weights = m->precision;
    llm_dtype wtype;
    if (strcmp(weights, "fp32") == 0) wtype = LLM_F32;
    else if (strcmp(weights, "bf16") == 0) wtype = LLM_BF16;
    else return llm_fail(LLM_EINVAL, "weights must be 'fp32' or 'bf16', got '%s'", weights);
    if (wtype == LLM_F32 && ops->dtype != LLM_F32)
        return llm_fail(LLM_EINVAL, "weights 'fp32' on a %s model: it generates with its own %s weights "
                        "(weights='bf16' or None)", m->precision, m->precision);
    if (wtype != ops->dtype && !ops->matmul_rows_bf16)
        return llm_fail(LLM_EUNSUPPORTED, "the %s backend does not multiply bf16 weights in an fp32 model",
                        m->device);
    llm_gen *g = calloc(1, sizeof *g);
    if (!g) return llm_fail(LLM_ENOMEM, "out of memory allocating a generator");
    g->m = m;
    g->ops = ops;
    g->wtype = wtype;
    g->wsize = llm_dtype_size(wtype);
    if (wtype == ops->dtype) {
        for (int i = 0; i < NUM_DECODE_MATRICES; i++) {
            const int k = decode_matrices[i];
            g->w[k] = (const char *)m->params + m->offsets[k] * m->xsize;
        }
    } else {
        llm_status s = convert_weights(g);
        if (s != LLM_OK) {
            llm_gen_free(g);
            return s;
        }
    }
    *out = g;
    return LLM_OK;
}

void llm_gen_free(llm_gen *g) {
    if (!g) return;
    g->ops->free(g->copy);
    g->ops->free(g->cache);
    g->ops->free(g->work);
    free(g->len);
    free(g->host_ints);
    free(g);
}

// ----------------------------------------------------------------------------
// cache and work memory

llm_status llm_gen_reserve(llm_gen *g, int slots, int max_len) {
    if (!g) return llm_fail(LLM_EINVAL, "generator is NULL");
    const llm_config *cfg = &g->m->cfg;
    if (slots < 1 || slots > (1 << 20)) return llm_fail(LLM_EINVAL, "slots must be in [1, %d], got %d", 1 << 20, slots);
    if (max_len < 1 || max_len > cfg->block_size)
        return llm_fail(LLM_EINVAL, "max_len must be in [1, block_size=%d], got %d", cfg->block_size, max_len);
    if (slots > g->S || max_len > g->maxT) { // grown in both dimensions at once: the layout depends on both
        slots = slots > g->S ? slots : g->S;
        max_len = max_len > g->maxT ? max_len : g->maxT;
        const size_t bytes = 2 * (size_t)cfg->n_layer * slots * max_len * cfg->n_embd * g->m->xsize;
        g->ops->free(g->cache);
        g->cache = NULL;
        g->cache_bytes = 0;
        g->S = g->maxT = 0;
        free(g->len);
        g->len = calloc((size_t)slots, sizeof(int32_t));
        if (!g->len) return llm_fail(LLM_ENOMEM, "out of memory for %d slot lengths", slots);
        llm_status s = g->ops->alloc(&g->cache, bytes);
        if (s != LLM_OK)
            return llm_fail(LLM_ENOMEM, "out of memory for a KV cache of %d x %d positions (%.1f MiB)", slots,
                            max_len, bytes / 1048576.0);
        g->cache_bytes = bytes;
        g->S = slots;
        g->maxT = max_len;
    }
    if (g->len) memset(g->len, 0, (size_t)g->S * sizeof(int32_t));
    return LLM_OK;
}

// Pointers into g->work for R rows and N sequences.
typedef struct work {
    floatX *x, *ln, *qkv, *atty, *proj, *fch, *fcg; // (R,C), (R,C), (R,3C), (R,C), (R,C), (R,4C), (R,4C)
    float *mean, *rstd;                             // (R)
    floatX *last, *lnl, *logits;                    // (N,C), (N,C), (N,V)
    int32_t *ints;                                  // ids (R), then slots (N), then positions (N)
} work;

static size_t work_layout(work *w, void *base, const llm_gen *g, int R, int N) {
    const size_t C = g->m->cfg.n_embd, V = g->m->cfg.vocab_size, xs = g->m->xsize, r = (size_t)R, n = (size_t)N;
    size_t used = 0;
#define TAKE(field, bytes) \
    (w->field = base ? (void *)((char *)base + used) : NULL, used += ((bytes) + 255) / 256 * 256)
    TAKE(x, r * C * xs);
    TAKE(ln, r * C * xs);
    TAKE(qkv, r * 3 * C * xs);
    TAKE(atty, r * C * xs);
    TAKE(proj, r * C * xs);
    TAKE(fch, r * 4 * C * xs);
    TAKE(fcg, r * 4 * C * xs);
    TAKE(mean, r * sizeof(float));
    TAKE(rstd, r * sizeof(float));
    TAKE(last, n * C * xs);
    TAKE(lnl, n * C * xs);
    TAKE(logits, n * V * xs);
    TAKE(ints, (r + 2 * n) * sizeof(int32_t));
#undef TAKE
    return used;
}

static llm_status ensure_work(llm_gen *g, work *w, int R, int N) {
    if (R > g->rows || N > g->seqs) {
        const int r = R > g->rows ? R : g->rows, n = N > g->seqs ? N : g->seqs;
        const size_t need = work_layout(w, NULL, g, r, n);
        g->ops->free(g->work);
        g->work = NULL;
        g->work_bytes = 0;
        g->rows = g->seqs = 0;
        LLM_TRY(g->ops->alloc(&g->work, need));
        g->work_bytes = need;
        g->rows = r;
        g->seqs = n;
    }
    work_layout(w, g->work, g, g->rows, g->seqs);
    const size_t ints = (size_t)R + 2 * (size_t)N;
    if (g->host_ints_cap < ints) {
        int32_t *p = realloc(g->host_ints, ints * sizeof(int32_t));
        if (!p) return llm_fail(LLM_ENOMEM, "out of memory staging %zu token ids", ints);
        g->host_ints = p;
        g->host_ints_cap = ints;
    }
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// the forward

#define AT(p, i) ((floatX *)((char *)(p) + (size_t)(i) * xs))
#define PARAM(k, i) AT(m->params, m->offsets[k] + (size_t)(i))

// out (R,OC) = inp (R,C) @ matrix k (layer slice at element `off`)^T + bias: matmul_rows on the
// decode weights (gemv), or the backend's GEMM on the model's parameters.
static llm_status linear(const llm_gen *g, int gemv, floatX *out, const floatX *inp, int k, size_t off,
                         const floatX *bias, int R, int C, int OC) {
    const llm_model *m = g->m;
    const size_t xs = m->xsize;
    if (gemv)
        return g->ops->matmul_rows(out, inp, (const char *)g->w[k] + off * g->wsize, g->wtype, bias, R, C, OC);
    return g->ops->matmul_forward(out, inp, PARAM(k, off), bias, 1, R, C, OC);
}

// The transformer blocks over N sequences of T tokens whose ids, slots and positions are in
// w->ints (backend memory): on return w->x holds the residual stream after the last block.
// gemv: the matrix products by matmul_rows on the decode weights (else by the GEMM).
static llm_status blocks(llm_gen *g, work *w, int N, int T, int gemv) {
    llm_model *m = g->m;
    const llm_ops *ops = g->ops;
    const llm_config *cfg = &m->cfg;
    const size_t xs = m->xsize;
    const int L = cfg->n_layer, C = cfg->n_embd, NH = cfg->n_head, R = N * T;
    const int32_t *ids = w->ints, *rows = w->ints + R, *pos = rows + N;
    const size_t layer_cache = (size_t)g->S * g->maxT * C; // elements of the keys (or values) of a layer

    LLM_TRY(ops->encoder_at(w->x, ids, pos, PARAM(LLM_WTE, 0), PARAM(LLM_WPE, 0), N, T, C));
    LLM_TRY(ops->layernorm_forward(w->ln, w->mean, w->rstd, w->x, PARAM(LLM_LN1W, 0), PARAM(LLM_LN1B, 0), 1, R, C));
    for (int l = 0; l < L; l++) {
        const size_t c = (size_t)l * C;
        floatX *kc = AT(g->cache, 2 * l * layer_cache), *vc = AT(kc, layer_cache);
        LLM_TRY(linear(g, gemv, w->qkv, w->ln, LLM_QKVW, c * 3 * C, PARAM(LLM_QKVB, 3 * c), R, C, 3 * C));
        LLM_TRY(ops->attention_cached(w->atty, kc, vc, w->qkv, rows, pos, N, T, C, NH, g->maxT));
        LLM_TRY(linear(g, gemv, w->proj, w->atty, LLM_ATTPROJW, c * C, PARAM(LLM_ATTPROJB, c), R, C, C));
        // x += proj, then ln2
        LLM_TRY(gpt2_residual_layernorm(ops, w->x, w->ln, w->mean, w->rstd, w->proj, w->x, PARAM(LLM_LN2W, c),
                                        PARAM(LLM_LN2B, c), 1, R, C));
        if (!gemv && ops->matmul_gelu_forward) {
            LLM_TRY(ops->matmul_gelu_forward(w->fch, w->fcg, w->ln, PARAM(LLM_FCW, c * 4 * C), PARAM(LLM_FCB, 4 * c), 1,
                                             R, C, 4 * C));
        } else {
            LLM_TRY(linear(g, gemv, w->fch, w->ln, LLM_FCW, c * 4 * C, PARAM(LLM_FCB, 4 * c), R, C, 4 * C));
            LLM_TRY(ops->gelu_forward(w->fcg, w->fch, (size_t)R * 4 * C));
        }
        LLM_TRY(linear(g, gemv, w->proj, w->fcg, LLM_FCPROJW, c * 4 * C, PARAM(LLM_FCPROJB, c), R, 4 * C, C));
        if (l + 1 < L) // x += proj, then the next layer's ln1
            LLM_TRY(gpt2_residual_layernorm(ops, w->x, w->ln, w->mean, w->rstd, w->proj, w->x, PARAM(LLM_LN1W, c + C),
                                            PARAM(LLM_LN1B, c + C), 1, R, C));
        else
            LLM_TRY(ops->residual_forward(w->x, w->proj, w->x, (size_t)R * C));
    }
    return LLM_OK;
}

// logits (n,V) host fp32 = lnf(w->last) @ wte[:V]^T.
static llm_status head(llm_gen *g, work *w, int n, float *logits) {
    llm_model *m = g->m;
    const llm_ops *ops = g->ops;
    const size_t xs = m->xsize;
    const int C = m->cfg.n_embd, V = m->cfg.vocab_size;
    LLM_TRY(ops->layernorm_forward(w->lnl, w->mean, w->rstd, w->last, PARAM(LLM_LNFW, 0), PARAM(LLM_LNFB, 0), 1, n, C));
    const void *wte = g->w[LLM_WTE];
    if (ops->host_memory && ops->dtype == LLM_F32) // straight into the caller's array
        return ops->matmul_rows(logits, w->lnl, wte, g->wtype, NULL, n, C, V);
    LLM_TRY(ops->matmul_rows(w->logits, w->lnl, wte, g->wtype, NULL, n, C, V));
    return ops->download_f32(logits, w->logits, (size_t)n * V);
}

// ----------------------------------------------------------------------------
// checks

static llm_status check_call(const llm_gen *g, const int32_t *rows, int n, const char *what) {
    if (!g->S) return llm_fail(LLM_ESTATE, "%s: the generator has no cache yet (llm_gen_reserve)", what);
    if (n < 1 || n > g->S) return llm_fail(LLM_EINVAL, "%s: n must be in [1, slots=%d], got %d", what, g->S, n);
    for (int i = 0; i < n; i++)
        if (rows[i] < 0 || rows[i] >= g->S)
            return llm_fail(LLM_EINVAL, "%s: slot rows[%d] = %d is out of range [0, %d)", what, i, rows[i], g->S);
    unsigned char *seen = calloc((size_t)g->S, 1);
    if (!seen) return llm_fail(LLM_ENOMEM, "out of memory checking %d slots", n);
    llm_status s = LLM_OK;
    for (int i = 0; s == LLM_OK && i < n; i++)
        if (seen[rows[i]]++) s = llm_fail(LLM_EINVAL, "%s: slot %d is given twice", what, rows[i]);
    free(seen);
    return s;
}

static llm_status check_ids(const int32_t *x, size_t n, int V, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (x[i] < 0 || x[i] >= V) return llm_fail(LLM_EINVAL, "%s: token %zu = %d is out of range [0, %d)", what, i, x[i], V);
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// prefill and decode

llm_status llm_gen_prefill(llm_gen *g, const int32_t *tokens, const int32_t *lengths, const int32_t *rows, int n,
                           float *logits) {
    if (!g || !tokens || !lengths || !rows || !logits) return llm_fail(LLM_EINVAL, "prefill: NULL argument");
    LLM_TRY(check_call(g, rows, n, "prefill"));
    llm_model *m = g->m;
    const int C = m->cfg.n_embd, V = m->cfg.vocab_size;
    const size_t xs = m->xsize;
    int longest = 0;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (lengths[i] < 1 || lengths[i] > g->maxT)
            return llm_fail(LLM_EINVAL, "prefill: prompt %d has %d tokens; prompts need 1 to max_len=%d tokens", i,
                            lengths[i], g->maxT);
        longest = lengths[i] > longest ? lengths[i] : longest;
        total += (size_t)lengths[i];
    }
    LLM_TRY(check_ids(tokens, total, V, "prefill"));
    for (int i = 0; i < n; i++) g->len[rows[i]] = 0; // a failure below leaves these slots empty

    // chunks of Tc positions; a chunk holds the prompts still running at its first position
    int Tc = PREFILL_ROWS / n;
    Tc = Tc < 1 ? 1 : (Tc > longest ? longest : Tc);
    work w;
    LLM_TRY(ensure_work(g, &w, n * Tc, n));
    size_t *start = malloc((size_t)n * sizeof(size_t)); // each prompt's first token in `tokens`
    if (!start) return llm_fail(LLM_ENOMEM, "out of memory for %d prompt offsets", n);
    for (size_t i = 0, o = 0; i < (size_t)n; o += (size_t)lengths[i], i++) start[i] = o;
    llm_status s = LLM_OK;
    for (int t0 = 0; s == LLM_OK && t0 < longest; t0 += Tc) {
        const int T = longest - t0 < Tc ? longest - t0 : Tc;
        int N = 0; // prompts still running at t0
        for (int i = 0; i < n; i++) N += lengths[i] > t0;
        // ids (N,T), then their slots (N) and first positions (N)
        int32_t *ids = g->host_ints, *slots = ids + (size_t)N * T, *first = slots + N;
        for (int i = 0, a = 0; i < n; i++) {
            if (lengths[i] <= t0) continue;
            for (int t = 0; t < T; t++) // padded with the prompt's first token (positions never read)
                ids[(size_t)a * T + t] = tokens[start[i] + (t0 + t < lengths[i] ? t0 + t : 0)];
            slots[a] = rows[i];
            first[a] = t0;
            a++;
        }
        s = g->ops->to_device(w.ints, ids, ((size_t)N * T + 2 * (size_t)N) * sizeof(int32_t));
        if (s == LLM_OK) s = blocks(g, &w, N, T, N * T <= GEMV_ROWS);
        // keep the residual row of each prompt whose last token is in this chunk
        for (int i = 0, a = 0; s == LLM_OK && i < n; i++) {
            if (lengths[i] <= t0) continue;
            const int t = lengths[i] - 1 - t0;
            if (t < T) s = g->ops->copy(AT(w.last, (size_t)i * C), AT(w.x, ((size_t)a * T + t) * C), (size_t)C * xs);
            a++;
        }
    }
    free(start);
    if (s == LLM_OK) s = head(g, &w, n, logits);
    if (s != LLM_OK) return s;
    for (int i = 0; i < n; i++) g->len[rows[i]] = lengths[i];
    return LLM_OK;
}

llm_status llm_gen_decode(llm_gen *g, const int32_t *tokens, const int32_t *rows, int n, float *logits) {
    if (!g || !tokens || !rows || !logits) return llm_fail(LLM_EINVAL, "decode: NULL argument");
    LLM_TRY(check_call(g, rows, n, "decode"));
    LLM_TRY(check_ids(tokens, (size_t)n, g->m->cfg.vocab_size, "decode"));
    for (int i = 0; i < n; i++) {
        const int len = g->len[rows[i]];
        if (len < 1) return llm_fail(LLM_ESTATE, "decode: slot %d is empty (prefill it first)", rows[i]);
        if (len >= g->maxT)
            return llm_fail(LLM_EINVAL, "decode: slot %d is full (max_len=%d tokens)", rows[i], g->maxT);
    }
    work w;
    LLM_TRY(ensure_work(g, &w, n, n));
    int32_t *ints = g->host_ints;
    memcpy(ints, tokens, (size_t)n * sizeof(int32_t));
    memcpy(ints + n, rows, (size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++) ints[2 * n + i] = g->len[rows[i]];
    LLM_TRY(g->ops->to_device(w.ints, ints, 3 * (size_t)n * sizeof(int32_t)));
    // the residual rows are the sequences' last rows: head() reads them in place
    LLM_TRY(blocks(g, &w, n, 1, 1));
    w.last = w.x;
    LLM_TRY(head(g, &w, n, logits));
    for (int i = 0; i < n; i++) g->len[rows[i]]++;
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// information

void llm_gen_get_info(const llm_gen *g, llm_gen_info *out) {
    memset(out, 0, sizeof *out);
    if (!g) return;
    const llm_model *m = g->m;
    out->weights = g->wtype == LLM_BF16 ? "bf16" : "fp32";
    out->slots = g->S;
    out->max_len = g->maxT;
    out->cache_bytes = g->cache_bytes;
    out->work_bytes = g->work_bytes;
    out->copy_bytes = g->copy_bytes;
    // the matrices in the decode weights; biases and LayerNorm parameters in the model's type
    size_t matrices = 0;
    for (int i = 0; i < NUM_DECODE_MATRICES; i++) matrices += matrix_elems(m, decode_matrices[i]);
    const int others[] = {LLM_LN1W, LLM_LN1B, LLM_QKVB, LLM_ATTPROJB, LLM_LN2W, LLM_LN2B, LLM_FCB, LLM_FCPROJB,
                          LLM_LNFW, LLM_LNFB};
    size_t small = 0;
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) small += m->sizes[others[i]];
    out->step_bytes = matrices * g->wsize + small * m->xsize;
}

int llm_gen_length(const llm_gen *g, int slot) {
    if (!g || slot < 0 || slot >= g->S) return 0;
    return g->len[slot];
}
