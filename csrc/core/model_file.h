/*
 * model_file.h — internals of model_file.c shared with checkpoint.c (not part of the public API).
 *
 * llm_model_load/llm_model_save stream the model's whole parameter block (wte with its padding
 * rows, exactly as the model holds it) through an llm_model_file by element ranges; the public
 * per-tensor calls (llmpy.h) sit on the same ranges. The header reader and the temp-file name are
 * shared with the training-state files of checkpoint.c.
 */
#ifndef LLMPY_MODEL_FILE_H
#define LLMPY_MODEL_FILE_H

#include <stdint.h>
#include <stdio.h>

#include "core/formats.h"
#include "core/llmpy.h"

// Reads the 256-int header of an open file; *file_bytes receives the file's size (every format
// checks it). "file is truncated" when the file is smaller than the header.
llm_status llm_file_read_header(FILE *f, const char *path, int32_t header[LLM_HEADER_INTS], int64_t *file_bytes);
// Seeks to an absolute byte offset (64-bit on every platform).
llm_status llm_file_seek(FILE *f, int64_t offset, const char *path);
// A malloc'd name for a temp file beside path (same directory, so that rename() is atomic).
char *llm_temp_path(const char *path);

// Elements of the payload (wte with Vp rows): what llm_model_file_read_range/write_range address.
size_t llm_model_file_elems(const llm_model_file *f);
// Reads payload elements [offset, offset + n) widened to fp32 into host memory dst.
llm_status llm_model_file_read_range(llm_model_file *f, size_t offset, size_t n, float *dst);
// Appends the next n payload elements (fp32 host memory; rounded to bf16 for a bf16 file).
llm_status llm_model_file_write_range(llm_model_file *f, const float *src, size_t n);

#endif // LLMPY_MODEL_FILE_H
