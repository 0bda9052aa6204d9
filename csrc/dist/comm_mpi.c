/*
 * comm_mpi.c — the "mpi" transport of comm.h: collectives on fp32 host buffers (the CPU
 * backend) with non-blocking MPI, so that a layer's gradients travel while the backward of the
 * layers below it runs.
 *
 * Each span is cut into pieces of at most PIECE floats (Open MPI allocates scratch as large as
 * a message in every call, and MPI counts are int); every piece is one non-blocking collective
 * with an entry in the pending list:
 *   reduce-scatter mean MPI_Ireduce_scatter into a scratch of this rank's part, then
 *                       part <- scratch / W (the rest of the piece is left as it was)
 *   all-gather          MPI_Iallgatherv(IN_PLACE) with the part split of comm.h
 *   all-reduce mean     the reduce-scatter mean, then the all-gather of the same piece (the
 *                       ring algorithm's traffic; and exactly the values a ZeRO-1 shard gets,
 *                       so zero_stage 0 and 1 see the same averaged gradients bit for bit)
 * MPI requires every rank to start the collectives of a communicator in the same order. The
 * reduce-scatters start in start() order on one communicator; the all-gathers run on a second
 * one, and those that follow an all-reduce's reduce-scatter start strictly in piece order (a
 * piece waits for every earlier piece's reduce-scatter), whatever order MPI completes them in
 * on each rank. An explicit all-gather first lets every pending all-reduce start its gather.
 * The "then" steps run on the host when MPI reports the piece complete (progress or wait).
 * Open MPI advances non-blocking collectives inside MPI calls, so the model calls progress()
 * after every layer of the backward (dist.c's plan): that is where the overlap comes from.
 *
 * Timeouts: wait() and the blocking calls poll MPI_Testsome and give up after timeout_s,
 * naming the collective of the oldest piece still pending.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist/comm.h"
#include "core/common.h"
#include "dist/comm_mpi.h"

#ifdef LLMPY_HAVE_MPI
#include <mpi.h>

// Floats per collective (16 MB): see the note above. Spans of reduce-scatter and all-gather are
// at most LLM_COMM_MAX_SPLIT_SPAN = PIECE (comm.h), so they are never cut.
#define PIECE ((size_t)1 << 22)
#define WHAT_BYTES 96

typedef struct pending {
    MPI_Request req;
    llm_comm_op op;
    int phase;      // 0: reduce-scatter in flight; 1: all-reduce whose gather waits its turn; 2: gather in flight
    int finished;   // complete: dropped from the list at the next compaction
    float *ptr;     // the piece
    size_t n;       // its floats
    float *scratch; // reduce-scatter: this rank's part of the sum (owned)
    int *counts;    // (W) reduce-scatter / all-gather per-rank counts (owned), then displacements
    char what[WHAT_BYTES];
} pending;

typedef struct mpi_impl {
    mpi_worker *worker; // the communication thread, when MPI offers MPI_THREAD_MULTIPLE (comm_mpi_worker.c)
    MPI_Comm comm;    // reduce-scatters and the host collectives
    MPI_Comm gather;  // all-gathers
    pending *list; // outstanding pieces, in the order they were started
    size_t count, cap;
    MPI_Request *reqs; // scratch for MPI_Testsome (cap)
    int *done;         // (cap) indices completed by MPI_Testsome
    int failed;        // a timeout or an error happened: the communicator is unusable
} mpi_impl;

static llm_status mpi_check(llm_comm *c, int rc, const char *call, const char *what) {
    if (rc == MPI_SUCCESS) return LLM_OK;
    ((mpi_impl *)c->impl)->failed = 1;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return llm_fail(LLM_EBACKEND, "rank %d of %d: %s failed in %s: %.*s", c->rank, c->world_size, call, what, len,
                    msg);
}

// ----------------------------------------------------------------------------
// pending pieces

static llm_status grow(mpi_impl *p) {
    if (p->count < p->cap) return LLM_OK;
    size_t cap = p->cap ? 2 * p->cap : 64;
    pending *list = realloc(p->list, cap * sizeof *list);
    if (!list) return llm_fail(LLM_ENOMEM, "out of memory (MPI requests)");
    p->list = list;
    MPI_Request *reqs = realloc(p->reqs, cap * sizeof *reqs);
    if (!reqs) return llm_fail(LLM_ENOMEM, "out of memory (MPI requests)");
    p->reqs = reqs;
    int *done = realloc(p->done, cap * sizeof *done);
    if (!done) return llm_fail(LLM_ENOMEM, "out of memory (MPI requests)");
    p->done = done;
    p->cap = cap;
    return LLM_OK;
}

// A request of e completed: the division by W of this rank's part after a reduce-scatter; an
// all-reduce then waits for its gather's turn (phase 1).
static void on_complete(llm_comm *c, pending *e) {
    const int W = c->world_size, r = c->rank;
    if (e->phase == 2) { // a gather: done
        free(e->counts);
        e->counts = NULL;
        e->finished = 1;
        return;
    }
    float *dst = e->ptr + llm_comm_part(e->n, r, W);
    const long long n = (long long)(llm_comm_part(e->n, r + 1, W) - llm_comm_part(e->n, r, W));
    const float *src = e->scratch;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (long long i = 0; i < n; i++) dst[i] = src[i] / (float)W;
    free(e->scratch);
    e->scratch = NULL;
    if (e->op == LLM_COMM_REDUCE_SCATTER_MEAN) {
        free(e->counts);
        e->counts = NULL;
        e->finished = 1;
    } else {
        e->phase = 1;
    }
}

// Starts the gathers of all-reduces whose turn has come: in list (= start) order, stopping at the
// first all-reduce still reducing, so every rank starts them in the same order.
static llm_status start_gathers(llm_comm *c) {
    mpi_impl *p = c->impl;
    const int W = c->world_size;
    for (size_t i = 0; i < p->count; i++) {
        pending *e = &p->list[i];
        if (e->op != LLM_COMM_ALL_REDUCE_MEAN || e->finished) continue;
        if (e->phase == 0) break;
        if (e->phase == 1) {
            int rc = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, e->ptr, e->counts, e->counts + W, MPI_FLOAT,
                                     p->gather, &e->req);
            LLM_TRY(mpi_check(c, rc, "MPI_Iallgatherv", e->what));
            e->phase = 2;
        }
    }
    return LLM_OK;
}

// Completes what MPI reports complete, starts the gathers whose turn came, drops finished pieces.
static llm_status test_some(llm_comm *c) {
    mpi_impl *p = c->impl;
    if (p->count == 0) return LLM_OK;
    for (size_t i = 0; i < p->count; i++)
        p->reqs[i] = p->list[i].phase == 1 || p->list[i].finished ? MPI_REQUEST_NULL : p->list[i].req;
    int outcount = 0;
    int rc = MPI_Testsome((int)p->count, p->reqs, &outcount, p->done, MPI_STATUSES_IGNORE);
    LLM_TRY(mpi_check(c, rc, "MPI_Testsome", p->list[0].what));
    if (outcount != MPI_UNDEFINED)
        for (int k = 0; k < outcount; k++) on_complete(c, &p->list[p->done[k]]);
    LLM_TRY(start_gathers(c));
    size_t kept = 0;
    for (size_t i = 0; i < p->count; i++)
        if (!p->list[i].finished) p->list[kept++] = p->list[i];
    p->count = kept;
    return LLM_OK;
}

static llm_status wait_all(llm_comm *c) {
    mpi_impl *p = c->impl;
    if (p->failed) return llm_fail(LLM_EBACKEND, "rank %d: the MPI communicator failed earlier", c->rank);
    const double t0 = llm_now_s();
    for (;;) {
        LLM_TRY(test_some(c));
        if (p->count == 0) return LLM_OK;
        const double waited = llm_now_s() - t0;
        if (waited > c->timeout_s) {
            p->failed = 1;
            return llm_fail(LLM_EBACKEND,
                            "rank %d of %d: waited %.0f s in %s (MPI) without the other ranks completing it: one "
                            "is stopped, stuck or dead (LLMPY_DIST_TIMEOUT=%g s)",
                            c->rank, c->world_size, waited, p->list[0].what, c->timeout_s);
        }
        nanosleep(&(struct timespec){0, 200000}, NULL); // 0.2 ms: MPI progresses inside Testsome
    }
}

// ----------------------------------------------------------------------------
// the transport

static llm_status start_piece(llm_comm *c, llm_comm_op op, float *x, size_t n, const char *what) {
    mpi_impl *p = c->impl;
    const int W = c->world_size, r = c->rank;
    LLM_TRY(grow(p));
    pending *e = &p->list[p->count];
    memset(e, 0, sizeof *e);
    e->op = op;
    e->ptr = x;
    e->n = n;
    snprintf(e->what, sizeof e->what, "%s", what);
    int rc;
    e->counts = malloc(2 * (size_t)W * sizeof(int));
    if (!e->counts) return llm_fail(LLM_ENOMEM, "out of memory (MPI counts)");
    int *displs = e->counts + W;
    for (int k = 0; k < W; k++) {
        displs[k] = (int)llm_comm_part(n, k, W);
        e->counts[k] = (int)(llm_comm_part(n, k + 1, W) - llm_comm_part(n, k, W));
    }
    if (op == LLM_COMM_ALL_GATHER) {
        e->phase = 2;
        rc = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, e->counts, displs, MPI_FLOAT, p->gather, &e->req);
        if (rc != MPI_SUCCESS) free(e->counts);
        LLM_TRY(mpi_check(c, rc, "MPI_Iallgatherv", what));
    } else { // reduce-scatter, also the first phase of an all-reduce
        e->scratch = malloc(((size_t)e->counts[r] + 1) * sizeof(float));
        if (!e->scratch) {
            free(e->counts);
            return llm_fail(LLM_ENOMEM, "out of memory (reduce-scatter scratch)");
        }
        rc = MPI_Ireduce_scatter(x, e->scratch, e->counts, MPI_FLOAT, MPI_SUM, p->comm, &e->req);
        if (rc != MPI_SUCCESS) {
            free(e->scratch);
            free(e->counts);
        }
        LLM_TRY(mpi_check(c, rc, "MPI_Ireduce_scatter", what));
    }
    p->count++;
    return LLM_OK;
}

static llm_status mpi_start(llm_comm *c, llm_comm_op op, const llm_comm_span *spans, int count, llm_dtype dtype,
                            const char *what) {
    mpi_impl *p = c->impl;
    if (p->failed) return llm_fail(LLM_EBACKEND, "rank %d: the MPI communicator failed earlier", c->rank);
    if (dtype != LLM_F32) return llm_fail(LLM_EUNSUPPORTED, "the MPI transport moves fp32 host buffers only");
    if (count < 0 || (count > 0 && !spans)) return llm_fail(LLM_EINVAL, "comm start: bad spans");
    if (op != LLM_COMM_ALL_REDUCE_MEAN && op != LLM_COMM_REDUCE_SCATTER_MEAN && op != LLM_COMM_ALL_GATHER)
        return llm_fail(LLM_EINVAL, "comm start: unknown op %d", (int)op);
    if (p->worker) { // the communication thread: queued in order, cut into pieces of int counts
        for (int s = 0; s < count; s++) {
            if (op != LLM_COMM_ALL_REDUCE_MEAN && spans[s].n > LLM_COMM_MAX_SPLIT_SPAN) // comm.h's contract
                return llm_fail(LLM_EINVAL, "%s: a span of %zu elements exceeds LLM_COMM_MAX_SPLIT_SPAN", what,
                                spans[s].n);
            for (size_t o = 0; o < spans[s].n; o += PIECE) {
                size_t n = spans[s].n - o < PIECE ? spans[s].n - o : PIECE;
                LLM_TRY(mpi_worker_start(p->worker, op, (float *)spans[s].ptr + o, n, what));
            }
        }
        return LLM_OK;
    }
    // an all-gather must not overtake, on one rank only, the gathers that pending all-reduces
    // have yet to start: let them all start (or finish) first
    if (op == LLM_COMM_ALL_GATHER)
        for (size_t i = 0; i < p->count; i++)
            if (p->list[i].op == LLM_COMM_ALL_REDUCE_MEAN && p->list[i].phase < 2) {
                LLM_TRY(wait_all(c));
                break;
            }
    for (int s = 0; s < count; s++) {
        float *x = spans[s].ptr;
        if (op != LLM_COMM_ALL_REDUCE_MEAN && spans[s].n > LLM_COMM_MAX_SPLIT_SPAN) // comm.h's contract
            return llm_fail(LLM_EINVAL, "%s: a span of %zu elements exceeds LLM_COMM_MAX_SPLIT_SPAN", what,
                            spans[s].n);
        for (size_t o = 0; o < spans[s].n; o += PIECE) {
            size_t n = spans[s].n - o < PIECE ? spans[s].n - o : PIECE;
            if (n) LLM_TRY(start_piece(c, op, x + o, n, what));
        }
    }
    return LLM_OK;
}

static llm_status mpi_progress(llm_comm *c) {
    mpi_impl *p = c->impl;
    if (p->failed) return llm_fail(LLM_EBACKEND, "rank %d: the MPI communicator failed earlier", c->rank);
    if (p->worker) return mpi_worker_check(p->worker);
    return test_some(c);
}

static llm_status mpi_wait(llm_comm *c) {
    mpi_impl *p = c->impl;
    if (p->worker) {
        llm_status s = mpi_worker_wait(p->worker, c->timeout_s);
        if (s != LLM_OK) p->failed = 1;
        return s;
    }
    return wait_all(c);
}

static llm_status wait_one(llm_comm *c, MPI_Request *req, const char *what) {
    const double t0 = llm_now_s();
    for (;;) {
        int flag = 0;
        int rc = MPI_Test(req, &flag, MPI_STATUS_IGNORE);
        LLM_TRY(mpi_check(c, rc, "MPI_Test", what));
        if (flag) return LLM_OK;
        const double waited = llm_now_s() - t0;
        if (waited > c->timeout_s) {
            ((mpi_impl *)c->impl)->failed = 1;
            return llm_fail(LLM_EBACKEND,
                            "rank %d of %d: waited %.0f s in %s (MPI) without the other ranks completing it: one "
                            "is stopped, stuck or dead (LLMPY_DIST_TIMEOUT=%g s)",
                            c->rank, c->world_size, waited, what, c->timeout_s);
        }
        nanosleep(&(struct timespec){0, 200000}, NULL);
    }
}

// MPI counts are int: the small collectives move at most this many elements per call.
#define SMALL_PIECE ((size_t)1 << 30)

static llm_status mpi_all_reduce_sum_f64(llm_comm *c, double *x, size_t n, const char *what) {
    mpi_impl *p = c->impl;
    if (p->failed) return llm_fail(LLM_EBACKEND, "rank %d: the MPI communicator failed earlier", c->rank);
    for (size_t i = 0; i < n; i += SMALL_PIECE) {
        MPI_Request req;
        int k = (int)(n - i < SMALL_PIECE ? n - i : SMALL_PIECE);
        LLM_TRY(mpi_check(c, MPI_Iallreduce(MPI_IN_PLACE, x + i, k, MPI_DOUBLE, MPI_SUM, p->comm, &req),
                          "MPI_Iallreduce", what));
        LLM_TRY(wait_one(c, &req, what));
    }
    return LLM_OK;
}

static llm_status mpi_broadcast(llm_comm *c, void *bytes, size_t n, int root, const char *what) {
    mpi_impl *p = c->impl;
    if (p->failed) return llm_fail(LLM_EBACKEND, "rank %d: the MPI communicator failed earlier", c->rank);
    for (size_t i = 0; i < n; i += SMALL_PIECE) {
        MPI_Request req;
        int k = (int)(n - i < SMALL_PIECE ? n - i : SMALL_PIECE);
        LLM_TRY(mpi_check(c, MPI_Ibcast((char *)bytes + i, k, MPI_BYTE, root, p->comm, &req), "MPI_Ibcast", what));
        LLM_TRY(wait_one(c, &req, what));
    }
    return LLM_OK;
}

static void mpi_destroy(llm_comm *c) {
    if (!c) return;
    mpi_impl *p = c->impl;
    if (p && p->worker) {
        const int stuck = mpi_worker_pending(p->worker) > 0;
        mpi_worker_destroy(p->worker); // left behind when stuck in a collective
        p->worker = NULL;
        if (stuck) {
            free(c);
            return;
        }
    }
    if (p && p->count > 0) {
        // collectives still in flight (a timeout: the process is about to end the job) may still
        // be advanced by a later MPI call and write into their buffers: leave them and the
        // communicators alone rather than free memory MPI may use
        free(c);
        return;
    }
    if (p) {
        int fin = 0;
        MPI_Finalized(&fin);
        if (!fin && p->comm != MPI_COMM_NULL) MPI_Comm_free(&p->comm);
        if (!fin && p->gather != MPI_COMM_NULL) MPI_Comm_free(&p->gather);
        free(p->list);
        free(p->reqs);
        free(p->done);
        free(p);
    }
    free(c);
}

static const llm_comm_ops mpi_ops = {
    .name = "mpi",
    .start = mpi_start,
    .progress = mpi_progress,
    .wait = mpi_wait,
    .all_reduce_sum_f64 = mpi_all_reduce_sum_f64,
    .broadcast = mpi_broadcast,
    .destroy = mpi_destroy,
};

llm_status comm_mpi_create(llm_comm **out, const void *mpi_comm, double timeout_s, int worker) {
    if (!out || !mpi_comm) return llm_fail(LLM_EINVAL, "comm_mpi_create: NULL argument");
    *out = NULL;
    llm_comm *c = calloc(1, sizeof *c);
    mpi_impl *p = calloc(1, sizeof *p);
    if (!c || !p) {
        free(c);
        free(p);
        return llm_fail(LLM_ENOMEM, "out of memory (MPI communicator)");
    }
    c->ops = &mpi_ops;
    c->impl = p;
    c->timeout_s = timeout_s;
    p->comm = p->gather = MPI_COMM_NULL;
    int rc = MPI_Comm_dup(*(const MPI_Comm *)mpi_comm, &p->comm);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(p->comm, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_dup(*(const MPI_Comm *)mpi_comm, &p->gather);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(p->gather, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(p->comm, &c->rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(p->comm, &c->world_size);
    if (rc != MPI_SUCCESS) {
        llm_status s = mpi_check(c, rc, "MPI_Comm_dup", "communicator setup");
        mpi_destroy(c);
        return s;
    }
    int level = MPI_THREAD_SINGLE;
    MPI_Query_thread(&level);
    if (worker && level == MPI_THREAD_MULTIPLE) {
        llm_status s = mpi_worker_create(&p->worker, mpi_comm, c->rank, c->world_size);
        if (s != LLM_OK) {
            mpi_destroy(c);
            return s;
        }
    }
    *out = c;
    return LLM_OK;
}

#else // no MPI

llm_status comm_mpi_create(llm_comm **out, const void *mpi_comm, double timeout_s, int worker) {
    (void)mpi_comm;
    (void)timeout_s;
    (void)worker;
    if (out) *out = NULL;
    return llm_fail(LLM_EUNSUPPORTED, "this llmpy was built without MPI");
}

#endif
