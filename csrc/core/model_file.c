/*
 * model_file.c — llm.c model files (formats.h), the one reader and writer: llm_model_load and
 * llm_model_save (checkpoint.c) stream the model's parameter block through it by element ranges,
 * the converters (python/llmpy/hf.py, through llmpy._C.ModelFile) one tensor slice at a time.
 *
 * Layout: a 256 x int32 header (magic, version, maxT, V, L, NH, C, Vp), then the 16 tensors of the
 * tensor table (llmpy.h: llm_tensor_spec) in table order, wte with Vp rows, fp32 (version 3) or
 * bf16 (version 5). Offsets and shapes come from that table only.
 *
 * Every file written carries checksums in its header's integrity block (formats.h): the payload's
 * CRC32C, computed while writing, and the header's. Reading checks the header's checksum before
 * anything else and the payload's before it returns (llm_model_file_open reads the file once for
 * it; llm_model_load checksums the payload as it streams it in). A file without the block (llm.c's,
 * older llmpy's) loads with nothing to verify.
 *
 * Writes go to a temp file beside the target, which commit fsyncs and renames over it (then fsyncs
 * the directory), so the target is either the old file or the complete new one, also after a crash
 * or a power loss. Every failure names the file.
 */
#ifndef _WIN32
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L // fseeko, ftello
#endif
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/formats.h"
#include "core/model_file.h"

// bf16 conversions go through a buffer of this many elements (the file keeps one).
#define RAW_ELEMS ((size_t)1 << 16)

struct llm_model_file {
    FILE *fp;
    char *path;     // the model file (messages name it; the rename target of a write)
    char *tmp;      // writing: the temp file beside path; NULL when reading
    llm_config cfg;
    int bf16;       // payload elements are bf16 (version 5), else fp32 (version 3)
    size_t offsets[LLM_NUM_TENSORS], sizes[LLM_NUM_TENSORS]; // in payload elements, wte with Vp rows
    size_t total;   // payload elements
    size_t pos;     // writing: elements written so far
    int failed;     // writing: a write failed; commit refuses, close removes the temp file
    int committed;  // writing: renamed over path
    llm_integrity sum; // reading: the header's integrity block; writing: the committed file's
    int verified;      // reading: the payload's checksum was checked
    uint64_t crc_pos;  // reading: payload bytes checksummed so far, in order from the start
    uint32_t crc;      // reading: their running checksum; writing: that of the payload written
    uint16_t *raw;  // RAW_ELEMS elements for bf16 conversion and zero padding
};

// ----------------------------------------------------------------------------
// bf16

void llm_f32_to_bf16(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &src[i], sizeof b);
        if ((b & 0x7fffffffu) > 0x7f800000u) // NaN: keep it NaN (rounding could carry it into infinity)
            dst[i] = (uint16_t)((b >> 16) | 0x40);
        else // round to nearest, ties to even (no overflow: b <= 0xff800000 here)
            dst[i] = (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
    }
}

void llm_bf16_to_f32(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t b = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &b, sizeof b);
    }
}

// ----------------------------------------------------------------------------
// files: seeking, headers, temp names (shared with checkpoint.c)

llm_status llm_file_seek(FILE *f, int64_t offset, const char *path) {
#ifdef _WIN32
    int rc = _fseeki64(f, offset, SEEK_SET);
#else
    int rc = fseeko(f, (off_t)offset, SEEK_SET);
#endif
    return rc == 0 ? LLM_OK : llm_fail(LLM_EIO, "%s: cannot seek: %s", path, strerror(errno));
}

static llm_status file_size(FILE *f, const char *path, int64_t *bytes) {
#ifdef _WIN32
    int rc = _fseeki64(f, 0, SEEK_END);
    *bytes = rc == 0 ? _ftelli64(f) : -1;
#else
    int rc = fseeko(f, 0, SEEK_END);
    *bytes = rc == 0 ? (int64_t)ftello(f) : -1;
#endif
    if (*bytes < 0) return llm_fail(LLM_EIO, "%s: cannot seek: %s", path, strerror(errno));
    return llm_file_seek(f, 0, path);
}

llm_status llm_file_open_read(FILE **out, const char *path, const char *what) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int err = errno;
        return llm_fail(err == ENOENT ? LLM_ENOENT : LLM_EIO, "cannot open %s %s: %s", what, path, strerror(err));
    }
#ifndef _WIN32
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return llm_fail(LLM_EIO, "cannot open %s %s: it is a directory, not a file (give the path of the file in it)",
                        what, path);
    }
#endif
    *out = f;
    return LLM_OK;
}

static llm_status read_exact(FILE *f, void *buf, size_t bytes, const char *path) {
    if (fread(buf, 1, bytes, f) != bytes)
        return llm_fail(LLM_EFORMAT, "%s: file is truncated (unexpected end of file)", path);
    return LLM_OK;
}

llm_status llm_file_read_header(FILE *f, const char *path, int32_t header[LLM_HEADER_INTS], int64_t *file_bytes) {
    const size_t header_bytes = LLM_HEADER_INTS * sizeof(int32_t);
    LLM_TRY(file_size(f, path, file_bytes));
    if (*file_bytes < (int64_t)header_bytes)
        return llm_fail(LLM_EFORMAT, "%s: file is truncated: %lld bytes, smaller than the %zu-byte header", path,
                        (long long)*file_bytes, header_bytes);
    return read_exact(f, header, header_bytes, path);
}

char *llm_temp_path(const char *path) {
    static unsigned counter; // two writers of one path in one process get different temp files
#if defined(__GNUC__)
    unsigned n = __atomic_fetch_add(&counter, 1u, __ATOMIC_RELAXED); // writers may run on several threads
#else
    unsigned n = counter++;
#endif
    size_t len = strlen(path) + 48;
    char *tmp = malloc(len);
    if (!tmp) return NULL;
#ifndef _WIN32
    snprintf(tmp, len, "%s.tmp.%ld.%u", path, (long)getpid(), n);
#else
    snprintf(tmp, len, "%s.tmp.%u", path, n);
#endif
    return tmp;
}

llm_status llm_write_failed(const char *path, int err) {
#ifdef EDQUOT
    int full = err == ENOSPC || err == EDQUOT;
#else
    int full = err == ENOSPC;
#endif
    if (full)
        return llm_fail(LLM_EIO,
                        "%s: write failed: %s: the disk is full; free space (or write to another disk) and save "
                        "again; the file it would have replaced is untouched",
                        path, strerror(err));
    return llm_fail(LLM_EIO, "%s: write failed: %s", path, strerror(err));
}

#ifndef _WIN32
// fsync of the directory holding path, so that a rename in it is on disk. File systems that
// cannot sync a directory (EINVAL, ENOTSUP) are taken at their word.
static llm_status sync_dir_of(const char *path) {
    size_t n = strlen(path);
    char *dir = malloc(n + 2);
    if (!dir) return llm_fail(LLM_ENOMEM, "out of memory");
    memcpy(dir, path, n + 1);
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    llm_status s = LLM_OK;
    int fd = open(dir, O_RDONLY);
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP))
        s = llm_fail(LLM_EIO, "%s: cannot sync the directory %s after writing it: %s", path, dir, strerror(errno));
    if (fd >= 0) close(fd);
    free(dir);
    return s;
}
#endif

llm_status llm_file_commit(FILE *fp, const char *tmp, const char *path) {
    llm_status s = LLM_OK;
    if (fflush(fp) != 0 || ferror(fp)) s = llm_write_failed(path, errno);
#ifndef _WIN32
    if (s == LLM_OK && fsync(fileno(fp)) != 0) s = llm_write_failed(path, errno);
#endif
    if (fclose(fp) != 0 && s == LLM_OK) s = llm_write_failed(path, errno);
    if (s == LLM_OK && rename(tmp, path) != 0)
        s = llm_fail(LLM_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (s != LLM_OK) {
        remove(tmp);
        return s;
    }
#ifndef _WIN32
    return sync_dir_of(path);
#else
    return LLM_OK;
#endif
}

// ----------------------------------------------------------------------------
// layout: offsets and slices from the tensor table

static llm_model_file *file_new(const char *path, const llm_config *cfg, int bf16) {
    llm_model_file *f = calloc(1, sizeof *f);
    size_t len = strlen(path) + 1;
    if (f) f->path = malloc(len);
    if (f) f->raw = malloc(RAW_ELEMS * sizeof(uint16_t));
    if (!f || !f->path || !f->raw) {
        if (f) { free(f->path); free(f->raw); }
        free(f);
        return NULL;
    }
    memcpy(f->path, path, len);
    f->cfg = *cfg;
    f->bf16 = bf16;
    for (int i = 0; i < LLM_NUM_TENSORS; i++) {
        int64_t shape[3];
        int nd = llm_tensor_shape(cfg, i, shape);
        size_t n = 1;
        for (int d = 0; d < nd; d++) n *= (size_t)shape[d];
        f->offsets[i] = f->total;
        f->sizes[i] = n;
        f->total += n;
    }
    return f;
}

static size_t elem_bytes(const llm_model_file *f) { return f->bf16 ? sizeof(uint16_t) : sizeof(float); }

// Slice (i, layer): its first payload element, its element count in the file and how many of those
// are visible (the rest are wte's padding rows). 0 when (i, layer) is not a slice.
static int slice(const llm_model_file *f, int i, int layer, size_t *offset, size_t *count, size_t *visible) {
    const llm_tensor_spec *spec = llm_tensor_spec_of(i);
    if (!spec || layer < -1 || layer >= f->cfg.n_layer || (layer >= 0 && !llm_tensor_per_layer(i))) return 0;
    size_t per = layer >= 0 ? f->sizes[i] / (size_t)f->cfg.n_layer : f->sizes[i];
    *offset = f->offsets[i] + (layer >= 0 ? (size_t)layer * per : 0);
    *count = per;
    *visible = spec->dims[0] == LLM_DIM_VP ? per / (size_t)f->cfg.padded_vocab_size * (size_t)f->cfg.vocab_size : per;
    return 1;
}

static llm_status no_slice(const llm_model_file *f, int i, int layer) {
    if (!llm_tensor_spec_of(i))
        return llm_fail(LLM_EINVAL, "%s: tensor index %d out of range [0, %d)", f->path, i, LLM_NUM_TENSORS);
    if (!llm_tensor_per_layer(i))
        return llm_fail(LLM_EINVAL, "%s: %s has no layers (layer %d; pass -1 for the whole tensor)", f->path,
                        llm_tensor_name(i), layer);
    return llm_fail(LLM_EINVAL, "%s: %s layer %d out of range [-1, %d)", f->path, llm_tensor_name(i), layer,
                    f->cfg.n_layer);
}

// "qkvw layer 3" / "wte": what sits at payload element pos (for messages).
static void describe(const llm_model_file *f, size_t pos, char *buf, size_t n) {
    for (int i = 0; i < LLM_NUM_TENSORS; i++) {
        if (pos >= f->offsets[i] + f->sizes[i]) continue;
        if (llm_tensor_per_layer(i))
            snprintf(buf, n, "%s layer %zu", llm_tensor_name(i),
                     (pos - f->offsets[i]) / (f->sizes[i] / (size_t)f->cfg.n_layer));
        else
            snprintf(buf, n, "%s", llm_tensor_name(i));
        return;
    }
    snprintf(buf, n, "nothing (every tensor is written)");
}

llm_config llm_model_file_config(const llm_model_file *f) { return f->cfg; }
int llm_model_file_bf16(const llm_model_file *f) { return f->bf16; }
size_t llm_model_file_elems(const llm_model_file *f) { return f->total; }

int llm_model_file_shape(const llm_model_file *f, int i, int layer, int64_t shape[3]) {
    size_t offset, count, visible;
    if (!f || !shape || !slice(f, i, layer, &offset, &count, &visible)) return 0;
    int nd = llm_tensor_shape(&f->cfg, i, shape);
    if (llm_tensor_spec_of(i)->dims[0] == LLM_DIM_VP) shape[0] = f->cfg.vocab_size;
    if (layer >= 0) { // drop the layer dimension
        for (int d = 1; d < nd; d++) shape[d - 1] = shape[d];
        nd--;
    }
    return nd;
}

// ----------------------------------------------------------------------------
// reading

llm_status llm_model_file_open_unverified(llm_model_file **out, const char *path) {
    if (!out || !path) return llm_fail(LLM_EINVAL, "output or path is NULL");
    *out = NULL;
    FILE *fp;
    LLM_TRY(llm_file_open_read(&fp, path, "model file"));
    int32_t header[LLM_HEADER_INTS];
    int64_t file_bytes = 0;
    llm_integrity sum;
    llm_status s = llm_file_read_header(fp, path, header, &file_bytes);
    // a foreign file (wrong magic, no integrity block of ours) is named as such; otherwise a damaged
    // header says so first
    if (s == LLM_OK && header[0] != LLM_MODEL_MAGIC && header[LLM_INTEGRITY_AT] != LLM_INTEGRITY_MAGIC)
        s = llm_fail(LLM_EFORMAT, "%s: not an llm.c model file (magic %d, expected %d)", path, header[0],
                     LLM_MODEL_MAGIC);
    if (s == LLM_OK) s = llm_integrity_check(header, path, &sum);
    if (s != LLM_OK) { fclose(fp); return s; }
    llm_config cfg = {.block_size = header[2], .vocab_size = header[3], .n_layer = header[4],
                      .n_head = header[5], .n_embd = header[6], .padded_vocab_size = header[7]};
    int version = header[1];
    if (header[0] != LLM_MODEL_MAGIC)
        s = llm_fail(LLM_EFORMAT, "%s: not an llm.c model file (magic %d, expected %d)", path, header[0],
                     LLM_MODEL_MAGIC);
    else if (version != LLM_MODEL_VERSION_FP32 && version != LLM_MODEL_VERSION_BF16)
        s = llm_fail(LLM_EFORMAT, "%s: unsupported model file version %d (supported: %d = fp32, %d = bf16)", path,
                     version, LLM_MODEL_VERSION_FP32, LLM_MODEL_VERSION_BF16);
    else if (cfg.padded_vocab_size <= 0)
        s = llm_fail(LLM_EFORMAT, "%s: header has padded_vocab_size %d", path, cfg.padded_vocab_size);
    else if (llm_config_check(&cfg) != LLM_OK)
        s = llm_fail(LLM_EFORMAT, "%s: header holds an invalid configuration: %s", path, llm_last_error());
    if (s != LLM_OK) { fclose(fp); return s; }

    llm_model_file *f = file_new(path, &cfg, version == LLM_MODEL_VERSION_BF16);
    if (!f) { fclose(fp); return llm_fail(LLM_ENOMEM, "out of memory opening %s", path); }
    f->fp = fp;
    f->sum = sum;
    int64_t expect = (int64_t)(LLM_HEADER_INTS * sizeof(int32_t)) + (int64_t)(f->total * elem_bytes(f));
    if (file_bytes != expect) {
        s = llm_fail(LLM_EFORMAT,
                     "%s: %s: header (L=%d, NH=%d, C=%d, V=%d, Vp=%d, maxT=%d, version %d) implies %lld bytes, "
                     "file has %lld",
                     path, file_bytes < expect ? "file is truncated" : "header does not match the file size",
                     cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab_size, cfg.padded_vocab_size, cfg.block_size,
                     version, (long long)expect, (long long)file_bytes);
        llm_model_file_close(f);
        return s;
    }
    *out = f;
    return LLM_OK;
}

llm_status llm_model_file_open(llm_model_file **out, const char *path) {
    LLM_TRY(llm_model_file_open_unverified(out, path));
    llm_status s = llm_model_file_verify(*out);
    if (s != LLM_OK) {
        llm_model_file_close(*out);
        *out = NULL;
    }
    return s;
}

llm_integrity llm_model_file_integrity(const llm_model_file *f) { return f->sum; }

// Checksums bytes that were read at payload byte offset `at` when they continue the bytes
// checksummed so far (a reader going through the file in order checksums it on the way).
static void checksum_read(llm_model_file *f, uint64_t at, const void *buf, size_t bytes) {
    if (f->sum.present && !f->verified && at == f->crc_pos) {
        f->crc = llm_crc32c(f->crc, buf, bytes);
        f->crc_pos += bytes;
    }
}

llm_status llm_model_file_verify(llm_model_file *f) {
    if (f->tmp) return llm_fail(LLM_ESTATE, "%s: opened for writing, not reading", f->path);
    if (!f->sum.present || f->verified) return LLM_OK;
    const uint64_t total = (uint64_t)f->total * elem_bytes(f), chunk = RAW_ELEMS * sizeof(uint16_t);
    if (f->crc_pos < total)
        LLM_TRY(llm_file_seek(f->fp, (int64_t)(LLM_HEADER_INTS * sizeof(int32_t) + f->crc_pos), f->path));
    while (f->crc_pos < total) { // the rest of the payload, through the conversion buffer
        size_t k = (size_t)(total - f->crc_pos < chunk ? total - f->crc_pos : chunk);
        LLM_TRY(read_exact(f->fp, f->raw, k, f->path));
        checksum_read(f, f->crc_pos, f->raw, k);
    }
    if (f->crc != f->sum.payload) return llm_payload_mismatch(f->path, f->sum.payload, f->crc);
    f->verified = 1;
    return LLM_OK;
}

llm_status llm_model_file_read_range(llm_model_file *f, size_t offset, size_t n, float *dst) {
    if (f->tmp) return llm_fail(LLM_ESTATE, "%s: opened for writing, not reading", f->path);
    if (offset > f->total || n > f->total - offset)
        return llm_fail(LLM_EINVAL, "%s: element range [%zu, %zu) outside the payload [0, %zu)", f->path, offset,
                        offset + n, f->total);
    uint64_t at = (uint64_t)offset * elem_bytes(f); // payload byte offset
    LLM_TRY(llm_file_seek(f->fp, (int64_t)(LLM_HEADER_INTS * sizeof(int32_t) + at), f->path));
    if (!f->bf16) {
        LLM_TRY(read_exact(f->fp, dst, n * sizeof(float), f->path));
        checksum_read(f, at, dst, n * sizeof(float));
        return LLM_OK;
    }
    for (size_t done = 0; done < n;) {
        size_t k = n - done < RAW_ELEMS ? n - done : RAW_ELEMS;
        LLM_TRY(read_exact(f->fp, f->raw, k * sizeof(uint16_t), f->path));
        checksum_read(f, at + done * sizeof(uint16_t), f->raw, k * sizeof(uint16_t));
        llm_bf16_to_f32(dst + done, f->raw, k);
        done += k;
    }
    return LLM_OK;
}

llm_status llm_model_file_read(llm_model_file *f, int i, int layer, float *dst) {
    if (!f || !dst) return llm_fail(LLM_EINVAL, "model file or destination is NULL");
    size_t offset, count, visible;
    if (!slice(f, i, layer, &offset, &count, &visible)) return no_slice(f, i, layer);
    return llm_model_file_read_range(f, offset, visible, dst); // the padding rows come last: skipped
}

// ----------------------------------------------------------------------------
// writing

static void fill_header(const llm_model_file *f, int32_t header[LLM_HEADER_INTS]) {
    memset(header, 0, LLM_HEADER_INTS * sizeof(int32_t));
    header[0] = LLM_MODEL_MAGIC;
    header[1] = f->bf16 ? LLM_MODEL_VERSION_BF16 : LLM_MODEL_VERSION_FP32;
    header[2] = f->cfg.block_size;
    header[3] = f->cfg.vocab_size;
    header[4] = f->cfg.n_layer;
    header[5] = f->cfg.n_head;
    header[6] = f->cfg.n_embd;
    header[7] = f->cfg.padded_vocab_size;
}

llm_status llm_model_file_create(llm_model_file **out, const char *path, const llm_config *cfg_in, int bf16) {
    if (!out || !path || !cfg_in) return llm_fail(LLM_EINVAL, "output, path or config is NULL");
    *out = NULL;
    llm_config cfg = *cfg_in;
    if (llm_config_check(&cfg) != LLM_OK)
        return llm_fail(LLM_EINVAL, "%s: cannot write a model of an invalid configuration: %s", path,
                        llm_last_error());
    llm_model_file *f = file_new(path, &cfg, bf16 != 0);
    if (f) f->tmp = llm_temp_path(path);
    if (!f || !f->tmp) {
        llm_model_file_close(f);
        return llm_fail(LLM_ENOMEM, "out of memory writing %s", path);
    }
    f->fp = fopen(f->tmp, "wb");
    if (!f->fp) {
        int err = errno;
        llm_status s = err == ENOSPC ? llm_write_failed(path, err)
                                     : llm_fail(LLM_EIO, "cannot write %s: %s", f->tmp, strerror(err));
        llm_model_file_close(f);
        return s;
    }
    int32_t header[LLM_HEADER_INTS];
    fill_header(f, header); // its integrity block is written by commit
    if (fwrite(header, sizeof header, 1, f->fp) != 1) {
        llm_status s = llm_write_failed(path, errno);
        llm_model_file_close(f);
        return s;
    }
    *out = f;
    return LLM_OK;
}

static llm_status writable(llm_model_file *f) {
    if (!f->tmp) return llm_fail(LLM_ESTATE, "%s: opened for reading, not writing", f->path);
    if (f->failed) return llm_fail(LLM_ESTATE, "%s: an earlier write failed; start again", f->path);
    if (!f->fp) return llm_fail(LLM_ESTATE, "%s: already committed", f->path);
    return LLM_OK;
}

// Appends nbytes of buf; a failure marks the file failed (commit refuses, close removes it).
static llm_status put(llm_model_file *f, const void *buf, size_t nbytes) {
    if (nbytes && fwrite(buf, 1, nbytes, f->fp) != nbytes) {
        f->failed = 1;
        return llm_write_failed(f->path, errno);
    }
    f->crc = llm_crc32c(f->crc, buf, nbytes);
    return LLM_OK;
}

llm_status llm_model_file_write_range(llm_model_file *f, const float *src, size_t n) {
    LLM_TRY(writable(f));
    if (n > f->total - f->pos)
        return llm_fail(LLM_ESTATE, "%s: writing %zu elements past the end of the payload (%zu of %zu written)",
                        f->path, n - (f->total - f->pos), f->pos, f->total);
    if (!f->bf16) {
        LLM_TRY(put(f, src, n * sizeof(float)));
    } else {
        for (size_t done = 0; done < n;) {
            size_t k = n - done < RAW_ELEMS ? n - done : RAW_ELEMS;
            llm_f32_to_bf16(f->raw, src + done, k);
            LLM_TRY(put(f, f->raw, k * sizeof(uint16_t)));
            done += k;
        }
    }
    f->pos += n;
    return LLM_OK;
}

static llm_status write_zeros(llm_model_file *f, size_t n) {
    memset(f->raw, 0, RAW_ELEMS * sizeof(uint16_t));
    size_t per = RAW_ELEMS * sizeof(uint16_t) / elem_bytes(f); // elements per buffer
    for (size_t done = 0; done < n;) {
        size_t k = n - done < per ? n - done : per;
        LLM_TRY(put(f, f->raw, k * elem_bytes(f)));
        done += k;
    }
    f->pos += n;
    return LLM_OK;
}

llm_status llm_model_file_write(llm_model_file *f, int i, int layer, const float *src) {
    if (!f || !src) return llm_fail(LLM_EINVAL, "model file or source is NULL");
    LLM_TRY(writable(f));
    size_t offset, count, visible;
    if (!slice(f, i, layer, &offset, &count, &visible)) return no_slice(f, i, layer);
    if (offset != f->pos) {
        char want[64];
        describe(f, f->pos, want, sizeof want);
        if (layer >= 0)
            return llm_fail(LLM_ESTATE, "%s: %s layer %d written out of order; tensors go in file order, %s next",
                            f->path, llm_tensor_name(i), layer, want);
        return llm_fail(LLM_ESTATE, "%s: %s written out of order; tensors go in file order, %s next", f->path,
                        llm_tensor_name(i), want);
    }
    LLM_TRY(llm_model_file_write_range(f, src, visible));
    return write_zeros(f, count - visible); // wte's padding rows
}

llm_status llm_model_file_commit(llm_model_file *f) {
    if (!f) return llm_fail(LLM_EINVAL, "model file is NULL");
    LLM_TRY(writable(f));
    if (f->pos != f->total) {
        char want[64];
        describe(f, f->pos, want, sizeof want);
        return llm_fail(LLM_ESTATE, "%s: incomplete: %zu of %zu parameters written, %s next", f->path, f->pos,
                        f->total, want);
    }
    // the header again, now with its integrity block
    int32_t header[LLM_HEADER_INTS];
    fill_header(f, header);
    llm_integrity_seal(header, f->crc);
    llm_status s = llm_file_seek(f->fp, 0, f->tmp);
    if (s == LLM_OK && fwrite(header, sizeof header, 1, f->fp) != 1) s = llm_write_failed(f->path, errno);
    if (s != LLM_OK) {
        f->failed = 1;
        return s; // close removes the temp file
    }
    FILE *fp = f->fp;
    f->fp = NULL;
    s = llm_file_commit(fp, f->tmp, f->path); // on failure the temp file is gone
    if (s != LLM_OK) {
        f->failed = 1;
        return s;
    }
    f->sum = (llm_integrity){1, f->crc, llm_header_checksum(header)};
    f->committed = 1;
    return LLM_OK;
}

void llm_model_file_close(llm_model_file *f) {
    if (!f) return;
    if (f->fp) fclose(f->fp);
    if (f->tmp && !f->committed) remove(f->tmp); // an abandoned or failed write leaves nothing behind
    free(f->tmp);
    free(f->path);
    free(f->raw);
    free(f);
}
