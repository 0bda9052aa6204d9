/*
 * hellaswag.h — HellaSwag scoring (completion style): the one scorer, used by the train_gpt2
 * binary and, through llmpy._C.hellaswag, by python/llmpy/hellaswag.py.
 *
 * An eval set holds rendered examples: per example its context tokens, its 4 ending tokens (each
 * as GPT-2 reads it after the context, i.e. with its leading space) and its label. It comes from
 * memory (llm_hellaswag_create: Python renders the jsonl with the tokenizer) or from llm.c's eval
 * file (llm_hellaswag_load; formats.h, LLM_HELLASWAG_MAGIC; python -m llmpy.hellaswag
 * --write-eval-file writes it). Scoring goes through the public model API (llm_forward +
 * llm_model_copy_losses), so it runs on every backend:
 *  - candidate j of an example is the row context + ending j; its score is the sum (acc) and the
 *    mean (acc_norm) of the losses of the ending tokens, summed left to right in double; the
 *    lowest wins (the first on a tie);
 *  - a context too long for the model loses its first tokens so that every row's input has at
 *    most block_size tokens (the same crop for all 4 rows);
 *  - rank r of world_size scores the examples i with i % world_size == r; summing the results of
 *    all ranks gives the whole set;
 *  - a rank's examples are sorted by input width (ties by index) and packed 4 rows each into
 *    forwards of B * T <= max_tokens (at least one example per forward). The packing changes
 *    how many forwards run, not the scores (each row attends only to its own tokens).
 *
 * Two levels: llm_hellaswag_eval does everything for one rank and returns counts (train_gpt2);
 * llm_hellaswag_plan + llm_hellaswag_score expose the packs and the per-candidate sums, so that a
 * caller can show progress between forwards (Python's progress bar, with the GIL released during
 * each forward) and keep the scores.
 *
 *   llm_hellaswag *h;
 *   llm_hellaswag_result res;
 *   if (llm_hellaswag_load(&h, "hellaswag_val.bin") != LLM_OK ||
 *       llm_hellaswag_eval(m, h, LLM_HELLASWAG_MAX_TOKENS, 0, 1, &res, NULL) != LLM_OK) puts(llm_last_error());
 *   printf("acc_norm %.4f\n", (double)res.correct_norm / res.n);
 */
#ifndef LLMPY_HELLASWAG_H
#define LLMPY_HELLASWAG_H

#include <stdint.h>

#include "core/llmpy.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LLM_HELLASWAG_ENDINGS 4
#define LLM_HELLASWAG_MAX_TOKENS 2048 // default tokens per forward (B * T), also Python's default

typedef struct llm_hellaswag llm_hellaswag;

typedef struct llm_hellaswag_result {
    int64_t n;            // examples scored (by this rank)
    int64_t correct;      // lowest total loss on the label
    int64_t correct_norm; // lowest mean loss per token on the label
} llm_hellaswag_result;

// ----------------------------------------------------------------------------
// eval sets

// Builds an eval set of n examples from memory (the arrays are copied).
//   tokens:  (num_tokens,) example after example: the context, then ending 0, 1, 2, 3
//   lengths: (n, 5) the context length, then the 4 ending lengths (each >= 1)
//   labels:  (n,) in [0, 4)
// LLM_EINVAL names the example for a bad length, label or a negative token id, and says so when
// the lengths do not add up to num_tokens. Token ids are checked against a model when scoring.
llm_status llm_hellaswag_create(llm_hellaswag **out, const int32_t *tokens, int64_t num_tokens,
                                const int32_t *lengths, const int32_t *labels, int64_t n);
// Reads and validates an eval file; LLM_EIO / LLM_EFORMAT name the file (and the example).
llm_status llm_hellaswag_load(llm_hellaswag **out, const char *path);
void llm_hellaswag_free(llm_hellaswag *h);
int64_t llm_hellaswag_size(const llm_hellaswag *h);
// Label of example i (-1 outside [0, size)).
int llm_hellaswag_label(const llm_hellaswag *h, int64_t i);

// ----------------------------------------------------------------------------
// scoring

// This rank's share of the examples for model m, in scoring order, cut into packs.
//   order:    (llm_hellaswag_size(h),) at most: receives the example indices, sorted by width
//   pack_end: (llm_hellaswag_size(h),) at most: receives where each pack ends in order (exclusive)
// *num_examples and *num_packs say how many entries were written. Every example of the share is
// checked against the model first (LLM_EINVAL naming the example: a token outside the vocabulary,
// an ending that does not fit block_size), so that bad data fails before any forward.
llm_status llm_hellaswag_plan(const llm_hellaswag *h, const llm_model *m, int64_t max_tokens, int rank,
                              int world_size, int64_t *order, int64_t *pack_end, int64_t *num_examples,
                              int64_t *num_packs);
// Scores examples[0..k) in one forward of 4k rows (T: their widest cropped input; a pack of
// llm_hellaswag_plan, or any list whose 4k * T the model can take).
//   total: (k, 4) total[4e + j] = the sum of the losses of the tokens of ending j of examples[e]
//   count: (k, 4) count[4e + j] = their number
llm_status llm_hellaswag_score(llm_model *m, const llm_hellaswag *h, const int64_t *examples, int64_t k,
                               double *total, int64_t *count);
// Scores this rank's share (plan + score + argmin) and counts the right answers. pred_norm
// (optional, llm_hellaswag_size entries) receives the acc_norm choice of each example this rank
// scored; other entries are untouched.
llm_status llm_hellaswag_eval(llm_model *m, const llm_hellaswag *h, int max_tokens, int rank, int world_size,
                              llm_hellaswag_result *out, int32_t *pred_norm);

#ifdef __cplusplus
}
#endif
#endif // LLMPY_HELLASWAG_H
