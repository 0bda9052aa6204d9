/*
 * dist.c — data-parallel training across processes (see dist.h): the MPI bootstrap from the
 * launcher's environment, gradient averaging over MPI on the CPU (reduce-scatter + all-gather,
 * a 16 MB chunk at a time), ZeRO-1, a bounded shutdown; and, in a build without MPI, stubs that
 * run one process and refuse a launch with several ranks.
 *
 * Layout: launcher environment | the process group (init, finalize, abort) | host collectives |
 * the model across ranks | ZeRO-1.
 *
 * Backends: the CPU path moves float32 host buffers with MPI. The CUDA backend plugs in at the
 * functions marked "device hook": there the gradients live on the GPU (bf16 or fp32,
 * m->ops->dtype) and move with NCCL (cuda/nccl.cu) instead; everything else (rank, shards,
 * checks, shutdown) is shared.
 *
 * ZeRO-1 reference: Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training
 * Trillion Parameter Models" (stage 1 = optimizer-state partitioning).
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef LLMPY_HAVE_MPI
#include <mpi.h>
#endif

#include "common.h"
#include "dist.h"
#include "gpt2.h"

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
// MVAPICH, Slurm.
static const char *const LOCAL_RANK_VARS[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
                                              "MV2_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"};

// ----------------------------------------------------------------------------
// the process group
//
// MPI is process-global state, so the group is too: one static record, written only by
// llm_dist_init / llm_dist_finalize.

static struct {
    int initialised, finalized;
    llm_dist_info info;
#ifdef LLMPY_HAVE_MPI
    int we_init;       // we called MPI_Init, so we call MPI_Finalize
    MPI_Comm comm;     // our duplicate of MPI_COMM_WORLD; errors are returned, not fatal
    MPI_Comm shutdown; // a second duplicate that carries only the shutdown barrier
    int *counts;       // (world_size) scratch: per-rank element counts of one chunk
    int *displs;       // (world_size) and their offsets
    float *scratch;    // (CHUNK / world_size + 1) reduce-scatter output
#endif
} g = {0, 0, {0, 1, 0, 1, 0}
#ifdef LLMPY_HAVE_MPI
       , 0, 0, 0, NULL, NULL, NULL
#endif
};

// Floats per collective on gradients and parameters (16 MB): the flat buffers are cut into
// chunks of CHUNK floats and every collective moves one chunk. Open MPI allocates scratch memory
// as large as the message in every call; fresh pages for 500 MB (124M gradients) per step cost
// more than the communication (2 ranks, 2-core VM: reduce-scatter 400-630 ms whole, 60-130 ms
// in chunks).
#define CHUNK ((size_t)1 << 22)

// Rank k's part of a chunk of n floats: [n*k/W, n*(k+1)/W) from the chunk's start.
static size_t part_start(size_t n, int k, int W) { return n * (size_t)k / (size_t)W; }

llm_dist_info llm_dist_get(void) { return g.info; }

int llm_dist_local_rank(void) {
    if (g.initialised) return g.info.local_rank;
    long v;
    for (size_t i = 0; i < sizeof LOCAL_RANK_VARS / sizeof *LOCAL_RANK_VARS; i++)
        if (env_int(LOCAL_RANK_VARS[i], &v) && v >= 0 && v <= INT_MAX) return (int)v;
    return 0;
}

// MPI moves data only when there is someone to move it to.
static int active(void) { return g.info.mpi && g.info.world_size > 1 && !g.finalized; }

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
        int provided; // only the thread that initialised MPI calls it; OpenMP threads never do
        LLM_TRY(mpi_ok(MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread"));
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
    int W = g.info.world_size;
    g.counts = malloc((size_t)W * sizeof(int));
    g.displs = malloc((size_t)W * sizeof(int));
    g.scratch = malloc((CHUNK / (size_t)W + 1) * sizeof(float));
    if (!g.counts || !g.displs || !g.scratch) return llm_fail(LLM_ENOMEM, "out of memory (MPI scratch)");
    g.info.mpi = 1;
    return LLM_OK;
}

// Fills g.counts/g.displs for a chunk of n floats.
static void chunk_layout(size_t n) {
    int W = g.info.world_size;
    for (int k = 0; k < W; k++) {
        g.displs[k] = (int)part_start(n, k, W);
        g.counts[k] = (int)(part_start(n, k + 1, W) - part_start(n, k, W));
    }
}
#endif

llm_status llm_dist_init(llm_dist_info *out) {
    if (!g.initialised) {
        const char *var;
        int launched;
        int n = launch_env(&var, &launched);
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
        MPI_Comm_free(&g.comm);
        MPI_Comm_free(&g.shutdown);
        free(g.counts);
        free(g.displs);
        free(g.scratch);
        g.counts = g.displs = NULL;
        g.scratch = NULL;
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

// Elements per MPI call of the small collectives: MPI counts are int.
#define MPI_CHUNK ((size_t)1 << 30)

static llm_status need_init(void) {
    if (!g.initialised) return llm_fail(LLM_ESTATE, "distributed calls need llm_dist_init() first");
    if (g.finalized) return llm_fail(LLM_ESTATE, "distributed calls after llm_dist_finalize()");
    return LLM_OK;
}

llm_status llm_dist_barrier(void) {
    LLM_TRY(need_init());
#ifdef LLMPY_HAVE_MPI
    if (active()) return mpi_ok(MPI_Barrier(g.comm), "MPI_Barrier");
#endif
    return LLM_OK;
}

llm_status llm_dist_all_reduce_sum_f64(double *x, size_t n) {
    LLM_TRY(need_init());
    if (n && !x) return llm_fail(LLM_EINVAL, "all-reduce of a NULL buffer");
#ifdef LLMPY_HAVE_MPI
    for (size_t i = 0; active() && i < n; i += MPI_CHUNK) {
        int c = (int)(n - i < MPI_CHUNK ? n - i : MPI_CHUNK);
        LLM_TRY(mpi_ok(MPI_Allreduce(MPI_IN_PLACE, x + i, c, MPI_DOUBLE, MPI_SUM, g.comm), "MPI_Allreduce"));
    }
#endif
    return LLM_OK;
}

llm_status llm_dist_broadcast(void *buf, size_t n, int root) {
    LLM_TRY(need_init());
    if (root < 0 || root >= g.info.world_size)
        return llm_fail(LLM_EINVAL, "broadcast root %d is not a rank (world size %d)", root, g.info.world_size);
    if (n && !buf) return llm_fail(LLM_EINVAL, "broadcast of a NULL buffer");
#ifdef LLMPY_HAVE_MPI
    for (size_t i = 0; active() && i < n; i += MPI_CHUNK) {
        int c = (int)(n - i < MPI_CHUNK ? n - i : MPI_CHUNK);
        LLM_TRY(mpi_ok(MPI_Bcast((char *)buf + i, c, MPI_BYTE, root, g.comm), "MPI_Bcast"));
    }
#endif
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// the model across ranks

// Device hook: the MPI path moves float32 host memory. A model on another device (CUDA: bf16
// or fp32 device buffers) goes through NCCL instead (cuda/nccl.cu, with the CUDA backend).
static llm_status host_fp32(const llm_model *m) {
    if (strcmp(m->device, "cpu") != 0)
        return llm_fail(LLM_EUNSUPPORTED, "data parallelism on device '%s' needs the NCCL path (not built)",
                        m->device);
    return LLM_OK;
}

#define SHAPE_INTS 8

llm_status llm_dist_setup_model(llm_model *m, int zero_stage) {
    LLM_TRY(need_init());
    if (!m) return llm_fail(LLM_EINVAL, "model is NULL");
    if (zero_stage != 0 && zero_stage != 1) return llm_fail(LLM_EINVAL, "zero_stage must be 0 or 1, got %d", zero_stage);
    LLM_TRY(host_fp32(m));
    if (!active()) return LLM_OK;
#ifdef LLMPY_HAVE_MPI
    const llm_config *c = &m->cfg;
    int64_t mine[SHAPE_INTS] = {c->n_layer, c->n_head, c->n_embd, c->vocab_size, c->block_size,
                                c->padded_vocab_size, (int64_t)m->total, zero_stage};
    int W = g.info.world_size;
    int64_t *all = malloc((size_t)W * sizeof mine);
    if (!all) return llm_fail(LLM_ENOMEM, "out of memory checking the model across %d ranks", W);
    llm_status s = mpi_ok(MPI_Allgather(mine, SHAPE_INTS, MPI_INT64_T, all, SHAPE_INTS, MPI_INT64_T, g.comm),
                          "MPI_Allgather");
    for (int r = 1; s == LLM_OK && r < W; r++) {
        const int64_t *a = all, *b = all + (size_t)r * SHAPE_INTS;
        if (memcmp(a, b, sizeof mine) != 0)
            s = llm_fail(LLM_EINVAL,
                         "the ranks disagree on the model: rank 0 has L=%lld NH=%lld C=%lld V=%lld maxT=%lld "
                         "Vp=%lld (%lld parameters, zero_stage %lld), rank %d has L=%lld NH=%lld C=%lld V=%lld "
                         "maxT=%lld Vp=%lld (%lld parameters, zero_stage %lld); start every rank with the same "
                         "model and flags",
                         (long long)a[0], (long long)a[1], (long long)a[2], (long long)a[3], (long long)a[4],
                         (long long)a[5], (long long)a[6], (long long)a[7], r, (long long)b[0], (long long)b[1],
                         (long long)b[2], (long long)b[3], (long long)b[4], (long long)b[5], (long long)b[6],
                         (long long)b[7]);
    }
    free(all);
    LLM_TRY(s);
    // every rank starts from rank 0's parameters (a different seed or file elsewhere cannot drift)
    return llm_dist_broadcast(m->params, m->total * sizeof(float), 0);
#endif
    return LLM_OK;
}

#ifdef LLMPY_HAVE_MPI
// This rank's part of the mean over the ranks of the chunk x[0..n): reduce-scatter, then the
// sum divided by the world size (exact for a power of two, so that 2 ranks reproduce 1 rank
// accumulating 2 micro-batches with loss_scale 1/2). Leaves g.counts/g.displs for the chunk.
static llm_status reduce_scatter_mean(float *x, size_t n) {
    chunk_layout(n);
    int r = g.info.rank;
    LLM_TRY(mpi_ok(MPI_Reduce_scatter(x, g.scratch, g.counts, MPI_FLOAT, MPI_SUM, g.comm), "MPI_Reduce_scatter"));
    const float W = (float)g.info.world_size;
    float *dst = x + g.displs[r];
    const float *src = g.scratch;
#pragma omp parallel for
    for (long long i = 0; i < (long long)g.counts[r]; i++) dst[i] = src[i] / W;
    return LLM_OK;
}
#endif

llm_status llm_dist_all_reduce_grads(llm_model *m) {
    LLM_TRY(need_init());
    if (!m) return llm_fail(LLM_EINVAL, "model is NULL");
    LLM_TRY(host_fp32(m));
    if (!active()) return LLM_OK;
#ifdef LLMPY_HAVE_MPI
    // all-reduce = reduce-scatter + all-gather, a chunk at a time (the ring algorithm's traffic;
    // faster here than MPI_Allreduce on whole buffers)
    float *grads = (float *)m->grads; // device hook: NCCL all-reduce (bf16 or fp32) on CUDA
    for (size_t c0 = 0; c0 < m->total; c0 += CHUNK) {
        size_t n = m->total - c0 < CHUNK ? m->total - c0 : CHUNK;
        LLM_TRY(reduce_scatter_mean(grads + c0, n));
        LLM_TRY(mpi_ok(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, grads + c0, g.counts, g.displs, MPI_FLOAT,
                                      g.comm),
                       "MPI_Allgatherv"));
    }
#endif
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// ZeRO-1

// Rank r's shard is its part of every CHUNK of the flat buffer (chunk_layout), so that every
// collective moves one chunk; its moments are stored in that order, contiguously.
struct llm_zero {
    llm_model *model;
    size_t n;      // elements in this rank's shard
    float *m, *v;  // AdamW moments of the shard (n), allocated on the first step
};

// Tensors that get weight decay: the 2-D matrices. Same rule as is_matrix() in gpt2.c.
static int decays(int i) { return i == 0 || i == 1 || i == 4 || i == 6 || i == 10 || i == 12; }

// This rank's part of the chunk starting at c0: [*a, *a + *len) in the flat buffer.
static void my_part(size_t total, size_t c0, size_t *a, size_t *len) {
    size_t n = total - c0 < CHUNK ? total - c0 : CHUNK;
    int r = g.info.rank, W = g.info.world_size;
    *a = c0 + part_start(n, r, W);
    *len = part_start(n, r + 1, W) - part_start(n, r, W);
}

llm_status llm_zero_create(llm_zero **out, llm_model *m) {
    if (!out || !m) return llm_fail(LLM_EINVAL, "zero: NULL argument");
    *out = NULL;
    LLM_TRY(need_init());
    LLM_TRY(host_fp32(m));
    llm_zero *z = calloc(1, sizeof *z);
    if (!z) return llm_fail(LLM_ENOMEM, "out of memory (ZeRO-1 state)");
    z->model = m;
    for (size_t c0 = 0; c0 < m->total; c0 += CHUNK) {
        size_t a, len;
        my_part(m->total, c0, &a, &len);
        z->n += len;
    }
    *out = z;
    return LLM_OK;
}

void llm_zero_free(llm_zero *z) {
    if (!z) return;
    z->model->ops->free(z->m);
    z->model->ops->free(z->v);
    free(z);
}

size_t llm_zero_parts(const llm_zero *z, size_t *starts, size_t *lens, size_t max) {
    size_t k = 0;
    for (size_t c0 = 0; z && c0 < z->model->total; c0 += CHUNK, k++) {
        size_t a, len;
        my_part(z->model->total, c0, &a, &len);
        if (k < max) {
            if (starts) starts[k] = a;
            if (lens) lens[k] = len;
        }
    }
    return k;
}

// Moments of the shard: taken from the model's full buffers when it holds some (a loaded
// checkpoint), which are then released; zero-filled before the first step.
static llm_status zero_moments(llm_zero *z) {
    llm_model *m = z->model;
    const llm_ops *ops = m->ops;
    if (!z->m) {
        LLM_TRY(ops->alloc((void **)&z->m, (z->n + 1) * sizeof(float)));
        LLM_TRY(ops->alloc((void **)&z->v, (z->n + 1) * sizeof(float)));
    }
    if (m->m) {
        size_t off = 0;
        for (size_t c0 = 0; c0 < m->total; c0 += CHUNK) {
            size_t a, len;
            my_part(m->total, c0, &a, &len);
            memcpy(z->m + off, m->m + a, len * sizeof(float));
            memcpy(z->v + off, m->v + a, len * sizeof(float));
            off += len;
        }
        ops->free(m->m);
        ops->free(m->v);
        m->m = m->v = NULL;
    }
    return LLM_OK;
}

llm_status llm_zero_step(llm_zero *z, float lr, float beta1, float beta2, float eps, float weight_decay,
                         float grad_clip, float *norm) {
    if (!z) return llm_fail(LLM_EINVAL, "zero is NULL");
    LLM_TRY(need_init());
    llm_model *m = z->model;
    if (!m->has_grad) return llm_fail(LLM_ESTATE, "step() needs gradients: call backward() first");
    if (!(lr >= 0.0f) || !isfinite(lr)) return llm_fail(LLM_EINVAL, "lr must be finite and >= 0, got %g", lr);
    if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f))
        return llm_fail(LLM_EINVAL, "betas must be in [0, 1), got (%g, %g)", beta1, beta2);
    if (!(eps >= 0.0f) || !(weight_decay >= 0.0f))
        return llm_fail(LLM_EINVAL, "eps and weight_decay must be >= 0, got %g and %g", eps, weight_decay);
    LLM_TRY(zero_moments(z));
    const llm_ops *ops = m->ops;
    const size_t N = m->total;
    float *grads = (float *)m->grads, *params = (float *)m->params; // device hook: NCCL on CUDA

    // 1. this rank's shard of the mean gradient, and its squared norm
    double sq = 0.0;
    for (size_t c0 = 0; c0 < N; c0 += CHUNK) {
        size_t a, len;
        my_part(N, c0, &a, &len);
#ifdef LLMPY_HAVE_MPI
        if (active()) LLM_TRY(reduce_scatter_mean(grads + c0, N - c0 < CHUNK ? N - c0 : CHUNK));
#endif
        double part = 0.0;
        if (len) LLM_TRY(ops->norm_squared(&part, grads + a, len));
        sq += part;
    }
    // 2. the global norm, clipping as llm_step (PyTorch's clip_grad_norm_)
    LLM_TRY(llm_dist_all_reduce_sum_f64(&sq, 1));
    float gnorm = (float)sqrt(sq);
    float scale = 1.0f;
    if (grad_clip > 0.0f) {
        float c = grad_clip / (gnorm + 1e-6f);
        scale = c < 1.0f ? c : 1.0f;
    }
    // 3. AdamW on the shard, tensor by tensor (weight decay differs between tensors); then every
    // rank gets every part of the updated parameters.
    // The CPU path is fp32: no master copy (the device hook will pass the master shard and a seed).
    m->t++;
    size_t off = 0;
    for (size_t c0 = 0; c0 < N; c0 += CHUNK) {
        size_t a, len;
        my_part(N, c0, &a, &len);
        for (int i = 0; i < LLM_NUM_TENSORS; i++) {
            size_t lo = m->offsets[i] > a ? m->offsets[i] : a;
            size_t hi = m->offsets[i] + m->sizes[i] < a + len ? m->offsets[i] + m->sizes[i] : a + len;
            if (lo >= hi) continue;
            size_t k = off + (lo - a);
            LLM_TRY(ops->adamw_update(params + lo, NULL, grads + lo, z->m + k, z->v + k, hi - lo, lr, beta1, beta2,
                                      eps, decays(i) ? weight_decay : 0.0f, scale, m->t, 0));
        }
        off += len;
#ifdef LLMPY_HAVE_MPI
        if (active()) {
            chunk_layout(N - c0 < CHUNK ? N - c0 : CHUNK);
            LLM_TRY(mpi_ok(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, params + c0, g.counts, g.displs,
                                          MPI_FLOAT, g.comm),
                           "MPI_Allgatherv"));
        }
#endif
    }
    if (norm) *norm = gnorm;
    return LLM_OK;
}

llm_status llm_zero_save_state(llm_zero *z, const char *path, const char *json) {
    if (!z || !path) return llm_fail(LLM_EINVAL, "zero or path is NULL");
    LLM_TRY(need_init());
    llm_model *m = z->model;
    int root = g.info.rank == 0;
    // before the first step (no shards yet), or with full moments loaded and not yet sharded:
    // the model's own state is the full state
    if (!z->m || m->m) return root ? llm_model_save_state(m, path, json) : LLM_OK;
    const llm_ops *ops = m->ops;
    float *mm = NULL, *vv = NULL;
    llm_status s = LLM_OK;
    if (root) {
        s = ops->alloc((void **)&mm, m->total * sizeof(float));
        if (s == LLM_OK) s = ops->alloc((void **)&vv, m->total * sizeof(float));
    }
    // a failed allocation on rank 0 must not leave the others in the gather: tell them
    double failed = s != LLM_OK;
    llm_status s2 = llm_dist_all_reduce_sum_f64(&failed, 1);
    if (s == LLM_OK && s2 != LLM_OK) s = s2;
    if (s == LLM_OK && failed > 0)
        s = llm_fail(LLM_ENOMEM, "rank 0 could not allocate the full optimizer state for %s", path);
    size_t off = 0;
    for (size_t c0 = 0; s == LLM_OK && c0 < m->total; c0 += CHUNK) {
        size_t a, len;
        my_part(m->total, c0, &a, &len);
        if (!active()) { // one rank: its part is the chunk
            memcpy(mm + a, z->m + off, len * sizeof(float));
            memcpy(vv + a, z->v + off, len * sizeof(float));
        }
#ifdef LLMPY_HAVE_MPI
        if (active()) {
            chunk_layout(m->total - c0 < CHUNK ? m->total - c0 : CHUNK);
            s = mpi_ok(MPI_Gatherv(z->m + off, (int)len, MPI_FLOAT, root ? mm + c0 : NULL, g.counts, g.displs,
                                   MPI_FLOAT, 0, g.comm),
                       "MPI_Gatherv");
            if (s == LLM_OK)
                s = mpi_ok(MPI_Gatherv(z->v + off, (int)len, MPI_FLOAT, root ? vv + c0 : NULL, g.counts, g.displs,
                                       MPI_FLOAT, 0, g.comm),
                           "MPI_Gatherv");
        }
#endif
        off += len;
    }
    if (s == LLM_OK && root) {
        m->m = mm; // lent to the file writer, taken back below
        m->v = vv;
        s = llm_model_save_state(m, path, json);
        m->m = m->v = NULL;
    }
    if (root) {
        ops->free(mm);
        ops->free(vv);
    }
    return s;
}
