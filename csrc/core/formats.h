/*
 * formats.h — the one source of truth for every file format llmpy reads or writes.
 * All formats are llm.c-compatible: a 256 x int32 little-endian header, then the payload.
 * The Python package reads these numbers from llmpy._C (build_info / formats), never retypes them.
 */
#ifndef LLMPY_FORMATS_H
#define LLMPY_FORMATS_H

#define LLM_HEADER_INTS 256 // every header is 256 int32 = 1024 bytes

// ----------------------------------------------------------------------------
// Model file. header[0] magic, [1] version, [2] max_seq_len (block_size), [3] vocab_size,
// [4] num_layers, [5] num_heads, [6] channels, [7] padded_vocab_size.
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
// Payload: m then v (fp32, model-file tensor order) when [6] is 1; then the JSON text (UTF-8),
// which holds the training loop's state (schedule, RNG states, data position, config, command line).
#define LLM_TRAIN_STATE_MAGIC 20241125
#define LLM_TRAIN_STATE_VERSION 1

// Vocabulary padding multiple (50257 -> 50304).
#define LLM_VOCAB_PAD 128

#endif // LLMPY_FORMATS_H
