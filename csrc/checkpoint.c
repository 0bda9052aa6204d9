/*
 * checkpoint.c — llm.c-compatible model files (formats.h): read fp32 (v3) and bf16 (v5),
 * write fp32 (v3). Writes are atomic: a temp file beside the target, then rename().
 * Every failure returns a status with a message naming the file and what was wrong.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <unistd.h>
#endif

#include "common.h"
#include "formats.h"
#include "gpt2.h"

// Tensors move through a host staging buffer of this many floats (backends may be devices).
#define STAGE_FLOATS ((size_t)1 << 20)

// ----------------------------------------------------------------------------
// reading

static llm_status read_exact(FILE *f, void *buf, size_t bytes, const char *path) {
    if (fread(buf, 1, bytes, f) != bytes)
        return llm_fail(LLM_EFORMAT, "%s: file is truncated (unexpected end of file)", path);
    return LLM_OK;
}

static float bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

static llm_status load_from(FILE *f, const char *path, const char *device, llm_model **out) {
    int32_t header[LLM_HEADER_INTS];
    if (fseek(f, 0, SEEK_END) != 0) return llm_fail(LLM_EIO, "%s: cannot seek: %s", path, strerror(errno));
    long long file_bytes = ftell(f);
    rewind(f);
    if (file_bytes < (long long)sizeof header)
        return llm_fail(LLM_EFORMAT, "%s: file is truncated: %lld bytes, smaller than the %zu-byte header", path,
                        file_bytes, sizeof header);
    LLM_TRY(read_exact(f, header, sizeof header, path));
    if (header[0] != LLM_MODEL_MAGIC)
        return llm_fail(LLM_EFORMAT, "%s: not an llm.c model file (magic %d, expected %d)", path, header[0],
                        LLM_MODEL_MAGIC);
    int version = header[1];
    if (version != LLM_MODEL_VERSION_FP32 && version != LLM_MODEL_VERSION_BF16)
        return llm_fail(LLM_EFORMAT, "%s: unsupported model file version %d (supported: %d = fp32, %d = bf16)",
                        path, version, LLM_MODEL_VERSION_FP32, LLM_MODEL_VERSION_BF16);
    llm_config cfg = {.block_size = header[2], .vocab_size = header[3], .n_layer = header[4],
                      .n_head = header[5], .n_embd = header[6], .padded_vocab_size = header[7]};
    if (cfg.padded_vocab_size <= 0)
        return llm_fail(LLM_EFORMAT, "%s: header has padded_vocab_size %d", path, cfg.padded_vocab_size);
    if (llm_config_check(&cfg) != LLM_OK)
        return llm_fail(LLM_EFORMAT, "%s: header holds an invalid configuration: %s", path, llm_last_error());

    llm_model *m;
    LLM_TRY(gpt2_alloc(&m, &cfg, device));
    size_t elem = version == LLM_MODEL_VERSION_FP32 ? 4 : 2;
    long long expect = (long long)sizeof header + (long long)(m->total * elem);
    if (file_bytes != expect) {
        llm_model_free(m);
        return llm_fail(LLM_EFORMAT,
                        "%s: %s: header (L=%d, NH=%d, C=%d, V=%d, Vp=%d, maxT=%d, version %d) implies %lld bytes, "
                        "file has %lld",
                        path, file_bytes < expect ? "file is truncated" : "header does not match the file size",
                        cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab_size, cfg.padded_vocab_size, cfg.block_size,
                        version, expect, file_bytes);
    }
    float *stage = malloc(STAGE_FLOATS * sizeof(float));
    uint16_t *raw = elem == 2 ? malloc(STAGE_FLOATS * sizeof(uint16_t)) : NULL;
    llm_status s = (!stage || (elem == 2 && !raw)) ? llm_fail(LLM_ENOMEM, "out of memory loading %s", path) : LLM_OK;
    for (size_t done = 0; s == LLM_OK && done < m->total;) {
        size_t n = m->total - done < STAGE_FLOATS ? m->total - done : STAGE_FLOATS;
        if (elem == 4) {
            s = read_exact(f, stage, n * 4, path);
        } else {
            s = read_exact(f, raw, n * 2, path);
            for (size_t i = 0; s == LLM_OK && i < n; i++) stage[i] = bf16_to_float(raw[i]);
        }
        if (s == LLM_OK) s = m->ops->to_device(m->params + done, stage, n * sizeof(float));
        done += n;
    }
    free(stage);
    free(raw);
    if (s != LLM_OK) { llm_model_free(m); return s; }
    *out = m;
    return LLM_OK;
}

llm_status llm_model_load(llm_model **out, const char *path, const char *device) {
    if (!out || !path) return llm_fail(LLM_EINVAL, "output or path is NULL");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return llm_fail(LLM_EIO, "cannot open model file %s: %s", path, strerror(errno));
    llm_status s = load_from(f, path, device, out);
    fclose(f);
    return s;
}

// ----------------------------------------------------------------------------
// writing

static llm_status write_to(FILE *f, const llm_model *m, const char *path) {
    int32_t header[LLM_HEADER_INTS] = {0};
    header[0] = LLM_MODEL_MAGIC;
    header[1] = LLM_MODEL_VERSION_FP32;
    header[2] = m->cfg.block_size;
    header[3] = m->cfg.vocab_size;
    header[4] = m->cfg.n_layer;
    header[5] = m->cfg.n_head;
    header[6] = m->cfg.n_embd;
    header[7] = m->cfg.padded_vocab_size;
    if (fwrite(header, sizeof header, 1, f) != 1)
        return llm_fail(LLM_EIO, "%s: write failed: %s", path, strerror(errno));
    float *stage = malloc(STAGE_FLOATS * sizeof(float));
    if (!stage) return llm_fail(LLM_ENOMEM, "out of memory saving %s", path);
    llm_status s = LLM_OK;
    for (size_t done = 0; s == LLM_OK && done < m->total;) {
        size_t n = m->total - done < STAGE_FLOATS ? m->total - done : STAGE_FLOATS;
        s = m->ops->to_host(stage, m->params + done, n * sizeof(float));
        if (s == LLM_OK && fwrite(stage, sizeof(float), n, f) != n)
            s = llm_fail(LLM_EIO, "%s: write failed: %s", path, strerror(errno));
        done += n;
    }
    free(stage);
    return s;
}

llm_status llm_model_save(const llm_model *m, const char *path) {
    if (!m || !path) return llm_fail(LLM_EINVAL, "model or path is NULL");
    size_t len = strlen(path);
    char *tmp = malloc(len + 32);
    if (!tmp) return llm_fail(LLM_ENOMEM, "out of memory");
#ifndef _WIN32
    snprintf(tmp, len + 32, "%s.tmp.%ld", path, (long)getpid());
#else
    snprintf(tmp, len + 32, "%s.tmp", path);
#endif
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        llm_status s = llm_fail(LLM_EIO, "cannot write %s: %s", tmp, strerror(errno));
        free(tmp);
        return s;
    }
    llm_status s = write_to(f, m, path);
    if (fclose(f) != 0 && s == LLM_OK) s = llm_fail(LLM_EIO, "%s: close failed: %s", tmp, strerror(errno));
    if (s == LLM_OK && rename(tmp, path) != 0)
        s = llm_fail(LLM_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (s != LLM_OK) remove(tmp);
    free(tmp);
    return s;
}
