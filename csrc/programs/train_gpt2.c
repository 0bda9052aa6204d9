/*
 * train_gpt2.c — main() of the compiled binary: GPT-2 training with no Python at run time.
 *
 * Reads an llm.c model file, token shards and (optionally) an llm.c tokenizer file; trains with
 * the same schedule (linear warmup, cosine/linear/constant decay), clipping, weight-decay groups,
 * checkpoints (ckpt_NNNNNN.bin + .state) and JSONL log records as `python -m llmpy.train`.
 *
 *   train_gpt2 --init-from model.bin --data 'dir/tiny_shakespeare_train.bin' --out-dir run \
 *              --batch-size 8 --seq-len 128 --max-steps 100 --lr 1e-3 [--tokenizer gpt2_tokenizer.bin]
 *
 * Data parallel: `mpirun -np N train_gpt2 ...` runs N ranks (csrc/dist/dist.h): each reads its slice
 * of every global batch (--batch-size is per rank), gradients are averaged over the ranks
 * (--zero-stage 1 shards the AdamW moments), only rank 0 prints and writes files; an error on any
 * rank aborts the whole job.
 *
 * `train_gpt2 --help` lists every flag. Only this file may exit(); the library returns statuses.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
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

// ----------------------------------------------------------------------------
// options (names and defaults mirror python -m llmpy.train)

typedef struct options {
    const char *init_from, *data, *val_data, *tokenizer, *out_dir, *resume, *log_file, *lr_schedule;
    const char *hellaswag; // llm.c eval file (python -m llmpy.hellaswag --write-eval-file)
    const char *device;    // auto | cpu | cuda | cuda:N (llmpy.h: llm_device_parse)
    const char *precision; // auto | fp32 | bf16
    int hellaswag_every;
    int batch_size, seq_len, total_batch_size, max_steps, warmup_steps, shuffle, eval_every, val_steps;
    int sample_every, sample_tokens, checkpoint_every, keep_checkpoints, threads, zero_stage;
    double lr, min_lr_frac; // the schedule is computed in double, as in Python
    float beta1, beta2, weight_decay, grad_clip;
    unsigned long long seed;
} options;

static void usage(FILE *f) {
    fprintf(f,
            "usage: train_gpt2 --init-from MODEL.bin --data TRAIN_GLOB [options]\n"
            "  --init-from PATH        llm.c model file to start from (required unless --resume)\n"
            "  --data GLOB             train shards; --val-data GLOB (default: 'train' -> 'val' in GLOB)\n"
            "  --tokenizer PATH        llm.c tokenizer file, for samples (default: no samples)\n"
            "  --device D              auto (default: a GPU when one is usable), cpu, cuda (this rank's GPU\n"
            "                          under mpirun) or cuda:N; GPUs need the CUDA build of llmpy\n"
            "  --precision P           auto (default: bf16 on a GPU, fp32 on the CPU), fp32 (on a GPU: the\n"
            "                          parity path, not for speed) or bf16 (GPUs)\n"
            "  --out-dir DIR           checkpoints and log (default: run)\n"
            "  --resume latest|PATH    continue from the newest checkpoint in --out-dir, or PATH (.bin/.state)\n"
            "  --batch-size B (8, per rank) --seq-len T (128)\n"
            "  --total-batch-size TOKENS (B*T*ranks; more: gradient accumulation)\n"
            "  --max-steps N (300) --lr LR (2e-3) --warmup-steps N (20) --lr-schedule cosine|linear|constant\n"
            "  --min-lr-frac F (0.1) --beta1 (0.9) --beta2 (0.95) --weight-decay (0.1) --grad-clip (1.0; 0 off)\n"
            "  --seed S (1337) --shuffle | --no-shuffle --threads N (0: all cores)\n"
            "  --eval-every N (50) --val-steps N (10) --sample-every N (100) --sample-tokens N (64)\n"
            "  --checkpoint-every N (100) --keep-checkpoints K (3; 0 all) --log-file PATH (OUT/log.jsonl)\n"
            "  --hellaswag FILE.bin    HellaSwag eval file (python -m llmpy.hellaswag --write-eval-file)\n"
            "  --hellaswag-every N (0: off) steps between HellaSwag evaluations (and at the end)\n"
            "  --zero-stage 0|1 (0; 1: AdamW moments sharded across the ranks of mpirun -np N, ZeRO-1)\n");
}

static int parse_options(int argc, char **argv, options *o) {
    *o = (options){.out_dir = "run", .device = "auto", .precision = "auto", .lr_schedule = "cosine", .batch_size = 8, .seq_len = 128,
                   .max_steps = 300, .warmup_steps = 20, .shuffle = 1, .eval_every = 50, .val_steps = 10,
                   .sample_every = 100, .sample_tokens = 64, .checkpoint_every = 100, .keep_checkpoints = 3,
                   .lr = 2e-3, .min_lr_frac = 0.1, .beta1 = 0.9f, .beta2 = 0.95f, .weight_decay = 0.1f,
                   .grad_clip = 1.0f, .seed = 1337};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) { usage(stdout); exit(0); }
        if (!strcmp(k, "--shuffle")) { o->shuffle = 1; continue; }
        if (!strcmp(k, "--no-shuffle")) { o->shuffle = 0; continue; }
        if (i + 1 >= argc) { fprintf(stderr, "error: %s needs a value\n", k); return 0; }
        const char *v = argv[++i];
        char *end = NULL;
#define STR(name, field) if (!strcmp(k, name)) { o->field = v; continue; }
#define INT(name, field) if (!strcmp(k, name)) { o->field = (int)strtol(v, &end, 10); goto check; }
#define FLT(name, field) if (!strcmp(k, name)) { o->field = strtod(v, &end); goto check; }
        STR("--init-from", init_from) STR("--data", data) STR("--val-data", val_data)
        STR("--tokenizer", tokenizer) STR("--out-dir", out_dir) STR("--resume", resume)
        STR("--log-file", log_file) STR("--device", device) STR("--precision", precision) STR("--lr-schedule", lr_schedule) STR("--hellaswag", hellaswag)
        INT("--hellaswag-every", hellaswag_every)
        INT("--batch-size", batch_size) INT("--seq-len", seq_len) INT("--total-batch-size", total_batch_size)
        INT("--max-steps", max_steps) INT("--warmup-steps", warmup_steps) INT("--eval-every", eval_every)
        INT("--val-steps", val_steps) INT("--sample-every", sample_every) INT("--sample-tokens", sample_tokens)
        INT("--checkpoint-every", checkpoint_every) INT("--keep-checkpoints", keep_checkpoints)
        INT("--threads", threads) INT("--zero-stage", zero_stage)
        FLT("--lr", lr) FLT("--min-lr-frac", min_lr_frac) FLT("--beta1", beta1) FLT("--beta2", beta2)
        FLT("--weight-decay", weight_decay) FLT("--grad-clip", grad_clip)
        if (!strcmp(k, "--seed")) { o->seed = strtoull(v, &end, 10); goto check; }
#undef STR
#undef INT
#undef FLT
        fprintf(stderr, "error: unknown option %s (see --help)\n", k);
        return 0;
    check:
        if (!end || *end != '\0' || end == v) { fprintf(stderr, "error: %s: bad value '%s'\n", k, v); return 0; }
    }
    return 1;
}

// ----------------------------------------------------------------------------
// checkpoints: ckpt_NNNNNN.bin (model) + ckpt_NNNNNN.state (AdamW + this JSON)

static void ckpt_path(char *buf, size_t n, const char *dir, int step, const char *ext) {
    snprintf(buf, n, "%s/ckpt_%06d.%s", dir, step, ext);
}

// Reads an integer field `"key": 123` from our own JSON (written by save_checkpoint below).
static int json_int(const char *json, const char *key, long long *out) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = json ? strstr(json, pat) : NULL;
    if (!p) return 0;
    *out = strtoll(p + strlen(pat), NULL, 10);
    return 1;
}

// Reads a string field `"key": "abc"` of our own JSON into out (n bytes), or returns 0.
static int json_str(const char *json, const char *key, char *out, size_t n) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    const char *p = json ? strstr(json, pat) : NULL;
    if (!p) return 0;
    p += strlen(pat);
    const char *end = strchr(p, '"');
    if (!end || (size_t)(end - p) >= n) return 0;
    memcpy(out, p, (size_t)(end - p));
    out[end - p] = '\0';
    return 1;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// A new run's id: 16 hex digits from the clock and the process id (llm_state_tag.run_id).
static void new_run_id(char *out, size_t n) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^ ((uint64_t)getpid() << 40);
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
    snprintf(out, n, "%016llx", (unsigned long long)x);
}

// Collective with several ranks (ZeRO-1 gathers the moments); rank 0 writes.
static llm_status save_checkpoint(llm_model *m, int main_rank, const options *o, int step, llm_dataloader *dl,
                                  uint64_t rng, const char *run_id) {
    char model_path[4096], state_path[4096], json[1024];
    ckpt_path(model_path, sizeof model_path, o->out_dir, step, "bin");
    ckpt_path(state_path, sizeof state_path, o->out_dir, step, "state");
    llm_data_position pos = llm_dataloader_tell(dl);
    snprintf(json, sizeof json,
             "{\"binary\": 1, \"step\": %d, \"epoch\": %lld, \"shard\": %lld, \"batch\": %lld, "
             "\"sample_rng\": %llu, \"run_id\": \"%s\"}",
             step, (long long)pos.epoch, (long long)pos.shard, (long long)pos.batch, (unsigned long long)rng, run_id);
    llm_status s = main_rank ? llm_model_save(m, model_path) : LLM_OK;
    // the state records the model file's checksums: loading a .bin with another run's .state is refused
    llm_state_tag tag = {model_path, step, run_id};
    if (s == LLM_OK) s = llm_dist_save_state(m, state_path, json, &tag);
    if (s != LLM_OK || o->keep_checkpoints <= 0 || !main_rank) return s;
    // keep the newest K: checkpoints are written every checkpoint_every steps (and at the end)
    for (int old = step - 1, kept = 1; old > 0; old--) {
        ckpt_path(state_path, sizeof state_path, o->out_dir, old, "state");
        if (!file_exists(state_path)) continue;
        if (++kept <= o->keep_checkpoints) continue;
        ckpt_path(model_path, sizeof model_path, o->out_dir, old, "bin");
        remove(model_path);
        remove(state_path);
    }
    return LLM_OK;
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

// With several ranks an error must end them all (the others may wait in a collective).
static int fail_code(void) {
    if (llm_dist_get().world_size > 1) llm_dist_abort(1);
    return 1;
}
#define DIE(...) do { fprintf(stderr, "error: " __VA_ARGS__); fputc('\n', stderr); return fail_code(); } while (0)
#define CHECK(call) do { if ((call) != LLM_OK) DIE("%s", llm_last_error()); } while (0)

int main(int argc, char **argv) {
    options o;
    if (!parse_options(argc, argv, &o)) return 2;
    // the device, by the rules every llmpy entry point shares (device.c)
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
    const char *precision = strcmp(o.precision, "auto") == 0 ? NULL : o.precision;
    if (precision && strcmp(precision, "fp32") && strcmp(precision, "bf16"))
        DIE("--precision must be auto, fp32 or bf16, got '%s'", o.precision);
    llm_dist_info dist;
    CHECK(llm_dist_init(&dist));
    const int main_rank = dist.rank == 0, W = dist.world_size;
    if (!main_rank) { // only rank 0 talks; errors still reach stderr
        if (!freopen("/dev/null", "w", stdout)) DIE("cannot silence stdout of rank %d", dist.rank);
    }
    if (o.zero_stage != 0 && o.zero_stage != 1) DIE("--zero-stage must be 0 or 1");
    if (!o.data) { usage(stderr); DIE("--data is required"); }
    if (!o.init_from && !o.resume) DIE("--init-from MODEL.bin (or --resume) is required");
    if (o.batch_size < 1 || o.seq_len < 1 || o.max_steps < 1 || o.val_steps < 1) DIE("sizes must be >= 1");
    // the rules python -m llmpy.train follows too (csrc/core/schedule.c)
    int accum = 0;
    CHECK(llm_grad_accumulation(o.total_batch_size, o.batch_size, o.seq_len, W, &accum));
    const int total = o.batch_size * o.seq_len * W * accum;
    llm_schedule sched = {LLM_LR_COSINE, o.lr, o.warmup_steps, o.max_steps, o.min_lr_frac};
    CHECK(llm_schedule_parse(o.lr_schedule, &sched.kind));
    CHECK(llm_schedule_check(&sched));
    if (o.threads > 0) llm_set_num_threads(o.threads);
    if (mkdir(o.out_dir, 0777) != 0 && errno != EEXIST) DIE("cannot create %s: %s", o.out_dir, strerror(errno));

    // model (and position when resuming)
    llm_model *m = NULL;
    char *json = NULL;
    int step = 0;
    if (o.resume) {
        if (!strcmp(o.resume, "latest")) {
            step = load_latest(&m, &o, device, precision, &json);
            if (step < 0) DIE("--resume latest: %s", llm_last_error());
            if (!step) DIE("--resume latest: no loadable checkpoint in %s", o.out_dir);
        } else {
            char stem[4096], model_path[4200], state_path[4200];
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
    } else {
        CHECK(llm_model_load(&m, o.init_from, device, precision));
    }
    // every rank: the same model (checked), rank 0's parameters, the collective plan (each
    // layer's gradients reduced while the backward goes on)
    CHECK(llm_dist_attach(m, o.zero_stage, 1));
    const int zero = o.zero_stage == 1;
    llm_config cfg = llm_model_config(m);
    if (o.seq_len > cfg.block_size) DIE("--seq-len %d exceeds the model's block size %d", o.seq_len, cfg.block_size);

    // data
    char val_glob[4096];
    if (!o.val_data) {
        const char *base = strrchr(o.data, '/');
        base = base ? base + 1 : o.data;
        const char *at = strstr(base, "train");
        if (!at) DIE("--val-data is needed when the --data pattern has no 'train' in its file name");
        snprintf(val_glob, sizeof val_glob, "%.*sval%s", (int)(at - o.data), o.data, at + 5);
        o.val_data = val_glob;
    }
    llm_dataloader *train = NULL, *val = NULL;
    CHECK(llm_dataloader_open(&train, &o.data, 1, o.batch_size, o.seq_len, dist.rank, W, o.shuffle, o.seed));
    CHECK(llm_dataloader_open(&val, &o.val_data, 1, o.batch_size, o.seq_len, dist.rank, W, 0, 0));
    uint64_t rng = o.seed * 0x9E3779B97F4A7C15ull + 1;
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
        printf("resumed from step %d in %s\n", step, o.out_dir);
    }
    llm_tokenizer *tok = NULL;
    if (o.tokenizer) CHECK(llm_tokenizer_load(&tok, o.tokenizer));
    llm_hellaswag *hs = NULL;
    if (o.hellaswag_every < 0 || !o.hellaswag != !o.hellaswag_every)
        DIE("--hellaswag FILE.bin and --hellaswag-every N (> 0) go together");
    if (o.hellaswag) CHECK(llm_hellaswag_load(&hs, o.hellaswag));

    // log: a fresh run truncates it; a resumed run drops records after its step
    char log_path[4096];
    if (o.log_file) snprintf(log_path, sizeof log_path, "%s", o.log_file);
    else snprintf(log_path, sizeof log_path, "%s/log.jsonl", o.out_dir);
    if (step > 0 && main_rank) {
        FILE *in = fopen(log_path, "r");
        char tmp_path[4200];
        snprintf(tmp_path, sizeof tmp_path, "%s.tmp", log_path);
        FILE *outf = fopen(tmp_path, "w");
        char line[1024];
        while (in && outf && fgets(line, sizeof line, in)) {
            long long s;
            if (json_int(line, "step", &s) && s <= step) fputs(line, outf);
        }
        if (in) fclose(in);
        if (outf) fclose(outf);
        if (outf) rename(tmp_path, log_path);
    }
    FILE *logf = fopen(main_rank ? log_path : "/dev/null", step > 0 ? "a" : "w");
    if (!logf) DIE("cannot write %s: %s", log_path, strerror(errno));

    size_t BT = (size_t)o.batch_size * o.seq_len;
    int32_t *x = malloc(BT * sizeof(int32_t)), *y = malloc(BT * sizeof(int32_t));
    int32_t *sbuf = malloc(((size_t)o.sample_tokens + 1) * sizeof(int32_t));
    if (!x || !y || !sbuf) DIE("out of memory");
    printf("train_gpt2 | device %s (%s) | threads %d | ranks %d%s | model L=%d NH=%d C=%d V=%d | %lld parameters\n",
           llm_model_device(m), llm_model_precision(m), llm_get_num_threads(), W, zero ? " (ZeRO-1)" : "", cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab_size,
           (long long)llm_model_num_parameters(m));
    printf("batch: %d x %d tokens x %d accumulation x %d ranks = %d tokens/step; %d steps\n", o.batch_size,
           o.seq_len, accum, W, total, o.max_steps);
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
            return fail_code();
        }
        float norm;
        CHECK(llm_step(m, (float)lr, o.beta1, o.beta2, 1e-8f, o.weight_decay, o.grad_clip, &norm));
        step++;
        double ms = (now() - t0) * 1000.0, tps = total / (ms / 1000.0);
        // %.17g round-trips a double: the log holds the exact value (as Python's json does)
        fprintf(logf, "{\"step\": %d, \"loss\": %.17g, \"lr\": %.17g, \"grad_norm\": %.17g, \"ms\": %.3f, "
                "\"tokens_per_s\": %.1f}\n", step, loss, lr, (double)norm, ms, tps);
        fflush(logf);
        printf("step %5d/%d | loss %.4f | lr %.2e | norm %.3f | %7.1f ms | %8.0f tok/s\n", step, o.max_steps, loss,
               lr, norm, ms, tps);
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
            fprintf(logf, "{\"step\": %d, \"val_loss\": %.17g}\n", step, vl);
            fflush(logf);
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
            fprintf(logf, "{\"step\": %d, \"hellaswag_acc_norm\": %.17g}\n", step, acc_norm);
            fflush(logf);
            printf("step %5d | hellaswag acc_norm %.4f (%lld/%lld), acc %.4f\n", step, acc_norm,
                   (long long)r.correct_norm, (long long)r.n, r.n ? (double)r.correct / (double)r.n : 0.0);
        }
        if (tok && main_rank && o.sample_every && (step % o.sample_every == 0 || last))
            print_sample(m, tok, o.sample_tokens, sbuf, cfg.block_size, &rng);
        if (o.checkpoint_every && (step % o.checkpoint_every == 0 || last))
            CHECK(save_checkpoint(m, main_rank, &o, step, train, rng, run_id));
        fflush(stdout);
    }
    if (stop_signal) {
        CHECK(save_checkpoint(m, main_rank, &o, step, train, rng, run_id));
        printf("%s: saved a checkpoint of step %d in %s\n", stop_signal == SIGINT ? "SIGINT" : "SIGTERM", step,
               o.out_dir);
    }
    printf("done: %d steps; log %s\n", step, log_path);
    fclose(logf);
    free(x);
    free(y);
    free(sbuf);
    llm_tokenizer_free(tok);
    llm_hellaswag_free(hs);
    llm_dataloader_free(train);
    llm_dataloader_free(val);
    llm_model_free(m);
    CHECK(llm_dist_barrier(0.0)); // rank 0 may still be sampling; then leave together
    CHECK(llm_dist_finalize(30.0));
    return 0;
}
