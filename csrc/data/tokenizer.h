/*
 * tokenizer.h — byte-level BPE in C (csrc/data/tokenizer.c).
 *
 * Four pieces, used by the Python package (llmpy.tokenizer, through llmpy._C.tokenizer) and by
 * the train_gpt2 binary:
 *   1. llm_bpe_vocab       token byte strings by id, looked up by bytes (the rank of a token is
 *                          its id: a lower id is merged first, as in tiktoken)
 *   2. llm_bpe_encode      tiktoken's encoding rule on pre-split pieces
 *   3. llm_bpe_recover_merges / llm_bpe_train
 *                          merges from ranks (GPT-2/GPT-4 vocabularies), and the training hot loop
 *   4. llm_tokenizer       the llm.c tokenizer file (formats.h LLM_TOKENIZER_*): token id -> bytes
 *
 * Errors follow llmpy.h: every function returns an llm_status and sets llm_last_error().
 */
#ifndef LLMPY_TOKENIZER_H
#define LLMPY_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/llmpy.h"

#ifdef __cplusplus
extern "C" {
#endif

// ----------------------------------------------------------------------------
// vocabulary

typedef struct llm_bpe_vocab llm_bpe_vocab;

// Builds a vocabulary of n ids: id i has the bytes tokens[i][0 .. lens[i]); lens[i] == 0 means
// "no ordinary token has this id" (an unused id, or a special token). Byte strings must be
// distinct and every one of the 256 single bytes must be a token (byte-level BPE). n <= INT32_MAX.
llm_status llm_bpe_vocab_create(llm_bpe_vocab **out, const uint8_t *const *tokens, const size_t *lens, size_t n);
void llm_bpe_vocab_free(llm_bpe_vocab *v);
// Number of ids (one past the largest id) and number of ordinary tokens.
size_t llm_bpe_vocab_num_ids(const llm_bpe_vocab *v);
size_t llm_bpe_vocab_num_tokens(const llm_bpe_vocab *v);

// ----------------------------------------------------------------------------
// encoding

// Encodes n pieces (piece i is data[offsets[i] .. offsets[i+1]), offsets has n+1 entries) with
// tiktoken's rule: a piece that is a token encodes to that token; otherwise, starting from its
// bytes, the adjacent pair whose concatenation is the lowest-ranked token is merged (leftmost on
// ties) until no adjacent pair forms a token. out must have room for offsets[n] - offsets[0] ids
// (never more are written); *n_out receives the number written. O(m log m) for a piece of m bytes.
llm_status llm_bpe_encode(const llm_bpe_vocab *v, const uint8_t *data, const size_t *offsets, size_t n,
                          int32_t *out, size_t *n_out);

// ----------------------------------------------------------------------------
// merges

typedef struct llm_bpe_merge {
    int32_t left, right; // the pair of token ids ...
    int32_t id;          // ... and the token it becomes
    int64_t count;       // training only: weighted occurrences when it was merged (0 when recovered)
} llm_bpe_merge;

// For every token of two or more bytes, the two tokens it is merged from: encoding its bytes with
// only lower-ranked tokens must leave exactly two parts (true for GPT-2, GPT-4 and every trained
// vocabulary). left/right have llm_bpe_vocab_num_ids() entries; ids without a merge get -1.
llm_status llm_bpe_recover_merges(const llm_bpe_vocab *v, int32_t *left, int32_t *right);

// Trains byte-level BPE on n words (word i is data[offsets[i] .. offsets[i+1]), seen counts[i] >= 1
// times; pairs never cross word boundaries). Starts from the 256 single-byte tokens (id = byte
// value) and repeats until there are vocab_size tokens or no adjacent pair is left:
//   - pick the pair with the highest count (all adjacent occurrences, overlapping ones included,
//     weighted by word count); ties go to the smallest (left, right) id pair;
//   - its token: the concatenated bytes; a new id (the next one) unless these bytes already are a
//     token, which is then reused (so the merge list can be longer than vocab_size - 256);
//   - replace its occurrences in each word left to right (so "aaa" with (a, a) becomes [aa, a]).
// Pair counts are updated incrementally (only pairs next to a merged occurrence change) and the
// next pair comes from a lazy max-heap. *merges is allocated here: release with llm_bpe_merges_free.
llm_status llm_bpe_train(const uint8_t *data, const size_t *offsets, const int64_t *counts, size_t n,
                         size_t vocab_size, llm_bpe_merge **merges, size_t *n_merges);
void llm_bpe_merges_free(llm_bpe_merge *merges);

// ----------------------------------------------------------------------------
// the llm.c tokenizer file, for the binary

typedef struct llm_tokenizer llm_tokenizer;

// Reads an llm.c tokenizer file: version 2 (EOT id in the header) or version 1 (GPT-2, EOT 50256).
// Token lengths of 0 are accepted (ids without a token decode to ""). LLM_ENOENT when the file does
// not exist, LLM_EIO when it cannot be opened, LLM_EFORMAT for a directory or a damaged file; on
// failure nothing stays allocated and *out is NULL.
llm_status llm_tokenizer_load(llm_tokenizer **out, const char *path);
void llm_tokenizer_free(llm_tokenizer *t);
size_t llm_tokenizer_vocab_size(const llm_tokenizer *t);
int32_t llm_tokenizer_eot(const llm_tokenizer *t);
// The bytes of token `id` (*bytes is NUL-terminated for printing; *len excludes the NUL and may be
// shorter than strlen when the token contains a zero byte). LLM_EINVAL for an id out of range.
llm_status llm_tokenizer_decode(const llm_tokenizer *t, int32_t id, const char **bytes, size_t *len);

#ifdef __cplusplus
}
#endif
#endif // LLMPY_TOKENIZER_H
