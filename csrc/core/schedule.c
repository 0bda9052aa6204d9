/*
 * schedule.c — the training rules that both training programs follow (llmpy.h: llm_schedule):
 * the learning-rate schedule, gradient accumulation and the checks of the other training flags.
 * python -m llmpy.train calls these through _C, train_gpt2 directly, so a fixed-seed run of either
 * takes the same learning rate at every step, and a bad flag gets the same message from both.
 */
#include <math.h>
#include <string.h>

#include "core/common.h"

static const char *const names[] = {[LLM_LR_COSINE] = "cosine", [LLM_LR_LINEAR] = "linear",
                                    [LLM_LR_CONSTANT] = "constant"};

llm_status llm_schedule_parse(const char *name, llm_lr_schedule *out) {
    for (int k = 0; k < (int)(sizeof names / sizeof names[0]); k++)
        if (name && strcmp(name, names[k]) == 0) {
            *out = (llm_lr_schedule)k;
            return LLM_OK;
        }
    return llm_fail(LLM_EINVAL, "--lr-schedule must be cosine, linear or constant, got '%s'", name ? name : "(null)");
}

llm_status llm_schedule_check(const llm_schedule *s) {
    if (!s) return llm_fail(LLM_EINVAL, "schedule is NULL");
    if (s->kind < LLM_LR_COSINE || s->kind > LLM_LR_CONSTANT)
        return llm_fail(LLM_EINVAL, "--lr-schedule: unknown schedule %d", (int)s->kind);
    if (!isfinite(s->lr) || s->lr < 0) return llm_fail(LLM_EINVAL, "--lr must be a finite number >= 0, got %g", s->lr);
    if (s->max_steps < 1) return llm_fail(LLM_EINVAL, "--max-steps must be >= 1, got %d", s->max_steps);
    if (s->warmup_steps < 0) return llm_fail(LLM_EINVAL, "--warmup-steps must be >= 0, got %d", s->warmup_steps);
    if (!(s->min_lr_frac >= 0 && s->min_lr_frac <= 1))
        return llm_fail(LLM_EINVAL, "--min-lr-frac must be in [0, 1], got %g", s->min_lr_frac);
    return LLM_OK;
}

double llm_lr_at(const llm_schedule *s, int64_t step) {
    if (step < s->warmup_steps) return s->lr * (double)(step + 1) / s->warmup_steps;
    if (s->kind == LLM_LR_CONSTANT || s->max_steps <= s->warmup_steps) return s->lr;
    double frac = (double)(step - s->warmup_steps) / (double)(s->max_steps - s->warmup_steps);
    if (frac > 1.0) frac = 1.0;
    const double lr = s->lr, min_lr = lr * s->min_lr_frac;
    if (s->kind == LLM_LR_LINEAR) return lr - (lr - min_lr) * frac;
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + cos(3.141592653589793 * frac));
}

llm_status llm_grad_accumulation(int64_t total_batch_size, int B, int T, int world_size, int *accum) {
    if (B < 1 || T < 1 || world_size < 1)
        return llm_fail(LLM_EINVAL, "--batch-size and --seq-len must be >= 1, got %d and %d", B, T);
    const int64_t micro = (int64_t)B * T * world_size;
    const int64_t total = total_batch_size ? total_batch_size : micro;
    if (total < 0 || total % micro)
        return llm_fail(LLM_EINVAL, "--total-batch-size %lld is not a multiple of batch-size x seq-len x ranks = "
                        "%d x %d x %d = %lld", (long long)total, B, T, world_size, (long long)micro);
    if (total / micro > (1 << 30)) return llm_fail(LLM_EINVAL, "--total-batch-size %lld is too large", (long long)total);
    *accum = (int)(total / micro);
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// the other training flags

llm_status llm_train_flags_check(const llm_train_flags *f) {
    if (!f) return llm_fail(LLM_EINVAL, "training flags are NULL");
    const struct { const char *flag; int value, min; const char *zero; } ints[] = {
        {"--batch-size", f->batch_size, 1, ""},
        {"--seq-len", f->seq_len, 1, ""},
        {"--val-steps", f->val_steps, 1, ""},
        {"--eval-every", f->eval_every, 0, " (0: off)"},
        {"--sample-every", f->sample_every, 0, " (0: off)"},
        {"--sample-tokens", f->sample_tokens, 0, ""},
        {"--checkpoint-every", f->checkpoint_every, 0, " (0: off)"},
        {"--hellaswag-every", f->hellaswag_every, 0, " (0: off)"},
        {"--keep-checkpoints", f->keep_checkpoints, 0, " (0: keep all)"},
        {"--threads", f->threads, 0, " (0: all cores)"},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (ints[i].value < ints[i].min)
            return llm_fail(LLM_EINVAL, "%s must be >= %d%s, got %d", ints[i].flag, ints[i].min, ints[i].zero,
                            ints[i].value);
    if (f->zero_stage != 0 && f->zero_stage != 1)
        return llm_fail(LLM_EINVAL, "--zero-stage must be 0 or 1, got %d", f->zero_stage);
    const struct { const char *flag; double value; } betas[] = {{"--beta1", f->beta1}, {"--beta2", f->beta2}};
    for (int i = 0; i < 2; i++)
        if (!(betas[i].value >= 0 && betas[i].value < 1)) // NaN fails too
            return llm_fail(LLM_EINVAL, "%s must be in [0, 1), got %g", betas[i].flag, betas[i].value);
    if (!isfinite(f->weight_decay) || f->weight_decay < 0)
        return llm_fail(LLM_EINVAL, "--weight-decay must be a finite number >= 0, got %g", f->weight_decay);
    if (!isfinite(f->grad_clip) || f->grad_clip < 0)
        return llm_fail(LLM_EINVAL, "--grad-clip must be a finite number >= 0 (0: no clipping), got %g", f->grad_clip);
    return LLM_OK;
}
