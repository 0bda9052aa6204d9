/*
 * dataloader.h — token shards and the data loader: the one implementation, used by the
 * train_gpt2 binary and, through llmpy._C.data, by llmpy.data.DataLoader.
 *
 * Semantics (the reference; python/llmpy/data/loader.py points here):
 *  - shards: the files matching a list of glob patterns (or plain paths), sorted by path
 *    (strcmp, i.e. by UTF-8 bytes), de-duplicated. A pattern that matches nothing is an error
 *    (LLM_ENOENT). Every header is validated against its file's size when the loader opens
 *    (format in core/formats.h), and again whenever a shard is reopened.
 *  - a shard of n tokens holds (n - 1) / T sequences: sequence k is the window of T + 1 tokens
 *    starting at token k*T; x is its first T tokens and y its last T (x shifted by one).
 *  - a global batch is B * world_size sequences; rank r takes sequences [r*B, (r+1)*B) of it,
 *    so the ranks read disjoint data and, concatenated in rank order along the batch axis,
 *    give exactly what one process with B * world_size reads. A shard yields
 *    (n - 1) / T / (B * world_size) global batches; the rest of it is skipped.
 *  - without shuffling, a shard's sequences are read in order (as llm.c does) and every epoch
 *    is the same. With shuffling, each epoch visits the shards in a permuted order (stream seed
 *    (seed, epoch, 0)) and each shard's sequences in a permuted order (stream seed
 *    (seed, epoch, 1 + i), i = the shard's index in the sorted file list); the permutations are
 *    derived from (seed, epoch) only (llm_data_permutation), so every rank agrees.
 *  - endless: after the last batch of an epoch comes the first batch of the next epoch.
 *  - the position (epoch, shard, batch) is global, the same on every rank: a position saved by
 *    rank 0 resumes every rank, even with another world_size as long as B * world_size is the same.
 *  - errors name the pattern or file and say what to do: LLM_ENOENT for a missing shard or a
 *    pattern matching nothing, LLM_EFORMAT for a corrupt shard, shards too small for one batch or
 *    (llm_dataloader_set_vocab) a token id outside the model's vocabulary,
 *    LLM_EINVAL for bad arguments or positions, LLM_EIO for other I/O failures.
 *  - one loader is used by one thread at a time (the Python binding serialises calls).
 *
 * Example:
 *   const char *pats[] = {"data/fineweb_train_*.bin"};
 *   llm_dataloader *dl;
 *   if (llm_dataloader_open(&dl, pats, 1, B, T, rank, world, 1, 1337) != LLM_OK) puts(llm_last_error());
 *   llm_dataloader_next(dl, x, y);                  // x, y: (B,T) int32
 *   llm_data_position pos = llm_dataloader_tell(dl); // save with the checkpoint
 *   llm_dataloader_seek(dl, pos);                    // resume
 *   llm_dataloader_free(dl);
 */
#ifndef LLMPY_DATALOADER_H
#define LLMPY_DATALOADER_H

#include <stdint.h>

#include "core/llmpy.h"

#ifdef __cplusplus
extern "C" {
#endif

// ----------------------------------------------------------------------------
// shard files

// Validates a shard's header against its file size; *ntok receives the token count.
// LLM_ENOENT when the file does not exist, LLM_EIO when it cannot be opened otherwise,
// LLM_EFORMAT for a directory, a wrong magic/version, truncation or a header/size mismatch.
llm_status llm_shard_read_header(const char *path, int64_t *ntok);

// ----------------------------------------------------------------------------
// permutations

// splitmix64-derived seed of one random stream (which: 0 = shard order, 1 + i = shard i's sequences):
// h = 0; for v in (seed, epoch, which): h = mix64((h ^ v) + GOLDEN), with splitmix64's mix64 and GOLDEN.
uint64_t llm_data_stream_seed(uint64_t seed, uint64_t epoch, uint64_t which);
// out (n): the indices 0..n-1 sorted by key_i = mix64(seed + (i + 1) * GOLDEN), i.e. by the i-th
// output of splitmix64 started at `seed` (ties by index). LLM_EINVAL for n < 0.
llm_status llm_data_permutation(int64_t *out, int64_t n, uint64_t seed);

// ----------------------------------------------------------------------------
// the loader

typedef struct llm_dataloader llm_dataloader;

typedef struct llm_data_position {
    int64_t epoch; // >= 0
    int64_t shard; // index into this epoch's shard order
    int64_t batch; // global batch within that shard
} llm_data_position;

// patterns: num_patterns >= 1 glob patterns (or plain paths). B, T >= 1; 0 <= rank < world_size.
// seed is ignored when shuffle is 0. Opens no shard yet (the first batch does).
llm_status llm_dataloader_open(llm_dataloader **out, const char *const *patterns, int num_patterns, int B, int T,
                               int rank, int world_size, int shuffle, uint64_t seed);
void llm_dataloader_free(llm_dataloader *dl);

// The next batch: x, y: (B,T) int32, y = x shifted by one token.
llm_status llm_dataloader_next(llm_dataloader *dl, int32_t *x, int32_t *y);
// Token ids handed out must be below vocab_size (the model's): a shard token at or above it fails
// llm_dataloader_next with LLM_EFORMAT naming the shard, the token offset in it and what to do,
// and the position stays where it was. 0 (the default) checks nothing. The model checks its
// inputs again, but it sees only the batch; this check is the one that can name the file.
llm_status llm_dataloader_set_vocab(llm_dataloader *dl, int vocab_size);
int llm_dataloader_vocab(const llm_dataloader *dl);
// Closes the open shard; the next batch reopens (and revalidates) it. The position is kept.
void llm_dataloader_release_shard(llm_dataloader *dl);
// To the first batch of `epoch` (LLM_EINVAL for a negative epoch).
llm_status llm_dataloader_reset(llm_dataloader *dl, int64_t epoch);
// Position of the next batch; seek validates it (LLM_EINVAL when out of range, position unchanged).
llm_data_position llm_dataloader_tell(const llm_dataloader *dl);
llm_status llm_dataloader_seek(llm_dataloader *dl, llm_data_position pos);

// Global batches per epoch (the same on every rank).
int64_t llm_dataloader_batches_per_epoch(const llm_dataloader *dl);
// Tokens in all shards.
int64_t llm_dataloader_num_tokens(const llm_dataloader *dl);
int llm_dataloader_num_files(const llm_dataloader *dl);
// Path of file i in sorted order (NULL when out of range); valid until llm_dataloader_free.
const char *llm_dataloader_file(const llm_dataloader *dl, int i);
// Tokens in file i (-1 when out of range).
int64_t llm_dataloader_file_tokens(const llm_dataloader *dl, int i);

#ifdef __cplusplus
}
#endif
#endif // LLMPY_DATALOADER_H
