/*
 * checkpoint.c — files of the model (formats.h): llm_model_load/llm_model_save (llm.c model
 * files: read fp32 v3 and bf16 v5, write fp32 v3) over the one model-file reader/writer of
 * model_file.c, and our training-state files (AdamW moments + the loop's JSON).
 *
 * Integrity: both files carry CRC32C checksums in their header's integrity block (formats.h,
 * checksum.c), verified on every load before the model is touched. A training-state file records
 * the checksums of the model file saved with it, its step and its run; a model loaded from a file
 * remembers that file's checksums, so llm_model_load_state refuses a state saved with another model
 * file (a .bin/.state mixture). llm_checkpoint_verify checks a file whole without loading it.
 *
 * Writes are atomic and durable: a temp file beside the target, fsync, rename(), fsync of the
 * directory. Every failure returns a status with a message naming the file and what was wrong.
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

#define HEADER_BYTES ((int64_t)(LLM_HEADER_INTS * sizeof(int32_t)))

_Static_assert(LLM_RUN_ID_MAX + 1 == sizeof(((llm_checkpoint_info *)0)->run_id), "run id size (formats.h, llmpy.h)");
_Static_assert(LLM_RUN_ID_AT + (LLM_RUN_ID_MAX + 1) / 4 <= LLM_INTEGRITY_AT, "state header fields overlap");

// ----------------------------------------------------------------------------
// model files: through the streaming reader/writer of model_file.c, chunk by chunk

// The whole parameter block (wte with its padding rows) chunk by chunk through a host fp32 stage;
// the payload's checksum is computed on the way and checked before the model is handed out.
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
    return s == LLM_OK ? llm_model_file_verify(f) : s;
}

llm_status llm_model_load(llm_model **out, const char *path, const char *device, const char *precision) {
    if (!out || !path) return llm_fail(LLM_EINVAL, "output or path is NULL");
    *out = NULL;
    llm_model_file *f;
    LLM_TRY(llm_model_file_open_unverified(&f, path));
    llm_config cfg = llm_model_file_config(f);
    llm_model *m = NULL;
    llm_status s = gpt2_alloc(&m, &cfg, device, precision);
    if (s == LLM_OK) s = load_params(m, f, path);
    llm_integrity sum = llm_model_file_integrity(f);
    llm_model_file_close(f);
    if (s != LLM_OK) { llm_model_free(m); return s; }
    m->origin = sum.present ? 2 : 1;
    m->origin_crc = sum.payload;
    m->origin_header_crc = sum.header;
    snprintf(m->origin_path, sizeof m->origin_path, "%s", path);
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
// training-state headers

static void put_i64(int32_t *h, int i, int64_t v) {
    h[i] = (int32_t)(uint32_t)((uint64_t)v & 0xffffffffu);
    h[i + 1] = (int32_t)(uint32_t)((uint64_t)v >> 32);
}

static int64_t get_i64(const int32_t *h, int i) {
    return (int64_t)((uint64_t)(uint32_t)h[i] | ((uint64_t)(uint32_t)h[i + 1] << 32));
}

static void config_to_header(const llm_config *c, int32_t *h) {
    h[0] = c->n_layer; h[1] = c->n_head; h[2] = c->n_embd;
    h[3] = c->vocab_size; h[4] = c->block_size; h[5] = c->padded_vocab_size;
}

static int run_id_ok(const char *id) {
    size_t n = 0;
    for (; id[n]; n++) {
        char c = id[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.'))
            return 0;
    }
    return n <= LLM_RUN_ID_MAX;
}

// A state file's header, checked (integrity block first, then magic, version, sizes against the
// file's size) and decoded into info.
static llm_status read_state_header(FILE *f, const char *path, int32_t header[LLM_HEADER_INTS],
                                    llm_checkpoint_info *info) {
    int64_t file_bytes = 0;
    llm_integrity sum;
    LLM_TRY(llm_file_read_header(f, path, header, &file_bytes));
    if (header[0] != LLM_TRAIN_STATE_MAGIC && header[LLM_INTEGRITY_AT] != LLM_INTEGRITY_MAGIC) // a foreign file
        return llm_fail(LLM_EFORMAT, "%s: not an llmpy training-state file (magic %d, expected %d)", path, header[0],
                        LLM_TRAIN_STATE_MAGIC);
    LLM_TRY(llm_integrity_check(header, path, &sum));
    if (header[0] != LLM_TRAIN_STATE_MAGIC)
        return llm_fail(LLM_EFORMAT, "%s: not an llmpy training-state file (magic %d, expected %d)", path, header[0],
                        LLM_TRAIN_STATE_MAGIC);
    const int v = header[1];
    if (v != LLM_TRAIN_STATE_VERSION && v != LLM_TRAIN_STATE_VERSION_V1)
        return llm_fail(LLM_EFORMAT, "%s: unsupported training-state version %d (supported: %d and %d)", path, v,
                        LLM_TRAIN_STATE_VERSION_V1, LLM_TRAIN_STATE_VERSION);
    if (v >= 2 && !sum.present)
        return llm_fail(LLM_EFORMAT,
                        "%s: checksum mismatch: the file is damaged (a version %d training state without its "
                        "integrity block); restore it from a copy, or use an older checkpoint",
                        path, v);
    memset(info, 0, sizeof *info);
    info->is_state = 1;
    info->version = v;
    info->has_checksum = sum.present;
    info->checksum = sum.payload;
    info->header_checksum = sum.header;
    info->cfg = (llm_config){.n_layer = header[9], .n_head = header[10], .n_embd = header[11],
                             .vocab_size = header[12], .block_size = header[13], .padded_vocab_size = header[14]};
    info->adam_steps = get_i64(header, 2);
    info->step = info->adam_steps;
    const int64_t elems = get_i64(header, 4), json_len = get_i64(header, 7);
    const int has_moments = header[6];
    if (info->adam_steps < 0 || json_len < 0 || elems < 0 || elems > ((int64_t)1 << 40) ||
        (has_moments != 0 && has_moments != 1) || (has_moments == 0 && info->adam_steps != 0))
        return llm_fail(LLM_EFORMAT, "%s: corrupt header (step %lld, moments flag %d, JSON length %lld)", path,
                        (long long)info->adam_steps, has_moments, (long long)json_len);
    if (v >= 2) {
        info->has_model = header[15];
        info->model_checksum = (uint32_t)header[16];
        info->model_header_checksum = (uint32_t)header[17];
        info->step = get_i64(header, 18);
        memcpy(info->run_id, header + LLM_RUN_ID_AT, LLM_RUN_ID_MAX);
        info->run_id[LLM_RUN_ID_MAX] = '\0';
        if ((info->has_model != 0 && info->has_model != 1) || info->step < 0 || !run_id_ok(info->run_id))
            return llm_fail(LLM_EFORMAT, "%s: corrupt header (model flag %d, step %lld, run id not printable)", path,
                            info->has_model, (long long)info->step);
    }
    info->moment_elems = has_moments ? elems : 0;
    info->json_bytes = json_len;
    int64_t expect = HEADER_BYTES + 8 * info->moment_elems + json_len;
    if (file_bytes != expect)
        return llm_fail(LLM_EFORMAT, "%s: %s: header implies %lld bytes, file has %lld", path,
                        file_bytes < expect ? "file is truncated" : "header does not match the file size",
                        (long long)expect, (long long)file_bytes);
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// writing training-state files: a temp file beside path, the header written last (sealed with the
// payload's checksum), then fsync + rename + fsync of the directory

typedef struct sink {
    FILE *f;
    const char *path; // the target (messages)
    uint32_t crc;     // of the payload written so far
} sink;

static llm_status sink_put(sink *o, const void *buf, size_t n) {
    if (n && fwrite(buf, 1, n, o->f) != n) return llm_write_failed(o->path, errno);
    o->crc = llm_crc32c(o->crc, buf, n);
    return LLM_OK;
}

// n floats of backend memory src through a host staging buffer.
static llm_status sink_floats(sink *o, const llm_ops *ops, const float *src, size_t n) {
    float *stage = malloc(STAGE_FLOATS * sizeof(float));
    if (!stage) return llm_fail(LLM_ENOMEM, "out of memory writing %s", o->path);
    llm_status s = LLM_OK;
    for (size_t done = 0; s == LLM_OK && done < n;) {
        size_t k = n - done < STAGE_FLOATS ? n - done : STAGE_FLOATS;
        s = ops->to_host(stage, src + done, k * sizeof(float));
        if (s == LLM_OK) s = sink_put(o, stage, k * sizeof(float));
        done += k;
    }
    free(stage);
    return s;
}

// The checksums of the model file at path (its header read and checked, not its payload: the
// state records what the file says it holds; loading the pair verifies it).
static llm_status model_checksums(const char *path, const char *state_path, uint32_t *crc, uint32_t *header_crc) {
    FILE *f;
    llm_status s = llm_file_open_read(&f, path, "model file");
    if (s != LLM_OK)
        return llm_fail(s, "%s: cannot record the model file saved with it: %s", state_path, llm_last_error());
    int32_t header[LLM_HEADER_INTS];
    int64_t bytes;
    llm_integrity sum = {0};
    s = llm_file_read_header(f, path, header, &bytes);
    if (s == LLM_OK) s = llm_integrity_check(header, path, &sum);
    if (s == LLM_OK && header[0] != LLM_MODEL_MAGIC)
        s = llm_fail(LLM_EFORMAT, "%s: not an llm.c model file (magic %d, expected %d)", path, header[0],
                     LLM_MODEL_MAGIC);
    fclose(f);
    *crc = sum.payload;
    *header_crc = sum.header;
    return s;
}

static llm_status write_state(sink *o, const llm_model *m, const char *json, const llm_state_tag *tag) {
    size_t json_len = json ? strlen(json) : 0;
    int has_moments = m->m != NULL;
    if (has_moments && m->moment_elems != m->total)
        return llm_fail(LLM_ESTATE, "%s: this model keeps only its ZeRO-1 shard of the AdamW moments; the full state "
                        "is written collectively (llm_dist_save_state)", o->path);
    int32_t header[LLM_HEADER_INTS] = {0};
    header[0] = LLM_TRAIN_STATE_MAGIC;
    header[1] = LLM_TRAIN_STATE_VERSION;
    put_i64(header, 2, m->t);
    put_i64(header, 4, (int64_t)m->total);
    header[6] = has_moments;
    put_i64(header, 7, (int64_t)json_len);
    config_to_header(&m->cfg, header + 9);
    if (tag && tag->model_path) {
        uint32_t crc = 0, hcrc = 0;
        LLM_TRY(model_checksums(tag->model_path, o->path, &crc, &hcrc));
        header[15] = 1;
        header[16] = (int32_t)crc;
        header[17] = (int32_t)hcrc;
    }
    put_i64(header, 18, tag && tag->step >= 0 ? tag->step : m->t);
    if (tag && tag->run_id) memcpy(header + LLM_RUN_ID_AT, tag->run_id, strlen(tag->run_id)); // checked
    // the header first as a placeholder (the checksum is known at the end), then the payload
    if (fwrite(header, sizeof header, 1, o->f) != 1) return llm_write_failed(o->path, errno);
    if (has_moments) {
        LLM_TRY(sink_floats(o, m->ops, m->m, m->total));
        LLM_TRY(sink_floats(o, m->ops, m->v, m->total));
    }
    LLM_TRY(sink_put(o, json, json_len));
    llm_integrity_seal(header, o->crc);
    LLM_TRY(llm_file_seek(o->f, 0, o->path));
    if (fwrite(header, sizeof header, 1, o->f) != 1) return llm_write_failed(o->path, errno);
    return LLM_OK;
}

llm_status llm_model_save_state(const llm_model *m, const char *path, const char *json, const llm_state_tag *tag) {
    if (!m || !path) return llm_fail(LLM_EINVAL, "model or path is NULL");
    if (tag && tag->run_id && !run_id_ok(tag->run_id))
        return llm_fail(LLM_EINVAL, "%s: run id '%s' must be at most %d characters of A-Z, a-z, 0-9, '.', '_', '-'",
                        path, tag->run_id, LLM_RUN_ID_MAX);
    char *tmp = llm_temp_path(path);
    if (!tmp) return llm_fail(LLM_ENOMEM, "out of memory");
    sink o = {fopen(tmp, "wb"), path, 0};
    if (!o.f) {
        int err = errno;
        llm_status s = err == ENOSPC ? llm_write_failed(path, err)
                                     : llm_fail(LLM_EIO, "cannot write %s: %s", tmp, strerror(err));
        free(tmp);
        return s;
    }
    llm_status s = write_state(&o, m, json, tag);
    if (s == LLM_OK) {
        s = llm_file_commit(o.f, tmp, path); // removes tmp on failure
    } else {
        fclose(o.f);
        remove(tmp);
    }
    free(tmp);
    return s;
}

// ----------------------------------------------------------------------------
// reading training-state files

// Reads n floats from f into backend memory dst (NULL: only checksummed) through a host stage.
static llm_status read_floats(FILE *f, const llm_ops *ops, float *dst, size_t n, const char *path, uint32_t *crc) {
    float *stage = malloc(STAGE_FLOATS * sizeof(float));
    if (!stage) return llm_fail(LLM_ENOMEM, "out of memory reading %s", path);
    llm_status s = LLM_OK;
    for (size_t done = 0; s == LLM_OK && done < n;) {
        size_t k = n - done < STAGE_FLOATS ? n - done : STAGE_FLOATS;
        if (fread(stage, sizeof(float), k, f) != k)
            s = llm_fail(LLM_EFORMAT, "%s: file is truncated (unexpected end of file)", path);
        if (s == LLM_OK) *crc = llm_crc32c(*crc, stage, k * sizeof(float));
        if (s == LLM_OK && dst) s = ops->to_device(dst + done, stage, k * sizeof(float));
        done += k;
    }
    free(stage);
    return s;
}

// Reads the JSON text (malloc'd, NUL-terminated) and checksums it.
static llm_status read_json(FILE *f, int64_t n, const char *path, uint32_t *crc, char **out) {
    char *text = malloc((size_t)n + 1);
    if (!text) return llm_fail(LLM_ENOMEM, "out of memory reading %s", path);
    if (fread(text, 1, (size_t)n, f) != (size_t)n) {
        free(text);
        return llm_fail(LLM_EFORMAT, "%s: file is truncated (unexpected end of file)", path);
    }
    text[n] = '\0';
    *crc = llm_crc32c(*crc, text, (size_t)n);
    *out = text;
    return LLM_OK;
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

// A state saved with another model file than the one m was loaded from: a .bin/.state mixture.
static llm_status check_pair(const llm_model *m, const llm_checkpoint_info *st, const char *path) {
    if (!st->has_model || !m->origin) return LLM_OK; // nothing recorded, or a model not loaded from a file
    if (st->model_checksum == m->origin_crc && st->model_header_checksum == m->origin_header_crc) return LLM_OK;
    char mine[64];
    if (m->origin == 2)
        snprintf(mine, sizeof mine, "checksums 0x%08x/0x%08x", m->origin_crc, m->origin_header_crc);
    else
        snprintf(mine, sizeof mine, "no checksums");
    return llm_fail(LLM_EINVAL,
                    "%s and %s are not one checkpoint: the training state (step %lld%s%s) was saved with a model "
                    "file whose checksums are 0x%08x/0x%08x, while %s has %s; load the .bin and .state written "
                    "together (ckpt_NNNNNN.bin with ckpt_NNNNNN.state of the same run)",
                    m->origin_path, path, (long long)st->step, st->run_id[0] ? ", run " : "", st->run_id,
                    st->model_checksum, st->model_header_checksum, base_name(m->origin_path), mine);
}

static llm_status load_state_from(FILE *f, llm_model *m, const char *path, char **json) {
    int32_t header[LLM_HEADER_INTS];
    llm_checkpoint_info st;
    LLM_TRY(read_state_header(f, path, header, &st));
    int32_t want[6];
    config_to_header(&m->cfg, want);
    if (memcmp(want, header + 9, sizeof want) != 0 ||
        (st.moment_elems && st.moment_elems != (int64_t)m->total) || get_i64(header, 4) != (int64_t)m->total)
        return llm_fail(LLM_EINVAL,
                        "%s: training state is for another model (L=%d NH=%d C=%d V=%d maxT=%d Vp=%d; "
                        "this model: L=%d NH=%d C=%d V=%d maxT=%d Vp=%d)",
                        path, header[9], header[10], header[11], header[12], header[13], header[14], want[0], want[1],
                        want[2], want[3], want[4], want[5]);
    LLM_TRY(check_pair(m, &st, path));
    // read (and checksum) everything before touching the model, so a failure leaves it unchanged
    const llm_ops *ops = m->ops;
    float *mm = NULL, *vv = NULL;
    char *text = NULL;
    uint32_t crc = 0;
    llm_status s = LLM_OK;
    if (st.moment_elems) {
        s = ops->alloc((void **)&mm, m->total * sizeof(float));
        if (s == LLM_OK) s = ops->alloc((void **)&vv, m->total * sizeof(float));
        if (s == LLM_OK) s = read_floats(f, ops, mm, m->total, path, &crc);
        if (s == LLM_OK) s = read_floats(f, ops, vv, m->total, path, &crc);
    }
    if (s == LLM_OK) s = read_json(f, st.json_bytes, path, &crc, &text);
    if (s == LLM_OK && st.has_checksum && crc != st.checksum) s = llm_payload_mismatch(path, st.checksum, crc);
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
    m->t = st.adam_steps;
    if (json) *json = text;
    else free(text);
    return LLM_OK;
}

llm_status llm_model_load_state(llm_model *m, const char *path, char **json) {
    if (!m || !path) return llm_fail(LLM_EINVAL, "model or path is NULL");
    if (json) *json = NULL;
    FILE *f;
    LLM_TRY(llm_file_open_read(&f, path, "training-state file"));
    llm_status s = load_state_from(f, m, path, json);
    fclose(f);
    return s;
}

// ----------------------------------------------------------------------------
// verifying a file whole, without loading it

static llm_status verify_model(const char *path, llm_checkpoint_info *out) {
    llm_model_file *f;
    LLM_TRY(llm_model_file_open(&f, path)); // header, size and payload checksum
    llm_integrity sum = llm_model_file_integrity(f);
    memset(out, 0, sizeof *out);
    out->version = llm_model_file_bf16(f) ? LLM_MODEL_VERSION_BF16 : LLM_MODEL_VERSION_FP32;
    out->cfg = llm_model_file_config(f);
    out->has_checksum = sum.present;
    out->checksum = sum.payload;
    out->header_checksum = sum.header;
    out->step = -1;
    llm_model_file_close(f);
    return LLM_OK;
}

static llm_status verify_state(FILE *f, const char *path, llm_checkpoint_info *out) {
    int32_t header[LLM_HEADER_INTS];
    LLM_TRY(read_state_header(f, path, header, out));
    uint32_t crc = 0;
    char *text = NULL;
    LLM_TRY(read_floats(f, NULL, NULL, (size_t)(2 * out->moment_elems), path, &crc));
    LLM_TRY(read_json(f, out->json_bytes, path, &crc, &text));
    free(text);
    if (out->has_checksum && crc != out->checksum) return llm_payload_mismatch(path, out->checksum, crc);
    return LLM_OK;
}

llm_status llm_checkpoint_verify(const char *path, llm_checkpoint_info *out) {
    if (!path || !out) return llm_fail(LLM_EINVAL, "path or output is NULL");
    memset(out, 0, sizeof *out);
    FILE *f;
    LLM_TRY(llm_file_open_read(&f, path, "checkpoint file"));
    int32_t magic = 0;
    size_t got = fread(&magic, sizeof magic, 1, f);
    llm_status s;
    if (got == 1 && magic == LLM_TRAIN_STATE_MAGIC) {
        s = llm_file_seek(f, 0, path);
        if (s == LLM_OK) s = verify_state(f, path, out);
        fclose(f);
        return s;
    }
    fclose(f);
    return verify_model(path, out); // its messages for anything else ("not an llm.c model file", ...)
}

void llm_free(void *p) { free(p); }
