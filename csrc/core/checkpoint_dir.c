/*
 * checkpoint_dir.c — the checkpoints of a run folder: the newest intact pair (the one rule that
 * `train_gpt2 --resume latest` and `python -m llmpy.train --resume latest` both use), the
 * retention of old checkpoints (--keep-checkpoints, --major-checkpoint-every) and the removal of
 * temp files that killed writes left behind.
 *
 * A checkpoint of step N is the pair ckpt_NNNNNN.bin (model) + ckpt_NNNNNN.state (training state;
 * N has 6 digits or more). Writers save the model first, then the state, each into a temp file
 * renamed over the target ("<name>.tmp.<pid>.<n>", model_file.c: llm_temp_path), so a kill at any
 * moment leaves every older pair intact, possibly a newest .bin without its .state, and a temp file.
 */
#ifndef _WIN32
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L // kill
#endif
#include <dirent.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/formats.h"
#include "core/model_file.h"

// ----------------------------------------------------------------------------
// names

// The step of "ckpt_NNNNNN.<ext>" written as the writers write it (%06lld), or -1.
static int64_t ckpt_step(const char *name, const char **ext) {
    if (strncmp(name, "ckpt_", 5) != 0) return -1;
    const char *p = name + 5;
    int64_t step = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (step > (INT64_MAX - 9) / 10) return -1;
        step = step * 10 + (*p - '0');
    }
    if (digits < 6 || (strcmp(p, ".bin") != 0 && strcmp(p, ".state") != 0)) return -1;
    char canonical[64];
    snprintf(canonical, sizeof canonical, "ckpt_%06lld%s", (long long)step, p);
    if (strcmp(canonical, name) != 0) return -1; // e.g. extra leading zeros: not a name a writer uses
    *ext = p;
    return step;
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

// ----------------------------------------------------------------------------
// the newest intact pair

static void log_stderr(void *ctx, const char *message) {
    (void)ctx;
    fprintf(stderr, "warning: %s\n", message);
}

static int by_step_desc(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

#ifndef _WIN32
// The steps of the checkpoint files in the open folder d (only those with extension `only` when
// not NULL), newest first, into *steps (malloc'd, *n of them).
static llm_status list_steps(DIR *d, const char *dir, const char *only, int64_t **steps, size_t *n) {
    size_t cap = 0;
    *steps = NULL;
    *n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        const char *ext;
        int64_t k = ckpt_step(e->d_name, &ext);
        if (k < 0 || (only && strcmp(ext, only) != 0)) continue;
        if (*n == cap) {
            size_t c = cap ? 2 * cap : 64;
            int64_t *p = realloc(*steps, c * sizeof *p);
            if (!p) {
                free(*steps);
                *steps = NULL;
                return llm_fail(LLM_ENOMEM, "out of memory listing %s", dir);
            }
            *steps = p;
            cap = c;
        }
        (*steps)[(*n)++] = k;
    }
    qsort(*steps, *n, sizeof **steps, by_step_desc);
    return LLM_OK;
}

// list_steps over the folder dir: LLM_ENOENT when it does not exist, LLM_EIO when it cannot be read.
static llm_status folder_steps(const char *dir, const char *only, int64_t **steps, size_t *n) {
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        int err = errno;
        return llm_fail(err == ENOENT ? LLM_ENOENT : LLM_EIO, "cannot read the checkpoint folder %s: %s", dir,
                        strerror(err));
    }
    llm_status s = list_steps(d, dir, only, steps, n);
    closedir(d);
    return s;
}
#endif

// Why the pair of step is not a checkpoint to resume from ("" when it is one); why holds n bytes.
static void judge_pair(const char *model_path, const char *state_path, int64_t step, char *why, size_t n) {
    why[0] = '\0';
    int has_model = exists(model_path), has_state = exists(state_path);
    if (!has_state || !has_model) {
        snprintf(why, n, "%s has no %s%s", has_model ? model_path : state_path, has_model ? state_path : model_path,
                 has_model ? " (the writer stopped between the model and its state)" : "");
        return;
    }
    llm_checkpoint_info mi, si;
    if (llm_checkpoint_verify(model_path, &mi) != LLM_OK || llm_checkpoint_verify(state_path, &si) != LLM_OK) {
        snprintf(why, n, "%s", llm_last_error());
        return;
    }
    if (mi.is_state || !si.is_state) {
        snprintf(why, n, "%s is %s", mi.is_state ? model_path : state_path,
                 mi.is_state ? "a training-state file, not a model file" : "a model file, not a training-state file");
        return;
    }
    if (si.step != step) {
        snprintf(why, n, "%s holds the state of step %lld, not %lld", state_path, (long long)si.step, (long long)step);
        return;
    }
    if (memcmp(&si.cfg, &mi.cfg, sizeof si.cfg) != 0) {
        snprintf(why, n, "%s is the state of another model configuration than %s", state_path, model_path);
        return;
    }
    if (si.has_model && (si.model_checksum != mi.checksum || si.model_header_checksum != mi.header_checksum))
        snprintf(why, n,
                 "%s and %s are not one checkpoint: the state%s%s was saved with a model file whose checksums are "
                 "0x%08x/0x%08x, the .bin has 0x%08x/0x%08x (two runs writing into one folder?)",
                 model_path, state_path, si.run_id[0] ? " of run " : "", si.run_id, si.model_checksum,
                 si.model_header_checksum, mi.checksum, mi.header_checksum);
}

llm_status llm_checkpoint_find_latest(const char *dir, int64_t *step, llm_checkpoint_log_fn log, void *ctx) {
    if (!dir || !step) return llm_fail(LLM_EINVAL, "folder or step is NULL");
    *step = -1;
    if (!log) log = log_stderr;
#ifdef _WIN32
    (void)ctx;
    return llm_fail(LLM_EUNSUPPORTED, "finding checkpoints in %s: not implemented on Windows", dir);
#else
    int64_t *steps = NULL;
    size_t n = 0;
    llm_status s = folder_steps(dir, NULL, &steps, &n); // .bin and .state: twice; duplicates are skipped below
    if (s != LLM_OK) return s;
    char why[2048], line[2300];
    for (size_t i = 0; s == LLM_OK && i < n; i++) {
        if (i > 0 && steps[i] == steps[i - 1]) continue;
        char name[64];
        snprintf(name, sizeof name, "ckpt_%06lld.bin", (long long)steps[i]);
        char *model_path = join(dir, name);
        snprintf(name, sizeof name, "ckpt_%06lld.state", (long long)steps[i]);
        char *state_path = join(dir, name);
        if (!model_path || !state_path) {
            s = llm_fail(LLM_ENOMEM, "out of memory");
        } else {
            judge_pair(model_path, state_path, steps[i], why, sizeof why);
            if (!why[0]) {
                *step = steps[i];
                free(model_path);
                free(state_path);
                break;
            }
            snprintf(line, sizeof line, "skipping checkpoint of step %lld in %s: %s", (long long)steps[i], dir, why);
            log(ctx, line);
        }
        free(model_path);
        free(state_path);
    }
    free(steps);
    return s;
#endif
}

// ----------------------------------------------------------------------------
// retention: --keep-checkpoints and --major-checkpoint-every

llm_status llm_checkpoint_prune(const char *dir, int64_t step, int keep, int major_every, int *removed) {
    if (removed) *removed = 0;
    if (!dir) return llm_fail(LLM_EINVAL, "folder is NULL");
    if (keep < 0 || major_every < 0)
        return llm_fail(LLM_EINVAL, "keep (%d) and major_every (%d) must be >= 0", keep, major_every);
    if (keep == 0) return LLM_OK;
#ifdef _WIN32
    (void)step;
    return llm_fail(LLM_EUNSUPPORTED, "removing old checkpoints in %s: not implemented on Windows", dir);
#else
    int64_t *steps = NULL;
    size_t n = 0;
    llm_status s = folder_steps(dir, ".state", &steps, &n);
    int count = 0, kept = 0;
    for (size_t i = 0; s == LLM_OK && i < n; i++) {
        if (steps[i] > step) continue;          // a later run's, not this one's to judge
        if (++kept <= keep) continue;           // the newest `keep`
        if (major_every > 0 && steps[i] % major_every == 0) continue; // major: never deleted
        for (int pass = 0; pass < 2; pass++) {  // the model, then its state
            char name[64];
            snprintf(name, sizeof name, "ckpt_%06lld.%s", (long long)steps[i], pass ? "state" : "bin");
            char *path = join(dir, name);
            if (!path) { s = llm_fail(LLM_ENOMEM, "out of memory"); break; }
            if (remove(path) != 0 && errno != ENOENT)
                s = llm_fail(LLM_EIO, "cannot remove the old checkpoint file %s: %s", path, strerror(errno));
            free(path);
        }
        if (s == LLM_OK) count++;
    }
    free(steps);
    if (removed) *removed = count;
    return s;
#endif
}

// ----------------------------------------------------------------------------
// temp files of interrupted writes

// The writer's pid of "<name>.tmp.<pid>.<n>" (llm_temp_path), or -1 for any other name.
static long temp_pid(const char *name) {
    const char *t = strstr(name, ".tmp.");
    for (; t; t = strstr(t + 1, ".tmp.")) {
        if (t == name) continue; // the name before it must not be empty
        const char *p = t + 5;
        long pid = 0;
        int digits = 0, counter = 0;
        for (; *p >= '0' && *p <= '9' && digits < 12; p++, digits++) pid = pid * 10 + (*p - '0');
        if (!digits || *p != '.') continue;
        for (p++; *p >= '0' && *p <= '9'; p++) counter++;
        if (counter && !*p && pid > 0) return pid;
    }
    return -1;
}

llm_status llm_checkpoint_clean_temp(const char *dir, int *removed) {
    if (removed) *removed = 0;
    if (!dir) return llm_fail(LLM_EINVAL, "folder is NULL");
#ifdef _WIN32
    return LLM_OK; // no way to tell a live writer here: nothing is removed
#else
    DIR *d = opendir(dir);
    if (!d) {
        int err = errno;
        return llm_fail(err == ENOENT ? LLM_ENOENT : LLM_EIO, "cannot read the run folder %s: %s", dir,
                        strerror(err));
    }
    llm_status s = LLM_OK;
    int count = 0;
    for (struct dirent *e; (e = readdir(d));) {
        long pid = temp_pid(e->d_name);
        if (pid < 0) continue;
        if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno == EPERM) continue; // a live writer
        char *path = join(dir, e->d_name);
        if (!path) { s = llm_fail(LLM_ENOMEM, "out of memory"); break; }
        if (remove(path) == 0) count++;
        else if (errno != ENOENT && s == LLM_OK)
            s = llm_fail(LLM_EIO, "cannot remove the leftover temp file %s: %s", path, strerror(errno));
        free(path);
    }
    closedir(d);
    if (removed) *removed = count;
    return s;
#endif
}
