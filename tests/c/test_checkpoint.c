/*
 * test_checkpoint.c — the checkpoint files of the C core under faults, through the public C API
 * (run by CI normally and under AddressSanitizer + UndefinedBehaviorSanitizer + LeakSanitizer, so
 * the error paths are checked for leaks and undefined behaviour too).
 *
 * Oracles: CRC32C's published check value (RFC 3720: crc32c("123456789") = 0xE3069283) and the
 * table path against the hardware path; the model's own parameters (a saved and loaded model is
 * bit-identical); the rules of llmpy.h (checkpoints): a flipped bit anywhere is "checksum mismatch",
 * a state saved with another model file is refused, the newest intact pair is found whatever its
 * step, temp files of dead writers are removed and live writers' kept.
 * Prints one line per check and exits non-zero on any failure. Works in a fresh temp folder.
 *
 *   ./build/test_checkpoint
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L // mkdtemp, fork
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/formats.h"
#include "core/llmpy.h"

static int failures = 0;

#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        int ok_ = (cond);                                                                          \
        printf("%s ", ok_ ? "OK  " : "FAIL");                                                      \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        if (!ok_) failures++;                                                                      \
    } while (0)

// A failing status whose message contains want.
static int fails_with(llm_status s, const char *want) {
    if (s == LLM_OK) return 0;
    if (!strstr(llm_last_error(), want)) {
        printf("     (message: %s)\n", llm_last_error());
        return 0;
    }
    return 1;
}

static char dir[256];

static const char *at(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static int copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    int ok = a && b;
    char buf[65536];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, a)) > 0) ok = fwrite(buf, 1, n, b) == n;
    if (a) fclose(a);
    if (b) fclose(b);
    return ok;
}

static void flip(const char *path, long byte, int bit) {
    FILE *f = fopen(path, "r+b");
    if (!f) return;
    fseek(f, byte, SEEK_SET);
    int c = fgetc(f);
    fseek(f, byte, SEEK_SET);
    fputc(c ^ (1 << bit), f);
    fclose(f);
}

static int same_params(llm_model *a, llm_model *b) {
    for (int i = 0; i < LLM_NUM_TENSORS; i++) {
        llm_tensor ta, tb;
        if (llm_model_tensor(a, i, &ta) != LLM_OK || llm_model_tensor(b, i, &tb) != LLM_OK) return 0;
        size_t n = 1;
        for (int d = 0; d < ta.ndim; d++) n *= (size_t)ta.shape[d];
        if (memcmp(ta.data, tb.data, n * sizeof(float)) != 0) return 0;
    }
    return 1;
}

static void train_step(llm_model *m, int step) {
    int32_t x[16], y[16];
    for (int i = 0; i < 16; i++) {
        x[i] = (step * 7 + i * 13) % 100;
        y[i] = (step * 11 + i * 5 + 1) % 100;
    }
    float loss, norm;
    if (llm_zero_grad(m) != LLM_OK || llm_forward(m, x, y, 2, 8, &loss) != LLM_OK || llm_backward(m, 1.0f) != LLM_OK ||
        llm_step(m, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, &norm) != LLM_OK)
        EXPECT(0, "train step %d: %s", step, llm_last_error());
}

// Saves the checkpoint pair of step (tagged with run) the way the training programs do.
static void save_pair(llm_model *m, int step, const char *run) {
    char bin[64], state[64];
    snprintf(bin, sizeof bin, "ckpt_%06d.bin", step);
    snprintf(state, sizeof state, "ckpt_%06d.state", step);
    llm_state_tag tag = {at(bin), step, run};
    if (llm_model_save(m, at(bin)) != LLM_OK || llm_model_save_state(m, at(state), "{\"k\": 1}", &tag) != LLM_OK)
        EXPECT(0, "save step %d: %s", step, llm_last_error());
}

typedef struct lines {
    int n;
    char last[1024];
} lines;

static void collect(void *ctx, const char *message) {
    lines *l = ctx;
    l->n++;
    snprintf(l->last, sizeof l->last, "%s", message);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/llmpy-test-checkpoint-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }

    // -- CRC32C ---------------------------------------------------------------------------
    EXPECT(llm_crc32c(0, "123456789", 9) == 0xE3069283u && llm_crc32c_portable(0, "123456789", 9) == 0xE3069283u,
           "crc32c check value (%s path and table)", llm_crc32c_impl());
    static unsigned char blob[3 * 8192 * 2 + 3 * 256 + 4099]; // the long and short 3-stream blocks and tails
    for (size_t i = 0; i < sizeof blob; i++) blob[i] = (unsigned char)(i * 2654435761u >> 13);
    int same = 1;
    for (size_t start = 0; start < 9; start++)
        for (size_t n = 0; n + start <= sizeof blob; n += 97 + 8 * start)
            same &= llm_crc32c(0, blob + start, n) == llm_crc32c_portable(0, blob + start, n) &&
                    llm_crc32c(llm_crc32c(0, blob + start, n / 3), blob + start + n / 3, n - n / 3) ==
                        llm_crc32c_portable(0, blob + start, n);
    EXPECT(same, "crc32c: hardware and table paths agree at every alignment and length, and continue");

    // -- a saved pair loads back bit-exactly ------------------------------------------------
    llm_config cfg = {.n_layer = 2, .n_head = 2, .n_embd = 32, .vocab_size = 100, .block_size = 16};
    llm_model *m = NULL, *back = NULL;
    if (llm_model_create(&m, &cfg, "cpu", NULL, 1) != LLM_OK) {
        fprintf(stderr, "llm_model_create: %s\n", llm_last_error());
        return 1;
    }
    for (int s = 1; s <= 8; s++) {
        train_step(m, s);
        if (s % 2 == 0) save_pair(m, s, "c-test");
    }
    EXPECT(llm_model_load(&back, at("ckpt_000008.bin"), "cpu", NULL) == LLM_OK && same_params(m, back),
           "ckpt_000008.bin loads bit-exactly");
    char *json = NULL;
    EXPECT(back && llm_model_load_state(back, at("ckpt_000008.state"), &json) == LLM_OK && json &&
               !strcmp(json, "{\"k\": 1}") && llm_model_steps(back) == 8,
           "ckpt_000008.state loads into it (step 8, its JSON)");
    llm_free(json);
    llm_checkpoint_info info;
    EXPECT(llm_checkpoint_verify(at("ckpt_000008.state"), &info) == LLM_OK && info.is_state && info.step == 8 &&
               !strcmp(info.run_id, "c-test") && info.has_model && info.has_checksum,
           "verify ckpt_000008.state: step 8, run c-test, the model file recorded");

    // -- bit flips anywhere ----------------------------------------------------------------
    long size = file_size(at("ckpt_000008.bin"));
    long positions[] = {0, 9, 4 * 7 + 1, 4 * 100, 4 * LLM_INTEGRITY_AT, 4 * LLM_INTEGRITY_AT + 5,
                        4 * LLM_INTEGRITY_AT + 10, 4 * LLM_INTEGRITY_AT + 15, 1024, 1024 + 4097, size / 2, size - 1};
    int all = 1;
    for (size_t k = 0; k < sizeof positions / sizeof *positions; k++) {
        copy_file(at("ckpt_000008.bin"), at("flip.bin"));
        flip(at("flip.bin"), positions[k], (int)(k % 8));
        llm_model *bad = NULL;
        int ok = fails_with(llm_model_load(&bad, at("flip.bin"), "cpu", NULL), "damaged");
        ok &= fails_with(llm_checkpoint_verify(at("flip.bin"), &info), "damaged") && strstr(llm_last_error(), "flip.bin");
        llm_model_file *f = NULL;
        ok &= fails_with(llm_model_file_open(&f, at("flip.bin")), "checksum") && !bad && !f;
        if (!ok) printf("     (flip at byte %ld)\n", positions[k]);
        all &= ok;
    }
    EXPECT(all, "a bit flip in a model file's header or payload is \"damaged\" for load, verify and open");
    long ssize = file_size(at("ckpt_000008.state"));
    long spos[] = {0, 8, 4 * 16, 4 * 20, 4 * 100, 4 * LLM_INTEGRITY_AT + 8, 1024, ssize / 2, ssize - 1};
    all = 1;
    for (size_t k = 0; k < sizeof spos / sizeof *spos; k++) {
        copy_file(at("ckpt_000008.state"), at("flip.state"));
        flip(at("flip.state"), spos[k], (int)(k % 8));
        int ok = fails_with(llm_model_load_state(back, at("flip.state"), NULL), "damaged") &&
                 llm_model_steps(back) == 8;
        if (!ok) printf("     (flip at byte %ld)\n", spos[k]);
        all &= ok;
    }
    EXPECT(all, "a bit flip in a state file is \"damaged\" and leaves the model unchanged");

    // -- a .bin with another run's .state ------------------------------------------------------
    llm_model *other = NULL;
    llm_model_create(&other, &cfg, "cpu", NULL, 2);
    train_step(other, 1);
    llm_state_tag tag = {at("other.bin"), 6, "other-run"};
    llm_model_save(other, at("other.bin"));
    llm_model_save_state(other, at("other.state"), NULL, &tag);
    llm_model *six = NULL;
    llm_model_load(&six, at("ckpt_000006.bin"), "cpu", NULL);
    EXPECT(six && fails_with(llm_model_load_state(six, at("other.state"), NULL), "are not one checkpoint"),
           "ckpt_000006.bin with another run's state is refused");

    // -- the newest intact pair, whatever its step ----------------------------------------------
    copy_file(at("other.state"), at("ckpt_000006.state")); // a mixed pair
    flip(at("ckpt_000008.bin"), size - 3, 2);                // a damaged newest model
    copy_file(at("ckpt_000004.bin"), at("ckpt_000010.bin")); // a .bin without its .state
    lines log = {0, ""};
    int64_t step = 0;
    EXPECT(llm_checkpoint_find_latest(dir, &step, collect, &log) == LLM_OK && step == 4 && log.n == 3 &&
               strstr(log.last, "step 6") && strstr(log.last, "are not one checkpoint"),
           "find_latest: step 4 after skipping 10 (no state), 8 (damaged), 6 (mixed): %lld, %d skipped, last: %s",
           (long long)step, log.n, log.last);
    EXPECT(fails_with(llm_checkpoint_find_latest(at("missing"), &step, collect, &log), "cannot read the checkpoint folder") &&
               step == -1,
           "find_latest in a missing folder says so");

    // -- temp files of dead and live writers ------------------------------------------------------
    pid_t child = fork();
    if (child == 0) _exit(0);
    waitpid(child, NULL, 0);
    char dead[64], live[64];
    snprintf(dead, sizeof dead, "ckpt_000012.bin.tmp.%ld.0", (long)child);
    snprintf(live, sizeof live, "ckpt_000012.state.tmp.%ld.4", (long)getpid());
    FILE *f = fopen(at(dead), "wb");
    if (f) fclose(f);
    f = fopen(at(live), "wb");
    if (f) fclose(f);
    int removed = -1;
    EXPECT(llm_checkpoint_clean_temp(dir, &removed) == LLM_OK && removed == 1 && file_size(at(dead)) < 0 &&
               file_size(at(live)) == 0,
           "clean_temp removes the dead writer's temp file (%d) and keeps the live one's", removed);
    remove(at(live));

    // -- paths that are no file ---------------------------------------------------------------------
    llm_model *none = NULL;
    EXPECT(llm_model_load(&none, at("nope.bin"), "cpu", NULL) == LLM_ENOENT, "a missing model file is LLM_ENOENT");
    EXPECT(fails_with(llm_model_load(&none, dir, "cpu", NULL), "it is a directory") && !none,
           "a directory is said to be one");
    EXPECT(fails_with(llm_model_save_state(m, at("x.state"), NULL, &(llm_state_tag){NULL, -1, "no spaces"}),
                      "run id 'no spaces'"),
           "a run id with a space is refused");

    llm_model_free(m);
    llm_model_free(back);
    llm_model_free(other);
    llm_model_free(six);
    // clean up the folder (only the names this test wrote)
    const char *names[] = {"ckpt_000002.bin", "ckpt_000002.state", "ckpt_000004.bin", "ckpt_000004.state",
                           "ckpt_000006.bin", "ckpt_000006.state", "ckpt_000008.bin", "ckpt_000008.state",
                           "ckpt_000010.bin", "flip.bin", "flip.state", "other.bin", "other.state"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) remove(at(names[k]));
    if (rmdir(dir) != 0) printf("note: %s is not empty\n", dir);
    printf("%s: %d failure(s)\n", failures ? "FAILED" : "passed", failures);
    return failures ? 1 : 0;
}
