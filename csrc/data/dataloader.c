/*
 * dataloader.c — token shards (core/formats.h) and the rank-aware, resumable data loader.
 *
 * The semantics are documented in dataloader.h. Reads go through stdio: one open shard at a
 * time, one fread per batch (or one per sequence when shuffling). Tokens are stored
 * little-endian; like llm.c this assumes a little-endian host.
 * Every failure returns an llm_status with a message naming the file or pattern and saying what
 * to do; nothing exits.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L // glob, fseeko, stat
#endif
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "core/common.h"
#include "data/dataloader.h"
#include "core/formats.h"

#define HEADER_BYTES ((int64_t)LLM_HEADER_INTS * (int64_t)sizeof(int32_t))
// what to do about a damaged shard, and about a missing one
#define SHARD_FIX "re-create it (python -m llmpy.data --help lists the datasets)"
#define CREATE_FIX "(python -m llmpy.data --help)"

// ----------------------------------------------------------------------------
// shard header

// Opens a shard for reading: LLM_ENOENT when it does not exist, LLM_EIO for other failures.
static llm_status open_shard(const char *path, FILE **out) {
    *out = fopen(path, "rb");
    if (*out) return LLM_OK;
    if (errno == ENOENT) return llm_fail(LLM_ENOENT, "token shard %s does not exist; " SHARD_FIX, path);
    return llm_fail(LLM_EIO, "cannot open token shard %s: %s", path, strerror(errno));
}

// Validates the header of the open shard f against its size; *ntok receives the token count.
static llm_status check_header(FILE *f, const char *path, int64_t *ntok) {
    struct stat st;
    if (fstat(fileno(f), &st) != 0)
        return llm_fail(LLM_EIO, "cannot stat token shard %s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return llm_fail(LLM_EFORMAT, "token shard %s is a directory, not a file", path);
    int64_t size = (int64_t)st.st_size;
    int32_t header[LLM_HEADER_INTS];
    if (fseeko(f, 0, SEEK_SET) != 0)
        return llm_fail(LLM_EIO, "cannot seek in token shard %s: %s", path, strerror(errno));
    size_t got = fread(header, 1, sizeof header, f);
    if (got < sizeof header)
        return llm_fail(LLM_EFORMAT,
                        "token shard %s is truncated: %lld bytes, smaller than the %lld-byte header; " SHARD_FIX, path,
                        (long long)size, (long long)HEADER_BYTES);
    if (header[0] != LLM_SHARD_MAGIC)
        return llm_fail(LLM_EFORMAT, "%s is not a token shard: magic number %d, expected %d; " SHARD_FIX, path,
                        header[0], LLM_SHARD_MAGIC);
    if (header[1] != LLM_SHARD_VERSION)
        return llm_fail(LLM_EFORMAT, "token shard %s has version %d, this llmpy reads version %d", path, header[1],
                        LLM_SHARD_VERSION);
    if (header[2] < 0)
        return llm_fail(LLM_EFORMAT, "token shard %s is corrupt: negative token count %d in its header; " SHARD_FIX,
                        path, header[2]);
    int64_t expect = HEADER_BYTES + (int64_t)header[2] * (int64_t)sizeof(uint16_t);
    if (size != expect) {
        int64_t found = (size - HEADER_BYTES) / (int64_t)sizeof(uint16_t);
        return llm_fail(LLM_EFORMAT,
                        "token shard %s %s: header says %d tokens (%lld bytes), file has %lld bytes (%lld tokens); "
                        SHARD_FIX, path, size < expect ? "is truncated" : "is longer than its header says", header[2],
                        (long long)expect, (long long)size, (long long)found);
    }
    *ntok = header[2];
    return LLM_OK;
}

llm_status llm_shard_read_header(const char *path, int64_t *ntok) {
    if (!path || !ntok) return llm_fail(LLM_EINVAL, "shard path or output is NULL");
    FILE *f;
    LLM_TRY(open_shard(path, &f));
    llm_status s = check_header(f, path, ntok);
    fclose(f);
    return s;
}

// ----------------------------------------------------------------------------
// permutations: splitmix64 keys, sorted

#define GOLDEN 0x9E3779B97F4A7C15ULL

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

uint64_t llm_data_stream_seed(uint64_t seed, uint64_t epoch, uint64_t which) {
    uint64_t h = 0;
    h = mix64((h ^ seed) + GOLDEN);
    h = mix64((h ^ epoch) + GOLDEN);
    h = mix64((h ^ which) + GOLDEN);
    return h;
}

typedef struct {
    uint64_t key;
    int64_t idx;
} keyed;

static int keyed_cmp(const void *a, const void *b) {
    const keyed *p = a, *q = b;
    if (p->key != q->key) return p->key < q->key ? -1 : 1;
    return (p->idx > q->idx) - (p->idx < q->idx);
}

// scratch: n entries
static void permute(int64_t *out, keyed *scratch, int64_t n, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) {
        scratch[i].key = mix64(seed + (uint64_t)(i + 1) * GOLDEN);
        scratch[i].idx = i;
    }
    qsort(scratch, (size_t)n, sizeof *scratch, keyed_cmp);
    for (int64_t i = 0; i < n; i++) out[i] = scratch[i].idx;
}

llm_status llm_data_permutation(int64_t *out, int64_t n, uint64_t seed) {
    if (n < 0) return llm_fail(LLM_EINVAL, "permutation: n must be >= 0, got %lld", (long long)n);
    if (n > 0 && !out) return llm_fail(LLM_EINVAL, "permutation: output is NULL");
    if (n == 0) return LLM_OK;
    keyed *scratch = malloc((size_t)n * sizeof *scratch);
    if (!scratch) return llm_fail(LLM_ENOMEM, "permutation: out of memory for %lld entries", (long long)n);
    permute(out, scratch, n, seed);
    free(scratch);
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// the loader

struct llm_dataloader {
    int B, T, rank, world_size, shuffle;
    uint64_t seed;
    int nfiles;
    char **files;      // sorted paths
    int64_t *ntok;     // tokens per file
    int64_t *nseq;     // sequences per file
    int64_t *nbatch;   // global batches per file
    int64_t total_batches;
    int64_t total_tokens;
    llm_data_position pos;
    int64_t *order;      // (nfiles) shard order of order_epoch
    int64_t order_epoch; // -1: none computed
    keyed *scratch;      // (max(nfiles, max nseq)) sort scratch, shuffle only
    int64_t *perm;       // (max nseq) sequence order of (perm_epoch, perm_file)
    int64_t perm_epoch;
    int perm_file;
    FILE *fp; // the open shard
    int fp_file;
    int vocab;     // > 0: every token handed out must be below it (llm_dataloader_set_vocab)
    uint16_t *buf; // (B * (T + 1)) raw tokens of one batch
};

static int has_magic(const char *p) { return strpbrk(p, "*?[") != NULL; }

static int path_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// The sorted, de-duplicated matches of all patterns.
static llm_status expand_patterns(llm_dataloader *dl, const char *const *patterns, int num_patterns) {
    size_t n = 0, cap = 0;
    char **files = NULL;
    llm_status s = LLM_OK;
    for (int p = 0; p < num_patterns && s == LLM_OK; p++) {
        const char *pat = patterns[p];
        if (!pat) { s = llm_fail(LLM_EINVAL, "shard pattern %d is NULL", p); break; }
        glob_t g;
        int rc = glob(pat, GLOB_NOSORT, NULL, &g);
        if (rc == GLOB_NOMATCH) {
            if (has_magic(pat))
                s = llm_fail(LLM_ENOENT, "no token shard matches '%s'; create the shards first " CREATE_FIX, pat);
            else
                s = llm_fail(LLM_ENOENT, "token shard %s does not exist; create it first " CREATE_FIX, pat);
        } else if (rc != 0) {
            s = llm_fail(rc == GLOB_NOSPACE ? LLM_ENOMEM : LLM_EIO, "cannot expand shard pattern '%s' (glob error %d)",
                         pat, rc);
        }
        for (size_t i = 0; rc == 0 && s == LLM_OK && i < g.gl_pathc; i++) {
            if (n == cap) {
                size_t ncap = cap ? 2 * cap : 16;
                char **nf = realloc(files, ncap * sizeof *nf);
                if (!nf) { s = llm_fail(LLM_ENOMEM, "out of memory listing shards"); break; }
                files = nf;
                cap = ncap;
            }
            files[n] = strdup(g.gl_pathv[i]);
            if (!files[n]) { s = llm_fail(LLM_ENOMEM, "out of memory listing shards"); break; }
            n++;
        }
        if (rc == 0) globfree(&g);
    }
    if (s == LLM_OK && n > (size_t)INT32_MAX) s = llm_fail(LLM_EINVAL, "too many shard files (%zu)", n);
    if (s != LLM_OK) {
        for (size_t i = 0; i < n; i++) free(files[i]);
        free(files);
        return s;
    }
    qsort(files, n, sizeof *files, path_cmp);
    size_t u = 0;
    for (size_t i = 0; i < n; i++) {
        if (u > 0 && strcmp(files[u - 1], files[i]) == 0) { free(files[i]); continue; }
        files[u++] = files[i];
    }
    dl->files = files;
    dl->nfiles = (int)u;
    return LLM_OK;
}

// Shard order of `epoch` into dl->order.
static void ensure_order(llm_dataloader *dl, int64_t epoch) {
    if (dl->order_epoch == epoch) return;
    if (dl->shuffle) {
        permute(dl->order, dl->scratch, dl->nfiles, llm_data_stream_seed(dl->seed, (uint64_t)epoch, 0));
    } else {
        for (int i = 0; i < dl->nfiles; i++) dl->order[i] = i;
    }
    dl->order_epoch = epoch;
}

// Moves past exhausted shards (and shards too small for one batch) to the next batch.
static void normalize(llm_dataloader *dl) {
    ensure_order(dl, dl->pos.epoch);
    while (dl->pos.batch >= dl->nbatch[dl->order[dl->pos.shard]]) {
        dl->pos.batch = 0;
        if (++dl->pos.shard == dl->nfiles) {
            dl->pos.shard = 0;
            dl->pos.epoch++;
            ensure_order(dl, dl->pos.epoch);
        }
    }
}

llm_status llm_dataloader_open(llm_dataloader **out, const char *const *patterns, int num_patterns, int B, int T,
                               int rank, int world_size, int shuffle, uint64_t seed) {
    if (!out) return llm_fail(LLM_EINVAL, "output is NULL");
    *out = NULL;
    if (!patterns || num_patterns < 1) return llm_fail(LLM_EINVAL, "no shard pattern given");
    if (B < 1 || T < 1) return llm_fail(LLM_EINVAL, "batch_size and seq_len must be >= 1, got %d, %d", B, T);
    if (world_size < 1 || rank < 0 || rank >= world_size)
        return llm_fail(LLM_EINVAL, "need world_size >= 1 and 0 <= rank < world_size, got rank %d, world_size %d",
                        rank, world_size);
    llm_dataloader *dl = calloc(1, sizeof *dl);
    if (!dl) return llm_fail(LLM_ENOMEM, "out of memory creating the data loader");
    dl->B = B;
    dl->T = T;
    dl->rank = rank;
    dl->world_size = world_size;
    dl->shuffle = shuffle != 0;
    dl->seed = seed;
    dl->order_epoch = -1;
    dl->perm_epoch = -1;
    dl->perm_file = -1;
    dl->fp_file = -1;
    llm_status s = expand_patterns(dl, patterns, num_patterns);
    if (s != LLM_OK) { free(dl); return s; }

    int n = dl->nfiles;
    dl->ntok = calloc((size_t)n, sizeof(int64_t));
    dl->nseq = calloc((size_t)n, sizeof(int64_t));
    dl->nbatch = calloc((size_t)n, sizeof(int64_t));
    dl->order = calloc((size_t)n, sizeof(int64_t));
    dl->buf = malloc((size_t)B * ((size_t)T + 1) * sizeof(uint16_t));
    if (!dl->ntok || !dl->nseq || !dl->nbatch || !dl->order || !dl->buf) {
        llm_dataloader_free(dl);
        return llm_fail(LLM_ENOMEM, "out of memory creating the data loader");
    }
    int64_t global = (int64_t)B * world_size, max_nseq = 0, max_ntok = 0;
    for (int i = 0; i < n; i++) {
        s = llm_shard_read_header(dl->files[i], &dl->ntok[i]);
        if (s != LLM_OK) { llm_dataloader_free(dl); return s; }
        dl->nseq[i] = dl->ntok[i] > 0 ? (dl->ntok[i] - 1) / T : 0;
        dl->nbatch[i] = dl->nseq[i] / global;
        dl->total_batches += dl->nbatch[i];
        dl->total_tokens += dl->ntok[i];
        if (dl->nseq[i] > max_nseq) max_nseq = dl->nseq[i];
        if (dl->ntok[i] > max_ntok) max_ntok = dl->ntok[i];
    }
    if (dl->total_batches == 0) {
        llm_dataloader_free(dl);
        char others[48] = "";
        if (num_patterns > 1) snprintf(others, sizeof others, " or the other %d pattern(s)", num_patterns - 1);
        return llm_fail(LLM_EFORMAT,
                        "no shard matching '%s'%s holds a full batch: B*world_size*T+1 = %lld tokens are needed, the "
                        "largest of %d shard(s) has %lld; use a smaller batch or seq_len",
                        patterns[0], others, (long long)(global * T + 1), n, (long long)max_ntok);
    }
    if (dl->shuffle) {
        int64_t m = max_nseq > n ? max_nseq : n;
        dl->scratch = malloc((size_t)m * sizeof *dl->scratch);
        dl->perm = malloc((size_t)max_nseq * sizeof *dl->perm);
        if (!dl->scratch || !dl->perm) {
            llm_dataloader_free(dl);
            return llm_fail(LLM_ENOMEM, "out of memory for the shuffle tables (%lld sequences)", (long long)m);
        }
    }
    normalize(dl);
    *out = dl;
    return LLM_OK;
}

void llm_dataloader_free(llm_dataloader *dl) {
    if (!dl) return;
    if (dl->fp) fclose(dl->fp);
    for (int i = 0; i < dl->nfiles; i++) free(dl->files[i]);
    free(dl->files);
    free(dl->ntok);
    free(dl->nseq);
    free(dl->nbatch);
    free(dl->order);
    free(dl->scratch);
    free(dl->perm);
    free(dl->buf);
    free(dl);
}

// ----------------------------------------------------------------------------
// reading

void llm_dataloader_release_shard(llm_dataloader *dl) {
    if (!dl || !dl->fp) return;
    fclose(dl->fp);
    dl->fp = NULL;
    dl->fp_file = -1;
}

// Makes shard f the open one, revalidating its header (it may have been rewritten since open).
static llm_status open_file(llm_dataloader *dl, int f) {
    if (dl->fp_file == f) return LLM_OK;
    llm_dataloader_release_shard(dl);
    const char *path = dl->files[f];
    FILE *fp;
    LLM_TRY(open_shard(path, &fp));
    int64_t ntok = 0;
    llm_status s = check_header(fp, path, &ntok);
    if (s == LLM_OK && ntok != dl->ntok[f])
        s = llm_fail(LLM_EFORMAT, "token shard %s changed since the loader opened it: %lld tokens then, %lld now; "
                                  "restart with the new shards", path, (long long)dl->ntok[f], (long long)ntok);
    if (s != LLM_OK) {
        fclose(fp);
        return s;
    }
    dl->fp = fp;
    dl->fp_file = f;
    return LLM_OK;
}

// The tokens w[0..n) read from token `start` of the open shard are below the caller's vocabulary.
// The loader checks (not only the model) because it alone knows the file and the offset to name.
static llm_status check_vocab(const llm_dataloader *dl, const uint16_t *w, int64_t start, size_t n) {
    if (dl->vocab <= 0) return LLM_OK;
    for (size_t i = 0; i < n; i++) {
        if (w[i] < dl->vocab) continue;
        int64_t at = start + (int64_t)i;
        return llm_fail(LLM_EFORMAT,
                        "token shard %s holds token id %u at token %lld (byte offset %lld), outside the model's "
                        "vocabulary of %d tokens: the shard was made for another tokenizer; re-create it with the "
                        "model's tokenizer " CREATE_FIX ", or use a model whose vocab_size is above %u",
                        dl->files[dl->fp_file], (unsigned)w[i], (long long)at,
                        (long long)(HEADER_BYTES + at * (int64_t)sizeof(uint16_t)), dl->vocab, (unsigned)w[i]);
    }
    return LLM_OK;
}

// n tokens starting at token `start` of the open shard.
static llm_status read_tokens(llm_dataloader *dl, uint16_t *dst, int64_t start, size_t n) {
    const char *path = dl->files[dl->fp_file];
    if (fseeko(dl->fp, (off_t)(HEADER_BYTES + start * (int64_t)sizeof(uint16_t)), SEEK_SET) != 0)
        return llm_fail(LLM_EIO, "cannot seek in token shard %s: %s", path, strerror(errno));
    if (fread(dst, sizeof(uint16_t), n, dl->fp) != n)
        return llm_fail(LLM_EFORMAT, "token shard %s is shorter than when it was opened (was it rewritten?)", path);
    return LLM_OK;
}

llm_status llm_dataloader_next(llm_dataloader *dl, int32_t *x, int32_t *y) {
    if (!dl || !x || !y) return llm_fail(LLM_EINVAL, "data loader or output buffer is NULL");
    const int64_t B = dl->B, T = dl->T;
    int f = (int)dl->order[dl->pos.shard];
    LLM_TRY(open_file(dl, f));
    int64_t first = (dl->pos.batch * dl->world_size + dl->rank) * B; // first sequence of this rank
    uint16_t *buf = dl->buf;
    if (!dl->shuffle) {
        LLM_TRY(read_tokens(dl, buf, first * T, (size_t)(B * T + 1)));
        LLM_TRY(check_vocab(dl, buf, first * T, (size_t)(B * T + 1)));
        for (int64_t i = 0; i < B * T; i++) {
            x[i] = buf[i];
            y[i] = buf[i + 1];
        }
    } else {
        if (dl->perm_epoch != dl->pos.epoch || dl->perm_file != f) {
            permute(dl->perm, dl->scratch, dl->nseq[f], llm_data_stream_seed(dl->seed, (uint64_t)dl->pos.epoch,
                                                                              (uint64_t)f + 1));
            dl->perm_epoch = dl->pos.epoch;
            dl->perm_file = f;
        }
        for (int64_t b = 0; b < B; b++) {
            uint16_t *w = buf + b * (T + 1);
            LLM_TRY(read_tokens(dl, w, dl->perm[first + b] * T, (size_t)(T + 1)));
            LLM_TRY(check_vocab(dl, w, dl->perm[first + b] * T, (size_t)(T + 1)));
            for (int64_t t = 0; t < T; t++) {
                x[b * T + t] = w[t];
                y[b * T + t] = w[t + 1];
            }
        }
    }
    dl->pos.batch++;
    normalize(dl);
    return LLM_OK;
}

llm_status llm_dataloader_set_vocab(llm_dataloader *dl, int vocab_size) {
    if (!dl) return llm_fail(LLM_EINVAL, "data loader is NULL");
    if (vocab_size < 0) return llm_fail(LLM_EINVAL, "vocab_size must be >= 0 (0: no check), got %d", vocab_size);
    dl->vocab = vocab_size;
    return LLM_OK;
}

int llm_dataloader_vocab(const llm_dataloader *dl) { return dl ? dl->vocab : 0; }

// ----------------------------------------------------------------------------
// position

llm_status llm_dataloader_reset(llm_dataloader *dl, int64_t epoch) {
    if (!dl) return llm_fail(LLM_EINVAL, "data loader is NULL");
    if (epoch < 0) return llm_fail(LLM_EINVAL, "epoch must be >= 0, got %lld", (long long)epoch);
    dl->pos.epoch = epoch;
    dl->pos.shard = 0;
    dl->pos.batch = 0;
    normalize(dl);
    return LLM_OK;
}

llm_data_position llm_dataloader_tell(const llm_dataloader *dl) {
    llm_data_position none = {0, 0, 0};
    return dl ? dl->pos : none;
}

llm_status llm_dataloader_seek(llm_dataloader *dl, llm_data_position pos) {
    if (!dl) return llm_fail(LLM_EINVAL, "data loader is NULL");
    if (pos.epoch < 0 || pos.shard < 0 || pos.shard >= dl->nfiles)
        return llm_fail(LLM_EINVAL, "data loader state has an invalid position (epoch %lld, shard %lld)",
                        (long long)pos.epoch, (long long)pos.shard);
    ensure_order(dl, pos.epoch);
    int64_t n = dl->nbatch[dl->order[pos.shard]];
    if (pos.batch < 0 || pos.batch >= n) {
        ensure_order(dl, dl->pos.epoch);
        return llm_fail(LLM_EINVAL, "data loader state has batch %lld but that shard holds %lld batches",
                        (long long)pos.batch, (long long)n);
    }
    dl->pos = pos;
    return LLM_OK;
}

int64_t llm_dataloader_batches_per_epoch(const llm_dataloader *dl) { return dl ? dl->total_batches : 0; }
int64_t llm_dataloader_num_tokens(const llm_dataloader *dl) { return dl ? dl->total_tokens : 0; }
int llm_dataloader_num_files(const llm_dataloader *dl) { return dl ? dl->nfiles : 0; }

const char *llm_dataloader_file(const llm_dataloader *dl, int i) {
    return dl && i >= 0 && i < dl->nfiles ? dl->files[i] : NULL;
}

int64_t llm_dataloader_file_tokens(const llm_dataloader *dl, int i) {
    return dl && i >= 0 && i < dl->nfiles ? dl->ntok[i] : -1;
}
