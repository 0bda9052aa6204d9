/*
 * dist.h — data-parallel training across processes: MPI bootstrap, gradient averaging, ZeRO-1.
 *
 * Processes are started by an MPI launcher (`mpirun -np N ...`, or a scheduler's MPI launcher);
 * llm_dist_init() reads the launch from the environment. A single process needs no MPI and no
 * launcher: it is rank 0 of 1 and every collective below is a no-op (or a local operation).
 *
 * Every rank holds the whole model. After each backward the gradients are averaged over the
 * ranks; with ZeRO-1 (zero_stage 1) the AdamW moments are sharded instead: the gradients are
 * reduce-scattered, each rank updates its slice of the parameters with its slice of the moments,
 * and the parameters are all-gathered. Checkpoints always hold the full optimizer state.
 *
 * Rules:
 *  - Functions marked "collective" must be called by every rank, in the same order.
 *  - The MPI state is the process's (MPI itself is process-global): llm_dist_init() once,
 *    llm_dist_finalize() once at a clean end. Library functions return statuses; only
 *    llm_dist_abort() ends the process (for main() and exception hooks).
 *  - Built without MPI (LLMPY_MPI=OFF or MPI not found), llm_dist_init() refuses a launch with
 *    several ranks instead of silently training N independent copies.
 */
#ifndef LLMPY_DIST_H
#define LLMPY_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "llmpy.h"

#ifdef __cplusplus
extern "C" {
#endif

// ----------------------------------------------------------------------------
// the process group

typedef struct llm_dist_info {
    int rank;        // 0 .. world_size-1
    int world_size;  // number of processes
    int local_rank;  // index among the processes on this machine (-> GPU index)
    int local_size;  // processes on this machine
    int mpi;         // 1 when MPI was initialised (launched by an MPI launcher in an MPI build)
} llm_dist_info;

// Initialises from the launcher's environment (idempotent; collective when launched with MPI).
// LLM_EUNSUPPORTED when the launcher started several ranks but this build has no MPI.
llm_status llm_dist_init(llm_dist_info *out);
// The current process group (rank 0 of 1 before llm_dist_init).
llm_dist_info llm_dist_get(void);
// Ranks the launcher announced in the environment: 1 when not launched by an MPI launcher,
// -1 when launched with several ranks of unknown number. *var (may be NULL) receives the
// variable that told (e.g. "OMPI_COMM_WORLD_SIZE"), or NULL.
int llm_dist_launched_ranks(const char **var);
// This process's index among the ranks on its machine (the GPU it takes): the group's once
// llm_dist_init ran, before that what the launcher announced in the environment (Open MPI,
// MPICH/Intel MPI, MVAPICH, Slurm), 0 without a launcher. Never joins the group.
int llm_dist_local_rank(void);
// Collective. Clean shutdown: waits at most timeout_s seconds for every rank to arrive, then
// finalises MPI. If the others do not arrive (one is still training or is stuck), this rank
// aborts the whole job (exit code 1) instead of hanging. No-op without MPI.
llm_status llm_dist_finalize(double timeout_s);
// Ends every rank of the job with exit code `code` (MPI_Abort); without MPI: exit(code).
// Only for main() and for exception/signal hooks: a failing rank must not leave the others
// waiting in a collective.
void llm_dist_abort(int code);

// Collectives on host memory.
llm_status llm_dist_barrier(void);
// x[0..n) <- the sum over ranks of x[0..n), in place (metrics: losses, flags).
llm_status llm_dist_all_reduce_sum_f64(double *x, size_t n);
// buf[0..n) of rank `root` copied to every rank.
llm_status llm_dist_broadcast(void *buf, size_t n, int root);

// ----------------------------------------------------------------------------
// the model across ranks

// Collective. Checks that every rank holds the same model shape (configuration, parameter
// count) and zero_stage (LLM_EINVAL naming the first rank that differs), then copies rank 0's
// parameters to every rank.
llm_status llm_dist_setup_model(llm_model *m, int zero_stage);
// Collective. Gradients <- their mean over the ranks (in place).
llm_status llm_dist_all_reduce_grads(llm_model *m);

// ----------------------------------------------------------------------------
// ZeRO-1: AdamW moments sharded across ranks

typedef struct llm_zero llm_zero;

// The shard: the flat parameter buffer is cut into chunks of 2^22 floats (every collective
// moves one chunk) and rank r owns [c0 + n*r/W, c0 + n*(r+1)/W) of each chunk [c0, c0 + n).
llm_status llm_zero_create(llm_zero **out, llm_model *m);
void llm_zero_free(llm_zero *z);
// This rank's parts of the flat buffer: writes up to max (start, length) pairs (either array may
// be NULL) and returns how many there are.
size_t llm_zero_parts(const llm_zero *z, size_t *starts, size_t *lens, size_t max);
// Collective. One AdamW step of the data-parallel model, the same arguments and result as
// llm_step(): reduce-scatter (mean) of the gradients, the global gradient norm, clipping,
// AdamW on this rank's shard, all-gather of the parameters. After it, this rank's parts of the
// gradients hold the averaged gradients (the rest is scratch). If the model holds
// full moments (llm_model_load_state after a checkpoint), this rank's shard is taken from them
// and the full buffers are released.
llm_status llm_zero_step(llm_zero *z, float lr, float beta1, float beta2, float eps, float weight_decay,
                         float grad_clip, float *norm);
// Collective. Writes the training state with the FULL moments (the file llm_model_save_state
// writes; it resumes on any number of ranks): the shards are gathered on rank 0, rank 0 writes,
// the other ranks write nothing.
llm_status llm_zero_save_state(llm_zero *z, const char *path, const char *json);

#ifdef __cplusplus
}
#endif
#endif // LLMPY_DIST_H
