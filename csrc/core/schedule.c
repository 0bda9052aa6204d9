/*
 * schedule.c — the training rules that both training programs follow (llmpy.h: llm_schedule):
 * the learning-rate schedule (with llm.c's warmup-stable-decay), gradient accumulation, the checks of
 * the other training flags, the outlier detector that skips an update (llm.c's -sl / -sg,
 * llmc/outlier_detector.h) and the model-FLOPs-utilisation arithmetic (llm.c's MFU, llmc/mfu.h).
 * python -m llmpy.train calls these through _C, train_gpt2 directly, so a fixed-seed run of either
 * takes the same learning rate at every step, skips the same updates, and a bad flag gets the same
 * message from both.
 */
#include <math.h>
#include <string.h>

#include "core/common.h"

static const char *const names[] = {[LLM_LR_COSINE] = "cosine", [LLM_LR_LINEAR] = "linear",
                                    [LLM_LR_CONSTANT] = "constant", [LLM_LR_WSD] = "wsd"};

llm_status llm_schedule_parse(const char *name, llm_lr_schedule *out) {
    for (int k = 0; k < (int)(sizeof names / sizeof names[0]); k++)
        if (name && strcmp(name, names[k]) == 0) {
            *out = (llm_lr_schedule)k;
            return LLM_OK;
        }
    return llm_fail(LLM_EINVAL, "--lr-schedule must be cosine, linear, constant or wsd, got '%s'", name ? name : "(null)");
}

llm_status llm_schedule_check(const llm_schedule *s) {
    if (!s) return llm_fail(LLM_EINVAL, "schedule is NULL");
    if (s->kind < LLM_LR_COSINE || s->kind > LLM_LR_WSD)
        return llm_fail(LLM_EINVAL, "--lr-schedule: unknown schedule %d", (int)s->kind);
    if (!isfinite(s->lr) || s->lr < 0) return llm_fail(LLM_EINVAL, "--lr must be a finite number >= 0, got %g", s->lr);
    if (s->max_steps < 1) return llm_fail(LLM_EINVAL, "--max-steps must be >= 1, got %d", s->max_steps);
    if (s->warmup_steps < 0) return llm_fail(LLM_EINVAL, "--warmup-steps must be >= 0, got %d", s->warmup_steps);
    if (!(s->min_lr_frac >= 0 && s->min_lr_frac <= 1))
        return llm_fail(LLM_EINVAL, "--min-lr-frac must be in [0, 1], got %g", s->min_lr_frac);
    return LLM_OK;
}

int64_t llm_wsd_decay_start(int max_steps) { return (int64_t)max_steps * 4 / 5; }

double llm_lr_at(const llm_schedule *s, int64_t step) {
    if (step < s->warmup_steps) return s->lr * (double)(step + 1) / s->warmup_steps;
    if (s->kind == LLM_LR_WSD) { // stable until D, then 1 - sqrt down to lr * min_lr_frac at max_steps
        const int64_t start = llm_wsd_decay_start(s->max_steps); // < max_steps for max_steps >= 1
        if (step < start) return s->lr;
        double r = (double)(step - start) / (double)(s->max_steps - start);
        if (r > 1.0) r = 1.0;
        const double min_lr = s->lr * s->min_lr_frac;
        return min_lr + (1.0 - sqrt(r)) * (s->lr - min_lr);
    }
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
        {"--major-checkpoint-every", f->major_checkpoint_every, 0, " (0: none)"},
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
    const struct { const char *flag; double value; } zs[] = {{"--skip-update-loss-z", f->skip_update_loss_z},
                                                            {"--skip-update-grad-z", f->skip_update_grad_z}};
    for (int i = 0; i < 2; i++)
        if (!isfinite(zs[i].value) || zs[i].value < 0)
            return llm_fail(LLM_EINVAL, "%s must be a finite number >= 0 (0: off), got %g", zs[i].flag, zs[i].value);
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// outlier detection: a window of the last LLM_OUTLIER_WINDOW values and the z-score of a new one
//
// The mean and the variance are computed afresh from the window at every update (two passes over
// 128 doubles, oldest value first): no running sums that drift, and the window's values in order
// are its whole state, so a resumed run that refills them scores every later value exactly as the
// uninterrupted run, bit for bit.

void llm_outlier_init(llm_outlier_window *w) { memset(w, 0, sizeof *w); }

double llm_outlier_update(llm_outlier_window *w, double x) {
    enum { N = LLM_OUTLIER_WINDOW };
    if (isnan(x)) return x;
    const int full = w->count >= N; // full before x came: x gets a score
    if (isinf(x)) return full ? x : NAN;
    w->values[w->count % N] = x;
    w->count++;
    if (!full) return NAN;
    double mean = 0.0, var = 0.0; // summed oldest first: the order a refilled window has too
    for (int64_t i = w->count; i < w->count + N; i++) mean += w->values[i % N];
    mean /= N;
    for (int64_t i = w->count; i < w->count + N; i++) var += (w->values[i % N] - mean) * (w->values[i % N] - mean);
    const double sd = sqrt(var / N);
    return sd > 0.0 ? (x - mean) / sd : 0.0;
}

int llm_outlier_values(const llm_outlier_window *w, double *out) {
    enum { N = LLM_OUTLIER_WINDOW };
    const int n = w->count < N ? (int)w->count : N;
    for (int i = 0; i < n; i++) out[i] = w->values[(w->count - n + i) % N];
    return n;
}

int llm_outlier_skip(double loss_z, double grad_z, double max_loss_z, double max_grad_z) {
    if (max_loss_z > 0 && loss_z > max_loss_z) return 1; // NaN compares false
    if (max_grad_z > 0 && grad_z > max_grad_z) return 2;
    return 0;
}

// ----------------------------------------------------------------------------
// model FLOPs utilisation

llm_status llm_flops_per_token(const llm_config *c, int T, double *flops) {
    if (!c || !flops) return llm_fail(LLM_EINVAL, "config or flops is NULL");
    llm_config cfg = *c;
    LLM_TRY(llm_config_check(&cfg));
    if (T < 1 || T > cfg.block_size)
        return llm_fail(LLM_EINVAL, "sequence length %d is outside [1, %d]", T, cfg.block_size);
    double n = 0.0;
    for (int i = 0; i < LLM_NUM_TENSORS; i++) {
        if (i == LLM_WPE) continue; // a lookup, no matmul
        int64_t shape[3] = {1, 1, 1};
        const int nd = llm_tensor_shape(&cfg, i, shape);
        double numel = 1.0;
        for (int d = 0; d < nd; d++) numel *= (double)shape[d];
        if (i == LLM_WTE) numel = (double)cfg.vocab_size * cfg.n_embd; // the padded rows compute nothing
        n += numel;
    }
    *flops = 6.0 * n + 12.0 * cfg.n_layer * (double)T * cfg.n_embd;
    return LLM_OK;
}

// Dense peaks from NVIDIA's data sheets (TFLOP/s): bf16 on the tensor cores, fp32 on the CUDA cores
// (our fp32 path uses no tensor cores). Matched in order on a substring of the CUDA device name.
static const struct { const char *name; double bf16, fp32; } peaks[] = {
    {"H100 PCIe", 756.0, 51.2},          // "NVIDIA H100 PCIe"
    {"H100 NVL", 835.0, 60.0},           // "NVIDIA H100 NVL"
    {"H100", 989.4, 66.9},               // "NVIDIA H100 80GB HBM3": the SXM5 part
    {"H200", 989.4, 66.9},               // "NVIDIA H200", "NVIDIA GH200 480GB"
    {"A100", 312.0, 19.5},               // "NVIDIA A100-SXM4-80GB", "NVIDIA A100-PCIE-40GB"
};

double llm_peak_flops(const char *device_name, const char *precision) {
    if (!device_name || !precision) return 0.0;
    const int bf16 = strcmp(precision, "bf16") == 0;
    if (!bf16 && strcmp(precision, "fp32") != 0) return 0.0;
    for (size_t i = 0; i < sizeof peaks / sizeof peaks[0]; i++)
        if (strstr(device_name, peaks[i].name)) return (bf16 ? peaks[i].bf16 : peaks[i].fp32) * 1e12;
    return 0.0;
}

double llm_mfu(double flops_per_token, double tokens, double seconds, double peak_flops) {
    if (!(peak_flops > 0) || !(seconds > 0)) return NAN;
    return flops_per_token * tokens / seconds / peak_flops;
}
