/*
 * train_gpt2.c — main() of the compiled binary: GPT-2 training with no Python at run time.
 *
 * Reads an llm.c model file (or starts from random weights: --model d12 initialises GPT-2's shape
 * as python -m llmpy.train --model d12 does, bit for bit with the same --seed), token shards and
 * (optionally) an llm.c tokenizer file; trains with the same schedule (linear warmup,
 * cosine/linear/constant/wsd decay), clipping, weight-decay groups, outlier skipping, checkpoints
 * (ckpt_NNNNNN.bin + .state, retention with major checkpoints) and JSONL log records (MFU
 * included) as `python -m llmpy.train`.
 *
 *   train_gpt2 --init-from model.bin --data 'dir/tiny_shakespeare_train.bin' --out-dir run \
 *              --batch-size 8 --seq-len 128 --max-steps 100 --lr 1e-3 [--tokenizer gpt2_tokenizer.bin]
 *
 * Data parallel: `mpirun -np N train_gpt2 ...` runs N ranks (csrc/dist/dist.h): each reads its slice
 * of every global batch (--batch-size is per rank), gradients are averaged over the ranks
 * (--zero-stage 1 shards the AdamW moments), only rank 0 prints and writes files; an error on any
 * rank aborts the whole job.
 *
 * The run folder follows the rules python -m llmpy.train follows (csrc/core/run.c): one run holds
 * it at a time (rank 0 takes its lock), a new run refuses a folder holding another run, a failed
 * start removes the folder it created; --resume restores the run's flags saved in the state JSON
 * (changing only those a resumed run may change) and rewinds the log. The flags' checks are the
 * core's (csrc/core/schedule.c), so both programs refuse the same bad flags with the same words.
 *
 * `train_gpt2 --help` lists every flag. Only this file may exit(); the library returns statuses.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data/dataloader.h"
#ifdef LLMPY_TRAIN_CUDA
#include "../cuda/ops_cuda.h"
#endif
#include "data/hellaswag.h"
#include "dist/dist.h"
#include "core/llmpy.h"
#include "data/tokenizer.h"
#include "programs/state_json.h"

// ----------------------------------------------------------------------------
// options (names and defaults mirror python -m llmpy.train)

typedef struct options {
    const char *init_from, *data, *val_data, *tokenizer, *out_dir, *resume, *log_file, *lr_schedule;
    const char *hellaswag; // llm.c eval file (python -m llmpy.hellaswag --write-eval-file)
    const char *model;     // GPT-2 preset (d12, d24, d36, d48; llm_config_preset): random weights
    const char *device;    // auto | cpu | cuda | cuda:N (llmpy.h: llm_device_parse)
    const char *precision; // auto | fp32 | bf16
    int hellaswag_every;
    int batch_size, seq_len, total_batch_size, max_steps, warmup_steps, shuffle, eval_every, val_steps;
    int sample_every, sample_tokens, checkpoint_every, keep_checkpoints, threads, zero_stage;
    int major_checkpoint_every, overfit_single_batch;
    double lr, min_lr_frac; // the schedule is computed in double, as in Python
    double beta1, beta2, weight_decay, grad_clip; // passed to llm_step as float
    double skip_update_loss_z, skip_update_grad_z; // outlier z-scores that skip an update (0: off)
    unsigned long long seed;
} options;

// One row per flag: its name, type and field. The state JSON of a checkpoint keeps the flags of
// the run under "args", each keyed by its name without "--" and with '_' for '-' (the keys python
// -m llmpy.train saves); `saved` = 0: the flag belongs to one invocation (where the run is, which
// checkpoint, which device) and is not restored when resuming.
typedef enum { OPT_STR, OPT_INT, OPT_DBL, OPT_SEED, OPT_BOOL } opt_kind;
typedef struct opt_spec {
    const char *flag;
    opt_kind kind;
    size_t offset;
    int saved;
} opt_spec;
#define OPT(flag, kind, field, saved) {flag, kind, offsetof(options, field), saved}
static const opt_spec OPTS[] = {
    OPT("--init-from", OPT_STR, init_from, 1), OPT("--model", OPT_STR, model, 1), OPT("--data", OPT_STR, data, 1),
    OPT("--val-data", OPT_STR, val_data, 1), OPT("--tokenizer", OPT_STR, tokenizer, 1),
    OPT("--out-dir", OPT_STR, out_dir, 0), OPT("--resume", OPT_STR, resume, 0),
    OPT("--log-file", OPT_STR, log_file, 1), OPT("--device", OPT_STR, device, 0),
    OPT("--precision", OPT_STR, precision, 1), OPT("--lr-schedule", OPT_STR, lr_schedule, 1),
    OPT("--hellaswag", OPT_STR, hellaswag, 1), OPT("--hellaswag-every", OPT_INT, hellaswag_every, 1),
    OPT("--batch-size", OPT_INT, batch_size, 1), OPT("--seq-len", OPT_INT, seq_len, 1),
    OPT("--total-batch-size", OPT_INT, total_batch_size, 1), OPT("--max-steps", OPT_INT, max_steps, 1),
    OPT("--warmup-steps", OPT_INT, warmup_steps, 1), OPT("--shuffle", OPT_BOOL, shuffle, 1),
    OPT("--eval-every", OPT_INT, eval_every, 1), OPT("--val-steps", OPT_INT, val_steps, 1),
    OPT("--sample-every", OPT_INT, sample_every, 1), OPT("--sample-tokens", OPT_INT, sample_tokens, 1),
    OPT("--checkpoint-every", OPT_INT, checkpoint_every, 1), OPT("--keep-checkpoints", OPT_INT, keep_checkpoints, 1),
    OPT("--threads", OPT_INT, threads, 1), OPT("--zero-stage", OPT_INT, zero_stage, 1),
    OPT("--lr", OPT_DBL, lr, 1), OPT("--min-lr-frac", OPT_DBL, min_lr_frac, 1), OPT("--beta1", OPT_DBL, beta1, 1),
    OPT("--beta2", OPT_DBL, beta2, 1), OPT("--weight-decay", OPT_DBL, weight_decay, 1),
    OPT("--grad-clip", OPT_DBL, grad_clip, 1), OPT("--seed", OPT_SEED, seed, 1),
    OPT("--overfit-single-batch", OPT_BOOL, overfit_single_batch, 1),
    OPT("--major-checkpoint-every", OPT_INT, major_checkpoint_every, 1),
    OPT("--skip-update-loss-z", OPT_DBL, skip_update_loss_z, 1),
    OPT("--skip-update-grad-z", OPT_DBL, skip_update_grad_z, 1),
};
#undef OPT
enum { NOPTS = sizeof OPTS / sizeof OPTS[0] };
#define FIELD(o, spec, type) (*(type *)((char *)(o) + (spec)->offset))

// Every flag, its default once, and llm.c's train_gpt2cu flag where there is one; python -m
// llmpy.train --help says the same (tests/test_train_flags.py compares the two lists of flags).
static void usage(FILE *f) {
    fprintf(f,
        "usage: train_gpt2 (--init-from MODEL.bin | --model d12) --data TRAIN_GLOB [options]\n"
        "The flags, defaults and rules of python -m llmpy.train; [llm.c: -x] names llm.c's train_gpt2cu flag.\n"
        "\n"
        "model and data:\n"
        "  --init-from PATH          llm.c model file to start from (e.g. python -m llmpy.convert gpt2 gpt2.bin);\n"
        "                            this or --model is required unless --resume [llm.c: -e]\n"
        "  --model d12|d24|d36|d48   GPT-2's shape (124M ... 1558M) with random weights, initialised as\n"
        "                            python -m llmpy.train --model does with the same --seed; this or\n"
        "                            --init-from is required unless --resume [llm.c: -e d12]\n"
        "  --data GLOB               train shards (required; python -m llmpy.data tinyshakespeare writes\n"
        "                            some) [llm.c: -i]\n"
        "  --val-data GLOB           val shards (default: --data with 'train' replaced by 'val') [llm.c: -j]\n"
        "  --tokenizer PATH          llm.c tokenizer file, for samples (default: gpt2_tokenizer.bin in the data\n"
        "                            cache, $LLMPY_DATA_DIR or ~/.cache/llmpy, where python -m llmpy.tokenizer\n"
        "                            llmc writes it; without one, no samples)\n"
        "  --device D                auto (a GPU when one is usable, else the CPU), cpu, cuda (this rank's GPU\n"
        "                            under mpirun) or cuda:N; GPUs need the CUDA build of llmpy (default: auto)\n"
        "  --precision P             auto (bf16 on a GPU, fp32 on the CPU), fp32 (on a GPU: the parity path,\n"
        "                            not for speed) or bf16 (GPUs) (default: auto)\n"
        "  --threads N               CPU threads; 0: all cores (default: 0)\n"
        "  --batch-size B            micro-batch size (sequences per forward, per rank) (default: 8) [llm.c: -b]\n"
        "  --seq-len T               sequence length (default: 128) [llm.c: -t]\n"
        "  --total-batch-size TOKENS tokens per optimizer step over all ranks, a multiple of B*T*ranks (more:\n"
        "                            gradient accumulation) (default: 0, i.e. B*T*ranks) [llm.c: -d]\n"
        "  --shuffle, --no-shuffle   permute shards and sequences every epoch (default: --shuffle)\n"
        "  --overfit-single-batch, --no-overfit-single-batch\n"
        "                            debugging: every step trains on the run's first batch (the first\n"
        "                            --total-batch-size tokens of the train data), so the loss should fall\n"
        "                            towards 0 (default: --no-overfit-single-batch) [llm.c: -a 1]\n"
        "\n"
        "optimisation:\n"
        "  --max-steps N             optimizer steps (default: 300) [llm.c: -x]\n"
        "  --lr LR                   peak learning rate (default: 0.002) [llm.c: -l]\n"
        "  --warmup-steps N          linear warmup steps (default: 20) [llm.c: -u]\n"
        "  --lr-schedule S           the learning rate after the warmup: cosine or linear decay to --min-lr-frac x\n"
        "                            --lr at --max-steps, constant, or wsd (warmup-stable-decay: --lr until 80%%\n"
        "                            of --max-steps, then 1 - sqrt decay to --min-lr-frac x --lr) (default:\n"
        "                            cosine) [llm.c: -k]\n"
        "  --min-lr-frac F           final lr as a fraction of --lr (cosine, linear, wsd) (default: 0.1) [llm.c: -q]\n"
        "  --beta1 B1                AdamW beta1, in [0, 1) (default: 0.9)\n"
        "  --beta2 B2                AdamW beta2, in [0, 1) (default: 0.95)\n"
        "  --weight-decay WD         AdamW weight decay on 2-D tensors (default: 0.1) [llm.c: -c]\n"
        "  --grad-clip G             clip the global gradient norm; 0: off (default: 1.0)\n"
        "  --seed S                  seed of the data order and samples (default: 1337)\n"
        "  --zero-stage 0|1          with several ranks (mpirun): 1 shards the AdamW moments across ranks\n"
        "                            (ZeRO-1) (default: 0) [llm.c: -z]\n"
        "  --skip-update-loss-z Z    skip the update of a step whose loss has a z-score above Z over the last\n"
        "                            %d steps' losses (the step counts; its gradients are dropped); 0: off\n"
        "                            (default: 0.0) [llm.c: -sl]\n"
        "  --skip-update-grad-z Z    the same for the gradient norm over the last %d steps; 0: off\n"
        "                            (default: 0.0) [llm.c: -sg]\n"
        "\n"
        "evaluation, checkpoints and logs (every '--...-every' = 0 disables):\n"
        "  --eval-every N            steps between val-loss evaluations (default: 50) [llm.c: -v]\n"
        "  --val-steps N             val batches per evaluation (default: 10) [llm.c: -m]\n"
        "  --sample-every N          steps between samples (default: 100) [llm.c: -s]\n"
        "  --sample-tokens N         tokens per sample (default: 64) [llm.c: -g]\n"
        "  --hellaswag-every N       steps between HellaSwag evaluations (default: 0) [llm.c: -h 1 evaluates at\n"
        "                            every -v]\n"
        "  --hellaswag FILE.bin      HellaSwag eval file, with --hellaswag-every (python -m llmpy.hellaswag\n"
        "                            --write-eval-file) (default: none)\n"
        "  --checkpoint-every N      steps between checkpoints (default: 100) [llm.c: -n]\n"
        "  --keep-checkpoints K      keep the newest K checkpoints (and the major ones); 0: all (default: 3)\n"
        "                            [llm.c: -nk]\n"
        "  --major-checkpoint-every M\n"
        "                            checkpoints at steps that are multiples of M are major: --keep-checkpoints\n"
        "                            never deletes them; 0: none (default: 0) [llm.c: -nm]\n"
        "  --out-dir DIR             checkpoints and log; one run at a time holds it (DIR/.lock, taken by rank 0\n"
        "                            under mpirun); a new run refuses a folder with another run (default: run)\n"
        "                            [llm.c: -o]\n"
        "  --resume latest|PATH      continue from the newest checkpoint in --out-dir, or PATH (.bin/.state; its\n"
        "                            folder is the run's unless --out-dir is given), with the run's saved flags;\n"
        "                            given again, --max-steps, the learning rates, the eval/sample/checkpoint\n"
        "                            flags, --threads ... change them, while the model, batch, sequence length,\n"
        "                            data, seed and shuffling cannot change (default: a new run) [llm.c: -y 1]\n"
        "  --log-file PATH           JSONL log (default: OUT/log.jsonl)\n",
        LLM_OUTLIER_WINDOW, LLM_OUTLIER_WINDOW);
}

// Sets spec's field from text; 0 (with a message) when text is no value of its type.
static int set_option(options *o, const opt_spec *spec, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (spec->kind) {
    case OPT_STR: FIELD(o, spec, const char *) = v; return 1;
    case OPT_BOOL: return 0; // --shuffle / --no-shuffle take no value
    case OPT_INT: {
        long x = strtol(v, &end, 10);
        if (end == v || *end || errno || x < INT_MIN || x > INT_MAX) break;
        FIELD(o, spec, int) = (int)x;
        return 1;
    }
    case OPT_DBL: {
        double x = strtod(v, &end);
        if (end == v || *end) break;
        FIELD(o, spec, double) = x;
        return 1;
    }
    case OPT_SEED: {
        unsigned long long x = strtoull(v, &end, 10);
        if (end == v || *end || errno || v[strspn(v, " \t")] == '-') break;
        FIELD(o, spec, unsigned long long) = x;
        return 1;
    }
    }
    fprintf(stderr, "error: %s: bad value '%s'\n", spec->flag, v);
    return 0;
}

static int find_option(const char *flag) {
    for (int k = 0; k < NOPTS; k++)
        if (!strcmp(flag, OPTS[k].flag)) return k;
    return -1;
}

// given[k]: flag k was on the command line (a resumed run compares those with its saved flags).
static int parse_options(int argc, char **argv, options *o, int *given) {
    *o = (options){.out_dir = "run", .device = "auto", .precision = "auto", .lr_schedule = "cosine", .batch_size = 8,
                   .seq_len = 128, .max_steps = 300, .warmup_steps = 20, .shuffle = 1, .eval_every = 50,
                   .val_steps = 10, .sample_every = 100, .sample_tokens = 64, .checkpoint_every = 100,
                   .keep_checkpoints = 3, .lr = 2e-3, .min_lr_frac = 0.1, .beta1 = 0.9, .beta2 = 0.95,
                   .weight_decay = 0.1, .grad_clip = 1.0, .seed = 1337};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) { usage(stdout); exit(0); }
        const int no = !strncmp(k, "--no-", 5);
        char yes[64];
        snprintf(yes, sizeof yes, "--%s", no ? k + 5 : k + 2);
        const int flag = find_option(yes);
        if (flag >= 0 && OPTS[flag].kind == OPT_BOOL && (no || !strcmp(k, yes))) { // --x / --no-x
            FIELD(o, &OPTS[flag], int) = !no;
            given[flag] = 1;
            continue;
        }
        const int at = find_option(k);
        if (at < 0) { fprintf(stderr, "error: unknown option %s (see --help)\n", k); return 0; }
        if (i + 1 >= argc) { fprintf(stderr, "error: %s needs a value\n", k); return 0; }
        if (!set_option(o, &OPTS[at], argv[++i])) return 0;
        given[at] = 1;
    }
    return 1;
}

// Prints "error: ..." and returns 0 (main then ends the job with fail()).
static int complain(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 0;
}
#define OK_OR_COMPLAIN(call) do { if ((call) != LLM_OK) return complain("%s", llm_last_error()); } while (0)

// The flags' rules, shared with python -m llmpy.train (csrc/core/schedule.c), before anything is
// read or written; *accum and *sched are what the loop uses. 0 after printing the error.
static int check_options(const options *o, int world, int *accum, llm_schedule *sched) {
    if (!o->data) return complain("--data is required (a glob of train shards; see --help)");
    if (!o->init_from && !o->model && !o->resume)
        return complain("--init-from MODEL.bin or --model d12|d24|d36|d48 (or --resume) is required");
    if (!o->resume && o->init_from && o->model)
        return complain("--init-from (a model file) and --model (random weights) exclude each other");
    llm_config preset;
    if (!o->resume && o->model) OK_OR_COMPLAIN(llm_config_preset(o->model, &preset));
    *sched = (llm_schedule){LLM_LR_COSINE, o->lr, o->warmup_steps, o->max_steps, o->min_lr_frac};
    OK_OR_COMPLAIN(llm_schedule_parse(o->lr_schedule, &sched->kind));
    OK_OR_COMPLAIN(llm_schedule_check(sched));
    const llm_train_flags f = {o->batch_size, o->seq_len, o->val_steps, o->eval_every, o->sample_every,
                               o->sample_tokens, o->checkpoint_every, o->hellaswag_every, o->keep_checkpoints,
                               o->threads, o->zero_stage, o->beta1, o->beta2, o->weight_decay, o->grad_clip,
                               o->major_checkpoint_every, o->skip_update_loss_z, o->skip_update_grad_z};
    OK_OR_COMPLAIN(llm_train_flags_check(&f));
    OK_OR_COMPLAIN(llm_grad_accumulation(o->total_batch_size, o->batch_size, o->seq_len, world, accum));
    if (!o->hellaswag != !o->hellaswag_every)
        return complain("--hellaswag FILE.bin and --hellaswag-every N (> 0) go together");
    return 1;
}

// Without --tokenizer: gpt2_tokenizer.bin in the data cache, where python -m llmpy.tokenizer llmc
// writes it (the cache's root is llmpy.data.data_dir()'s rule: $LLMPY_DATA_DIR or ~/.cache/llmpy;
// a twin of that one line, since this program runs without Python); none there: one line saying
// how to get it, and no samples.
static void open_default_tokenizer(llm_tokenizer **tok, int talk) {
    char path[4096];
    const char *dir = getenv("LLMPY_DATA_DIR"), *home = getenv("HOME");
    if (!home) home = ".";
    if (dir && dir[0] == '~' && (dir[1] == '/' || dir[1] == '\0')) // expanduser, as data_dir() does
        snprintf(path, sizeof path, "%s%s/gpt2_tokenizer.bin", home, dir + 1);
    else if (dir && *dir) snprintf(path, sizeof path, "%s/gpt2_tokenizer.bin", dir);
    else snprintf(path, sizeof path, "%s/.cache/llmpy/gpt2_tokenizer.bin", home);
    struct stat st;
    if (stat(path, &st) != 0) {
        if (talk) fprintf(stderr, "note: no samples: no tokenizer file; python -m llmpy.tokenizer llmc writes %s "
                                  "(or give --tokenizer FILE)\n", path);
        return;
    }
    if (llm_tokenizer_load(tok, path) != LLM_OK) {
        if (talk) fprintf(stderr, "note: no samples: %s\n", llm_last_error());
        *tok = NULL;
    }
}

// The value of OPTS[k] in o as flag text ("8", "0.003", "true"), NULL for an unset string.
static const char *option_text(const options *o, int k, char *buf, size_t n) {
    const opt_spec *spec = &OPTS[k];
    switch (spec->kind) {
    case OPT_STR: return FIELD(o, spec, const char *);
    case OPT_BOOL: return FIELD(o, spec, int) ? "true" : "false";
    case OPT_INT: snprintf(buf, n, "%d", FIELD(o, spec, int)); break;
    case OPT_DBL: fmt_double(buf, n, FIELD(o, spec, double)); break;
    case OPT_SEED: snprintf(buf, n, "%llu", FIELD(o, spec, unsigned long long)); break;
    }
    return buf;
}

// Restores the saved flags of a resumed run from its state JSON: a flag not given takes its saved
// value; a flag given again must be one a resumed run may change (llm_resume_check_flag), and each
// change is described in `changes` ("--max-steps 8 -> 20"). Strings read are kept in owned[].
static int restore_options(const char *json, options *o, const int *given, char **owned, char *changes,
                           size_t nchanges) {
    const char *args = js_get(json, "args");
    if (!args) return 1; // a checkpoint of an older train_gpt2: the flags as given
    changes[0] = '\0';
    for (int k = 0; k < NOPTS; k++) {
        const opt_spec *spec = &OPTS[k];
        char key[64], *c = key;
        snprintf(key, sizeof key, "%s", spec->flag + 2);
        while ((c = strchr(c, '-'))) *c = '_';
        const char *v = spec->saved ? js_get(args, key) : NULL;
        if (!v) continue;
        options saved = *o;
        if (spec->kind == OPT_STR && *v == '"') {
            if (!js_string(v, &owned[k])) return complain("the state's \"args\" are damaged (%s)", key);
            FIELD(&saved, spec, const char *) = owned[k];
        } else if (spec->kind == OPT_STR) {
            if (strncmp(v, "null", 4)) return complain("the state's \"args\" are damaged (%s)", key);
            FIELD(&saved, spec, const char *) = NULL;
        } else if (spec->kind == OPT_BOOL) {
            FIELD(&saved, spec, int) = !strncmp(v, "true", 4);
        } else {
            char num[64];
            const char *e = js_skip(v);
            if (!e || e - v >= (long)sizeof num) return complain("the state's \"args\" are damaged (%s)", key);
            snprintf(num, sizeof num, "%.*s", (int)(e - v), v);
            if (!set_option(&saved, spec, num)) return complain("the state's \"args\" are damaged (%s)", key);
        }
        char a[64], b[64];
        const char *was = option_text(&saved, k, a, sizeof a), *now = option_text(o, k, b, sizeof b);
        if (!given[k]) {
            *o = saved;
            continue;
        }
        if ((!was && !now) || (was && now && !strcmp(was, now))) continue;
        OK_OR_COMPLAIN(llm_resume_check_flag(spec->flag, was, now));
        size_t used = strlen(changes);
        snprintf(changes + used, nchanges - used, "%s%s %s -> %s", used ? ", " : "", spec->flag, was ? was : "none",
                 now ? now : "none");
    }
    return 1;
}

// ----------------------------------------------------------------------------
// checkpoints: ckpt_NNNNNN.bin (model) + ckpt_NNNNNN.state (AdamW + this JSON)

static void ckpt_path(char *buf, size_t n, const char *dir, int step, const char *ext) {
    snprintf(buf, n, "%s/ckpt_%06d.%s", dir, step, ext);
}

// A new run's id: 16 hex digits from the clock and the process id (llm_state_tag.run_id).
static void new_run_id(char *out, size_t n) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^ ((uint64_t)getpid() << 40);
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
    snprintf(out, n, "%016llx", (unsigned long long)x);
}

// The outlier windows of the loss and of the gradient norm (--skip-update-loss-z / -grad-z),
// kept whether or not skipping is on: a checkpoint holds them, so a resumed run scores its steps
// as the uninterrupted run would.
typedef struct windows {
    llm_outlier_window loss, grad_norm;
} windows;

// Collective with several ranks (ZeRO-1 gathers the moments); rank 0 writes.
static llm_status save_checkpoint(llm_model *m, int main_rank, const options *o, int step, llm_dataloader *dl,
                                  uint64_t rng, const char *run_id, const windows *w) {
    char model_path[4096], state_path[4096];
    ckpt_path(model_path, sizeof model_path, o->out_dir, step, "bin");
    ckpt_path(state_path, sizeof state_path, o->out_dir, step, "state");
    llm_data_position pos = llm_dataloader_tell(dl);
    sbuf json = {0};
    sb_printf(&json, "{\"binary\": 1, \"step\": %d, \"epoch\": %lld, \"shard\": %lld, \"batch\": %lld, "
              "\"sample_rng\": %llu, \"run_id\": \"%s\", \"args\": {", step, (long long)pos.epoch, (long long)pos.shard,
              (long long)pos.batch, (unsigned long long)rng, run_id);
    for (int k = 0, first = 1; k < NOPTS; k++) { // the run's flags, restored by --resume
        if (!OPTS[k].saved) continue;
        char key[64], *c = key, buf[64];
        snprintf(key, sizeof key, "%s", OPTS[k].flag + 2);
        while ((c = strchr(c, '-'))) *c = '_';
        const char *v = option_text(o, k, buf, sizeof buf);
        sb_printf(&json, "%s\"%s\": ", first ? "" : ", ", key);
        first = 0;
        if (OPTS[k].kind != OPT_STR) sb_printf(&json, "%s", v);
        else if (v) sb_json_string(&json, v);
        else sb_printf(&json, "null");
    }
    double values[LLM_OUTLIER_WINDOW];
    sb_printf(&json, "}, \"outlier\": {\"loss\": ");
    sb_doubles(&json, values, llm_outlier_values(&w->loss, values));
    sb_printf(&json, ", \"grad_norm\": ");
    sb_doubles(&json, values, llm_outlier_values(&w->grad_norm, values));
    sb_printf(&json, "}}");
    if (json.oom) { // the run's own state: a checkpoint without it could not be resumed
        free(json.p);
        return LLM_ENOMEM;
    }
    llm_status s = main_rank ? llm_model_save(m, model_path) : LLM_OK;
    // the state records the model file's checksums: loading a .bin with another run's .state is refused
    llm_state_tag tag = {model_path, step, run_id};
    if (s == LLM_OK) s = llm_dist_save_state(m, state_path, json.p, &tag);
    free(json.p);
    if (s != LLM_OK || !main_rank) return s;
    // the newest K and the major ones stay: the rule python -m llmpy.train follows too
    return llm_checkpoint_prune(o->out_dir, step, o->keep_checkpoints, o->major_checkpoint_every, NULL);
}

// A resumed run's windows from its state JSON (none in a checkpoint of an older train_gpt2: they
// fill again over the next steps). 0 when the JSON is damaged.
static int restore_windows(const char *json, windows *w) {
    llm_outlier_init(&w->loss);
    llm_outlier_init(&w->grad_norm);
    const char *saved = js_get(json, "outlier");
    if (!saved) return 1;
    double values[LLM_OUTLIER_WINDOW];
    llm_outlier_window *into[2] = {&w->loss, &w->grad_norm};
    const char *keys[2] = {"loss", "grad_norm"};
    for (int k = 0; k < 2; k++) {
        const int n = json_doubles(saved, keys[k], values, LLM_OUTLIER_WINDOW);
        if (n < 0) return 0;
        for (int i = 0; i < n; i++) llm_outlier_update(into[k], values[i]);
    }
    return 1;
}

// The newest intact pair in --out-dir, whatever --max-steps says (llm_checkpoint_find_latest, the
// rule python -m llmpy.train follows too: damaged or mismatched pairs are reported on stderr and
// skipped), loaded. Returns its step, 0 when there is none, -1 on an error (llm_last_error()).
static int load_latest(llm_model **m, const options *o, const char *device, const char *precision, char **json) {
    char model_path[4096], state_path[4096];
    int64_t step = -1;
    if (llm_checkpoint_find_latest(o->out_dir, &step, NULL, NULL) != LLM_OK) return -1;
    if (step <= 0 || step > INT32_MAX) return 0;
    ckpt_path(model_path, sizeof model_path, o->out_dir, (int)step, "bin");
    ckpt_path(state_path, sizeof state_path, o->out_dir, (int)step, "state");
    if (llm_model_load(m, model_path, device, precision) != LLM_OK) return -1;
    if (llm_model_load_state(*m, state_path, json) != LLM_OK) {
        llm_model_free(*m);
        *m = NULL;
        return -1;
    }
    return (int)step;
}

// ----------------------------------------------------------------------------
// sampling: top-k 50 from the last position's logits, with the binary's own RNG

static uint64_t rng_next(uint64_t *s) { // xorshift64*
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static int sample_top_k(const float *logits, int V, int k, uint64_t *rng) {
    int idx[64];
    float val[64];
    int n = 0;
    for (int i = 0; i < V; i++) { // insertion into a small sorted list of the k largest
        if (n == k && logits[i] <= val[n - 1]) continue;
        int j = n < k ? n++ : n - 1;
        while (j > 0 && val[j - 1] < logits[i]) { val[j] = val[j - 1]; idx[j] = idx[j - 1]; j--; }
        val[j] = logits[i];
        idx[j] = i;
    }
    double p[64], sum = 0.0;
    for (int j = 0; j < n; j++) sum += (p[j] = exp((double)val[j] - val[0]));
    double u = (double)(rng_next(rng) >> 11) * 0x1.0p-53 * sum, c = 0.0;
    for (int j = 0; j < n; j++) if ((c += p[j]) > u) return idx[j];
    return idx[n - 1];
}

static void print_sample(llm_model *m, const llm_tokenizer *tok, int steps, int32_t *buf, int block, uint64_t *rng) {
    int eot = llm_tokenizer_eot(tok);
    buf[0] = eot;
    int len = 1;
    printf("--- sample:\n");
    for (int i = 0; i < steps; i++) {
        int start = len > block ? len - block : 0, T = len - start;
        float *logits;
        int B_, T_, V, Vp;
        llm_block *b;
        if (llm_forward(m, buf + start, NULL, 1, T, NULL) != LLM_OK ||
            llm_model_logits(m, &logits, &B_, &T_, &V, &Vp, &b) != LLM_OK) {
            printf("(sampling failed: %s)\n", llm_last_error());
            return;
        }
        int next = sample_top_k(logits + (size_t)(T - 1) * Vp, V, 50, rng);
        llm_block_release(b);
        buf[len++] = next;
        const char *bytes;
        size_t n;
        if (next != eot && llm_tokenizer_decode(tok, next, &bytes, &n) == LLM_OK) fwrite(bytes, 1, n, stdout);
    }
    printf("\n---\n");
}

// ----------------------------------------------------------------------------
// main

static volatile sig_atomic_t stop_signal = 0;
static void on_signal(int sig) { stop_signal = sig; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void log_path_of(const options *o, char *buf, size_t n) {
    if (o->log_file) snprintf(buf, n, "%s", o->log_file);
    else snprintf(buf, n, "%s/log.jsonl", o->out_dir);
}

// Rank 0's lock on --out-dir (llm_run_lock), released on every way out of main(); until the run
// starts (`started`), a failure also removes the folder when this run created it.
static llm_dir_lock *run_lock = NULL;
static int started = 0;

// With several ranks an error must end them all (the others may wait in a collective). Exits
// from main() (whose buffers are still reachable then: no leak to report).
static _Noreturn void fail(void) {
    llm_run_unlock(run_lock, !started);
    run_lock = NULL;
    if (llm_dist_get().world_size > 1) llm_dist_abort(1);
    exit(1);
}
#define DIE(...) do { fprintf(stderr, "error: " __VA_ARGS__); fputc('\n', stderr); fail(); } while (0)
#define CHECK(call) do { if ((call) != LLM_OK) DIE("%s", llm_last_error()); } while (0)
// a log write that failed (a full disk) names the log and stops the run
#define LOG_CHECKED(...) do { fprintf(logf, __VA_ARGS__); if (fflush(logf) != 0 || ferror(logf)) \
    DIE("cannot write %s: %s; the checkpoints in %s are intact", log_path, strerror(errno), o.out_dir); } while (0)

int main(int argc, char **argv) {
    options o;
    int given[NOPTS] = {0};
    char *owned[NOPTS] = {0}; // strings restored from a checkpoint's state
    if (!parse_options(argc, argv, &o, given)) return 2;
    // the device, by the rules every llmpy entry point shares (device.c); it belongs to this
    // invocation (a resumed run does not restore it)
    llm_device want, dev;
    CHECK(llm_device_parse(o.device, &want));
#ifdef LLMPY_TRAIN_CUDA
    char why[512] = "";
    const int gpus = llm_cuda_probe(why, sizeof why);
#else
    const char *why = "this train_gpt2 is built without the CUDA backend (pip install . with LLMPY_CUDA=ON builds it)";
    const int gpus = 0;
#endif
    CHECK(llm_device_resolve(&want, gpus, llm_dist_local_rank(), why, &dev));
    const char *device = dev.kind == LLM_DEVICE_CUDA ? "cuda" : "cpu";
#ifdef LLMPY_TRAIN_CUDA
    if (dev.kind == LLM_DEVICE_CUDA) CHECK(llm_cuda_init(dev.index)); // before the process group: NCCL needs it
#endif
    if (strcmp(o.precision, "auto") && strcmp(o.precision, "fp32") && strcmp(o.precision, "bf16"))
        DIE("--precision must be auto, fp32 or bf16, got '%s'", o.precision);
    llm_dist_info dist;
    CHECK(llm_dist_init(&dist));
    const int main_rank = dist.rank == 0, W = dist.world_size;
    if (!main_rank) { // only rank 0 talks; errors still reach stderr
        if (!freopen("/dev/null", "w", stdout)) DIE("cannot silence stdout of rank %d", dist.rank);
    }
    // a new run checks its flags before it touches the folder; a resumed one once they are restored
    int accum = 0;
    llm_schedule sched;
    if (!o.resume && !check_options(&o, W, &accum, &sched)) fail();
    char log_path[4096], resume_dir[4096];
    if (o.resume && strcmp(o.resume, "latest") && !given[find_option("--out-dir")]) { // the checkpoint's folder
        const char *slash = strrchr(o.resume, '/');
        snprintf(resume_dir, sizeof resume_dir, "%.*s", slash ? (int)(slash - o.resume) : 1, slash ? o.resume : ".");
        o.out_dir = resume_dir;
    }
    log_path_of(&o, log_path, sizeof log_path);
    if (main_rank) { // one run per folder (csrc/core/run.c); under mpirun rank 0 holds it for the job
        llm_run_lock_info info;
        CHECK(llm_run_lock(&run_lock, o.out_dir, "train_gpt2", &info));
        if (info.note[0]) fprintf(stderr, "note: %s\n", info.note);
        if (!o.resume) CHECK(llm_run_check_new(o.out_dir, log_path));
        // before any checkpoint is read: temp files of a run that was killed mid-save
        int removed = 0;
        CHECK(llm_checkpoint_clean_temp(o.out_dir, &removed));
        if (removed) fprintf(stderr, "note: removed %d temp file%s of an interrupted save in %s\n", removed,
                             removed == 1 ? "" : "s", o.out_dir);
    }

    // model (and position and flags when resuming)
    const char *precision = strcmp(o.precision, "auto") == 0 ? NULL : o.precision;
    llm_model *m = NULL;
    char *json = NULL, stem[4200], changes[2048] = "";
    int step = 0;
    if (o.resume) {
        if (!strcmp(o.resume, "latest")) {
            step = load_latest(&m, &o, device, precision, &json);
            if (step < 0) DIE("--resume latest: %s", llm_last_error());
            if (!step) DIE("--resume latest: no loadable checkpoint in %s", o.out_dir);
            snprintf(stem, sizeof stem, "%s/ckpt_%06d", o.out_dir, step);
        } else {
            char model_path[4300], state_path[4300];
            snprintf(stem, sizeof stem, "%s", o.resume);
            char *dot = strrchr(stem, '.');
            if (dot && (!strcmp(dot, ".bin") || !strcmp(dot, ".state"))) *dot = '\0';
            snprintf(model_path, sizeof model_path, "%s.bin", stem);
            snprintf(state_path, sizeof state_path, "%s.state", stem);
            CHECK(llm_model_load(&m, model_path, device, precision));
            CHECK(llm_model_load_state(m, state_path, &json));
            long long v;
            if (!json_int(json, "step", &v)) DIE("%s: not a checkpoint of train_gpt2", state_path);
            step = (int)v;
        }
        if (!restore_options(json, &o, given, owned, changes, sizeof changes) || !check_options(&o, W, &accum, &sched))
            fail();
        log_path_of(&o, log_path, sizeof log_path); // --log-file may be the run's saved one
        if (step >= o.max_steps) { // nothing to train: say so, change nothing
            printf("%s is complete: step %d of --max-steps %d is done; resume with a larger --max-steps to train "
                   "further\n", o.out_dir, step, o.max_steps);
            llm_free(json);
            llm_model_free(m);
            for (int k = 0; k < NOPTS; k++) free(owned[k]);
            llm_run_unlock(run_lock, 0);
            CHECK(llm_dist_finalize(30.0));
            return 0;
        }
        const char *want_precision = strcmp(o.precision, "auto") ? o.precision : (dev.kind == LLM_DEVICE_CUDA ? "bf16" : "fp32");
        if (strcmp(llm_model_precision(m), want_precision)) { // the run's saved --precision: load it so
            char model_path[4300], state_path[4300];
            snprintf(model_path, sizeof model_path, "%s.bin", stem);
            snprintf(state_path, sizeof state_path, "%s.state", stem);
            llm_model_free(m);
            m = NULL;
            CHECK(llm_model_load(&m, model_path, device, want_precision));
            CHECK(llm_model_load_state(m, state_path, NULL));
        }
    } else if (o.model) { // python -m llmpy.train --model: the same config, seed and init (llm_model_create)
        llm_config c;
        CHECK(llm_config_preset(o.model, &c));
        if (o.seq_len > c.block_size) c.block_size = o.seq_len;
        CHECK(llm_model_create(&m, &c, device, precision, o.seed));
    } else {
        CHECK(llm_model_load(&m, o.init_from, device, precision));
    }
    if (o.threads > 0) llm_set_num_threads(o.threads);
    const int total = o.batch_size * o.seq_len * W * accum;
    // every rank: the same model (checked), rank 0's parameters, the collective plan (each
    // layer's gradients reduced while the backward goes on)
    CHECK(llm_dist_attach(m, o.zero_stage, 1));
    const int zero = o.zero_stage == 1;
    llm_config cfg = llm_model_config(m);
    if (o.seq_len > cfg.block_size) DIE("--seq-len %d exceeds the model's block size %d", o.seq_len, cfg.block_size);

    // data: the train shards first, so that a --data matching nothing says so
    llm_dataloader *train = NULL, *val = NULL;
    if (llm_dataloader_open(&train, &o.data, 1, o.batch_size, o.seq_len, dist.rank, W, o.shuffle, o.seed) != LLM_OK)
        DIE("--data: %s", llm_last_error());
    char val_glob[4096];
    const char *val_pattern = o.val_data;
    if (!val_pattern) {
        const char *base = strrchr(o.data, '/');
        base = base ? base + 1 : o.data;
        const char *at = strstr(base, "train");
        if (!at) DIE("--val-data is needed when the --data pattern has no 'train' in its file name");
        snprintf(val_glob, sizeof val_glob, "%.*sval%s", (int)(at - o.data), o.data, at + 5);
        val_pattern = val_glob;
    }
    if (llm_dataloader_open(&val, &val_pattern, 1, o.batch_size, o.seq_len, dist.rank, W, 0, 0) != LLM_OK)
        DIE("--val-data: %s", llm_last_error());
    CHECK(llm_dataloader_set_vocab(train, cfg.vocab_size)); // a token id >= V names its shard and offset
    CHECK(llm_dataloader_set_vocab(val, cfg.vocab_size));
    uint64_t rng = o.seed * 0x9E3779B97F4A7C15ull + 1;
    windows win;
    if (!restore_windows(json, &win)) DIE("the checkpoint's outlier windows are damaged");
    char run_id[32]; // a resumed run keeps its id (checkpoints of older versions have none: a new one)
    if (!json || !json_str(json, "run_id", run_id, sizeof run_id)) new_run_id(run_id, sizeof run_id);
    if (json) {
        long long e, s, b, r;
        if (!json_int(json, "epoch", &e) || !json_int(json, "shard", &s) || !json_int(json, "batch", &b) ||
            !json_int(json, "sample_rng", &r))
            DIE("the checkpoint's state was not written by train_gpt2");
        CHECK(llm_dataloader_seek(train, (llm_data_position){e, s, b}));
        rng = (uint64_t)r;
        llm_free(json);
        json = NULL;
    }
    llm_tokenizer *tok = NULL;
    if (o.tokenizer) CHECK(llm_tokenizer_load(&tok, o.tokenizer));
    else if (o.sample_every) open_default_tokenizer(&tok, main_rank);
    llm_hellaswag *hs = NULL;
    if (o.hellaswag) CHECK(llm_hellaswag_load(&hs, o.hellaswag));

    // log: a new run starts it; a resumed run cuts the records after its step (run.c: llm_log_rewind)
    if (step > 0 && main_rank) {
        llm_log_rewind_info info;
        CHECK(llm_log_rewind(log_path, step, o.max_steps, &info));
        if (info.warning[0]) fprintf(stderr, "warning: %s\n", info.warning);
        if (info.note[0]) fprintf(stderr, "note: %s\n", info.note);
    }
    FILE *logf = fopen(main_rank ? log_path : "/dev/null", step > 0 ? "a" : "w");
    if (!logf) DIE("cannot write %s: %s", log_path, strerror(errno));
    started = 1;

    size_t BT = (size_t)o.batch_size * o.seq_len;
    int32_t *x = malloc(BT * sizeof(int32_t)), *y = malloc(BT * sizeof(int32_t));
    int32_t *sbuf = malloc(((size_t)o.sample_tokens + 1) * sizeof(int32_t));
    if (!x || !y || !sbuf) DIE("out of memory");
    printf("train_gpt2 | device %s (%s) | threads %d | ranks %d%s | model L=%d NH=%d C=%d V=%d | %lld parameters\n",
           llm_model_device(m), llm_model_precision(m), llm_get_num_threads(), W, zero ? " (ZeRO-1)" : "", cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab_size,
           (long long)llm_model_num_parameters(m));
    printf("batch: %d x %d tokens x %d accumulation x %d ranks = %d tokens/step; %d steps\n", o.batch_size,
           o.seq_len, accum, W, total, o.max_steps);
    if (o.overfit_single_batch)
        printf("overfitting a single batch: every step trains on the first batch (--overfit-single-batch)\n");
    // MFU against the device's peak (llm_peak_flops: known GPUs only), one rank's tokens per step
    double peak = 0.0, flops_per_token = 0.0;
#ifdef LLMPY_TRAIN_CUDA
    char gpu_name[256];
    if (dev.kind == LLM_DEVICE_CUDA && llm_cuda_device_name(gpu_name, sizeof gpu_name) == LLM_OK)
        peak = llm_peak_flops(gpu_name, llm_model_precision(m));
#endif
    CHECK(llm_flops_per_token(&cfg, o.seq_len, &flops_per_token));
    const int guard = o.skip_update_loss_z > 0 || o.skip_update_grad_z > 0;
    if (step > 0) printf("resumed from step %d of %s%s%s\n", step, o.out_dir, changes[0] ? "; " : "", changes);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    for (;;) {
        // stop together: a signal on any rank stops every rank at the same step
        double stop = stop_signal != 0;
        CHECK(llm_dist_all_reduce_sum_f64(&stop, 1));
        if (stop > 0 && !stop_signal) stop_signal = SIGTERM;
        if (step >= o.max_steps || stop > 0) break;
        double t0 = now();
        double lr = llm_lr_at(&sched, step);
        if (o.overfit_single_batch) CHECK(llm_dataloader_reset(train, 0)); // the same first batch(es) every step
        CHECK(llm_zero_grad(m));
        double loss = 0.0;
        for (int a = 0; a < accum; a++) {
            float l;
            CHECK(llm_dataloader_next(train, x, y));
            CHECK(llm_forward(m, x, y, o.batch_size, o.seq_len, &l));
            CHECK(llm_dist_backward(m, 1.0f / accum, a == accum - 1)); // the last micro-step syncs
            loss += (double)l / accum;
        }
        CHECK(llm_dist_all_reduce_sum_f64(&loss, 1)); // the mean over the ranks, the same everywhere
        loss /= W;
        if (!isfinite(loss)) {
            fprintf(stderr, "error: loss is %f at step %d: stopping; the last good checkpoint in %s is untouched\n",
                    loss, step + 1, o.out_dir);
            fail();
        }
        const double loss_z = llm_outlier_update(&win.loss, loss);
        double grad_z = NAN;
        int skipped = 0; // llm_outlier_skip: 1 the loss, 2 the gradient norm
        float norm;
        if (guard) { // the norm first, then the decision (the core's rule, as in python -m llmpy.train)
            CHECK(llm_grad_norm(m, &norm));
            grad_z = llm_outlier_update(&win.grad_norm, norm);
            skipped = llm_outlier_skip(loss_z, grad_z, o.skip_update_loss_z, o.skip_update_grad_z);
        }
        if (!skipped)
            CHECK(llm_step(m, (float)lr, (float)o.beta1, (float)o.beta2, 1e-8f, (float)o.weight_decay,
                           (float)o.grad_clip, &norm));
        if (!guard) grad_z = llm_outlier_update(&win.grad_norm, norm);
        step++;
        double ms = (now() - t0) * 1000.0, tps = total / (ms / 1000.0);
        const double mfu = llm_mfu(flops_per_token, (double)o.batch_size * o.seq_len * accum, ms / 1000.0, peak);
        char mfu_text[32] = "null", mfu_shown[32] = "";
        if (isfinite(mfu)) {
            snprintf(mfu_text, sizeof mfu_text, "%.17g", mfu);
            snprintf(mfu_shown, sizeof mfu_shown, " | MFU %.1f%%", 100 * mfu);
        }
        // %.17g round-trips a double: the log holds the exact value (as Python's json does)
        LOG_CHECKED("{\"step\": %d, \"loss\": %.17g, \"lr\": %.17g, \"grad_norm\": %.17g, \"ms\": %.3f, "
                    "\"tokens_per_s\": %.1f, \"mfu\": %s", step, loss, lr, (double)norm, ms, tps, mfu_text);
        if (guard) {
            char lz[32] = "null", gz[32] = "null";
            if (isfinite(loss_z)) snprintf(lz, sizeof lz, "%.17g", loss_z);
            if (isfinite(grad_z)) snprintf(gz, sizeof gz, "%.17g", grad_z);
            LOG_CHECKED(", \"loss_z\": %s, \"grad_norm_z\": %s, \"skipped\": %s", lz, gz,
                        skipped == 1 ? "\"loss\"" : skipped == 2 ? "\"grad_norm\"" : "null");
        }
        LOG_CHECKED("}\n");
        char zs[64] = "";
        if (guard) snprintf(zs, sizeof zs, " | z loss %+.2f norm %+.2f", loss_z, grad_z);
        printf("step %5d/%d | loss %.4f | lr %.2e | norm %.3f%s | %7.1f ms | %8.0f tok/s%s\n", step, o.max_steps,
               loss, lr, norm, zs, ms, tps, mfu_shown);
        if (skipped)
            printf("step %5d | update skipped: the %s's z-score %.2f is above %s %g\n", step,
                   skipped == 1 ? "loss" : "grad norm", skipped == 1 ? loss_z : grad_z,
                   skipped == 1 ? "--skip-update-loss-z" : "--skip-update-grad-z",
                   skipped == 1 ? o.skip_update_loss_z : o.skip_update_grad_z);
        int last = step == o.max_steps;
        if (o.eval_every && (step % o.eval_every == 0 || last)) {
            double vl = 0.0;
            CHECK(llm_dataloader_reset(val, 0));
            for (int i = 0; i < o.val_steps; i++) {
                float l;
                CHECK(llm_dataloader_next(val, x, y));
                CHECK(llm_forward(m, x, y, o.batch_size, o.seq_len, &l));
                vl += l;
            }
            vl /= o.val_steps;
            CHECK(llm_dist_all_reduce_sum_f64(&vl, 1));
            vl /= W;
            LOG_CHECKED("{\"step\": %d, \"val_loss\": %.17g}\n", step, vl);
            printf("step %5d | val loss %.4f\n", step, vl);
        }
        if (hs && (step % o.hellaswag_every == 0 || last)) { // every rank scores its share
            llm_hellaswag_result r;
            CHECK(llm_hellaswag_eval(m, hs, LLM_HELLASWAG_MAX_TOKENS, dist.rank, W, &r, NULL));
            double counts[3] = {(double)r.n, (double)r.correct, (double)r.correct_norm};
            CHECK(llm_dist_all_reduce_sum_f64(counts, 3));
            r.n = (int64_t)counts[0];
            r.correct = (int64_t)counts[1];
            r.correct_norm = (int64_t)counts[2];
            double acc_norm = r.n ? (double)r.correct_norm / (double)r.n : 0.0;
            LOG_CHECKED("{\"step\": %d, \"hellaswag_acc_norm\": %.17g}\n", step, acc_norm);
            printf("step %5d | hellaswag acc_norm %.4f (%lld/%lld), acc %.4f\n", step, acc_norm,
                   (long long)r.correct_norm, (long long)r.n, r.n ? (double)r.correct / (double)r.n : 0.0);
        }
        if (tok && main_rank && o.sample_every && (step % o.sample_every == 0 || last))
            print_sample(m, tok, o.sample_tokens, sbuf, cfg.block_size, &rng);
        if (o.checkpoint_every && (step % o.checkpoint_every == 0 || last))
            CHECK(save_checkpoint(m, main_rank, &o, step, train, rng, run_id, &win));
        fflush(stdout);
    }
    if (stop_signal) {
        CHECK(save_checkpoint(m, main_rank, &o, step, train, rng, run_id, &win));
        printf("%s: saved a checkpoint of step %d in %s\n", stop_signal == SIGINT ? "SIGINT" : "SIGTERM", step,
               o.out_dir);
    }
    printf("done: %d steps; log %s\n", step, log_path);
    if (fclose(logf) != 0 && main_rank) DIE("cannot write %s: %s", log_path, strerror(errno));
    free(x);
    free(y);
    free(sbuf);
    llm_tokenizer_free(tok);
    llm_hellaswag_free(hs);
    llm_dataloader_free(train);
    llm_dataloader_free(val);
    llm_model_free(m);
    for (int k = 0; k < NOPTS; k++) free(owned[k]);
    CHECK(llm_dist_barrier(0.0)); // rank 0 may still be sampling; then leave together
    llm_run_unlock(run_lock, 0);
    run_lock = NULL;
    CHECK(llm_dist_finalize(30.0));
    return 0;
}
