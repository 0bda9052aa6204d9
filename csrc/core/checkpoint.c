/*
 * checkpoint.c — files of the model (formats.h): llm_model_load/llm_model_save (llm.c model
 * files: read fp32 v3 and bf16 v5, write fp32 v3) over the one model-file reader/writer of
 * model_file.c, and our training-state files (AdamW moments + the loop's JSON).
 * Writes are atomic: a temp file beside the target, then rename().
 * Every failure returns a status with a message naming the file and what was wrong.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/formats.h"
#include "core/gpt2.h"
#include "core/model_file.h"

// Tensors move through a host staging buffer of this many floats (backends may be devices).
#define STAGE_FLOATS ((size_t)1 << 20)

// ----------------------------------------------------------------------------
// model files: through the streaming reader/writer of model_file.c, chunk by chunk

// Reads n floats from f into backend memory dst through a host staging buffer.
static llm_status read_floats(FILE *f, const llm_ops *ops, float *dst, size_t n, const char *path) {
    float *stage = malloc(STAGE_FLOATS * sizeof(float));
    if (!stage) return llm_fail(LLM_ENOMEM, "out of memory reading %s", path);
    llm_status s = LLM_OK;
    for (size_t done = 0; s == LLM_OK && done < n;) {
        size_t k = n - done < STAGE_FLOATS ? n - done : STAGE_FLOATS;
        if (fread(stage, sizeof(float), k, f) != k)
            s = llm_fail(LLM_EFORMAT, "%s: file is truncated (unexpected end of file)", path);
        if (s == LLM_OK) s = ops->to_device(dst + done, stage, k * sizeof(float));
        done += k;
    }
    free(stage);
    return s;
}

// Writes n floats of backend memory src to f through a host staging buffer.
static llm_status write_floats(FILE *f, const llm_ops *ops, const float *src, size_t n, const char *path) {
    float *stage = malloc(STAGE_FLOATS * sizeof(float));
    if (!stage) return llm_fail(LLM_ENOMEM, "out of memory writing %s", path);
    llm_status s = LLM_OK;
    for (size_t done = 0; s == LLM_OK && done < n;) {
        size_t k = n - done < STAGE_FLOATS ? n - done : STAGE_FLOATS;
        s = ops->to_host(stage, src + done, k * sizeof(float));
        if (s == LLM_OK && fwrite(stage, sizeof(float), k, f) != k)
            s = llm_fail(LLM_EIO, "%s: write failed: %s", path, strerror(errno));
        done += k;
    }
    free(stage);
    return s;
}

// The whole parameter block (wte with its padding rows) chunk by chunk through a host fp32 stage.
static llm_status load_params(llm_model *m, llm_model_file *f, const char *path) {
    if (llm_model_file_elems(f) != m->total) // both come from the tensor table
        return llm_fail(LLM_EFORMAT, "%s: holds %zu parameters, the model %zu", path, llm_model_file_elems(f),
                        m->total);
    float *stage = malloc(STAGE_FLOATS * sizeof(float));
    if (!stage) return llm_fail(LLM_ENOMEM, "out of memory loading %s", path);
    llm_status s = LLM_OK;
    for (size_t done = 0; s == LLM_OK && done < m->total;) {
        size_t n = m->total - done < STAGE_FLOATS ? m->total - done : STAGE_FLOATS;
        s = llm_model_file_read_range(f, done, n, stage);
        if (s == LLM_OK) s = gpt2_set_params(m, done, stage, n);
        done += n;
    }
    free(stage);
    return s;
}

llm_status llm_model_load(llm_model **out, const char *path, const char *device, const char *precision) {
    if (!out || !path) return llm_fail(LLM_EINVAL, "output or path is NULL");
    *out = NULL;
    llm_model_file *f;
    LLM_TRY(llm_model_file_open(&f, path));
    llm_config cfg = llm_model_file_config(f);
    llm_model *m = NULL;
    llm_status s = gpt2_alloc(&m, &cfg, device, precision);
    if (s == LLM_OK) s = load_params(m, f, path);
    llm_model_file_close(f);
    if (s != LLM_OK) { llm_model_free(m); return s; }
    *out = m;
    return LLM_OK;
}

// From the fp32 master copy when there is one, so a mixed-precision run saves exact weights.
static llm_status save_params(const llm_model *m, llm_model_file *f, const char *path) {
    float *stage = malloc(STAGE_FLOATS * sizeof(float));
    if (!stage) return llm_fail(LLM_ENOMEM, "out of memory writing %s", path);
    llm_status s = LLM_OK;
    for (size_t done = 0; s == LLM_OK && done < m->total;) {
        size_t k = m->total - done < STAGE_FLOATS ? m->total - done : STAGE_FLOATS;
        s = gpt2_get_params(m, done, stage, k);
        if (s == LLM_OK) s = llm_model_file_write_range(f, stage, k);
        done += k;
    }
    free(stage);
    return s == LLM_OK ? llm_model_file_commit(f) : s;
}

llm_status llm_model_save(const llm_model *m, const char *path) {
    if (!m || !path) return llm_fail(LLM_EINVAL, "model or path is NULL");
    llm_model_file *f;
    LLM_TRY(llm_model_file_create(&f, path, &m->cfg, 0));
    llm_status s = save_params(m, f, path);
    llm_model_file_close(f); // removes the temp file unless committed
    return s;
}

// ----------------------------------------------------------------------------
// atomic writes of training-state files

static void put_i64(int32_t *h, int i, int64_t v) {
    h[i] = (int32_t)(uint32_t)((uint64_t)v & 0xffffffffu);
    h[i + 1] = (int32_t)(uint32_t)((uint64_t)v >> 32);
}

static int64_t get_i64(const int32_t *h, int i) {
    return (int64_t)((uint64_t)(uint32_t)h[i] | ((uint64_t)(uint32_t)h[i + 1] << 32));
}

typedef llm_status (*writer_fn)(FILE *f, const void *ctx, const char *path);

// Runs write(f) on a temp file beside path, then renames it over path; removes it on failure.
static llm_status write_atomically(const char *path, writer_fn write, const void *ctx) {
    if (!path) return llm_fail(LLM_EINVAL, "path is NULL");
    char *tmp = llm_temp_path(path);
    if (!tmp) return llm_fail(LLM_ENOMEM, "out of memory");
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        llm_status s = llm_fail(LLM_EIO, "cannot write %s: %s", tmp, strerror(errno));
        free(tmp);
        return s;
    }
    llm_status s = write(f, ctx, path);
    if (fclose(f) != 0 && s == LLM_OK) s = llm_fail(LLM_EIO, "%s: close failed: %s", tmp, strerror(errno));
    if (s == LLM_OK && rename(tmp, path) != 0)
        s = llm_fail(LLM_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (s != LLM_OK) remove(tmp);
    free(tmp);
    return s;
}

static void config_to_header(const llm_config *c, int32_t *h) {
    h[0] = c->n_layer; h[1] = c->n_head; h[2] = c->n_embd;
    h[3] = c->vocab_size; h[4] = c->block_size; h[5] = c->padded_vocab_size;
}

// ----------------------------------------------------------------------------
// training state

typedef struct state_ctx {
    const llm_model *m;
    const char *json;
} state_ctx;

static llm_status write_state(FILE *f, const void *ctx, const char *path) {
    const state_ctx *c = ctx;
    const llm_model *m = c->m;
    size_t json_len = c->json ? strlen(c->json) : 0;
    int has_moments = m->m != NULL;
    if (has_moments && m->moment_elems != m->total)
        return llm_fail(LLM_ESTATE, "%s: this model keeps only its ZeRO-1 shard of the AdamW moments; the full state "
                        "is written collectively (llm_dist_save_state)", path);
    int32_t header[LLM_HEADER_INTS] = {0};
    header[0] = LLM_TRAIN_STATE_MAGIC;
    header[1] = LLM_TRAIN_STATE_VERSION;
    put_i64(header, 2, m->t);
    put_i64(header, 4, (int64_t)m->total);
    header[6] = has_moments;
    put_i64(header, 7, (int64_t)json_len);
    config_to_header(&m->cfg, header + 9);
    if (fwrite(header, sizeof header, 1, f) != 1)
        return llm_fail(LLM_EIO, "%s: write failed: %s", path, strerror(errno));
    if (has_moments) {
        LLM_TRY(write_floats(f, m->ops, m->m, m->total, path));
        LLM_TRY(write_floats(f, m->ops, m->v, m->total, path));
    }
    if (json_len && fwrite(c->json, 1, json_len, f) != json_len)
        return llm_fail(LLM_EIO, "%s: write failed: %s", path, strerror(errno));
    return LLM_OK;
}

llm_status llm_model_save_state(const llm_model *m, const char *path, const char *json) {
    if (!m) return llm_fail(LLM_EINVAL, "model is NULL");
    state_ctx c = {m, json};
    return write_atomically(path, write_state, &c);
}

static llm_status load_state_from(FILE *f, llm_model *m, const char *path, char **json) {
    int32_t header[LLM_HEADER_INTS];
    int64_t file_bytes = 0;
    LLM_TRY(llm_file_read_header(f, path, header, &file_bytes));
    if (header[0] != LLM_TRAIN_STATE_MAGIC)
        return llm_fail(LLM_EFORMAT, "%s: not an llmpy training-state file (magic %d, expected %d)", path, header[0],
                        LLM_TRAIN_STATE_MAGIC);
    if (header[1] != LLM_TRAIN_STATE_VERSION)
        return llm_fail(LLM_EFORMAT, "%s: unsupported training-state version %d (supported: %d)", path, header[1],
                        LLM_TRAIN_STATE_VERSION);
    int32_t want[6];
    config_to_header(&m->cfg, want);
    if (memcmp(want, header + 9, sizeof want) != 0 || get_i64(header, 4) != (int64_t)m->total)
        return llm_fail(LLM_EINVAL,
                        "%s: training state is for another model (L=%d NH=%d C=%d V=%d maxT=%d Vp=%d; "
                        "this model: L=%d NH=%d C=%d V=%d maxT=%d Vp=%d)",
                        path, header[9], header[10], header[11], header[12], header[13], header[14], want[0], want[1],
                        want[2], want[3], want[4], want[5]);
    int64_t t = get_i64(header, 2), json_len = get_i64(header, 7);
    int has_moments = header[6];
    if (t < 0 || json_len < 0 || (has_moments != 0 && has_moments != 1) || (has_moments == 0 && t != 0))
        return llm_fail(LLM_EFORMAT, "%s: corrupt header (step %lld, moments flag %d, JSON length %lld)", path,
                        (long long)t, has_moments, (long long)json_len);
    long long expect = (long long)sizeof header + (has_moments ? 8LL * (long long)m->total : 0) + json_len;
    if (file_bytes != expect)
        return llm_fail(LLM_EFORMAT, "%s: %s: header implies %lld bytes, file has %lld", path,
                        file_bytes < expect ? "file is truncated" : "header does not match the file size", expect,
                        (long long)file_bytes);
    char *text = NULL;
    if (json) {
        text = malloc((size_t)json_len + 1);
        if (!text) return llm_fail(LLM_ENOMEM, "out of memory reading %s", path);
    }
    // read everything before touching the model, so a failure leaves it unchanged
    const llm_ops *ops = m->ops;
    float *mm = NULL, *vv = NULL;
    llm_status s = LLM_OK;
    if (has_moments) {
        s = ops->alloc((void **)&mm, m->total * sizeof(float));
        if (s == LLM_OK) s = ops->alloc((void **)&vv, m->total * sizeof(float));
        if (s == LLM_OK) s = read_floats(f, ops, mm, m->total, path);
        if (s == LLM_OK) s = read_floats(f, ops, vv, m->total, path);
    }
    if (s == LLM_OK && json) {
        s = llm_file_seek(f, (int64_t)(expect - json_len), path);
        if (s == LLM_OK && fread(text, 1, (size_t)json_len, f) != (size_t)json_len)
            s = llm_fail(LLM_EFORMAT, "%s: file is truncated (unexpected end of file)", path);
        if (s == LLM_OK) text[json_len] = '\0';
    }
    if (s != LLM_OK) {
        ops->free(mm);
        ops->free(vv);
        free(text);
        return s;
    }
    ops->free(m->m);
    ops->free(m->v);
    m->m = mm;
    m->v = vv;
    m->moment_elems = mm ? m->total : 0; // full moments; a ZeRO-1 model takes its shard at its next step
    m->t = t;
    if (json) *json = text;
    return LLM_OK;
}

llm_status llm_model_load_state(llm_model *m, const char *path, char **json) {
    if (!m || !path) return llm_fail(LLM_EINVAL, "model or path is NULL");
    if (json) *json = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return llm_fail(LLM_EIO, "cannot open training-state file %s: %s", path, strerror(errno));
    llm_status s = load_state_from(f, m, path, json);
    fclose(f);
    return s;
}

void llm_free(void *p) { free(p); }
