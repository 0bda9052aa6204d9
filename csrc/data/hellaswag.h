/*
 * hellaswag.h — HellaSwag evaluation (completion style) for the compiled binary.
 *
 * Reads llm.c's eval file (formats.h, LLM_HELLASWAG_MAGIC; written by
 * python -m llmpy.hellaswag --write-eval-file) and scores it with a model through the public API
 * (llm_forward + llm_model_losses), exactly as python/llmpy/hellaswag.py does:
 *  - candidate j of an example is the row context + ending j; its score is the sum (acc) and the
 *    mean (acc_norm) of the losses of the ending tokens; the lowest wins (the first on a tie);
 *  - a context too long for the model loses its first tokens so that every row's input has at
 *    most block_size tokens (the same crop for all 4 rows);
 *  - examples are sorted by input width (ties by index) and packed 4 rows each into forwards of
 *    B * T <= max_tokens (at least one example per forward);
 *  - rank r of world_size scores the examples i with i % world_size == r; summing the results of
 *    all ranks gives the whole set.
 *
 *   llm_hellaswag *h;
 *   llm_hellaswag_result res;
 *   if (llm_hellaswag_load(&h, "hellaswag_val.bin") != LLM_OK ||
 *       llm_hellaswag_eval(m, h, 2048, 0, 1, &res, NULL) != LLM_OK) puts(llm_last_error());
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
#define LLM_HELLASWAG_MAX_TOKENS 2048 // default tokens per forward, as in hellaswag.py

typedef struct llm_hellaswag llm_hellaswag;

typedef struct llm_hellaswag_result {
    int64_t n;            // examples scored (by this rank)
    int64_t correct;      // lowest total loss on the label
    int64_t correct_norm; // lowest mean loss per token on the label
} llm_hellaswag_result;

// Reads and validates an eval file; LLM_EIO / LLM_EFORMAT name the file (and the example).
llm_status llm_hellaswag_load(llm_hellaswag **out, const char *path);
void llm_hellaswag_free(llm_hellaswag *h);
int64_t llm_hellaswag_size(const llm_hellaswag *h);

// Scores this rank's share of the examples. pred_norm (optional, llm_hellaswag_size entries)
// receives the acc_norm choice of each example this rank scored; other entries are untouched.
llm_status llm_hellaswag_eval(llm_model *m, const llm_hellaswag *h, int max_tokens, int rank, int world_size,
                              llm_hellaswag_result *out, int32_t *pred_norm);

#ifdef __cplusplus
}
#endif
#endif // LLMPY_HELLASWAG_H
