/*
 * dist.c — the process group of data-parallel training (see dist.h): the launch read from the
 * launcher's environment, MPI start-up and a bounded shutdown, abort, and host collectives that
 * give up after a timeout instead of hanging; in a build without MPI, one process that refuses
 * a launch with several ranks. What happens to a model across ranks (the collective plan,
 * ZeRO-1) is dist_plan.c's; the collectives on model buffers are comm.h's transports.
 *
 * Layout: launcher environment | the process group (init, finalize, abort) | host collectives |
 * transports for the plan.
 *
 * Timeouts: every host collective and every wait of the plan gives up after LLMPY_DIST_TIMEOUT
 * seconds (default 90) with a message naming this rank and the collective, and the caller ends
 * the job (llm_dist_abort): a rank that is stopped (SIGSTOP), stuck or dead must not leave the
 * others waiting for ever. A collective that may legitimately wait longer (a barrier while one
 * rank prepares the data) passes its own timeout.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef LLMPY_HAVE_MPI
#include <mpi.h>
#endif

#include "dist/comm.h"
#include "dist/comm_mpi.h"
#include "core/common.h"
#include "dist/dist.h"
#include "dist/dist_internal.h"

// ----------------------------------------------------------------------------
// launcher environment

// Variables that MPI launchers set in every rank's environment: Open MPI, MPICH/Intel MPI
// (Hydra's PMI), MVAPICH, and PMIx launchers (srun --mpi=pmix, prterun).
static const char *const SIZE_VARS[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE"};
static const char *const RANK_VARS[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK"};

static int env_int(const char *name, long *out) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end != '\0') return 0;
    *out = v;
    return 1;
}

// Ranks announced by the launcher (see llm_dist_launched_ranks); *launched: any variable set.
static int launch_env(const char **var, int *launched) {
    long v;
    *launched = 0;
    if (var) *var = NULL;
    for (size_t i = 0; i < sizeof SIZE_VARS / sizeof *SIZE_VARS; i++) {
        if (env_int(SIZE_VARS[i], &v)) {
            *launched = 1;
            if (var) *var = SIZE_VARS[i];
            return v > 1 ? (v > INT_MAX ? INT_MAX : (int)v) : 1;
        }
    }
    for (size_t i = 0; i < sizeof RANK_VARS / sizeof *RANK_VARS; i++) {
        if (env_int(RANK_VARS[i], &v)) {
            *launched = 1;
            if (var) *var = RANK_VARS[i];
            return v > 0 ? -1 : 1; // a rank above 0: several ranks, number unknown
        }
    }
    return 1;
}

int llm_dist_launched_ranks(const char **var) {
    int launched;
    return launch_env(var, &launched);
}

// Rank on this machine as the launcher announces it: Open MPI, MPICH/Intel MPI (Hydra),
// MVAPICH, Slurm; without MPI, ours or torchrun's.
static const char *const LOCAL_RANK_VARS[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
                                              "MV2_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID",
                                              "LLMPY_LOCAL_RANK"};

// A launch without MPI (GPUs only: the ranks talk through NCCL): LLMPY_RANK / LLMPY_WORLD_SIZE
// (e.g. from srun: LLMPY_RANK=$SLURM_PROCID), or torchrun's RANK / WORLD_SIZE, trusted only next
// to TORCHELASTIC_RUN_ID (a stray RANK in a shell must not make a process wait for peers).
// Returns 1 and fills rank/world when one is announced.
static int plain_launch(int *rank, int *world, const char **how) {
    long r, w;
    if (env_int("LLMPY_RANK", &r) && env_int("LLMPY_WORLD_SIZE", &w)) {
        *how = "LLMPY_RANK/LLMPY_WORLD_SIZE";
    } else if (getenv("TORCHELASTIC_RUN_ID") && env_int("RANK", &r) && env_int("WORLD_SIZE", &w)) {
        *how = "torchrun's RANK/WORLD_SIZE";
    } else {
        return 0;
    }
    *rank = r >= 0 && r <= INT_MAX ? (int)r : -1;
    *world = w >= 1 && w <= INT_MAX ? (int)w : -1;
    return 1;
}

// ----------------------------------------------------------------------------
// the process group
//
// MPI is process-global state, so the group is too: one static record, written only by
// llm_dist_init / llm_dist_finalize.

// 90 s: a checkpoint written by rank 0 or a sample it prints while the others wait fits; a stopped
// rank still ends the job within 120 s (the timeout + MPI_Abort)
#define DEFAULT_TIMEOUT_S 90.0

static struct {
    int initialised, finalized;
    llm_dist_info info;
    double timeout_s; // LLMPY_DIST_TIMEOUT
    llm_comm *host;   // the host collectives (MPI), NULL for one process
#ifdef LLMPY_HAVE_MPI
    int we_init;       // we called MPI_Init, so we call MPI_Finalize
    MPI_Comm comm;     // our duplicate of MPI_COMM_WORLD; errors are returned, not fatal
    MPI_Comm shutdown; // a second duplicate that carries only the shutdown barrier
#endif
} g = {0, 0, {0, 1, 0, 1, 0}, DEFAULT_TIMEOUT_S, NULL
#ifdef LLMPY_HAVE_MPI
       , 0, 0, 0
#endif
};

llm_dist_info llm_dist_get(void) { return g.info; }

int llm_dist_local_rank(void) {
    if (g.initialised) return g.info.local_rank;
    long v;
    for (size_t i = 0; i < sizeof LOCAL_RANK_VARS / sizeof *LOCAL_RANK_VARS; i++)
        if (env_int(LOCAL_RANK_VARS[i], &v) && v >= 0 && v <= INT_MAX) return (int)v;
    if (getenv("TORCHELASTIC_RUN_ID") && env_int("LOCAL_RANK", &v) && v >= 0 && v <= INT_MAX) return (int)v;
    return 0;
}

// MPI moves data only when there is someone to move it to.
static int active(void) { return g.host && g.info.world_size > 1 && !g.finalized; }

#ifdef LLMPY_HAVE_MPI
static llm_status mpi_ok(int rc, const char *what) {
    if (rc == MPI_SUCCESS) return LLM_OK;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return llm_fail(LLM_EBACKEND, "%s failed on rank %d of %d: %.*s", what, g.info.rank, g.info.world_size, len, msg);
}

static llm_status mpi_start(void) {
    int flag = 0;
    MPI_Initialized(&flag);
    if (!flag) {
        // MPI_THREAD_MULTIPLE: the gradients' collectives run on a thread of their own
        // (comm_mpi.c); waiting MPI calls yield the core to the computing threads rather than spin
        // on it (Open MPI; the user's own setting wins)
        setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0);
        int provided;
        LLM_TRY(mpi_ok(MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread"));
        g.we_init = 1;
    }
    LLM_TRY(mpi_ok(MPI_Comm_dup(MPI_COMM_WORLD, &g.comm), "MPI_Comm_dup"));
    LLM_TRY(mpi_ok(MPI_Comm_set_errhandler(g.comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler"));
    LLM_TRY(mpi_ok(MPI_Comm_dup(MPI_COMM_WORLD, &g.shutdown), "MPI_Comm_dup"));
    LLM_TRY(mpi_ok(MPI_Comm_set_errhandler(g.shutdown, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler"));
    MPI_Comm_rank(g.comm, &g.info.rank);
    MPI_Comm_size(g.comm, &g.info.world_size);
    // local rank: rank among the processes that share this machine's memory
    MPI_Comm node;
    LLM_TRY(mpi_ok(MPI_Comm_split_type(g.comm, MPI_COMM_TYPE_SHARED, g.info.rank, MPI_INFO_NULL, &node),
                   "MPI_Comm_split_type"));
    MPI_Comm_rank(node, &g.info.local_rank);
    MPI_Comm_size(node, &g.info.local_size);
    MPI_Comm_free(&node);
    LLM_TRY(comm_mpi_create(&g.host, &g.comm, g.timeout_s, 0)); // host values only: no thread
    g.info.mpi = 1;
    return LLM_OK;
}
#endif

// LLMPY_DIST_TIMEOUT: seconds (> 0) a collective may wait for the other ranks.
static llm_status read_timeout(void) {
    const char *s = getenv("LLMPY_DIST_TIMEOUT");
    if (!s || !*s) return LLM_OK;
    char *end;
    double v = strtod(s, &end);
    if (*end != '\0' || !(v > 0.0) || !isfinite(v))
        return llm_fail(LLM_EINVAL, "LLMPY_DIST_TIMEOUT must be a number of seconds > 0, got '%s'", s);
    g.timeout_s = v;
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// a launch without MPI: NCCL carries everything, its id travels through a file

// The rendezvous file of this run: $LLMPY_DIST_DIR/llmpy-<run id>.nccl-id. The run id keeps a
// later run from reading an earlier run's file: LLMPY_DIST_RUN_ID, else torchrun's or Slurm's.
static llm_status rendezvous_path(char *path, size_t n) {
    const char *dir = getenv("LLMPY_DIST_DIR");
    if (!dir || !*dir)
        return llm_fail(LLM_EINVAL, "a launch without MPI needs LLMPY_DIST_DIR: a directory every rank can read "
                                    "and write (shared across machines), where rank 0 leaves NCCL's id");
    const char *run = getenv("LLMPY_DIST_RUN_ID");
    char slurm[64] = "", torch[160] = "";
    const char *elastic = getenv("TORCHELASTIC_RUN_ID");
    // torchrun without --rdzv-id says "none" for every job: not unique, not usable as a name;
    // a restart of the same job counts up, so its rendezvous gets a new name
    if ((!run || !*run) && elastic && *elastic && strcmp(elastic, "none") != 0) {
        snprintf(torch, sizeof torch, "%s.%s", elastic,
                 getenv("TORCHELASTIC_RESTART_COUNT") ? getenv("TORCHELASTIC_RESTART_COUNT") : "0");
        run = torch;
    }
    if ((!run || !*run) && getenv("SLURM_JOB_ID")) {
        snprintf(slurm, sizeof slurm, "%s.%s", getenv("SLURM_JOB_ID"),
                 getenv("SLURM_STEP_ID") ? getenv("SLURM_STEP_ID") : "0");
        run = slurm;
    }
    if (!run || !*run)
        return llm_fail(LLM_EINVAL, "a launch without MPI needs LLMPY_DIST_RUN_ID: a name unique to this run (the "
                                    "same on every rank), so that no rank reads another run's rendezvous file "
                                    "(torchrun's run id 'none' is not unique: pass --rdzv-id)");
    for (const char *c = run; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-' ||
              *c == '_' || *c == '.'))
            return llm_fail(LLM_EINVAL, "the run id '%s' may hold letters, digits, '-', '_' and '.' only", run);
    snprintf(path, n, "%s/llmpy-%s.nccl-id", dir, run);
    return LLM_OK;
}

static llm_status write_id(const char *path, const unsigned char *id) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return llm_fail(LLM_EIO, "cannot write the rendezvous file %s: %s", tmp, strerror(errno));
    int ok = fwrite(id, 1, LLM_COMM_ID_BYTES, f) == LLM_COMM_ID_BYTES;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return llm_fail(LLM_EIO, "cannot write the rendezvous file %s: %s", path, strerror(errno));
    }
    return LLM_OK;
}

static llm_status read_id(const char *path, unsigned char *id, double timeout_s, int rank, int world) {
    const double t0 = llm_now_s();
    for (;;) {
        FILE *f = fopen(path, "rb");
        if (f) {
            size_t got = fread(id, 1, LLM_COMM_ID_BYTES, f);
            fclose(f);
            if (got == LLM_COMM_ID_BYTES) return LLM_OK;
        }
        if (llm_now_s() - t0 > timeout_s)
            return llm_fail(LLM_EBACKEND, "rank %d of %d: waited %.0f s for rank 0's rendezvous file %s (is rank 0 "
                                          "running, with the same LLMPY_DIST_DIR and run id?)",
                            rank, world, llm_now_s() - t0, path);
        nanosleep(&(struct timespec){0, 20000000}, NULL); // 20 ms
    }
}

static llm_status plain_start(int rank, int world, const char *how) {
    if (rank < 0 || world < 1 || rank >= world)
        return llm_fail(LLM_EINVAL, "%s announce rank %d of %d: need 0 <= rank < world size", how, rank, world);
    // the only transport without MPI is the GPU's: the CUDA backend must be up (llmpy does this
    // when the device is cuda) and carry NCCL
    const llm_comm_factory *f = llm_comm_factory_for("cuda");
    if (!f)
        return llm_fail(LLM_EUNSUPPORTED,
                        "this process is rank %d of %d (%s) without MPI: such ranks talk through NCCL, so each needs "
                        "its GPU set up first (device 'cuda') and an llmpy with NCCL (build_info()['nccl']); CPU "
                        "ranks need an MPI launch (mpirun)", rank, world, how);
    char path[4096];
    LLM_TRY(rendezvous_path(path, sizeof path));
    unsigned char id[LLM_COMM_ID_BYTES];
    if (rank == 0) {
        LLM_TRY(f->make_id(id));
        LLM_TRY(write_id(path, id));
    } else {
        LLM_TRY(read_id(path, id, g.timeout_s, rank, world));
    }
    g.info.rank = rank;
    g.info.world_size = world;
    g.info.local_rank = llm_dist_local_rank();
    g.info.local_size = 0; // unknown without MPI
    llm_status s = f->create(&g.host, id, rank, world, g.timeout_s);
    double one = 1.0;
    if (s == LLM_OK) s = g.host->ops->all_reduce_sum_f64(g.host, &one, 1, "the start-up of the process group");
    // every rank has joined, or the start failed: either way the file has served, and a rerun with
    // the same run id must not find it
    if (rank == 0) remove(path);
    if (s != LLM_OK && g.host) {
        g.host->ops->destroy(g.host);
        g.host = NULL;
    }
    return s;
}

llm_status llm_dist_init(llm_dist_info *out) {
    if (!g.initialised) {
        LLM_TRY(read_timeout());
        const char *var;
        int launched;
        int n = launch_env(&var, &launched);
        if (!launched) {
            int rank, world;
            const char *how;
            if (plain_launch(&rank, &world, &how)) {
                LLM_TRY(plain_start(rank, world, how));
                g.initialised = 1;
                if (out) *out = g.info;
                return LLM_OK;
            }
        }
#ifdef LLMPY_HAVE_MPI
        (void)n; (void)var;
        if (launched) LLM_TRY(mpi_start()); // also for one rank: `mpirun -np 1` takes the MPI path
#else
        (void)launched;
        if (n != 1) {
            char count[32];
            snprintf(count, sizeof count, n > 0 ? "%d" : "several", n);
            return llm_fail(LLM_EUNSUPPORTED,
                            "this process is one of %s ranks started by an MPI launcher (%s is set), but this "
                            "llmpy was built without MPI, so every rank would train its own copy of the model. "
                            "Install MPI (e.g. apt-get install openmpi-bin libopenmpi-dev) and rebuild llmpy "
                            "(pip install . -Ccmake.define.LLMPY_MPI=ON fails loudly if MPI is still not found), "
                            "or run a single process without mpirun",
                            count, var);
        }
#endif
        g.initialised = 1;
    }
    if (out) *out = g.info;
    return LLM_OK;
}

llm_status llm_dist_finalize(double timeout_s) {
    if (!g.initialised || g.finalized) return LLM_OK;
    if (!g.info.mpi && g.host) { // a launch without MPI: the same bounded wait, over NCCL
        const double keep = g.host->timeout_s;
        g.host->timeout_s = timeout_s;
        double one = 1.0;
        llm_status s = g.host->ops->all_reduce_sum_f64(g.host, &one, 1, "the shutdown (every rank reaching the end)");
        g.host->timeout_s = keep;
        LLM_TRY(s);
        g.host->ops->destroy(g.host);
        g.host = NULL;
        g.finalized = 1;
        return LLM_OK;
    }
#ifdef LLMPY_HAVE_MPI
    if (g.info.mpi) {
        // A barrier that can give up: a rank that ends while another still waits in a collective
        // (a bug, or a rank that failed without aborting) must not hang the job forever.
        MPI_Request req;
        LLM_TRY(mpi_ok(MPI_Ibarrier(g.shutdown, &req), "MPI_Ibarrier"));
        double t0 = MPI_Wtime();
        int done = 0;
        while (!done) {
            LLM_TRY(mpi_ok(MPI_Test(&req, &done, MPI_STATUS_IGNORE), "MPI_Test"));
            if (done) break;
            if (MPI_Wtime() - t0 > timeout_s)
                return llm_fail(LLM_EBACKEND,
                                "rank %d of %d: the other ranks did not reach the end within %g s (one is still "
                                "training, stuck, or died); abort the job (llm_dist_abort)",
                                g.info.rank, g.info.world_size, timeout_s);
            nanosleep(&(struct timespec){0, 1000000}, NULL);
        }
        if (g.host) g.host->ops->destroy(g.host);
        g.host = NULL;
        MPI_Comm_free(&g.comm);
        MPI_Comm_free(&g.shutdown);
        g.finalized = 1;
        if (g.we_init) LLM_TRY(mpi_ok(MPI_Finalize(), "MPI_Finalize"));
        return LLM_OK;
    }
#else
    (void)timeout_s;
#endif
    return LLM_OK; // one process without MPI: nothing to leave, and it stays usable
}

void llm_dist_abort(int code) {
    fflush(stdout);
    fflush(stderr);
#ifdef LLMPY_HAVE_MPI
    int fin = 0;
    MPI_Finalized(&fin);
    if (g.info.mpi && !fin) MPI_Abort(MPI_COMM_WORLD, code); // ends every rank, does not return
#endif
    exit(code);
}

// ----------------------------------------------------------------------------
// host collectives

static llm_status need_init(void) {
    if (!g.initialised) return llm_fail(LLM_ESTATE, "distributed calls need llm_dist_init() first");
    if (g.finalized) return llm_fail(LLM_ESTATE, "distributed calls after llm_dist_finalize()");
    return LLM_OK;
}

double llm_dist_timeout(void) { return g.timeout_s; }

llm_status llm_dist_barrier(double timeout_s) {
    LLM_TRY(need_init());
    if (!active()) return LLM_OK;
    const double keep = g.host->timeout_s;
    g.host->timeout_s = timeout_s > 0.0 ? timeout_s : g.timeout_s;
    double one = 1.0;
    llm_status s = g.host->ops->all_reduce_sum_f64(g.host, &one, 1, "a barrier (every rank waits for the others)");
    g.host->timeout_s = keep;
    return s;
}

llm_status llm_dist_all_reduce_sum_f64(double *x, size_t n) {
    LLM_TRY(need_init());
    if (n && !x) return llm_fail(LLM_EINVAL, "all-reduce of a NULL buffer");
    if (!active() || n == 0) return LLM_OK;
    return g.host->ops->all_reduce_sum_f64(g.host, x, n, "an all-reduce of host values (metrics, flags)");
}

llm_status llm_dist_broadcast(void *buf, size_t n, int root) {
    LLM_TRY(need_init());
    if (root < 0 || root >= g.info.world_size)
        return llm_fail(LLM_EINVAL, "broadcast root %d is not a rank (world size %d)", root, g.info.world_size);
    if (n && !buf) return llm_fail(LLM_EINVAL, "broadcast of a NULL buffer");
    if (!active() || n == 0) return LLM_OK;
    return g.host->ops->broadcast(g.host, buf, n, root, "a broadcast from rank 0");
}

// ----------------------------------------------------------------------------
// transports for the plan (dist_plan.c)

llm_status dist_model_comm(llm_comm **out, int *owned, const char *device) {
    *out = NULL;
    *owned = 1;
    LLM_TRY(need_init());
    // a plain process has nothing to move; a launched one gets a transport even alone (mpirun -np 1
    // or a world of 1 runs the data-parallel code path, which is how one GPU checks NCCL)
    if (!g.host || g.finalized) return LLM_OK;
    if (strcmp(device, "cpu") == 0) {
#ifdef LLMPY_HAVE_MPI
        // the communication thread unless LLMPY_MPI_THREAD=0 (non-blocking MPI calls instead)
        const char *thread = getenv("LLMPY_MPI_THREAD");
        if (g.info.mpi) return comm_mpi_create(out, &g.comm, g.timeout_s, !(thread && strcmp(thread, "0") == 0));
#endif
        return llm_fail(LLM_EUNSUPPORTED, "data parallelism of CPU models needs an MPI launch (mpirun)");
    }
    if (!g.info.mpi && strcmp(device, "cuda") == 0) {
        // a launch without MPI: the group's NCCL communicator serves the model too, so that host
        // collectives queue behind the model's on one stream (NCCL does not promise progress to
        // two communicators on one GPU at once)
        *out = g.host;
        *owned = 0;
        return LLM_OK;
    }
    const llm_comm_factory *f = llm_comm_factory_for(device);
    if (!f)
        return llm_fail(LLM_EUNSUPPORTED,
                        "data parallelism on device '%s' needs its collective transport (NCCL for cuda), which this "
                        "llmpy was built without (llmpy.build_info()['nccl']; rebuild with LLMPY_NCCL=ON)",
                        device);
    // rank 0 makes the rendezvous id, MPI carries it to the others, all join
    unsigned char id[LLM_COMM_ID_BYTES] = {0};
    double ok = 1.0;
    llm_status s = g.info.rank == 0 ? f->make_id(id) : LLM_OK;
    if (s != LLM_OK) ok = 0.0;
    LLM_TRY(llm_dist_all_reduce_sum_f64(&ok, 1)); // a failure on rank 0 must not leave the others waiting
    if (ok < g.info.world_size) {
        return s != LLM_OK ? s
                           : llm_fail(LLM_EBACKEND, "rank 0 could not set up the %s communicator (its error is in its "
                                                    "output)", f->name);
    }
    LLM_TRY(llm_dist_broadcast(id, sizeof id, 0));
    return f->create(out, id, g.info.rank, g.info.world_size, g.timeout_s);
}
