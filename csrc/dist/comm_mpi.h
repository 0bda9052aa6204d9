/*
 * comm_mpi.h — creating the "mpi" transport of comm.h (comm_mpi.c). Internal to the core: the
 * process group (dist.c) creates it over its MPI communicator.
 */
#ifndef LLMPY_COMM_MPI_H
#define LLMPY_COMM_MPI_H

#include "dist/comm.h"

// A communicator over a duplicate of *(MPI_Comm *)mpi_comm (errors returned, not fatal);
// LLM_EUNSUPPORTED in a build without MPI. worker: 1 runs the collectives of start() on a
// communication thread (comm_mpi_worker.c; needs MPI_THREAD_MULTIPLE), 0 as non-blocking MPI.
llm_status comm_mpi_create(llm_comm **out, const void *mpi_comm, double timeout_s, int worker);

// ----------------------------------------------------------------------------
// the communication thread (comm_mpi_worker.c), for comm_mpi.c

typedef struct mpi_worker mpi_worker;
// Starts the thread over its own duplicate of *(MPI_Comm *)mpi_comm.
llm_status mpi_worker_create(mpi_worker **out, const void *mpi_comm, int rank, int world_size);
// Queues one piece (comm.h's op on x[0..n), n small enough for int counts); returns at once.
llm_status mpi_worker_start(mpi_worker *w, llm_comm_op op, float *x, size_t n, const char *what);
// A failure of the thread, if any (never blocks).
llm_status mpi_worker_check(mpi_worker *w);
// Until the queue is done, at most timeout_s (then LLM_EBACKEND naming the piece in progress).
llm_status mpi_worker_wait(mpi_worker *w, double timeout_s);
// Pieces queued or running.
int mpi_worker_pending(mpi_worker *w);
// Stops and joins the thread when it is idle; a thread stuck in a collective is left behind.
void mpi_worker_destroy(mpi_worker *w);

#endif // LLMPY_COMM_MPI_H
