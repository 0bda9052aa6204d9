/*
 * comm_mpi_worker.c — the MPI transport's communication thread: the gradients' collectives run
 * as blocking MPI calls on a thread of their own, so the training thread only queues them and
 * goes on with the backward.
 *
 * Why a thread: Open MPI runs non-blocking collectives (libnbc) through schedules that advance
 * only inside MPI calls and, on shared memory, take twice as long as the blocking "tuned" ones
 * (2 ranks, 498 MB of fp32 gradients in 16 MB pieces: MPI_Ireduce_scatter alone ~530 ms,
 * MPI_Reduce_scatter + MPI_Allgatherv ~240 ms, on the 2-core machine of dev/bench/RESULTS.md).
 * A thread running the blocking calls gets the fast algorithms and advances them while the
 * training thread computes. It needs MPI_THREAD_MULTIPLE (dist.c asks for it); comm_mpi.c falls
 * back to the non-blocking calls when MPI does not offer it.
 *
 * Jobs run in queue order on the worker's own communicator, which no other thread uses, so
 * every rank runs them in the same order. A job is one piece (at most a few million floats):
 *   reduce-scatter mean  MPI_Reduce_scatter into a scratch of this rank's part, then part = it / W
 *   all-gather           MPI_Allgatherv(IN_PLACE)
 *   all-reduce mean      the two above, in that order (the values a ZeRO-1 shard gets)
 * The caller's wait() blocks until the queue is empty, at most timeout_s; a blocking MPI call
 * that never returns (a stopped peer) then leaves the thread behind, and the caller ends the job.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist/comm.h"
#include "dist/comm_mpi.h"
#include "core/common.h"

#ifdef LLMPY_HAVE_MPI
#include <mpi.h>

#define WHAT_BYTES 96

typedef struct job {
    llm_comm_op op;
    float *ptr;
    size_t n;
    char what[WHAT_BYTES];
} job;

struct mpi_worker {
    MPI_Comm comm; // the worker's own
    int rank, W;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t work, done; // a job was queued / the queue ran dry (or failed)
    job *queue;                // ring buffer of cap jobs
    size_t head, count, cap;
    int busy, stop, failed;
    char running[WHAT_BYTES]; // the job in progress, for a timeout's message
    char error[512];          // the worker's failure, reported by the next call
    float *scratch;           // this rank's part of a reduce-scatter
    size_t scratch_n;
    int *counts;              // (2W) counts, displacements
};

static int run_piece(mpi_worker *w, const job *j) {
    const int W = w->W, r = w->rank;
    int *displs = w->counts + W;
    for (int k = 0; k < W; k++) {
        displs[k] = (int)llm_comm_part(j->n, k, W);
        w->counts[k] = (int)(llm_comm_part(j->n, k + 1, W) - llm_comm_part(j->n, k, W));
    }
    int rc = MPI_SUCCESS;
    if (j->op != LLM_COMM_ALL_GATHER) {
        const size_t mine = (size_t)w->counts[r];
        if (mine + 1 > w->scratch_n) {
            float *s = realloc(w->scratch, (mine + 1) * sizeof(float));
            if (!s) return MPI_ERR_NO_MEM;
            w->scratch = s;
            w->scratch_n = mine + 1;
        }
        rc = MPI_Reduce_scatter(j->ptr, w->scratch, w->counts, MPI_FLOAT, MPI_SUM, w->comm);
        if (rc != MPI_SUCCESS) return rc;
        float *dst = j->ptr + displs[r];
        for (size_t i = 0; i < mine; i++) dst[i] = w->scratch[i] / (float)W;
    }
    if (j->op != LLM_COMM_REDUCE_SCATTER_MEAN)
        rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, j->ptr, w->counts, displs, MPI_FLOAT, w->comm);
    return rc;
}

static void *worker_main(void *arg) {
    mpi_worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->stop && w->count == 0) pthread_cond_wait(&w->work, &w->mu);
        if (w->stop && w->count == 0) break;
        job j = w->queue[w->head];
        w->head = (w->head + 1) % w->cap;
        w->count--;
        w->busy = 1;
        snprintf(w->running, sizeof w->running, "%s", j.what);
        pthread_mutex_unlock(&w->mu);
        const int rc = run_piece(w, &j);
        pthread_mutex_lock(&w->mu);
        w->busy = 0;
        if (rc != MPI_SUCCESS && !w->failed) {
            char msg[MPI_MAX_ERROR_STRING];
            int len = 0;
            if (rc == MPI_ERR_NO_MEM) len = snprintf(msg, sizeof msg, "out of memory");
            else MPI_Error_string(rc, msg, &len);
            snprintf(w->error, sizeof w->error, "rank %d of %d: MPI failed in %s: %.*s", w->rank, w->W, j.what, len,
                     msg);
            w->failed = 1;
            w->count = 0; // what is queued behind it cannot run in step with the other ranks
        }
        if (w->count == 0) pthread_cond_broadcast(&w->done);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

llm_status mpi_worker_create(mpi_worker **out, const void *mpi_comm, int rank, int W) {
    *out = NULL;
    mpi_worker *w = calloc(1, sizeof *w);
    if (!w) return llm_fail(LLM_ENOMEM, "out of memory (MPI worker)");
    w->rank = rank;
    w->W = W;
    w->cap = 256;
    w->queue = malloc(w->cap * sizeof *w->queue);
    w->counts = malloc(2 * (size_t)W * sizeof(int));
    w->comm = MPI_COMM_NULL;
    if (!w->queue || !w->counts) {
        free(w->queue);
        free(w->counts);
        free(w);
        return llm_fail(LLM_ENOMEM, "out of memory (MPI worker)");
    }
    int rc = MPI_Comm_dup(*(const MPI_Comm *)mpi_comm, &w->comm);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(w->comm, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS) {
        free(w->queue);
        free(w->counts);
        free(w);
        return llm_fail(LLM_EBACKEND, "rank %d: MPI_Comm_dup failed for the communication thread", rank);
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->work, NULL);
    pthread_cond_init(&w->done, NULL);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        MPI_Comm_free(&w->comm);
        free(w->queue);
        free(w->counts);
        free(w);
        return llm_fail(LLM_EBACKEND, "rank %d: cannot start the communication thread", rank);
    }
    w->started = 1;
    *out = w;
    return LLM_OK;
}

llm_status mpi_worker_start(mpi_worker *w, llm_comm_op op, float *x, size_t n, const char *what) {
    pthread_mutex_lock(&w->mu);
    if (w->failed) {
        llm_status s = llm_fail(LLM_EBACKEND, "%s", w->error);
        pthread_mutex_unlock(&w->mu);
        return s;
    }
    if (w->count == w->cap) { // grow the ring, keeping the order
        job *q = malloc(2 * w->cap * sizeof *q);
        if (!q) {
            pthread_mutex_unlock(&w->mu);
            return llm_fail(LLM_ENOMEM, "out of memory (MPI worker queue)");
        }
        for (size_t i = 0; i < w->count; i++) q[i] = w->queue[(w->head + i) % w->cap];
        free(w->queue);
        w->queue = q;
        w->head = 0;
        w->cap *= 2;
    }
    job *j = &w->queue[(w->head + w->count) % w->cap];
    j->op = op;
    j->ptr = x;
    j->n = n;
    snprintf(j->what, sizeof j->what, "%s", what);
    w->count++;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->mu);
    return LLM_OK;
}

llm_status mpi_worker_check(mpi_worker *w) {
    pthread_mutex_lock(&w->mu);
    llm_status s = w->failed ? llm_fail(LLM_EBACKEND, "%s", w->error) : LLM_OK;
    pthread_mutex_unlock(&w->mu);
    return s;
}

llm_status mpi_worker_wait(mpi_worker *w, double timeout_s) {
    struct timespec t0, deadline;
    clock_gettime(CLOCK_REALTIME, &t0);
    deadline = t0;
    if (timeout_s < 1e9) {
        deadline.tv_sec += (time_t)timeout_s;
        deadline.tv_nsec += (long)((timeout_s - (double)(time_t)timeout_s) * 1e9);
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&w->mu);
    llm_status s = LLM_OK;
    while (!w->failed && (w->count > 0 || w->busy)) {
        int rc = timeout_s < 1e9 ? pthread_cond_timedwait(&w->done, &w->mu, &deadline)
                                 : pthread_cond_wait(&w->done, &w->mu);
        if (rc == ETIMEDOUT && (w->count > 0 || w->busy)) {
            w->failed = 1;
            snprintf(w->error, sizeof w->error,
                     "rank %d of %d: waited %.0f s in %s (MPI) without the other ranks completing it: one is "
                     "stopped, stuck or dead (LLMPY_DIST_TIMEOUT=%g s)",
                     w->rank, w->W, timeout_s, w->busy ? w->running : w->queue[w->head].what, timeout_s);
            break;
        }
    }
    if (w->failed) s = llm_fail(LLM_EBACKEND, "%s", w->error);
    pthread_mutex_unlock(&w->mu);
    return s;
}

int mpi_worker_pending(mpi_worker *w) {
    pthread_mutex_lock(&w->mu);
    const int n = (int)w->count + w->busy;
    pthread_mutex_unlock(&w->mu);
    return n;
}

void mpi_worker_destroy(mpi_worker *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    const int idle = !w->busy;
    w->stop = 1;
    w->count = 0;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->mu);
    if (!idle) return; // stuck in a collective that will never end: the process is ending the job
    pthread_join(w->thread, NULL);
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Comm_free(&w->comm);
    pthread_cond_destroy(&w->work);
    pthread_cond_destroy(&w->done);
    pthread_mutex_destroy(&w->mu);
    free(w->queue);
    free(w->counts);
    free(w->scratch);
    free(w);
}

#endif // LLMPY_HAVE_MPI
