/*
 * dataloader.h — token shards and the data loader of the compiled binary.
 *
 * Same semantics as python/llmpy/data/loader.py, batch for batch (tests compare them):
 *  - shards: the files matching a list of glob patterns, sorted by path (strcmp), de-duplicated;
 *    every header and size is validated when the loader opens (format in formats.h).
 *  - a shard of n tokens holds (n - 1) / T sequences; sequence k is tokens [k*T, k*T + T]
 *    (T + 1 tokens: x is the first T, y the last T).
 *  - a global batch is B * world_size sequences; rank r takes sequences [r*B, (r+1)*B) of it,
 *    so the ranks together read exactly what one process with B * world_size would.
 *    A shard yields (n - 1) / T / (B * world_size) global batches; the remainder is skipped.
 *  - shuffle: each epoch permutes the shard order (stream seed (seed, epoch, 0)) and each shard's
 *    sequence order (stream seed (seed, epoch, 1 + file index)); see llm_data_permutation.
 *  - endless: after the last batch of an epoch comes the first batch of the next epoch.
 *  - the position (epoch, shard, batch) is global: the same on every rank, so one saved
 *    position resumes all ranks.
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

// Validates a shard's header against its file size; *ntok receives the token count.
// LLM_EIO when it cannot be opened, LLM_EFORMAT for a wrong magic/version, truncation or mismatch.
llm_status llm_shard_read_header(const char *path, int64_t *ntok);

// splitmix64-derived seed of one random stream (which: 0 = shard order, 1 + i = shard i's sequences).
uint64_t llm_data_stream_seed(uint64_t seed, uint64_t epoch, uint64_t which);
// out (n): the indices 0..n-1 sorted by key_i = splitmix64 output i of `seed` (ties by index).
llm_status llm_data_permutation(int64_t *out, int64_t n, uint64_t seed);

typedef struct llm_dataloader llm_dataloader;

typedef struct llm_data_position {
    int64_t epoch; // >= 0
    int64_t shard; // index into this epoch's shard order
    int64_t batch; // global batch within that shard
} llm_data_position;

// patterns: num_patterns glob patterns (or plain paths). B, T >= 1; 0 <= rank < world_size.
// seed is ignored when shuffle is 0.
llm_status llm_dataloader_open(llm_dataloader **out, const char *const *patterns, int num_patterns, int B, int T,
                               int rank, int world_size, int shuffle, uint64_t seed);
void llm_dataloader_free(llm_dataloader *dl);

// The next batch: x, y: (B,T) int32, y = x shifted by one token.
llm_status llm_dataloader_next(llm_dataloader *dl, int32_t *x, int32_t *y);
// To the first batch of `epoch`.
llm_status llm_dataloader_reset(llm_dataloader *dl, int64_t epoch);
// Position of the next batch; seek validates it (LLM_EINVAL when out of range).
llm_data_position llm_dataloader_tell(const llm_dataloader *dl);
llm_status llm_dataloader_seek(llm_dataloader *dl, llm_data_position pos);

int64_t llm_dataloader_batches_per_epoch(const llm_dataloader *dl);
int llm_dataloader_num_files(const llm_dataloader *dl);
// Path of file i in sorted order (NULL when out of range); valid until llm_dataloader_free.
const char *llm_dataloader_file(const llm_dataloader *dl, int i);
int64_t llm_dataloader_file_tokens(const llm_dataloader *dl, int i);

#ifdef __cplusplus
}
#endif
#endif // LLMPY_DATALOADER_H
