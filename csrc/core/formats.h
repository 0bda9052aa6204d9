/*
 * formats.h — the one source of truth for every file format llmpy reads or writes.
 * All formats are llm.c-compatible: a 256 x int32 little-endian header, then the payload.
 * The Python package reads these numbers from llmpy._C (build_info / formats), never retypes them.
 */
#ifndef LLMPY_FORMATS_H
#define LLMPY_FORMATS_H

#define LLM_HEADER_INTS 256 // every header is 256 int32 = 1024 bytes

// ----------------------------------------------------------------------------
// Integrity block (ours): the last ints of the header of model and training-state files, where
// llm.c reads nothing (it reads model header ints 0..7; so does the PyTorch oracle).
//   [LLM_INTEGRITY_AT + 0] LLM_INTEGRITY_MAGIC: the block is present
//   [LLM_INTEGRITY_AT + 1] the checksum algorithm: LLM_CHECKSUM_CRC32C
//   [LLM_INTEGRITY_AT + 2] checksum of the payload: every byte after the header (uint32 bits)
//   [LLM_INTEGRITY_AT + 3] checksum of the header: its 1024 bytes with this int read as 0 (so it
//                          covers the payload's checksum too: it identifies the whole file)
// The checksum is CRC32C (csrc/core/checksum.c) over the little-endian bytes as stored. A file whose
// four ints are all 0 has no checksum (llm.c's files, llmpy's before checksums): it loads with
// nothing to verify. Anything else that is not a valid block is a damaged file.
#define LLM_INTEGRITY_AT 248
#define LLM_INTEGRITY_MAGIC 20250814
#define LLM_CHECKSUM_CRC32C 1

// ----------------------------------------------------------------------------
// Model file. header[0] magic, [1] version, [2] max_seq_len (block_size), [3] vocab_size,
// [4] num_layers, [5] num_heads, [6] channels, [7] padded_vocab_size; the integrity block
// (llmpy writes it; llm.c's files have none). Every other int is 0.
// Payload: the 16 parameter tensors in llm.c order (wte as (Vp, C)), fp32 (v3) or bf16 (v5).
#define LLM_MODEL_MAGIC 20240326
#define LLM_MODEL_VERSION_FP32 3
#define LLM_MODEL_VERSION_BF16 5

// ----------------------------------------------------------------------------
// Debug state (PyTorch oracle -> tests). header[0] magic, [1] version, [2] B, [3] T.
// Payload: inputs (B*T int32), targets (B*T int32), logits (B*T*V fp32, unpadded),
// loss (1 fp32), gradients of all 16 tensors in model-file layout (wte padded to Vp rows).
#define LLM_STATE_MAGIC 20240327
#define LLM_STATE_VERSION 2

// ----------------------------------------------------------------------------
// Token shards. header[0] magic, [1] version, [2] number of tokens; payload uint16 tokens.
#define LLM_SHARD_MAGIC 20240520
#define LLM_SHARD_VERSION 1

// ----------------------------------------------------------------------------
// Tokenizer for the binary. header[0] magic, [1] version (2 carries EOT id), [2] vocab size,
// [3] EOT token id; payload: per token, 1 byte length then the bytes.
#define LLM_TOKENIZER_MAGIC 20240328
#define LLM_TOKENIZER_VERSION 2

// ----------------------------------------------------------------------------
// HellaSwag eval file for the binary (as llm.c writes it; python -m llmpy.hellaswag --write-eval-file).
// header[0] magic, [1] version, [2] number of examples, [3] size in bytes of the longest example.
// Payload, per example, uint16: 65535 (start marker), the example's size in bytes (these fields
// included), its index, its label, the number of endings (4), the context length, the context
// tokens, then for each ending its length and its tokens (GPT-2 tokens of " " + ending).
#define LLM_HELLASWAG_MAGIC 20240522
#define LLM_HELLASWAG_VERSION 1

// ----------------------------------------------------------------------------
// Training state (ours): what a model file lacks for an exact resume.
// header[0] magic, [1] version, [2..3] AdamW step t (int64, low word first),
// [4..5] elements per moment buffer (int64; the model's parameter count with Vp rows),
// [6] 1 if the AdamW moments follow (0 before the first step), [7..8] JSON length in bytes (int64),
// [9] n_layer, [10] n_head, [11] n_embd, [12] vocab_size, [13] block_size, [14] padded_vocab_size.
// Version 2 adds what ties the file to its checkpoint pair, and the integrity block:
// [15] 1 if the model file saved with this state is recorded in [16..17] (0: none was given),
// [16] that model file's payload checksum, [17] its header checksum (its integrity block's
// [+2] and [+3]; 0 and 0 for a model file without checksums), [18..19] the checkpoint's step
// (int64; the training loop's, named in ckpt_NNNNNN), [20..27] the run's id (up to
// LLM_RUN_ID_MAX bytes of [A-Za-z0-9._-], NUL-padded), the integrity block at LLM_INTEGRITY_AT.
// Payload: m then v (fp32, model-file tensor order) when [6] is 1; then the JSON text (UTF-8),
// which holds the training loop's state (schedule, RNG states, data position, config, command line).
// Version 1 files (no pairing fields, no checksum) are still read, with nothing to verify.
#define LLM_TRAIN_STATE_MAGIC 20241125
#define LLM_TRAIN_STATE_VERSION 2
#define LLM_TRAIN_STATE_VERSION_V1 1
#define LLM_RUN_ID_AT 20
#define LLM_RUN_ID_MAX 31

// Vocabulary padding multiple (50257 -> 50304).
#define LLM_VOCAB_PAD 128

#endif // LLMPY_FORMATS_H
