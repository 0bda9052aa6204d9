/*
 * tokenizer.c — byte-level BPE: vocabulary, tiktoken-compatible encoding, merge recovery, the
 * training hot loop, and the llm.c tokenizer file that the train_gpt2 binary decodes with.
 *
 * Layout
 *   helpers        checked allocation, hashing, a binary min-heap shared by encoding and training
 *   vocabulary     token bytes by id + open-addressing hash table (bytes -> id)
 *   encoding       tiktoken's rule for one piece, with a heap: O(m log m) for m bytes
 *   recovery       the two parts of each token, from ranks alone
 *   training       incremental pair counts over a linked list of positions + lazy max-heap
 *   llm.c file     load and decode (formats.h)
 *
 * The rank of a token is its id everywhere: lower ids are merged first. This holds for tiktoken's
 * vocabularies (ranks are ids) and for trained ones (ids are handed out in merge order).
 *
 * References: Sennrich, Haddow, Birch 2016 (BPE for subwords); tiktoken's byte_pair_merge (the
 * encoding rule reproduced here); the llm.c tokenizer file (tokenizer.h in llm.c).
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L // fileno, fstat
#endif
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/formats.h"
#include "data/tokenizer.h"

#define NONE SIZE_MAX // "no position" in the linked lists

// ----------------------------------------------------------------------------
// helpers

// realloc for n elements of size bytes; NULL on overflow or failure (p is kept then).
static void *grow(void *p, size_t n, size_t size) {
    if (size != 0 && n > SIZE_MAX / size) return NULL;
    size_t bytes = n * size;
    return realloc(p, bytes ? bytes : 1);
}

// Makes room for `need` elements in *arr (capacity *cap), doubling.
static llm_status reserve(void **arr, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return LLM_OK;
    size_t c = *cap ? *cap : 16;
    while (c < need) c = c > SIZE_MAX / 2 ? need : 2 * c;
    void *p = grow(*arr, c, size);
    if (!p) return llm_fail(LLM_ENOMEM, "tokenizer: out of memory (%zu elements of %zu bytes)", c, size);
    *arr = p;
    *cap = c;
    return LLM_OK;
}
#define RESERVE(arr, cap, need) reserve((void **)&(arr), &(cap), (need), sizeof *(arr))

static uint64_t hash_bytes(const uint8_t *p, size_t n) { // FNV-1a, then a final mix
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) { // splitmix64 finaliser
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// A binary min-heap ordered by (k1, k2); p1, p2 are payload.
typedef struct {
    uint64_t k1, k2;
    size_t p1, p2;
} heap_item;

typedef struct {
    heap_item *a;
    size_t n, cap;
} heap;

static int item_less(const heap_item *x, const heap_item *y) {
    return x->k1 < y->k1 || (x->k1 == y->k1 && x->k2 < y->k2);
}

static llm_status heap_push(heap *h, heap_item it) {
    LLM_TRY(RESERVE(h->a, h->cap, h->n + 1));
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!item_less(&it, &h->a[parent])) break;
        h->a[i] = h->a[parent];
        i = parent;
    }
    h->a[i] = it;
    return LLM_OK;
}

static heap_item heap_pop(heap *h) { // h->n > 0
    heap_item top = h->a[0], last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && item_less(&h->a[c + 1], &h->a[c])) c++;
        if (!item_less(&h->a[c], &last)) break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n > 0) h->a[i] = last;
    return top;
}

// ----------------------------------------------------------------------------
// vocabulary

struct llm_bpe_vocab {
    uint8_t *bytes; // all token bytes back to back
    size_t n_bytes, cap_bytes;
    size_t *off, *len; // token id: bytes[off[id] .. off[id] + len[id]); len 0 = no token
    size_t n_ids, cap_off, cap_len;
    size_t n_tokens;
    int32_t *table; // open addressing (linear probing), -1 = empty; capacity a power of two
    size_t table_cap;
    int32_t byte_id[256]; // id of each single byte, -1 while missing
};

static int32_t vocab_find(const llm_bpe_vocab *v, const uint8_t *p, size_t n) {
    size_t mask = v->table_cap - 1;
    for (size_t h = (size_t)hash_bytes(p, n) & mask;; h = (h + 1) & mask) {
        int32_t id = v->table[h];
        if (id < 0) return -1;
        if (v->len[id] == n && memcmp(v->bytes + v->off[id], p, n) == 0) return id;
    }
}

static void table_insert(int32_t *table, size_t cap, const llm_bpe_vocab *v, int32_t id) {
    size_t h = (size_t)hash_bytes(v->bytes + v->off[id], v->len[id]) & (cap - 1);
    while (table[h] >= 0) h = (h + 1) & (cap - 1);
    table[h] = id;
}

static llm_status vocab_init(llm_bpe_vocab *v) {
    memset(v, 0, sizeof *v);
    v->table_cap = 1024;
    v->table = malloc(v->table_cap * sizeof *v->table);
    if (!v->table) return llm_fail(LLM_ENOMEM, "tokenizer: out of memory");
    memset(v->table, 0xff, v->table_cap * sizeof *v->table);
    for (int b = 0; b < 256; b++) v->byte_id[b] = -1;
    return LLM_OK;
}

static void vocab_release(llm_bpe_vocab *v) {
    free(v->bytes);
    free(v->off);
    free(v->len);
    free(v->table);
}

// Gives id the bytes p[0..n) (n > 0). Fails on a duplicate id or duplicate bytes.
static llm_status vocab_add(llm_bpe_vocab *v, size_t id, const uint8_t *p, size_t n) {
    if (id >= (size_t)INT32_MAX) return llm_fail(LLM_EINVAL, "token id %zu does not fit in int32", id);
    if (id < v->n_ids && v->len[id] > 0) return llm_fail(LLM_EINVAL, "token id %zu is given twice", id);
    int32_t dup = vocab_find(v, p, n);
    if (dup >= 0) return llm_fail(LLM_EINVAL, "tokens %d and %zu have the same bytes", dup, id);
    if ((v->n_tokens + 1) * 2 > v->table_cap) { // keep the load factor <= 1/2
        size_t cap = v->table_cap * 2;
        int32_t *t = grow(NULL, cap, sizeof *t);
        if (!t) return llm_fail(LLM_ENOMEM, "tokenizer: out of memory (hash table of %zu slots)", cap);
        memset(t, 0xff, cap * sizeof *t);
        for (size_t i = 0; i < v->n_ids; i++)
            if (v->len[i] > 0) table_insert(t, cap, v, (int32_t)i);
        free(v->table);
        v->table = t;
        v->table_cap = cap;
    }
    LLM_TRY(RESERVE(v->off, v->cap_off, id + 1));
    LLM_TRY(RESERVE(v->len, v->cap_len, id + 1));
    LLM_TRY(RESERVE(v->bytes, v->cap_bytes, v->n_bytes + n));
    for (; v->n_ids <= id; v->n_ids++) v->off[v->n_ids] = v->len[v->n_ids] = 0;
    // p may point into v->bytes (not here: callers pass outside buffers), so copy after reserving
    memcpy(v->bytes + v->n_bytes, p, n);
    v->off[id] = v->n_bytes;
    v->len[id] = n;
    v->n_bytes += n;
    v->n_tokens++;
    table_insert(v->table, v->table_cap, v, (int32_t)id);
    if (n == 1) v->byte_id[p[0]] = (int32_t)id;
    return LLM_OK;
}

llm_status llm_bpe_vocab_create(llm_bpe_vocab **out, const uint8_t *const *tokens, const size_t *lens, size_t n) {
    *out = NULL;
    if (n > (size_t)INT32_MAX) return llm_fail(LLM_EINVAL, "vocabulary of %zu ids does not fit in int32", n);
    llm_bpe_vocab *v = malloc(sizeof *v);
    if (!v) return llm_fail(LLM_ENOMEM, "tokenizer: out of memory");
    llm_status s = vocab_init(v);
    for (size_t i = 0; s == LLM_OK && i < n; i++)
        if (lens[i] > 0) s = vocab_add(v, i, tokens[i], lens[i]);
    for (int b = 0; s == LLM_OK && b < 256; b++)
        if (v->byte_id[b] < 0) s = llm_fail(LLM_EINVAL, "byte-level vocabulary has no token for byte 0x%02x", b);
    if (s != LLM_OK) {
        vocab_release(v);
        free(v);
        return s;
    }
    *out = v;
    return LLM_OK;
}

void llm_bpe_vocab_free(llm_bpe_vocab *v) {
    if (!v) return;
    vocab_release(v);
    free(v);
}

size_t llm_bpe_vocab_num_ids(const llm_bpe_vocab *v) { return v->n_ids; }
size_t llm_bpe_vocab_num_tokens(const llm_bpe_vocab *v) { return v->n_tokens; }

// ----------------------------------------------------------------------------
// encoding
//
// A piece is a linked list of parts (byte ranges). Every adjacent pair of parts whose concatenation
// is a token sits in a min-heap keyed (rank, start of the left part): popping gives the lowest rank,
// leftmost on ties — tiktoken's choice. Entries are never removed; one is stale when its parts have
// changed since (checked on pop), which is cheaper than deleting from the heap.

typedef struct {
    size_t *nxt, *prv; // part starting at i: [i, nxt[i]); prv[i] starts the part before it
    int32_t *ids;      // token of the part starting at i; -1 when i is no longer a part start
    size_t cap_nxt, cap_prv, cap_ids;
    heap h;
} piece_scratch;

static void scratch_free(piece_scratch *s) {
    free(s->nxt);
    free(s->prv);
    free(s->ids);
    free(s->h.a);
}

// Pushes the candidate merge of parts [left, mid) + [mid, right) if it forms a token below max_rank.
static llm_status push_candidate(const llm_bpe_vocab *v, const uint8_t *p, heap *h, size_t left, size_t mid,
                                 size_t right, int64_t max_rank) {
    int32_t r = vocab_find(v, p + left, right - left);
    if (r < 0 || r >= max_rank) return LLM_OK;
    heap_item it = {(uint64_t)r, (uint64_t)left, mid, right};
    return heap_push(h, it);
}

// Encodes p[0..n) (n > 0) into out (room for n ids). With fast_path, a piece that is a token is
// returned whole (tiktoken does this); only tokens of rank < max_rank take part in merges.
static llm_status encode_piece(const llm_bpe_vocab *v, const uint8_t *p, size_t n, int fast_path, int64_t max_rank,
                               piece_scratch *s, int32_t *out, size_t *n_out) {
    if (fast_path) {
        int32_t id = vocab_find(v, p, n);
        if (id >= 0) {
            out[0] = id;
            *n_out = 1;
            return LLM_OK;
        }
    }
    LLM_TRY(RESERVE(s->nxt, s->cap_nxt, n));
    LLM_TRY(RESERVE(s->prv, s->cap_prv, n));
    LLM_TRY(RESERVE(s->ids, s->cap_ids, n));
    s->h.n = 0;
    for (size_t i = 0; i < n; i++) {
        s->nxt[i] = i + 1;
        s->prv[i] = i > 0 ? i - 1 : NONE;
        s->ids[i] = v->byte_id[p[i]];
    }
    for (size_t i = 0; i + 1 < n; i++) LLM_TRY(push_candidate(v, p, &s->h, i, i + 1, i + 2, max_rank));
    while (s->h.n > 0) {
        heap_item it = heap_pop(&s->h);
        size_t left = (size_t)it.k2, mid = it.p1, right = it.p2;
        if (s->ids[left] < 0 || s->nxt[left] != mid || s->nxt[mid] != right) continue; // stale
        s->ids[left] = (int32_t)it.k1;
        s->ids[mid] = -1;
        s->nxt[left] = right;
        if (right < n) s->prv[right] = left;
        if (s->prv[left] != NONE) LLM_TRY(push_candidate(v, p, &s->h, s->prv[left], left, right, max_rank));
        if (right < n) LLM_TRY(push_candidate(v, p, &s->h, left, right, s->nxt[right], max_rank));
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i = s->nxt[i]) out[k++] = s->ids[i];
    *n_out = k;
    return LLM_OK;
}

llm_status llm_bpe_encode(const llm_bpe_vocab *v, const uint8_t *data, const size_t *offsets, size_t n,
                          int32_t *out, size_t *n_out) {
    *n_out = 0;
    for (size_t i = 0; i < n; i++)
        if (offsets[i + 1] < offsets[i]) return llm_fail(LLM_EINVAL, "piece offsets must not decrease (piece %zu)", i);
    piece_scratch s = {0};
    llm_status st = LLM_OK;
    size_t k = 0;
    for (size_t i = 0; i < n && st == LLM_OK; i++) {
        size_t len = offsets[i + 1] - offsets[i], m = 0;
        if (len == 0) continue;
        st = encode_piece(v, data + offsets[i], len, 1, INT64_MAX, &s, out + k, &m);
        k += m;
    }
    scratch_free(&s);
    *n_out = k;
    return st;
}

// ----------------------------------------------------------------------------
// recovery: token id is the merge of the two parts its own bytes encode to with lower ranks only

llm_status llm_bpe_recover_merges(const llm_bpe_vocab *v, int32_t *left, int32_t *right) {
    piece_scratch s = {0};
    int32_t *parts = NULL;
    size_t cap_parts = 0;
    llm_status st = LLM_OK;
    for (size_t id = 0; id < v->n_ids && st == LLM_OK; id++) {
        left[id] = right[id] = -1;
        size_t n = v->len[id], m = 0;
        if (n < 2) continue;
        st = RESERVE(parts, cap_parts, n);
        if (st == LLM_OK) st = encode_piece(v, v->bytes + v->off[id], n, 0, (int64_t)id, &s, parts, &m);
        if (st == LLM_OK && m != 2)
            st = llm_fail(LLM_EFORMAT,
                          "token %zu (%zu bytes) is not the merge of two lower-ranked tokens (its bytes encode to "
                          "%zu parts): the ranks are not those of a byte-level BPE",
                          id, n, m);
        if (st == LLM_OK) {
            left[id] = parts[0];
            right[id] = parts[1];
        }
    }
    free(parts);
    scratch_free(&s);
    return st;
}

// ----------------------------------------------------------------------------
// training
//
// All words are laid out back to back as positions; each position holds a token (-1 once merged
// into its left neighbour) and links to its neighbours within the word. Each pair (a, b) keeps its
// weighted count and a list of positions where it was seen (entries may be stale: they are checked
// when used). Merging (a, b) -> z visits only the listed positions; at each live occurrence with
// neighbours p and q (when present) the counts change by
//     (p, a) -w, (p, z) +w, (a, b) -w, (b, q) -w, (z, q) +w        (w: the word's count)
// with neighbours read from the current state, so occurrences merged earlier in the same step are
// seen as z. Only pairs containing z grow; they are pushed onto the max-heap after the step. Pairs
// that shrank keep their old heap entries: a popped entry whose count is out of date is pushed
// again with the current count, so the first up-to-date entry popped is the true maximum.

typedef struct {
    int32_t a, b;
    int64_t count;
    size_t *occ; // positions where (a, b) was seen
    size_t n_occ, cap_occ;
    size_t stamp; // step in which it was last put on the `grown` list
} bpe_pair;

typedef struct {
    int32_t *tok;
    size_t *nxt, *prv;
    int64_t *w;
    bpe_pair *pairs;
    size_t n_pairs, cap_pairs;
    size_t *slots; // hash (a, b) -> pair index + 1; 0 = empty
    size_t slot_cap;
    heap h;
    size_t *grown; // pairs whose count grew in this step
    size_t n_grown, cap_grown, step;
    llm_bpe_vocab vocab;
    uint8_t *buf; // merged bytes
    size_t cap_buf;
} trainer;

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static llm_status pair_index(trainer *t, int32_t a, int32_t b, size_t *out) {
    size_t mask = t->slot_cap - 1;
    uint64_t key = pair_key(a, b);
    size_t h = (size_t)hash_u64(key) & mask;
    for (; t->slots[h]; h = (h + 1) & mask) {
        bpe_pair *p = &t->pairs[t->slots[h] - 1];
        if (p->a == a && p->b == b) {
            *out = t->slots[h] - 1;
            return LLM_OK;
        }
    }
    if ((t->n_pairs + 1) * 2 > t->slot_cap) { // grow the table, then find the free slot again
        size_t cap = t->slot_cap * 2;
        size_t *slots = calloc(cap, sizeof *slots);
        if (!slots) return llm_fail(LLM_ENOMEM, "BPE training: out of memory (pair table of %zu slots)", cap);
        for (size_t i = 0; i < t->n_pairs; i++) {
            size_t g = (size_t)hash_u64(pair_key(t->pairs[i].a, t->pairs[i].b)) & (cap - 1);
            while (slots[g]) g = (g + 1) & (cap - 1);
            slots[g] = i + 1;
        }
        free(t->slots);
        t->slots = slots;
        t->slot_cap = cap;
        for (h = (size_t)hash_u64(key) & (cap - 1); slots[h]; h = (h + 1) & (cap - 1)) {}
    }
    LLM_TRY(RESERVE(t->pairs, t->cap_pairs, t->n_pairs + 1));
    bpe_pair *p = &t->pairs[t->n_pairs];
    memset(p, 0, sizeof *p);
    p->a = a;
    p->b = b;
    p->stamp = SIZE_MAX;
    t->slots[h] = ++t->n_pairs;
    *out = t->n_pairs - 1;
    return LLM_OK;
}

// count(a, b) += delta; a positive delta also records that the pair starts at position pos.
static llm_status pair_add(trainer *t, int32_t a, int32_t b, int64_t delta, size_t pos) {
    size_t i = 0;
    LLM_TRY(pair_index(t, a, b, &i));
    bpe_pair *p = &t->pairs[i];
    p->count += delta;
    if (delta <= 0) return LLM_OK;
    if (p->n_occ == 0 || p->occ[p->n_occ - 1] != pos) {
        LLM_TRY(RESERVE(p->occ, p->cap_occ, p->n_occ + 1));
        p->occ[p->n_occ++] = pos;
    }
    if (p->stamp != t->step) {
        p->stamp = t->step;
        LLM_TRY(RESERVE(t->grown, t->cap_grown, t->n_grown + 1));
        t->grown[t->n_grown++] = i;
    }
    return LLM_OK;
}

static llm_status push_pair(trainer *t, size_t i) {
    const bpe_pair *p = &t->pairs[i];
    heap_item it = {(uint64_t)(INT64_MAX - p->count), pair_key(p->a, p->b), i, 0};
    return heap_push(&t->h, it);
}

// Pushes the pairs that grew in this step and starts the next one.
static llm_status push_grown(trainer *t) {
    for (size_t k = 0; k < t->n_grown; k++)
        if (t->pairs[t->grown[k]].count > 0) LLM_TRY(push_pair(t, t->grown[k]));
    t->n_grown = 0;
    t->step++;
    return LLM_OK;
}

// The most frequent pair (ties: smallest (a, b)), or NONE when no pair is left.
static llm_status pop_best(trainer *t, size_t *best) {
    *best = NONE;
    while (t->h.n > 0) {
        heap_item it = heap_pop(&t->h);
        const bpe_pair *p = &t->pairs[it.p1];
        int64_t seen = INT64_MAX - (int64_t)it.k1;
        if (p->count == seen && seen > 0) {
            *best = it.p1;
            return LLM_OK;
        }
        // shrunk since pushed: retry with the current count; grown: a newer entry exists
        if (p->count > 0 && p->count < seen) LLM_TRY(push_pair(t, it.p1));
    }
    return LLM_OK;
}

static int cmp_size(const void *x, const void *y) {
    size_t a = *(const size_t *)x, b = *(const size_t *)y;
    return (a > b) - (a < b);
}

// Replaces every live occurrence of pair pi = (a, b) by z, updating neighbouring pair counts.
static llm_status merge_pair(trainer *t, size_t pi, int32_t z) {
    int32_t a = t->pairs[pi].a, b = t->pairs[pi].b;
    size_t *occ = t->pairs[pi].occ, n_occ = t->pairs[pi].n_occ;
    t->pairs[pi].occ = NULL; // detach: pair_add may move t->pairs; (a, b) gets no new entries here
    t->pairs[pi].n_occ = t->pairs[pi].cap_occ = 0;
    if (a == b) qsort(occ, n_occ, sizeof *occ, cmp_size); // left to right: "aaa" -> [aa, a]
    llm_status s = LLM_OK;
    for (size_t k = 0; k < n_occ && s == LLM_OK; k++) {
        size_t i = occ[k], j = t->nxt[i];
        if (t->tok[i] != a || j == NONE || t->tok[j] != b) continue; // stale entry
        int64_t w = t->w[i];
        size_t p = t->prv[i], q = t->nxt[j];
        if (p != NONE) {
            s = pair_add(t, t->tok[p], a, -w, p);
            if (s == LLM_OK) s = pair_add(t, t->tok[p], z, w, p);
        }
        if (q != NONE && s == LLM_OK) {
            s = pair_add(t, b, t->tok[q], -w, j);
            if (s == LLM_OK) s = pair_add(t, z, t->tok[q], w, i);
        }
        t->pairs[pi].count -= w;
        t->tok[i] = z;
        t->tok[j] = -1;
        t->nxt[i] = q;
        if (q != NONE) t->prv[q] = i;
    }
    free(occ);
    if (s == LLM_OK && t->pairs[pi].count != 0)
        s = llm_fail(LLM_ESTATE, "BPE training: internal error, pair (%d, %d) has count %lld after its merge", a, b,
                     (long long)t->pairs[pi].count);
    return s;
}

static void trainer_free(trainer *t) {
    free(t->tok);
    free(t->nxt);
    free(t->prv);
    free(t->w);
    for (size_t i = 0; i < t->n_pairs; i++) free(t->pairs[i].occ);
    free(t->pairs);
    free(t->slots);
    free(t->h.a);
    free(t->grown);
    vocab_release(&t->vocab);
    free(t->buf);
}

static llm_status trainer_init(trainer *t, const uint8_t *data, const size_t *offsets, const int64_t *counts,
                               size_t n) {
    size_t base = offsets[0], total = offsets[n] - base;
    LLM_TRY(vocab_init(&t->vocab));
    for (int c = 0; c < 256; c++) {
        uint8_t byte = (uint8_t)c;
        LLM_TRY(vocab_add(&t->vocab, (size_t)c, &byte, 1));
    }
    t->tok = grow(NULL, total, sizeof *t->tok);
    t->nxt = grow(NULL, total, sizeof *t->nxt);
    t->prv = grow(NULL, total, sizeof *t->prv);
    t->w = grow(NULL, total, sizeof *t->w);
    t->slot_cap = 1 << 16;
    t->slots = calloc(t->slot_cap, sizeof *t->slots);
    if (!t->tok || !t->nxt || !t->prv || !t->w || !t->slots)
        return llm_fail(LLM_ENOMEM, "BPE training: out of memory for %zu positions", total);
    for (size_t i = 0; i < n; i++) {
        size_t lo = offsets[i] - base, hi = offsets[i + 1] - base;
        for (size_t k = lo; k < hi; k++) {
            t->tok[k] = data[offsets[i] + (k - lo)];
            t->prv[k] = k > lo ? k - 1 : NONE;
            t->nxt[k] = k + 1 < hi ? k + 1 : NONE;
            t->w[k] = counts[i];
            if (k > lo) LLM_TRY(pair_add(t, t->tok[k - 1], t->tok[k], counts[i], k - 1));
        }
    }
    return push_grown(t);
}

static llm_status train(trainer *t, size_t vocab_size, llm_bpe_merge **merges, size_t *n_merges) {
    size_t cap = 0;
    while (t->vocab.n_tokens < vocab_size) {
        size_t best;
        LLM_TRY(pop_best(t, &best));
        if (best == NONE) break; // every word is a single token
        int32_t a = t->pairs[best].a, b = t->pairs[best].b;
        size_t la = t->vocab.len[a], lb = t->vocab.len[b];
        LLM_TRY(RESERVE(t->buf, t->cap_buf, la + lb));
        memcpy(t->buf, t->vocab.bytes + t->vocab.off[a], la);
        memcpy(t->buf + la, t->vocab.bytes + t->vocab.off[b], lb);
        int32_t z = vocab_find(&t->vocab, t->buf, la + lb);
        if (z < 0) {
            z = (int32_t)t->vocab.n_ids;
            LLM_TRY(vocab_add(&t->vocab, (size_t)z, t->buf, la + lb));
        }
        LLM_TRY(RESERVE(*merges, cap, *n_merges + 1));
        llm_bpe_merge m = {a, b, z, t->pairs[best].count};
        (*merges)[(*n_merges)++] = m;
        LLM_TRY(merge_pair(t, best, z));
        LLM_TRY(push_grown(t));
    }
    return LLM_OK;
}

llm_status llm_bpe_train(const uint8_t *data, const size_t *offsets, const int64_t *counts, size_t n,
                         size_t vocab_size, llm_bpe_merge **merges, size_t *n_merges) {
    *merges = NULL;
    *n_merges = 0;
    if (vocab_size < 256) return llm_fail(LLM_EINVAL, "vocab_size must be >= 256 (the byte tokens), got %zu", vocab_size);
    if (vocab_size > (size_t)INT32_MAX) return llm_fail(LLM_EINVAL, "vocab_size %zu does not fit in int32", vocab_size);
    for (size_t i = 0; i < n; i++) {
        if (offsets[i + 1] < offsets[i]) return llm_fail(LLM_EINVAL, "word offsets must not decrease (word %zu)", i);
        if (counts[i] < 1) return llm_fail(LLM_EINVAL, "word %zu has count %lld; counts must be >= 1", i, (long long)counts[i]);
    }
    trainer t;
    memset(&t, 0, sizeof t);
    llm_status s = trainer_init(&t, data, offsets, counts, n);
    if (s == LLM_OK) s = train(&t, vocab_size, merges, n_merges);
    trainer_free(&t);
    if (s != LLM_OK) {
        free(*merges);
        *merges = NULL;
        *n_merges = 0;
    }
    return s;
}

void llm_bpe_merges_free(llm_bpe_merge *merges) { free(merges); }

// ----------------------------------------------------------------------------
// the llm.c tokenizer file: 256 x int32 header, then per token a 1-byte length and the bytes

struct llm_tokenizer {
    size_t vocab_size;
    int32_t eot;
    char *bytes;       // every token followed by a NUL
    size_t *off, *len; // token id: bytes[off[id] .. off[id] + len[id])
};

void llm_tokenizer_free(llm_tokenizer *t) {
    if (!t) return;
    free(t->bytes);
    free(t->off);
    free(t->len);
    free(t);
}

static llm_status tokenizer_read(FILE *f, const char *path, llm_tokenizer *t) {
    int32_t header[LLM_HEADER_INTS];
    if (fread(header, sizeof header, 1, f) != 1)
        return llm_fail(LLM_EFORMAT, "%s: file is truncated (shorter than the %zu-byte header)", path, sizeof header);
    if (header[0] != LLM_TOKENIZER_MAGIC)
        return llm_fail(LLM_EFORMAT,
                        "%s: not an llm.c tokenizer file (magic %d, expected %d); write one with "
                        "python -m llmpy.tokenizer llmc --out FILE",
                        path, header[0], LLM_TOKENIZER_MAGIC);
    int32_t version = header[1], n = header[2];
    if (version != 1 && version != LLM_TOKENIZER_VERSION)
        return llm_fail(LLM_EFORMAT, "%s: unsupported tokenizer file version %d (supported: 1, %d)", path, version,
                        LLM_TOKENIZER_VERSION);
    if (n <= 0) return llm_fail(LLM_EFORMAT, "%s: header has vocabulary size %d", path, n);
    t->vocab_size = (size_t)n;
    if (version == 1) { // llm.c's first version: GPT-2 only, EOT implied
        if (n != 50257) return llm_fail(LLM_EFORMAT, "%s: version 1 files are GPT-2 (50257 tokens), got %d", path, n);
        t->eot = 50256;
    } else {
        t->eot = header[3];
        if (t->eot < 0 || t->eot >= n)
            return llm_fail(LLM_EFORMAT, "%s: EOT id %d is outside the vocabulary of %d tokens", path, t->eot, n);
    }
    t->off = grow(NULL, t->vocab_size, sizeof *t->off);
    t->len = grow(NULL, t->vocab_size, sizeof *t->len);
    size_t cap = t->vocab_size * 8, used = 0;
    t->bytes = grow(NULL, cap, 1);
    if (!t->off || !t->len || !t->bytes) return llm_fail(LLM_ENOMEM, "%s: out of memory for %d tokens", path, n);
    for (size_t i = 0; i < t->vocab_size; i++) {
        unsigned char len;
        if (fread(&len, 1, 1, f) != 1 || used > SIZE_MAX - 257)
            return llm_fail(LLM_EFORMAT, "%s: file is truncated at token %zu of %zu", path, i, t->vocab_size);
        LLM_TRY(reserve((void **)&t->bytes, &cap, used + len + 1, 1));
        if (len > 0 && fread(t->bytes + used, 1, len, f) != len)
            return llm_fail(LLM_EFORMAT, "%s: file is truncated inside token %zu of %zu", path, i, t->vocab_size);
        t->off[i] = used;
        t->len[i] = len;
        t->bytes[used + len] = '\0';
        used += (size_t)len + 1;
    }
    if (fgetc(f) != EOF)
        return llm_fail(LLM_EFORMAT, "%s: unexpected data after the %zu tokens the header announces", path,
                        t->vocab_size);
    return LLM_OK;
}

llm_status llm_tokenizer_load(llm_tokenizer **out, const char *path) {
    if (!out || !path) return llm_fail(LLM_EINVAL, "tokenizer: output or path is NULL");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return llm_fail(errno == ENOENT ? LLM_ENOENT : LLM_EIO, "cannot open tokenizer file %s: %s; write one with "
                        "python -m llmpy.tokenizer llmc --out FILE", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return llm_fail(LLM_EFORMAT, "tokenizer file %s is a directory, not a file", path);
    }
    llm_tokenizer *t = calloc(1, sizeof *t);
    llm_status s = t ? tokenizer_read(f, path, t) : llm_fail(LLM_ENOMEM, "tokenizer: out of memory");
    fclose(f);
    if (s != LLM_OK) {
        llm_tokenizer_free(t);
        return s;
    }
    *out = t;
    return LLM_OK;
}

size_t llm_tokenizer_vocab_size(const llm_tokenizer *t) { return t->vocab_size; }
int32_t llm_tokenizer_eot(const llm_tokenizer *t) { return t->eot; }

llm_status llm_tokenizer_decode(const llm_tokenizer *t, int32_t id, const char **bytes, size_t *len) {
    if (id < 0 || (size_t)id >= t->vocab_size)
        return llm_fail(LLM_EINVAL, "token id %d is outside the vocabulary of %zu tokens", id, t->vocab_size);
    *bytes = t->bytes + t->off[id];
    *len = t->len[id];
    return LLM_OK;
}
