/*
 * hellaswag.c — HellaSwag eval file reader and completion-style scoring (see hellaswag.h).
 *
 * File layout (llm.c's, formats.h): a 256 x int32 header — [0] magic, [1] version 1,
 * [2] number of examples, [3] size in bytes of the longest example — then per example a stream
 * of uint16: 65535 (start marker), the example's size in bytes (these fields included), its
 * index, its label, the number of endings (4), the context length and tokens, then for each
 * ending its length and tokens. Little-endian, like every llm.c file (a little-endian host is
 * assumed, as in dataloader.c).
 *
 * The scoring mirrors python/llmpy/hellaswag.py step for step (crop, sort, pack, left-to-right
 * double sums, first-minimum argmin), so both give the same predictions; tests compare them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/formats.h"
#include "data/hellaswag.h"

#define HS_START 65535u
#define E LLM_HELLASWAG_ENDINGS

typedef struct hs_example {
    int64_t ctx;        // offset of the context tokens in tokens[]
    int64_t end[E];     // offsets of the endings
    int ctx_len;        // c >= 1
    int end_len[E];     // each >= 1
    int label;          // in [0, E)
} hs_example;

struct llm_hellaswag {
    int64_t n;
    hs_example *ex;
    int32_t *tokens;
};

// ----------------------------------------------------------------------------
// reading

int64_t llm_hellaswag_size(const llm_hellaswag *h) { return h ? h->n : 0; }

void llm_hellaswag_free(llm_hellaswag *h) {
    if (!h) return;
    free(h->ex);
    free(h->tokens);
    free(h);
}

// Parses example i starting at s[*pos] (of n uint16); appends its tokens at tokens[*ntok].
static llm_status parse_example(const char *path, int64_t i, const uint16_t *s, int64_t n, int64_t *pos,
                                hs_example *ex, int32_t *tokens, int64_t *ntok) {
    int64_t p = *pos;
    if (n - p < 6) return llm_fail(LLM_EFORMAT, "%s: example %lld is truncated", path, (long long)i);
    if (s[p] != HS_START)
        return llm_fail(LLM_EFORMAT, "%s: example %lld does not start with the marker 65535 (found %u)", path,
                        (long long)i, s[p]);
    int64_t words = s[p + 1] / 2, stop = p + words;
    if (s[p + 1] % 2 || words < 6 || stop > n)
        return llm_fail(LLM_EFORMAT, "%s: example %lld has a bad size of %u bytes", path, (long long)i, s[p + 1]);
    ex->label = s[p + 3];
    if (s[p + 4] != E)
        return llm_fail(LLM_EFORMAT, "%s: example %lld has %u endings, expected %d", path, (long long)i, s[p + 4], E);
    if (ex->label >= E)
        return llm_fail(LLM_EFORMAT, "%s: example %lld has label %d, outside [0, %d)", path, (long long)i, ex->label, E);
    p += 5;
    for (int j = -1; j < E; j++) { // the context (j = -1), then the endings
        if (p >= stop) return llm_fail(LLM_EFORMAT, "%s: example %lld is shorter than its fields", path, (long long)i);
        int len = s[p++];
        if (len < 1 || p + len > stop)
            return llm_fail(LLM_EFORMAT, "%s: example %lld has a bad %s length %d", path, (long long)i,
                            j < 0 ? "context" : "ending", len);
        if (j < 0) {
            ex->ctx = *ntok;
            ex->ctx_len = len;
        } else {
            ex->end[j] = *ntok;
            ex->end_len[j] = len;
        }
        for (int k = 0; k < len; k++) tokens[(*ntok)++] = s[p + k];
        p += len;
    }
    if (p != stop)
        return llm_fail(LLM_EFORMAT, "%s: example %lld is %lld bytes long, its fields take %lld", path, (long long)i,
                        (long long)(2 * words), (long long)(2 * (p - *pos)));
    *pos = p;
    return LLM_OK;
}

llm_status llm_hellaswag_load(llm_hellaswag **out, const char *path) {
    if (!out || !path) return llm_fail(LLM_EINVAL, "output or path is NULL");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return llm_fail(LLM_EIO, "cannot open HellaSwag eval file %s: %s", path, strerror(errno));
    int32_t header[LLM_HEADER_INTS];
    if (fread(header, sizeof header, 1, f) != 1) {
        fclose(f);
        return llm_fail(LLM_EFORMAT, "%s is truncated: smaller than the %zu-byte header", path, sizeof header);
    }
    if (header[0] != LLM_HELLASWAG_MAGIC || header[1] != LLM_HELLASWAG_VERSION || header[2] < 0) {
        fclose(f);
        return llm_fail(LLM_EFORMAT, "%s is not a HellaSwag eval file (magic %d version %d, expected %d version %d)",
                        path, header[0], header[1], LLM_HELLASWAG_MAGIC, LLM_HELLASWAG_VERSION);
    }
    // the rest of the file: uint16 words
    size_t cap = 1 << 20, n = 0;
    uint16_t *s = malloc(cap * sizeof *s);
    for (size_t got; s && (got = fread(s + n, sizeof *s, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            uint16_t *t = realloc(s, 2 * cap * sizeof *s);
            if (!t) { free(s); s = NULL; break; }
            s = t;
            cap *= 2;
        }
    }
    int read_error = ferror(f);
    fclose(f);
    if (!s) return llm_fail(LLM_ENOMEM, "out of memory reading %s", path);
    if (read_error) {
        free(s);
        return llm_fail(LLM_EIO, "cannot read %s", path);
    }
    llm_hellaswag *h = calloc(1, sizeof *h);
    if (h) {
        h->n = header[2];
        h->ex = calloc(h->n ? (size_t)h->n : 1, sizeof *h->ex);
        h->tokens = malloc((n ? n : 1) * sizeof *h->tokens); // fewer tokens than words
    }
    if (!h || !h->ex || !h->tokens) {
        free(s);
        llm_hellaswag_free(h);
        return llm_fail(LLM_ENOMEM, "out of memory reading %s", path);
    }
    int64_t pos = 0, ntok = 0;
    llm_status st = LLM_OK;
    for (int64_t i = 0; i < h->n && st == LLM_OK; i++)
        st = parse_example(path, i, s, (int64_t)n, &pos, &h->ex[i], h->tokens, &ntok);
    if (st == LLM_OK && pos != (int64_t)n)
        st = llm_fail(LLM_EFORMAT, "%s has %lld bytes after its %lld examples", path, (long long)(2 * ((int64_t)n - pos)),
                      (long long)h->n);
    free(s);
    if (st != LLM_OK) {
        llm_hellaswag_free(h);
        return st;
    }
    *out = h;
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// scoring

typedef struct hs_item {
    int64_t i; // example index
    int keep;  // context tokens kept (the last ones)
    int width; // input width of its rows: keep + longest ending - 1
} hs_item;

static int by_width(const void *a, const void *b) {
    const hs_item *x = a, *y = b;
    if (x->width != y->width) return x->width < y->width ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

static int argmin(const double *v) {
    int best = 0;
    for (int j = 1; j < E; j++)
        if (v[j] < v[best]) best = j;
    return best;
}

// One forward over items[0..k) with T = their largest width; adds to *out (and pred_norm).
static llm_status score_pack(llm_model *m, const llm_hellaswag *h, const hs_item *items, int k, int T, int32_t *x,
                             int32_t *y, llm_hellaswag_result *out, int32_t *pred_norm) {
    const int B = E * k;
    memset(x, 0, (size_t)B * T * sizeof *x);
    memset(y, 0, (size_t)B * T * sizeof *y);
    for (int e = 0; e < k; e++) {
        const hs_example *ex = &h->ex[items[e].i];
        const int32_t *ctx = h->tokens + ex->ctx + (ex->ctx_len - items[e].keep);
        for (int j = 0; j < E; j++) {
            int32_t *xr = x + (size_t)(E * e + j) * T, *yr = y + (size_t)(E * e + j) * T;
            int c = items[e].keep, len = c + ex->end_len[j]; // the row: ctx[0..c) then ending j
            for (int t = 0; t + 1 < len; t++) {
                xr[t] = t < c ? ctx[t] : h->tokens[ex->end[j] + t - c];
                yr[t] = t + 1 < c ? ctx[t + 1] : h->tokens[ex->end[j] + t + 1 - c];
            }
        }
    }
    LLM_TRY(llm_forward(m, x, y, B, T, NULL));
    // a host copy of the per-position losses, so that device backends work the same way
    float *losses = malloc((size_t)B * T * sizeof(float));
    if (!losses) return llm_fail(LLM_ENOMEM, "out of memory scoring HellaSwag");
    llm_status s = llm_model_copy_losses(m, losses);
    if (s != LLM_OK) {
        free(losses);
        return s;
    }
    for (int e = 0; e < k; e++) {
        const hs_example *ex = &h->ex[items[e].i];
        double total[E], mean[E];
        for (int j = 0; j < E; j++) {
            const float *lr = losses + (size_t)(E * e + j) * T;
            int first = items[e].keep - 1; // position predicting the first ending token
            double sum = 0.0;              // left to right, as hellaswag.py's cumsum
            for (int t = first; t < first + ex->end_len[j]; t++) sum += (double)lr[t];
            total[j] = sum;
            mean[j] = sum / ex->end_len[j];
        }
        int p = argmin(total), pn = argmin(mean);
        out->n++;
        out->correct += p == ex->label;
        out->correct_norm += pn == ex->label;
        if (pred_norm) pred_norm[items[e].i] = pn;
    }
    free(losses);
    return LLM_OK;
}

llm_status llm_hellaswag_eval(llm_model *m, const llm_hellaswag *h, int max_tokens, int rank, int world_size,
                              llm_hellaswag_result *out, int32_t *pred_norm) {
    if (!m || !h || !out) return llm_fail(LLM_EINVAL, "model, eval set or output is NULL");
    if (max_tokens < 1) return llm_fail(LLM_EINVAL, "max_tokens must be >= 1, got %d", max_tokens);
    if (world_size < 1 || rank < 0 || rank >= world_size)
        return llm_fail(LLM_EINVAL, "need 0 <= rank < world_size, got rank %d, world_size %d", rank, world_size);
    *out = (llm_hellaswag_result){0, 0, 0};
    const llm_config cfg = llm_model_config(m);
    const int block = cfg.block_size;
    int64_t mine = h->n > rank ? (h->n - rank + world_size - 1) / world_size : 0;
    if (mine == 0) return LLM_OK;
    hs_item *items = malloc((size_t)mine * sizeof *items);
    if (!items) return llm_fail(LLM_ENOMEM, "out of memory for %lld HellaSwag examples", (long long)mine);
    int widest = 0;
    for (int64_t k = 0; k < mine; k++) {
        const hs_example *ex = &h->ex[rank + k * world_size];
        int e_max = 0, bad = -1;
        for (int j = 0; j < E; j++) e_max = ex->end_len[j] > e_max ? ex->end_len[j] : e_max;
        // its tokens lie between the context's first and the last ending's last (parse order)
        for (int64_t t = ex->ctx; t < ex->end[E - 1] + ex->end_len[E - 1]; t++)
            if (h->tokens[t] >= cfg.vocab_size) bad = h->tokens[t];
        if (bad >= 0) {
            free(items);
            return llm_fail(LLM_EINVAL, "HellaSwag example %lld holds token id %d, outside the model's vocabulary "
                            "of %d", (long long)(rank + k * world_size), bad, cfg.vocab_size);
        }
        int keep = block + 1 - e_max < ex->ctx_len ? block + 1 - e_max : ex->ctx_len;
        if (keep < 1) {
            free(items);
            return llm_fail(LLM_EINVAL, "HellaSwag example %lld: an ending of %d tokens does not fit the model's "
                            "block_size %d", (long long)(rank + k * world_size), e_max, block);
        }
        items[k] = (hs_item){rank + k * world_size, keep, keep + e_max - 1};
        widest = items[k].width > widest ? items[k].width : widest;
    }
    qsort(items, (size_t)mine, sizeof *items, by_width);
    size_t cap = (size_t)max_tokens > (size_t)E * widest ? (size_t)max_tokens : (size_t)E * widest;
    int32_t *x = malloc(cap * sizeof *x), *y = malloc(cap * sizeof *y);
    llm_status st = x && y ? LLM_OK : llm_fail(LLM_ENOMEM, "out of memory for a HellaSwag batch");
    // greedy packs in width order: add examples while 4 * count * width <= max_tokens
    for (int64_t a = 0; st == LLM_OK && a < mine;) {
        int64_t b = a + 1;
        while (b < mine && (int64_t)E * (b - a + 1) * items[b].width <= max_tokens) b++;
        st = score_pack(m, h, items + a, (int)(b - a), items[b - 1].width, x, y, out, pred_norm);
        a = b;
    }
    free(x);
    free(y);
    free(items);
    return st;
}
