/*
 * nccl.cu — the "nccl" transport of csrc/dist/comm.h: data-parallel collectives on the CUDA backend's
 * device buffers (fp32 or bf16), with NCCL.
 *
 * Streams. A communicator has its own stream (non-blocking, so it never orders with the legacy
 * default stream) on the GPU the CUDA backend was initialised on. start() records an event on
 * the compute stream (llm_cuda_stream) and makes the communicator's stream wait for it, so the
 * collectives read gradients only after the compute that wrote them; it then issues one NCCL
 * group and records a "done" event behind it. wait() makes the compute stream wait for the last
 * done event, so later compute sees the results.
 *
 * Timeouts. The communicator is non-blocking (ncclConfig_t.blocking = 0): no NCCL call waits for
 * another rank. Calls may return ncclInProgress while NCCL finishes them in the background; the
 * communicator's state (ncclCommGetAsyncError) is then polled until it is ncclSuccess before the
 * next call on it and before anything is queued behind them on the stream (settle()). The host
 * waits for the collectives themselves only in wait() and in the blocking host-memory calls:
 * it polls their events, sleeping 1 ms between polls, until they complete, NCCL reports an
 * error, or timeout_s passes. On an error or a timeout the communicator is aborted
 * (ncclCommAbort: in-flight kernels end) and every later call fails: the caller ends the job.
 *
 * Parts (comm.h: rank r owns [part(n, r), part(n, r + 1))). When W divides n the parts are
 * equal and reduce-scatter/all-gather are NCCL's in-place ncclReduceScatter/ncclAllGather;
 * otherwise they are one ncclReduce to (or ncclBroadcast from) each owner of its part, in the
 * same group. Means use ncclAvg.
 *
 * Host memory (all_reduce_sum_f64, broadcast) goes through pinned and device staging buffers, at
 * most STAGING_BYTES at a time, on the communicator's stream: pinned, so that the copies are
 * truly asynchronous and the host can keep to its timeout.
 *
 * Reference: NCCL user guide, "Creating a communicator with options", "Error handling and
 * communicator abort", "In-place operations", "Group calls".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nccl.h>

#include "dist/comm.h"
#include "context.cuh"
#include "nccl_comm.h"

static_assert(sizeof(ncclUniqueId) == LLM_COMM_ID_BYTES, "comm.h's rendezvous id must hold an ncclUniqueId");

#define WHAT_BYTES 96                    // a group's label, kept for messages
#define STAGING_BYTES ((size_t)32 << 20) // host collectives: bytes per chunk (a multiple of 8)

// ----------------------------------------------------------------------------
// state

typedef struct nccl_group {
    cudaEvent_t done;       // recorded on the communicator's stream behind the group's kernels
    char what[WHAT_BYTES];  // its label (start()'s `what`)
} nccl_group;

typedef struct nccl_impl {
    ncclComm_t comm;        // NULL once aborted
    int ready_ok;           // the communicator finished its setup
    int broken;             // failed or timed out: unusable
    cudaStream_t stream;    // the communicator's stream
    cudaEvent_t ready;      // recorded on llm_cuda_stream by start(): the stream waits for it
    cudaEvent_t host_done;  // behind a host collective's copy back
    nccl_group *groups;     // the groups started since the last wait() (events kept for reuse)
    int n_groups, cap_groups;
    int launch_pending;     // the last group's ncclGroupEnd returned ncclInProgress: its done event
                            // is recorded once NCCL has queued its kernels (settle())
    void *dev_stage, *host_stage; // host collectives' staging buffers (device, pinned host)
    size_t stage_bytes;
    char who[48];           // "rank R of W: ", the start of every message about this communicator
} nccl_impl;

// ----------------------------------------------------------------------------
// checks and time

static llm_status nccl_check(ncclResult_t r, const char *who, const char *call, const char *file, int line) {
    if (r == ncclSuccess) return LLM_OK;
    const char *detail = ncclGetLastError(NULL);
    return llm_fail(LLM_EBACKEND, "%sNCCL error in %s (%s:%d): %s%s%s", who, call, file, line,
                    ncclGetErrorString(r), detail && detail[0] ? ": " : "", detail ? detail : "");
}
// Returns from the calling function when the NCCL call fails.
#define NCCL_TRY(who, call)                                                              \
    do {                                                                                 \
        llm_status s_ = nccl_check((call), (who), #call, __FILE__, __LINE__);            \
        if (s_ != LLM_OK) return s_;                                                     \
    } while (0)
// The same for a call on the non-blocking communicator, which may also answer ncclInProgress
// (it goes on in the background: settle() waits for it).
#define NCCL_TRY_ASYNC(who, call)                                                        \
    do {                                                                                 \
        ncclResult_t r_ = (call);                                                        \
        if (r_ != ncclInProgress) {                                                      \
            llm_status s_ = nccl_check(r_, (who), #call, __FILE__, __LINE__);            \
            if (s_ != LLM_OK) return s_;                                                 \
        }                                                                                \
    } while (0)

static void nap(void) {
    struct timespec ts = {0, 1000000}; // 1 ms
    nanosleep(&ts, NULL);
}

static const char *label(const char *what) { return what && what[0] ? what : "a collective"; }

static llm_status timeout_fail(const nccl_impl *im, double waited, const char *what) {
    return llm_fail(LLM_EBACKEND,
                    "%swaited %.1f s in %s (NCCL); another rank did not take part in time (it stopped, failed or "
                    "is behind), so the communicator is aborted: end the job (llm_dist_abort)",
                    im->who, waited, label(what));
}

static llm_status async_fail(const nccl_impl *im, ncclResult_t st, const char *what) {
    const char *detail = ncclGetLastError(im->comm);
    return llm_fail(LLM_EBACKEND, "%sNCCL failed during %s: %s%s%s; the communicator is aborted: end the job "
                    "(llm_dist_abort)", im->who, label(what), ncclGetErrorString(st), detail && detail[0] ? ": " : "",
                    detail ? detail : "");
}

// Aborts the communicator after a failure (comm.h: it is unusable afterwards). The message of
// the failure is already set; ncclCommAbort ends the kernels still in flight.
static void break_comm(nccl_impl *im) {
    if (im->comm) (void)ncclCommAbort(im->comm);
    im->comm = NULL;
    im->broken = 1;
}

// After a poll answered cudaErrorNotReady: make sure it is not left as the runtime's last error,
// where the next kernel launch's check (CUDA_TRY_LAUNCH) would take it for its own failure.
static void forget_not_ready(void) {
    if (cudaPeekAtLastError() == cudaErrorNotReady) (void)cudaGetLastError();
}

// ----------------------------------------------------------------------------
// waiting

// Until NCCL has finished what the last call on the communicator left in progress (then records
// the pending group's done event), an asynchronous error, or the deadline. deadline < 0: only
// looks once (progress()), and a call still in progress is fine.
static llm_status settle(nccl_impl *im, double t0, double deadline, const char *what) {
    for (;;) {
        ncclResult_t st = ncclSuccess;
        NCCL_TRY(im->who, ncclCommGetAsyncError(im->comm, &st));
        if (st == ncclSuccess) break;
        if (st != ncclInProgress) return async_fail(im, st, what);
        if (deadline < 0) return LLM_OK;
        const double t = llm_now_s();
        if (t > deadline) return timeout_fail(im, t - t0, what);
        nap();
    }
    if (im->launch_pending) {
        CUDA_TRY(cudaEventRecord(im->groups[im->n_groups - 1].done, im->stream));
        im->launch_pending = 0;
    }
    return LLM_OK;
}

// Until `ev` has completed, NCCL reports an error, or the deadline.
static llm_status poll_event(nccl_impl *im, cudaEvent_t ev, double t0, double deadline, const char *what) {
    for (;;) {
        const cudaError_t e = cudaEventQuery(ev);
        if (e == cudaSuccess) return LLM_OK;
        if (e != cudaErrorNotReady) return cuda_check(e, "cudaEventQuery (waiting for NCCL)", __FILE__, __LINE__);
        forget_not_ready();
        ncclResult_t st = ncclSuccess;
        NCCL_TRY(im->who, ncclCommGetAsyncError(im->comm, &st));
        if (st != ncclSuccess && st != ncclInProgress) return async_fail(im, st, what);
        const double t = llm_now_s();
        if (t > deadline) return timeout_fail(im, t - t0, what);
        nap();
    }
}

// The communicator of c, when it is still usable.
static llm_status usable(const llm_comm *c, nccl_impl **out, const char *fn) {
    *out = NULL;
    if (!c || !c->impl) return llm_fail(LLM_EINVAL, "nccl %s: NULL communicator", fn);
    nccl_impl *im = (nccl_impl *)c->impl;
    if (im->broken || !im->comm)
        return llm_fail(LLM_EBACKEND, "%snccl %s: the communicator failed or timed out earlier and is unusable; end "
                        "the job (llm_dist_abort)", im->who, fn);
    *out = im;
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// start / progress / wait

static llm_status nccl_dtype(llm_dtype dtype, ncclDataType_t *out, size_t *esize) {
    switch (dtype) {
    case LLM_F32: *out = ncclFloat32; *esize = 4; return LLM_OK;
    case LLM_BF16: *out = ncclBfloat16; *esize = 2; return LLM_OK;
    }
    return llm_fail(LLM_EINVAL, "nccl start: unknown dtype %d", (int)dtype);
}

// One span's collectives, inside the caller's group.
static llm_status issue_span(const llm_comm *c, nccl_impl *im, llm_comm_op op, const llm_comm_span *sp,
                             ncclDataType_t dt, size_t esize) {
    const int W = c->world_size, R = c->rank;
    const size_t n = sp->n;
    unsigned char *x = (unsigned char *)sp->ptr;
    if (n == 0) return LLM_OK; // the same on every rank: nothing to do anywhere
    switch (op) {
    case LLM_COMM_ALL_REDUCE_MEAN:
        NCCL_TRY_ASYNC(im->who, ncclAllReduce(x, x, n, dt, ncclAvg, im->comm, im->stream));
        return LLM_OK;
    case LLM_COMM_REDUCE_SCATTER_MEAN:
        if (n % (size_t)W == 0) { // equal parts: in place, this rank's part at x + R*m
            const size_t m = n / (size_t)W;
            NCCL_TRY_ASYNC(im->who, ncclReduceScatter(x, x + (size_t)R * m * esize, m, dt, ncclAvg, im->comm,
                                                      im->stream));
            return LLM_OK;
        }
        for (int r = 0; r < W; r++) {
            const size_t lo = llm_comm_part(n, r, W), hi = llm_comm_part(n, r + 1, W);
            if (hi == lo) continue;
            unsigned char *p = x + lo * esize;
            NCCL_TRY_ASYNC(im->who, ncclReduce(p, p, hi - lo, dt, ncclAvg, r, im->comm, im->stream));
        }
        return LLM_OK;
    case LLM_COMM_ALL_GATHER:
        if (n % (size_t)W == 0) {
            const size_t m = n / (size_t)W;
            NCCL_TRY_ASYNC(im->who, ncclAllGather(x + (size_t)R * m * esize, x, m, dt, im->comm, im->stream));
            return LLM_OK;
        }
        for (int r = 0; r < W; r++) {
            const size_t lo = llm_comm_part(n, r, W), hi = llm_comm_part(n, r + 1, W);
            if (hi == lo) continue;
            unsigned char *p = x + lo * esize;
            NCCL_TRY_ASYNC(im->who, ncclBroadcast(p, p, hi - lo, dt, r, im->comm, im->stream));
        }
        return LLM_OK;
    }
    return llm_fail(LLM_EINVAL, "nccl start: unknown op %d", (int)op);
}

// A slot for one more group (its done event created on first use).
static llm_status reserve_group(nccl_impl *im) {
    if (im->n_groups < im->cap_groups) return LLM_OK;
    const int cap = im->cap_groups ? 2 * im->cap_groups : 16;
    nccl_group *g = (nccl_group *)realloc(im->groups, (size_t)cap * sizeof *g);
    if (!g) return llm_fail(LLM_ENOMEM, "%snccl start: out of memory for %d groups", im->who, cap);
    im->groups = g;
    while (im->cap_groups < cap) {
        CUDA_TRY(cudaEventCreateWithFlags(&g[im->cap_groups].done, cudaEventDisableTiming));
        im->cap_groups++;
    }
    return LLM_OK;
}

static llm_status start_impl(const llm_comm *c, nccl_impl *im, llm_comm_op op, const llm_comm_span *spans,
                             int count, llm_dtype dtype, const char *what) {
    ncclDataType_t dt;
    size_t esize;
    LLM_TRY(nccl_dtype(dtype, &dt, &esize));
    if (op != LLM_COMM_ALL_REDUCE_MEAN && op != LLM_COMM_REDUCE_SCATTER_MEAN && op != LLM_COMM_ALL_GATHER)
        return llm_fail(LLM_EINVAL, "%snccl start (%s): unknown op %d", im->who, label(what), (int)op);
    if (count < 0 || (count > 0 && !spans))
        return llm_fail(LLM_EINVAL, "%snccl start (%s): %d spans at %p", im->who, label(what), count,
                        (const void *)spans);
    for (int i = 0; i < count; i++)
        if (spans[i].n > 0 && !spans[i].ptr)
            return llm_fail(LLM_EINVAL, "%snccl start (%s): span %d has %zu elements at NULL", im->who, label(what), i,
                            spans[i].n);

    const double t0 = llm_now_s(), deadline = t0 + c->timeout_s;
    // the previous group must be queued before another NCCL call
    LLM_TRY(settle(im, t0, deadline, im->n_groups ? im->groups[im->n_groups - 1].what : what));
    LLM_TRY(reserve_group(im));
    nccl_group *g = &im->groups[im->n_groups];
    snprintf(g->what, sizeof g->what, "%s", label(what));

    // the collectives read what the compute stream wrote so far
    CUDA_TRY(cudaEventRecord(im->ready, llm_cuda_stream));
    CUDA_TRY(cudaStreamWaitEvent(im->stream, im->ready, 0));

    im->n_groups++; // wait() covers it from now on
    NCCL_TRY(im->who, ncclGroupStart());
    llm_status s = LLM_OK;
    for (int i = 0; i < count && s == LLM_OK; i++) s = issue_span(c, im, op, &spans[i], dt, esize);
    const ncclResult_t r = ncclGroupEnd(); // always: the group depth is the thread's
    LLM_TRY(s);
    if (r == ncclInProgress) {
        im->launch_pending = 1; // settle() records the done event once NCCL has queued the kernels
        return LLM_OK;
    }
    LLM_TRY(nccl_check(r, im->who, "ncclGroupEnd", __FILE__, __LINE__));
    CUDA_TRY(cudaEventRecord(g->done, im->stream));
    return LLM_OK;
}

static llm_status nccl_start(llm_comm *c, llm_comm_op op, const llm_comm_span *spans, int count, llm_dtype dtype,
                             const char *what) {
    nccl_impl *im;
    LLM_TRY(usable(c, &im, "start"));
    const llm_status s = start_impl(c, im, op, spans, count, dtype, what);
    if (s == LLM_EBACKEND) break_comm(im);
    return s;
}

static llm_status nccl_progress(llm_comm *c) {
    nccl_impl *im;
    LLM_TRY(usable(c, &im, "progress"));
    const llm_status s = settle(im, 0.0, -1.0, im->n_groups ? im->groups[im->n_groups - 1].what : NULL);
    if (s == LLM_EBACKEND) break_comm(im);
    return s;
}

static llm_status wait_impl(const llm_comm *c, nccl_impl *im) {
    if (im->n_groups == 0) return LLM_OK;
    const double t0 = llm_now_s(), deadline = t0 + c->timeout_s;
    LLM_TRY(settle(im, t0, deadline, im->groups[im->n_groups - 1].what));
    // in order: the first group that does not complete is the one the message names
    for (int i = 0; i < im->n_groups; i++)
        LLM_TRY(poll_event(im, im->groups[i].done, t0, deadline, im->groups[i].what));
    // the groups ran in order on the communicator's stream: the last one's event covers them all
    CUDA_TRY(cudaStreamWaitEvent(llm_cuda_stream, im->groups[im->n_groups - 1].done, 0));
    im->n_groups = 0;
    return LLM_OK;
}

static llm_status nccl_wait(llm_comm *c) {
    nccl_impl *im;
    LLM_TRY(usable(c, &im, "wait"));
    const llm_status s = wait_impl(c, im);
    if (s == LLM_EBACKEND) break_comm(im);
    return s;
}

// ----------------------------------------------------------------------------
// blocking collectives on host memory

static llm_status reserve_stage(nccl_impl *im, size_t bytes) {
    if (bytes <= im->stage_bytes) return LLM_OK;
    // the buffers are idle: every host collective has completed (or broken the communicator)
    cuda_free_tracked(im->dev_stage);
    if (im->host_stage) (void)cudaFreeHost(im->host_stage);
    im->dev_stage = im->host_stage = NULL;
    im->stage_bytes = 0;
    LLM_TRY(cuda_malloc_tracked(&im->dev_stage, bytes));
    const cudaError_t err = cudaMallocHost(&im->host_stage, bytes);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        im->host_stage = NULL;
        return llm_fail(LLM_ENOMEM, "%scudaMallocHost of %zu bytes (NCCL staging) failed: %s", im->who, bytes,
                        cudaGetErrorString(err));
    }
    im->stage_bytes = bytes;
    return LLM_OK;
}

// root < 0: all-reduce (sum) of n doubles; otherwise broadcast of n bytes from root.
static llm_status host_collective(const llm_comm *c, nccl_impl *im, void *data, size_t n, int root,
                                  const char *what) {
    const size_t esize = root < 0 ? sizeof(double) : 1;
    const size_t total = n * esize;
    const int send = root < 0 || root == c->rank, recv = root < 0 || root != c->rank;
    const double t0 = llm_now_s(), deadline = t0 + c->timeout_s;
    LLM_TRY(settle(im, t0, deadline, what)); // a group of start() may still be being queued
    LLM_TRY(reserve_stage(im, total < STAGING_BYTES ? total : STAGING_BYTES));
    for (size_t off = 0; off < total; off += STAGING_BYTES) {
        const size_t bytes = total - off < STAGING_BYTES ? total - off : STAGING_BYTES;
        unsigned char *x = (unsigned char *)data + off;
        if (send) {
            memcpy(im->host_stage, x, bytes);
            CUDA_TRY(cudaMemcpyAsync(im->dev_stage, im->host_stage, bytes, cudaMemcpyHostToDevice, im->stream));
        }
        if (root < 0)
            NCCL_TRY_ASYNC(im->who, ncclAllReduce(im->dev_stage, im->dev_stage, bytes / esize, ncclFloat64, ncclSum,
                                                  im->comm, im->stream));
        else
            NCCL_TRY_ASYNC(im->who, ncclBroadcast(im->dev_stage, im->dev_stage, bytes, ncclUint8, root, im->comm,
                                                  im->stream));
        LLM_TRY(settle(im, t0, deadline, what)); // queued before the copy back is
        if (recv)
            CUDA_TRY(cudaMemcpyAsync(im->host_stage, im->dev_stage, bytes, cudaMemcpyDeviceToHost, im->stream));
        CUDA_TRY(cudaEventRecord(im->host_done, im->stream));
        LLM_TRY(poll_event(im, im->host_done, t0, deadline, what));
        if (recv) memcpy(x, im->host_stage, bytes);
    }
    return LLM_OK;
}

static llm_status nccl_all_reduce_sum_f64(llm_comm *c, double *x, size_t n, const char *what) {
    nccl_impl *im;
    LLM_TRY(usable(c, &im, "all_reduce_sum_f64"));
    if (n == 0) return LLM_OK;
    if (!x) return llm_fail(LLM_EINVAL, "%snccl all_reduce_sum_f64 (%s): NULL buffer", im->who, label(what));
    const llm_status s = host_collective(c, im, x, n, -1, what);
    if (s == LLM_EBACKEND) break_comm(im);
    return s;
}

static llm_status nccl_broadcast(llm_comm *c, void *bytes, size_t n, int root, const char *what) {
    nccl_impl *im;
    LLM_TRY(usable(c, &im, "broadcast"));
    if (root < 0 || root >= c->world_size)
        return llm_fail(LLM_EINVAL, "%snccl broadcast (%s): root %d is not a rank of %d", im->who, label(what), root,
                        c->world_size);
    if (n == 0) return LLM_OK;
    if (!bytes) return llm_fail(LLM_EINVAL, "%snccl broadcast (%s): NULL buffer", im->who, label(what));
    const llm_status s = host_collective(c, im, bytes, n, root, what);
    if (s == LLM_EBACKEND) break_comm(im);
    return s;
}

// ----------------------------------------------------------------------------
// creation and destruction

// A clean end when nothing is outstanding: ncclCommFinalize (waits, up to timeout_s, for the
// communicator to be quiescent) then ncclCommDestroy; ncclCommAbort otherwise.
static void finalize_comm(const llm_comm *c, nccl_impl *im) {
    ncclResult_t r = ncclCommFinalize(im->comm);
    const double deadline = llm_now_s() + c->timeout_s;
    ncclResult_t st = r;
    while (r == ncclSuccess || r == ncclInProgress) {
        if (ncclCommGetAsyncError(im->comm, &st) != ncclSuccess || st != ncclInProgress || llm_now_s() > deadline) break;
        nap();
    }
    if ((r == ncclSuccess || r == ncclInProgress) && st == ncclSuccess) (void)ncclCommDestroy(im->comm);
    else (void)ncclCommAbort(im->comm);
    im->comm = NULL;
}

static void nccl_destroy(llm_comm *c) {
    if (!c) return;
    nccl_impl *im = (nccl_impl *)c->impl;
    if (im) {
        if (im->comm) {
            // outstanding collectives are abandoned (comm.h), and a failed setup has nothing to finish
            if (im->ready_ok && !im->broken && im->n_groups == 0 && !im->launch_pending) finalize_comm(c, im);
            else (void)ncclCommAbort(im->comm);
            im->comm = NULL;
        }
        cuda_free_tracked(im->dev_stage);
        if (im->host_stage) (void)cudaFreeHost(im->host_stage);
        for (int i = 0; i < im->cap_groups; i++) (void)cudaEventDestroy(im->groups[i].done);
        free(im->groups);
        if (im->host_done) (void)cudaEventDestroy(im->host_done);
        if (im->ready) (void)cudaEventDestroy(im->ready);
        if (im->stream) (void)cudaStreamDestroy(im->stream);
        free(im);
    }
    free(c);
}

static llm_status setup(llm_comm *c, nccl_impl *im, const unsigned char id[LLM_COMM_ID_BYTES], int device) {
    CUDA_TRY(cudaSetDevice(device)); // NCCL binds the communicator to the current device
    CUDA_TRY(cudaStreamCreateWithFlags(&im->stream, cudaStreamNonBlocking));
    CUDA_TRY(cudaEventCreateWithFlags(&im->ready, cudaEventDisableTiming));
    CUDA_TRY(cudaEventCreateWithFlags(&im->host_done, cudaEventDisableTiming));

    ncclUniqueId uid;
    memcpy(&uid, id, sizeof uid);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0; // a rank that never joins must not hang this one: poll with a deadline
    const double t0 = llm_now_s(), deadline = t0 + c->timeout_s;
    ncclComm_t comm = NULL;
    const ncclResult_t r = ncclCommInitRankConfig(&comm, c->world_size, uid, c->rank, &config);
    im->comm = comm; // set by NCCL even when it goes on in the background; aborted by destroy on failure
    if (r != ncclInProgress) LLM_TRY(nccl_check(r, im->who, "ncclCommInitRankConfig", __FILE__, __LINE__));
    if (!im->comm) return llm_fail(LLM_EBACKEND, "%sNCCL communicator setup returned no communicator", im->who);
    for (;;) {
        ncclResult_t st = ncclSuccess;
        NCCL_TRY(im->who, ncclCommGetAsyncError(im->comm, &st));
        if (st == ncclSuccess) break;
        if (st != ncclInProgress) return async_fail(im, st, "NCCL communicator setup");
        const double t = llm_now_s();
        if (t > deadline)
            return llm_fail(LLM_EBACKEND,
                            "%swaited %.1f s in NCCL communicator setup; not every rank joined (are all %d ranks "
                            "running, each on its own GPU, with the same id?)",
                            im->who, t - t0, c->world_size);
        nap();
    }
    im->ready_ok = 1;
    return LLM_OK;
}

static const llm_comm_ops nccl_ops = {
    "nccl", nccl_start, nccl_progress, nccl_wait, nccl_all_reduce_sum_f64, nccl_broadcast, nccl_destroy,
};

static llm_status nccl_create(llm_comm **out, const unsigned char id[LLM_COMM_ID_BYTES], int rank, int world_size,
                              double timeout_s) {
    if (!out) return llm_fail(LLM_EINVAL, "nccl create: NULL output pointer");
    *out = NULL;
    if (!id) return llm_fail(LLM_EINVAL, "nccl create: NULL id");
    if (world_size < 1 || rank < 0 || rank >= world_size)
        return llm_fail(LLM_EINVAL, "nccl create: rank %d of %d is out of range", rank, world_size);
    if (!(timeout_s > 0)) // NaN too; +inf waits forever
        return llm_fail(LLM_EINVAL, "nccl create: timeout_s must be > 0 seconds, got %g", timeout_s);
    const int device = cuda_context_device();
    if (device < 0)
        return llm_fail(LLM_ESTATE, "rank %d of %d: the NCCL transport needs the CUDA backend initialised first "
                        "(llm_cuda_init)", rank, world_size);

    llm_comm *c = (llm_comm *)calloc(1, sizeof *c);
    nccl_impl *im = (nccl_impl *)calloc(1, sizeof *im);
    if (!c || !im) {
        free(c);
        free(im);
        return llm_fail(LLM_ENOMEM, "nccl create: out of memory");
    }
    c->ops = &nccl_ops;
    c->rank = rank;
    c->world_size = world_size;
    c->timeout_s = timeout_s;
    c->impl = im;
    snprintf(im->who, sizeof im->who, "rank %d of %d: ", rank, world_size);
    const llm_status s = setup(c, im, id, device);
    if (s != LLM_OK) {
        nccl_destroy(c); // aborts a communicator that did not finish its setup
        return s;
    }
    *out = c;
    return LLM_OK;
}

static llm_status nccl_make_id(unsigned char id[LLM_COMM_ID_BYTES]) {
    if (!id) return llm_fail(LLM_EINVAL, "nccl make_id: NULL id");
    ncclUniqueId uid;
    NCCL_TRY("", ncclGetUniqueId(&uid));
    memcpy(id, &uid, sizeof uid);
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// registration

static const llm_comm_factory nccl_factory = {"nccl", nccl_make_id, nccl_create};

extern "C" llm_status llm_cuda_register_nccl(void) { return llm_register_comm("cuda", &nccl_factory); }
