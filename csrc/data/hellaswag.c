/*
 * hellaswag.c — HellaSwag eval sets (from memory or llm.c's eval file) and the completion-style
 * scorer (see hellaswag.h for the rules).
 *
 * File layout (llm.c's, formats.h): a 256 x int32 header — [0] magic, [1] version 1,
 * [2] number of examples, [3] size in bytes of the longest example — then per example a stream
 * of uint16: 65535 (start marker), the example's size in bytes (these fields included), its
 * index, its label, the number of endings (4), the context length and tokens, then for each
 * ending its length and tokens. Little-endian, like every llm.c file (a little-endian host is
 * assumed, as in dataloader.c). The reader turns the file into the arrays llm_hellaswag_create
 * takes, so both ways in build the same eval set.
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
#define FIELDS (E + 1) // lengths per example: the context, then the endings

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
// eval sets

int64_t llm_hellaswag_size(const llm_hellaswag *h) { return h ? h->n : 0; }

int llm_hellaswag_label(const llm_hellaswag *h, int64_t i) { return h && i >= 0 && i < h->n ? h->ex[i].label : -1; }

void llm_hellaswag_free(llm_hellaswag *h) {
    if (!h) return;
    free(h->ex);
    free(h->tokens);
    free(h);
}

llm_status llm_hellaswag_create(llm_hellaswag **out, const int32_t *tokens, int64_t num_tokens,
                                const int32_t *lengths, const int32_t *labels, int64_t n) {
    if (!out) return llm_fail(LLM_EINVAL, "output is NULL");
    *out = NULL;
    if (n < 0 || num_tokens < 0) return llm_fail(LLM_EINVAL, "negative size: %lld examples, %lld tokens",
                                                 (long long)n, (long long)num_tokens);
    if ((n && (!lengths || !labels)) || (num_tokens && !tokens))
        return llm_fail(LLM_EINVAL, "tokens, lengths or labels is NULL");
    int64_t used = 0;
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= E)
            return llm_fail(LLM_EINVAL, "HellaSwag example %lld has label %d, outside [0, %d)", (long long)i,
                            labels[i], E);
        for (int f = 0; f < FIELDS; f++) {
            int32_t len = lengths[FIELDS * i + f];
            if (len < 1)
                return llm_fail(LLM_EINVAL, "HellaSwag example %lld has %s of %d tokens; every part needs one at "
                                "least", (long long)i, f ? "an ending" : "a context", len);
            used += len;
        }
    }
    if (used != num_tokens)
        return llm_fail(LLM_EINVAL, "the lengths of the %lld HellaSwag examples add up to %lld tokens, but %lld "
                        "tokens were given", (long long)n, (long long)used, (long long)num_tokens);
    llm_hellaswag *h = calloc(1, sizeof *h);
    if (h) {
        h->n = n;
        h->ex = calloc(n ? (size_t)n : 1, sizeof *h->ex);
        h->tokens = malloc((num_tokens ? (size_t)num_tokens : 1) * sizeof *h->tokens);
    }
    if (!h || !h->ex || !h->tokens) {
        llm_hellaswag_free(h);
        return llm_fail(LLM_ENOMEM, "out of memory for %lld HellaSwag examples", (long long)n);
    }
    if (num_tokens) memcpy(h->tokens, tokens, (size_t)num_tokens * sizeof *tokens);
    int64_t pos = 0;
    for (int64_t i = 0; i < n; i++) {
        hs_example *ex = &h->ex[i];
        const int32_t *len = lengths + FIELDS * i;
        ex->label = labels[i];
        ex->ctx = pos;
        ex->ctx_len = len[0];
        pos += len[0];
        for (int j = 0; j < E; j++) {
            ex->end[j] = pos;
            ex->end_len[j] = len[1 + j];
            pos += len[1 + j];
        }
        for (int64_t t = ex->ctx; t < pos; t++)
            if (h->tokens[t] < 0) {
                int bad = h->tokens[t];
                llm_hellaswag_free(h);
                return llm_fail(LLM_EINVAL, "HellaSwag example %lld holds the negative token id %d", (long long)i, bad);
            }
    }
    *out = h;
    return LLM_OK;
}

// Parses example i starting at s[*pos] (of n uint16): appends its tokens at tokens[*ntok], its
// FIELDS lengths at lengths[] and its label at *label.
static llm_status parse_example(const char *path, int64_t i, const uint16_t *s, int64_t n, int64_t *pos,
                                int32_t *lengths, int32_t *label, int32_t *tokens, int64_t *ntok) {
    int64_t p = *pos;
    if (n - p < 6) return llm_fail(LLM_EFORMAT, "%s: example %lld is truncated", path, (long long)i);
    if (s[p] != HS_START)
        return llm_fail(LLM_EFORMAT, "%s: example %lld does not start with the marker 65535 (found %u)", path,
                        (long long)i, s[p]);
    int64_t words = s[p + 1] / 2, stop = p + words;
    if (s[p + 1] % 2 || words < 6 || stop > n)
        return llm_fail(LLM_EFORMAT, "%s: example %lld has a bad size of %u bytes", path, (long long)i, s[p + 1]);
    *label = s[p + 3];
    if (s[p + 4] != E)
        return llm_fail(LLM_EFORMAT, "%s: example %lld has %u endings, expected %d", path, (long long)i, s[p + 4], E);
    if (*label >= E)
        return llm_fail(LLM_EFORMAT, "%s: example %lld has label %d, outside [0, %d)", path, (long long)i, *label, E);
    p += 5;
    for (int f = 0; f < FIELDS; f++) { // the context (f = 0), then the endings
        if (p >= stop) return llm_fail(LLM_EFORMAT, "%s: example %lld is shorter than its fields", path, (long long)i);
        int len = s[p++];
        if (len < 1 || p + len > stop)
            return llm_fail(LLM_EFORMAT, "%s: example %lld has a bad %s length %d", path, (long long)i,
                            f ? "ending" : "context", len);
        lengths[f] = len;
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
    const int64_t count = header[2];
    int32_t *tokens = malloc((n ? n : 1) * sizeof *tokens); // fewer tokens than words
    int32_t *lengths = malloc((count ? (size_t)count : 1) * FIELDS * sizeof *lengths);
    int32_t *labels = malloc((count ? (size_t)count : 1) * sizeof *labels);
    llm_status st = tokens && lengths && labels ? LLM_OK : llm_fail(LLM_ENOMEM, "out of memory reading %s", path);
    int64_t pos = 0, ntok = 0;
    for (int64_t i = 0; i < count && st == LLM_OK; i++)
        st = parse_example(path, i, s, (int64_t)n, &pos, lengths + FIELDS * i, labels + i, tokens, &ntok);
    if (st == LLM_OK && pos != (int64_t)n)
        st = llm_fail(LLM_EFORMAT, "%s has %lld bytes after its %lld examples", path, (long long)(2 * ((int64_t)n - pos)),
                      (long long)count);
    if (st == LLM_OK) st = llm_hellaswag_create(out, tokens, ntok, lengths, labels, count);
    free(s);
    free(tokens);
    free(lengths);
    free(labels);
    return st;
}

// ----------------------------------------------------------------------------
// scoring

// How example i is fed to model m: the context tokens kept (the last ones) and the input width of
// its rows (keep + longest ending - 1, the last token is only a target). LLM_EINVAL when it holds
// a token outside the vocabulary or an ending does not fit block_size.
static llm_status crop(const llm_hellaswag *h, int64_t i, const llm_config *cfg, int *keep, int *width) {
    const hs_example *ex = &h->ex[i];
    int e_max = 0;
    for (int j = 0; j < E; j++) e_max = ex->end_len[j] > e_max ? ex->end_len[j] : e_max;
    // its tokens lie between the context's first and the last ending's last
    for (int64_t t = ex->ctx; t < ex->end[E - 1] + ex->end_len[E - 1]; t++)
        if (h->tokens[t] >= cfg->vocab_size)
            return llm_fail(LLM_EINVAL, "HellaSwag example %lld holds token id %d, outside the model's vocabulary of "
                            "%d; render the examples with the model's tokenizer", (long long)i, h->tokens[t],
                            cfg->vocab_size);
    int k = cfg->block_size + 1 - e_max < ex->ctx_len ? cfg->block_size + 1 - e_max : ex->ctx_len;
    if (k < 1)
        return llm_fail(LLM_EINVAL, "HellaSwag example %lld: an ending of %d tokens does not fit the model's "
                        "block_size %d; leave the example out or use a model with a longer context",
                        (long long)i, e_max, cfg->block_size);
    *keep = k;
    *width = k + e_max - 1;
    return LLM_OK;
}

typedef struct hs_item {
    int64_t i; // example index
    int width; // input width of its rows
} hs_item;

static int by_width(const void *a, const void *b) {
    const hs_item *x = a, *y = b;
    if (x->width != y->width) return x->width < y->width ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

llm_status llm_hellaswag_plan(const llm_hellaswag *h, const llm_model *m, int64_t max_tokens, int rank,
                              int world_size, int64_t *order, int64_t *pack_end, int64_t *num_examples,
                              int64_t *num_packs) {
    if (!h || !m || !num_examples || !num_packs) return llm_fail(LLM_EINVAL, "eval set, model or output is NULL");
    if (max_tokens < 1) return llm_fail(LLM_EINVAL, "max_tokens must be >= 1, got %lld", (long long)max_tokens);
    if (world_size < 1 || rank < 0 || rank >= world_size)
        return llm_fail(LLM_EINVAL, "need 0 <= rank < world_size, got rank %d, world_size %d", rank, world_size);
    *num_examples = *num_packs = 0;
    const int64_t mine = h->n > rank ? (h->n - rank + world_size - 1) / world_size : 0;
    if (mine == 0) return LLM_OK;
    if (!order || !pack_end) return llm_fail(LLM_EINVAL, "order or pack_end is NULL");
    const llm_config cfg = llm_model_config(m);
    hs_item *items = malloc((size_t)mine * sizeof *items);
    if (!items) return llm_fail(LLM_ENOMEM, "out of memory for %lld HellaSwag examples", (long long)mine);
    for (int64_t k = 0; k < mine; k++) {
        int keep;
        items[k].i = rank + k * world_size;
        llm_status st = crop(h, items[k].i, &cfg, &keep, &items[k].width);
        if (st != LLM_OK) {
            free(items);
            return st;
        }
    }
    qsort(items, (size_t)mine, sizeof *items, by_width);
    // greedy packs in width order: add examples while 4 * count * width <= max_tokens
    int64_t packs = 0;
    for (int64_t a = 0; a < mine;) {
        int64_t b = a + 1;
        while (b < mine && (int64_t)E * (b - a + 1) * items[b].width <= max_tokens) b++;
        pack_end[packs++] = b;
        a = b;
    }
    for (int64_t k = 0; k < mine; k++) order[k] = items[k].i;
    free(items);
    *num_examples = mine;
    *num_packs = packs;
    return LLM_OK;
}

llm_status llm_hellaswag_score(llm_model *m, const llm_hellaswag *h, const int64_t *examples, int64_t k,
                               double *total, int64_t *count) {
    if (!m || !h || !examples || !total || !count) return llm_fail(LLM_EINVAL, "an argument is NULL");
    if (k < 1 || k > INT32_MAX / E)
        return llm_fail(LLM_EINVAL, "one forward scores 1 to %d HellaSwag examples, got %lld", INT32_MAX / E,
                        (long long)k);
    const llm_config cfg = llm_model_config(m);
    int *keep = malloc((size_t)k * sizeof *keep);
    if (!keep) return llm_fail(LLM_ENOMEM, "out of memory scoring HellaSwag");
    int T = 0;
    for (int64_t e = 0; e < k; e++) {
        int width;
        llm_status st = examples[e] < 0 || examples[e] >= h->n
                            ? llm_fail(LLM_EINVAL, "HellaSwag example %lld is outside the eval set of %lld",
                                       (long long)examples[e], (long long)h->n)
                            : crop(h, examples[e], &cfg, &keep[e], &width);
        if (st != LLM_OK) {
            free(keep);
            return st;
        }
        T = width > T ? width : T;
    }
    const int B = E * (int)k;
    const size_t BT = (size_t)B * T;
    int32_t *x = calloc(BT, sizeof *x), *y = calloc(BT, sizeof *y);
    float *losses = malloc(BT * sizeof *losses); // a host copy, so that device backends work the same way
    llm_status st = x && y && losses ? LLM_OK : llm_fail(LLM_ENOMEM, "out of memory for a HellaSwag batch");
    for (int64_t e = 0; st == LLM_OK && e < k; e++) {
        const hs_example *ex = &h->ex[examples[e]];
        const int c = keep[e];
        const int32_t *ctx = h->tokens + ex->ctx + (ex->ctx_len - c);
        for (int j = 0; j < E; j++) {
            int32_t *xr = x + (size_t)(E * e + j) * T, *yr = y + (size_t)(E * e + j) * T;
            const int len = c + ex->end_len[j]; // the row: ctx[0..c) then ending j; zero padding after
            for (int t = 0; t + 1 < len; t++) {
                xr[t] = t < c ? ctx[t] : h->tokens[ex->end[j] + t - c];
                yr[t] = t + 1 < c ? ctx[t + 1] : h->tokens[ex->end[j] + t + 1 - c];
            }
        }
    }
    if (st == LLM_OK) st = llm_forward(m, x, y, B, T, NULL);
    if (st == LLM_OK) st = llm_model_copy_losses(m, losses);
    for (int64_t e = 0; st == LLM_OK && e < k; e++) {
        const hs_example *ex = &h->ex[examples[e]];
        for (int j = 0; j < E; j++) {
            const float *lr = losses + (size_t)(E * e + j) * T;
            const int first = keep[e] - 1; // the position predicting the first ending token
            double sum = 0.0;              // left to right
            for (int t = first; t < first + ex->end_len[j]; t++) sum += (double)lr[t];
            total[E * e + j] = sum;
            count[E * e + j] = ex->end_len[j];
        }
    }
    free(keep);
    free(x);
    free(y);
    free(losses);
    return st;
}

static int argmin(const double *v) {
    int best = 0;
    for (int j = 1; j < E; j++)
        if (v[j] < v[best]) best = j;
    return best;
}

llm_status llm_hellaswag_eval(llm_model *m, const llm_hellaswag *h, int max_tokens, int rank, int world_size,
                              llm_hellaswag_result *out, int32_t *pred_norm) {
    if (!m || !h || !out) return llm_fail(LLM_EINVAL, "model, eval set or output is NULL");
    *out = (llm_hellaswag_result){0, 0, 0};
    const size_t n = h->n ? (size_t)h->n : 1;
    int64_t *order = malloc(n * sizeof *order), *pack_end = malloc(n * sizeof *pack_end);
    double *total = malloc(n * E * sizeof *total); // row k: the example order[k]
    int64_t *count = malloc(n * E * sizeof *count);
    int64_t mine = 0, packs = 0;
    llm_status st = order && pack_end && total && count
                        ? llm_hellaswag_plan(h, m, max_tokens, rank, world_size, order, pack_end, &mine, &packs)
                        : llm_fail(LLM_ENOMEM, "out of memory for %lld HellaSwag examples", (long long)h->n);
    for (int64_t p = 0, a = 0; st == LLM_OK && p < packs; a = pack_end[p++])
        st = llm_hellaswag_score(m, h, order + a, pack_end[p] - a, total + E * a, count + E * a);
    for (int64_t k = 0; st == LLM_OK && k < mine; k++) {
        const int64_t i = order[k];
        double mean[E];
        for (int j = 0; j < E; j++) mean[j] = total[E * k + j] / (double)count[E * k + j];
        int p = argmin(total + E * k), pn = argmin(mean);
        out->n++;
        out->correct += p == h->ex[i].label;
        out->correct_norm += pn == h->ex[i].label;
        if (pred_norm) pred_norm[i] = pn;
    }
    free(order);
    free(pack_end);
    free(total);
    free(count);
    return st;
}
