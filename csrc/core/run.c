/*
 * run.c — run folders: the rules both training programs (python -m llmpy.train and train_gpt2)
 * follow for their --out-dir, written once (llmpy.h: "run folders").
 *
 *  - One writer per folder: a run holds <dir>/.lock with flock() for its whole life. The file names
 *    the holder (PID, program, host); the OS drops the lock when the process ends, however it ends,
 *    so a lock file left by a killed run is taken over (with a note), never obeyed. The file is
 *    removed on release; a contender that opened it just before checks after locking that the path
 *    still names the file it locked, and starts again otherwise.
 *  - A new run refuses a folder that already holds a run (checkpoints, a non-empty log): it would
 *    mix its checkpoints with the old ones and truncate the old log.
 *  - A failed start removes the folders it created (when they are still empty).
 *  - The JSONL log of a resumed run: a partial last line (a record cut off mid-write) is trimmed,
 *    the records after the resumed step (which the resumed run writes again) are cut, nothing else;
 *    the rewrite goes through a temp file, every write checked and fsynced before the rename, so a
 *    full disk leaves the old log as it was.
 *  - Which flags a resumed run may change (the others must keep their saved values).
 */
#define _DEFAULT_SOURCE // flock, gethostname, fsync, O_CLOEXEC
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/common.h"

// ----------------------------------------------------------------------------
// small helpers

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

// Creates dir and its missing parents; *created receives the shallowest folder made (NULL: none).
static llm_status make_dirs(const char *dir, char **created) {
    *created = NULL;
    char *p = strdup(dir);
    if (!p) return llm_fail(LLM_ENOMEM, "out of memory");
    llm_status s = LLM_OK;
    for (char *c = p + 1;; c++) {
        if (*c != '/' && *c != '\0') continue;
        const char keep = *c;
        *c = '\0';
        if (mkdir(p, 0777) == 0) {
            if (!*created && !(*created = strdup(p))) s = llm_fail(LLM_ENOMEM, "out of memory");
        } else if (errno != EEXIST) {
            s = llm_fail(LLM_EIO, "cannot create the run folder %s: %s", p, strerror(errno));
        }
        *c = keep;
        if (!keep || s != LLM_OK) break;
    }
    free(p);
    struct stat st;
    if (s == LLM_OK && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)))
        s = llm_fail(LLM_EIO, "--out-dir %s is not a folder", dir);
    return s;
}

// rmdir dir, then its parents up to and including `top` (a prefix of dir), while they are empty.
static void remove_empty_dirs(const char *dir, const char *top) {
    char *p = strdup(dir);
    if (!p) return;
    for (;;) {
        size_t n = strlen(p);
        while (n > 1 && p[n - 1] == '/') p[--n] = '\0';
        if (rmdir(p) != 0 || strcmp(p, top) == 0) break;
        char *slash = strrchr(p, '/');
        if (!slash || slash == p) break;
        *slash = '\0';
    }
    free(p);
}

// Reads up to n-1 bytes of a small file (the lock file) into buf; 0 when nothing could be read.
static size_t read_small(int fd, char *buf, size_t n) {
    ssize_t got = pread(fd, buf, n - 1, 0);
    if (got < 0) got = 0;
    buf[got] = '\0';
    return (size_t)got;
}

// The holder written in a lock file: "PID\nprogram\nhost\n". pid 0 when the file holds none.
typedef struct holder {
    long pid;
    char program[128], host[128];
} holder;

static holder parse_holder(const char *text) {
    holder h = {0, "", ""};
    char *end;
    long pid = strtol(text, &end, 10);
    if (end == text || *end != '\n' || pid <= 0) return h;
    h.pid = pid;
    const char *prog = end + 1, *nl = strchr(prog, '\n');
    if (!nl) return h;
    snprintf(h.program, sizeof h.program, "%.*s", (int)(nl - prog), prog);
    const char *host = nl + 1, *nl2 = strchr(host, '\n');
    if (nl2) snprintf(h.host, sizeof h.host, "%.*s", (int)(nl2 - host), host);
    return h;
}

static void this_host(char *buf, size_t n) {
    if (gethostname(buf, n) != 0) buf[0] = '\0';
    buf[n - 1] = '\0';
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

// ----------------------------------------------------------------------------
// the lock

struct llm_dir_lock {
    int fd;
    char *dir, *path; // the run folder, <dir>/.lock
    char *created;    // the shallowest folder llm_run_lock created (NULL: none)
};

static llm_status busy(const char *dir, int fd) {
    // the holder writes its name right after locking: give it a moment when the file is empty
    char text[512];
    holder h = {0, "", ""};
    for (int i = 0; i < 50 && !h.pid; i++) {
        if (i) sleep_ms(10);
        read_small(fd, text, sizeof text);
        h = parse_holder(text);
    }
    if (!h.pid)
        return llm_fail(LLM_EBUSY, "%s is in use by another training run (its lock file names no PID yet); wait for "
                        "it or pick another --out-dir", dir);
    char host[128];
    this_host(host, sizeof host);
    const int elsewhere = h.host[0] && strcmp(h.host, host) != 0;
    return llm_fail(LLM_EBUSY, "%s is in use by PID %ld%s%s (another training run%s%s); wait for it or pick another "
                    "--out-dir", dir, h.pid, elsewhere ? " on host " : "", elsewhere ? h.host : "",
                    h.program[0] ? ": " : "", h.program);
}

static llm_status write_holder(llm_dir_lock *l, const char *program) {
    char host[128], text[512];
    this_host(host, sizeof host);
    int n = snprintf(text, sizeof text, "%ld\n%s\n%s\n", (long)getpid(), program ? program : "", host);
    if (n < 0 || (size_t)n >= sizeof text) n = (int)strlen(text);
    if (ftruncate(l->fd, 0) != 0 || pwrite(l->fd, text, (size_t)n, 0) != (ssize_t)n)
        return llm_fail(LLM_EIO, "cannot write %s: %s", l->path, strerror(errno));
    return LLM_OK;
}

llm_status llm_run_lock(llm_dir_lock **out, const char *dir, const char *program, llm_run_lock_info *info) {
    if (!out || !dir || !dir[0]) return llm_fail(LLM_EINVAL, "llm_run_lock: no run folder given");
    *out = NULL;
    if (info) memset(info, 0, sizeof *info);
    llm_dir_lock *l = calloc(1, sizeof *l);
    if (!l) return llm_fail(LLM_ENOMEM, "out of memory");
    l->fd = -1;
    llm_status s = make_dirs(dir, &l->created);
    if (s == LLM_OK && (!(l->dir = strdup(dir)) || !(l->path = join(dir, ".lock"))))
        s = llm_fail(LLM_ENOMEM, "out of memory");
    char stale[512] = "";
    for (int attempt = 0; s == LLM_OK; attempt++) {
        l->fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        if (l->fd < 0) {
            s = llm_fail(LLM_EIO, "cannot create %s: %s", l->path, strerror(errno));
            break;
        }
        if (flock(l->fd, LOCK_EX | LOCK_NB) != 0) {
            s = errno == EWOULDBLOCK ? busy(dir, l->fd)
                                     : llm_fail(LLM_EIO, "cannot lock %s: %s (does this file system support "
                                                "locks?)", l->path, strerror(errno));
            break;
        }
        // the previous holder removes the file before it unlocks: is the path still this file?
        struct stat a, b;
        if (fstat(l->fd, &a) == 0 && stat(l->path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            read_small(l->fd, stale, sizeof stale);
            break;
        }
        close(l->fd);
        l->fd = -1;
        if (attempt == 100) s = llm_fail(LLM_EIO, "cannot lock %s: it keeps being replaced", l->path);
    }
    if (s == LLM_OK) {
        holder h = parse_holder(stale);
        if (h.pid && info) { // a lock file that nobody holds: its process ended without releasing it
            info->stale_pid = h.pid;
            snprintf(info->note, sizeof info->note, "%s was left by PID %ld%s%s%s, which ended without releasing "
                     "it; taking it over", l->path, h.pid, h.program[0] ? " (" : "", h.program,
                     h.program[0] ? ")" : "");
        }
        s = write_holder(l, program);
    }
    if (s != LLM_OK) {
        if (l->fd >= 0) close(l->fd); // not unlinked: the file may be another run's
        if (l->created) remove_empty_dirs(dir, l->created);
        free(l->created);
        free(l->dir);
        free(l->path);
        free(l);
        return s;
    }
    if (info) info->created = l->created != NULL;
    *out = l;
    return LLM_OK;
}

void llm_run_unlock(llm_dir_lock *l, int discard) {
    if (!l) return;
    unlink(l->path); // before the release (see llm_run_lock's check)
    close(l->fd);
    if (discard && l->created) remove_empty_dirs(l->dir, l->created);
    free(l->created);
    free(l->dir);
    free(l->path);
    free(l);
}

// ----------------------------------------------------------------------------
// what a folder holds

// ckpt_NNNNNN.state or ckpt_NNNNNN.bin (6 or more digits): the step, else -1.
static long long checkpoint_step(const char *name) {
    if (strncmp(name, "ckpt_", 5) != 0) return -1;
    const char *d = name + 5, *e = d;
    while (*e >= '0' && *e <= '9') e++;
    if (e - d < 6 || (strcmp(e, ".state") != 0 && strcmp(e, ".bin") != 0)) return -1;
    return strtoll(d, NULL, 10);
}

llm_status llm_run_newest_step(const char *dir, int64_t *step, int *count) {
    *step = 0;
    if (count) *count = 0;
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? LLM_OK : llm_fail(LLM_EIO, "cannot list %s: %s", dir, strerror(errno));
    for (struct dirent *e; (e = readdir(d));) {
        long long k = checkpoint_step(e->d_name);
        if (k < 0) continue;
        if (count) (*count)++;
        if (k > *step) *step = k;
    }
    closedir(d);
    return LLM_OK;
}

llm_status llm_run_check_new(const char *dir, const char *log_path) {
    int64_t newest;
    int count;
    LLM_TRY(llm_run_newest_step(dir, &newest, &count));
    struct stat st;
    const int has_log = log_path && stat(log_path, &st) == 0 && st.st_size > 0;
    if (!count && !has_log) return LLM_OK;
    char what[4200];
    if (count)
        snprintf(what, sizeof what, "checkpoints up to step %lld%s%s", (long long)newest, has_log ? ", " : "",
                 has_log ? log_path : "");
    else
        snprintf(what, sizeof what, "%s", log_path);
    return llm_fail(LLM_EINVAL, "%s already holds a run (%s); continue it with --resume latest --out-dir %s, or pick "
                    "another --out-dir", dir, what, dir);
}

// ----------------------------------------------------------------------------
// the JSONL log

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
    return p;
}

// Past a JSON string starting at p ('"'); NULL when it does not end before `end`.
static const char *skip_string(const char *p, const char *end) {
    for (p++; p < end; p++) {
        if (*p == '\\') p++;
        else if (*p == '"') return p + 1;
    }
    return NULL;
}

// Past one JSON value (string, number, literal, nested object or array); NULL when malformed.
static const char *skip_value(const char *p, const char *end) {
    if (p >= end) return NULL;
    if (*p == '"') return skip_string(p, end);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        for (; p < end; p++) {
            if (*p == '"') {
                if (!(p = skip_string(p, end))) return NULL;
                p--;
            } else if (*p == '{' || *p == '[') {
                depth++;
            } else if ((*p == '}' || *p == ']') && --depth == 0) {
                return p + 1;
            }
        }
        return NULL;
    }
    const char *q = p;
    while (q < end && *q != ',' && *q != '}' && *q != ']' && *q != ' ' && *q != '\t') q++;
    return q > p ? q : NULL;
}

// A log record: one JSON object per line. 1 when [p, end) is a whole object (then *step is its
// top-level "step", or -1 when it has none), 0 otherwise.
static int read_record(const char *p, const char *end, long long *step) {
    *step = -1;
    p = skip_ws(p, end);
    if (p >= end || *p != '{') return 0;
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') return skip_ws(p + 1, end) == end;
    for (;;) {
        if (p >= end || *p != '"') return 0;
        const char *key = p + 1, *after = skip_string(p, end);
        if (!after) return 0;
        const int is_step = after - key == 5 && memcmp(key, "step\"", 5) == 0;
        p = skip_ws(after, end);
        if (p >= end || *p != ':') return 0;
        p = skip_ws(p + 1, end);
        const char *v = p;
        if (!(p = skip_value(p, end))) return 0;
        if (is_step) {
            char num[32];
            char *e;
            if (p - v >= (long)sizeof num) return 0;
            memcpy(num, v, (size_t)(p - v));
            num[p - v] = '\0';
            long long k = strtoll(num, &e, 10);
            if (*e == '\0' && e != num) *step = k;
        }
        p = skip_ws(p, end);
        if (p < end && *p == ',') {
            p = skip_ws(p + 1, end);
            continue;
        }
        return p < end && *p == '}' && skip_ws(p + 1, end) == end;
    }
}

static llm_status write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return LLM_EIO;
        p += k;
        n -= (size_t)k;
    }
    return LLM_OK;
}

// The folder of path (for its fsync after a rename): "." when path has no '/'.
static void parent_of(const char *path, char *buf, size_t n) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(buf, n, ".");
    else if (slash == path) snprintf(buf, n, "/");
    else snprintf(buf, n, "%.*s", (int)(slash - path), path);
}

// Writes the kept lines (ranges of text, each followed by a newline) to path via path.tmp.
static llm_status rewrite(const char *path, const char *text, const size_t (*keep)[2], size_t nkeep) {
    char *tmp = malloc(strlen(path) + 5);
    if (!tmp) return llm_fail(LLM_ENOMEM, "out of memory");
    sprintf(tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    llm_status s = fd < 0 ? LLM_EIO : LLM_OK;
    for (size_t i = 0; s == LLM_OK && i < nkeep; i++) {
        s = write_all(fd, text + keep[i][0], keep[i][1] - keep[i][0]);
        if (s == LLM_OK) s = write_all(fd, "\n", 1);
    }
    if (s == LLM_OK && fsync(fd) != 0) s = LLM_EIO;
    if (fd >= 0 && close(fd) != 0 && s == LLM_OK) s = LLM_EIO;
    if (s == LLM_OK && rename(tmp, path) != 0) s = LLM_EIO;
    if (s != LLM_OK) {
        const int err = errno;
        unlink(tmp);
        free(tmp);
        return llm_fail(LLM_EIO, "cannot rewrite %s: %s; the log is unchanged (free some space, then resume again)",
                        path, strerror(err));
    }
    free(tmp);
    char dir[4096];
    parent_of(path, dir, sizeof dir);
    int dfd = open(dir, O_RDONLY | O_CLOEXEC);
    if (dfd >= 0) { // the rename itself reaches the disk
        fsync(dfd);
        close(dfd);
    }
    return LLM_OK;
}

llm_status llm_log_rewind(const char *path, int64_t step, int64_t max_steps, llm_log_rewind_info *info) {
    llm_log_rewind_info scratch;
    if (!info) info = &scratch;
    memset(info, 0, sizeof *info);
    if (!path) return llm_fail(LLM_EINVAL, "llm_log_rewind: no log path");
    FILE *f = fopen(path, "rb");
    if (!f) return errno == ENOENT ? LLM_OK : llm_fail(LLM_EIO, "cannot open %s: %s", path, strerror(errno));
    char *text = NULL;
    size_t len = 0, cap = 0;
    llm_status s = LLM_OK;
    for (;;) {
        if (len + 65536 + 1 > cap) {
            size_t ncap = cap ? 2 * cap : 1 << 20;
            while (ncap < len + 65536 + 1) ncap *= 2;
            char *t = realloc(text, ncap);
            if (!t) { s = llm_fail(LLM_ENOMEM, "out of memory reading %s", path); break; }
            text = t;
            cap = ncap;
        }
        size_t got = fread(text + len, 1, 65536, f);
        len += got;
        if (got < 65536) {
            if (ferror(f)) s = llm_fail(LLM_EIO, "cannot read %s: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    size_t (*keep)[2] = NULL;
    size_t nkeep = 0, nlines = 0;
    if (s == LLM_OK) {
        for (size_t i = 0; i < len; i++) nlines += text[i] == '\n';
        keep = malloc((nlines + 1) * sizeof *keep);
        if (!keep) s = llm_fail(LLM_ENOMEM, "out of memory reading %s", path);
    }
    long long beyond = 0; // the last step logged past max_steps (records the resumed run would not rewrite)
    int changed = 0;
    for (size_t at = 0, line = 1; s == LLM_OK && at < len; line++) {
        const char *nl = memchr(text + at, '\n', len - at);
        const size_t stop = nl ? (size_t)(nl - text) : len;
        long long k;
        const int whole = read_record(text + at, text + stop, &k);
        if (!nl) { // the last line has no newline: a record cut off mid-write, unless it is whole
            if (!whole) {
                info->partial_bytes = (int64_t)(stop - at);
                snprintf(info->warning, sizeof info->warning, "%s: trimmed a partial last line (line %zu, %lld "
                         "bytes: a record cut off mid-write)", path, line, (long long)(stop - at));
                changed = 1;
                break;
            }
            changed = 1; // kept, with its newline
        }
        if (whole && k > step) { // the resumed run logs this step again
            info->dropped++;
            if (k > max_steps && k > beyond) beyond = k;
            changed = 1;
        } else if (stop > at || nl) { // kept as it is (a line that is no record too: history is never lost)
            keep[nkeep][0] = at;
            keep[nkeep][1] = stop;
            nkeep++;
        }
        at = stop + 1;
    }
    info->kept = (int64_t)nkeep;
    if (s == LLM_OK && beyond)
        s = llm_fail(LLM_EINVAL, "%s has records up to step %lld, past --max-steps %lld of the resumed run, which "
                     "would not write them again; give --max-steps %lld or more, or move the log away", path, beyond,
                     (long long)max_steps, beyond);
    if (s == LLM_OK && changed) s = rewrite(path, text, (const size_t(*)[2])keep, nkeep);
    if (s == LLM_OK && info->dropped)
        snprintf(info->note, sizeof info->note, "%s: cut %lld record%s after step %lld (the resumed run writes %s "
                 "again)", path, (long long)info->dropped, info->dropped == 1 ? "" : "s", (long long)step,
                 info->dropped == 1 ? "it" : "them");
    if (s != LLM_OK) info->warning[0] = info->note[0] = '\0';
    free(keep);
    free(text);
    return s;
}

// ----------------------------------------------------------------------------
// flags of a resumed run

// Flags a resumed run keeps from its saved run, and why; every other flag may be given again to
// change it (the change is announced). A flag not in either list is kept (the safe side).
static const struct { const char *flag, *why; } kept_flags[] = {
    {"--model", "the model comes from the checkpoint"},
    {"--n-layer", "the model comes from the checkpoint"},
    {"--n-head", "the model comes from the checkpoint"},
    {"--n-embd", "the model comes from the checkpoint"},
    {"--init-from", "the model comes from the checkpoint"},
    {"--batch-size", "the data position was saved with it"},
    {"--seq-len", "the data position was saved with it"},
    {"--total-batch-size", "it sets the tokens of every step"},
    {"--data", "the data order and position were saved with it"},
    {"--val-data", "the val losses would no longer compare"},
    {"--seed", "it fixes the data order and the samples"},
    {"--shuffle", "it fixes the data order"},
};
static const char *const changeable_flags[] = {
    "--max-steps", "--lr", "--warmup-steps", "--lr-schedule", "--min-lr-frac", "--beta1", "--beta2",
    "--weight-decay", "--grad-clip", "--eval-every", "--val-steps", "--sample-every", "--sample-tokens",
    "--checkpoint-every", "--keep-checkpoints", "--hellaswag", "--hellaswag-every", "--hellaswag-data",
    "--hellaswag-limit", "--tokenizer", "--threads", "--device", "--precision", "--zero-stage", "--log-file",
    "--json", "--out-dir", "--resume",
};

int llm_resume_flag_changeable(const char *flag) {
    for (size_t i = 0; flag && i < sizeof changeable_flags / sizeof changeable_flags[0]; i++)
        if (strcmp(flag, changeable_flags[i]) == 0) return 1;
    return 0;
}

// "--shuffle"/"--no-shuffle" for the boolean flag, else "--flag value" ("no --flag" for NULL).
static void render(char *buf, size_t n, const char *flag, const char *value) {
    if (strcmp(flag, "--shuffle") == 0 && value)
        snprintf(buf, n, "%s", strcmp(value, "false") == 0 ? "--no-shuffle" : "--shuffle");
    else if (value)
        snprintf(buf, n, "%s %s", flag, value);
    else
        snprintf(buf, n, "no %s", flag);
}

llm_status llm_resume_check_flag(const char *flag, const char *saved, const char *given) {
    if (!flag) return llm_fail(LLM_EINVAL, "llm_resume_check_flag: no flag");
    if (llm_resume_flag_changeable(flag)) return LLM_OK;
    if ((!saved && !given) || (saved && given && strcmp(saved, given) == 0)) return LLM_OK;
    const char *why = "a resumed run keeps it";
    for (size_t i = 0; i < sizeof kept_flags / sizeof kept_flags[0]; i++)
        if (strcmp(flag, kept_flags[i].flag) == 0) why = kept_flags[i].why;
    char was[2048], now[2048];
    render(was, sizeof was, flag, saved);
    render(now, sizeof now, flag, given);
    return llm_fail(LLM_EINVAL, "%s cannot change when resuming: the run was saved with %s (%s); drop the flag to "
                    "continue the run, or start a new one in another --out-dir", given ? now : flag, was, why);
}
