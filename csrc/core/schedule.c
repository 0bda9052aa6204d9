/*
 * schedule.c — the training rules that both training programs follow (llmpy.h: llm_schedule):
 * the learning-rate schedule and gradient accumulation. python -m llmpy.train calls these through
 * _C, train_gpt2 directly, so a fixed-seed run of either takes the same learning rate at every step.
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
