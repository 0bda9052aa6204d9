/*
 * model_file.h — internals of model_file.c shared with checkpoint.c (not part of the public API).
 *
 * llm_model_load/llm_model_save stream the model's whole parameter block (wte with its padding
 * rows, exactly as the model holds it) through an llm_model_file by element ranges; the public
 * per-tensor calls (llmpy.h) sit on the same ranges. The header reader, the temp-file name and the
 * commit (fsync, rename, fsync of the directory) are shared with the training-state files of
 * checkpoint.c; the checksum helpers live in checksum.c.
 */
#ifndef LLMPY_MODEL_FILE_H
#define LLMPY_MODEL_FILE_H

#include <stdint.h>
#include <stdio.h>

#include "core/formats.h"
#include "core/llmpy.h"

// Opens path for reading. LLM_ENOENT when it does not exist, LLM_EIO when it is a directory or
// cannot be opened; `what` names the kind of file in the message ("model file").
llm_status llm_file_open_read(FILE **out, const char *path, const char *what);
// Reads the 256-int header of an open file; *file_bytes receives the file's size (every format
// checks it). "file is truncated" when the file is smaller than the header.
llm_status llm_file_read_header(FILE *f, const char *path, int32_t header[LLM_HEADER_INTS], int64_t *file_bytes);
// Seeks to an absolute byte offset (64-bit on every platform).
llm_status llm_file_seek(FILE *f, int64_t offset, const char *path);
// A malloc'd name for a temp file beside path (same directory, so that rename() is atomic):
// "<path>.tmp.<pid>.<n>" (llm_checkpoint_clean_temp removes those of dead writers).
char *llm_temp_path(const char *path);
// The status of a failed write of path (errno err): the disk being full says what to do.
llm_status llm_write_failed(const char *path, int err);
// Finishes a temp file written beside path: flush, fsync, close, rename over path, fsync the
// directory (so that the rename survives a power loss). On failure fp is closed, tmp removed and
// path left as it was.
llm_status llm_file_commit(FILE *fp, const char *tmp, const char *path);

// ----------------------------------------------------------------------------
// checksums (checksum.c; formats.h: the integrity block)

// What a header's integrity block says: present 0 for a file without checksums.
typedef struct llm_integrity {
    int present;
    uint32_t payload; // checksum of every byte after the header
    uint32_t header;  // checksum of the header (read with its own int as 0)
} llm_integrity;

// The header's checksum (the int holding it read as 0).
uint32_t llm_header_checksum(const int32_t header[LLM_HEADER_INTS]);
// Fills the integrity block of header for a payload whose checksum is payload_crc.
void llm_integrity_seal(int32_t header[LLM_HEADER_INTS], uint32_t payload_crc);
// Checks the integrity block and the header's checksum (every other check of a header comes
// after this one, so a damaged header is reported as damaged); *out says what the block holds.
llm_status llm_integrity_check(const int32_t header[LLM_HEADER_INTS], const char *path, llm_integrity *out);
// The message of a payload whose checksum is not the stored one.
llm_status llm_payload_mismatch(const char *path, uint32_t want, uint32_t got);

// ----------------------------------------------------------------------------
// model files, for checkpoint.c

// Opens a model file with its header checked but not its payload: reading it in order through
// llm_model_file_read_range checksums it on the way, llm_model_file_verify finishes the check
// (llm_model_file_open is this plus llm_model_file_verify).
llm_status llm_model_file_open_unverified(llm_model_file **out, const char *path);
// Checks the payload's checksum: the bytes already read in order are not read again.
llm_status llm_model_file_verify(llm_model_file *f);
// The integrity block of the file (reading) or of the committed file (writing).
llm_integrity llm_model_file_integrity(const llm_model_file *f);
// Elements of the payload (wte with Vp rows): what llm_model_file_read_range/write_range address.
size_t llm_model_file_elems(const llm_model_file *f);
// Reads payload elements [offset, offset + n) widened to fp32 into host memory dst.
llm_status llm_model_file_read_range(llm_model_file *f, size_t offset, size_t n, float *dst);
// Appends the next n payload elements (fp32 host memory; rounded to bf16 for a bf16 file).
llm_status llm_model_file_write_range(llm_model_file *f, const float *src, size_t n);

#endif // LLMPY_MODEL_FILE_H
