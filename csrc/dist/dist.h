/*
 * dist.h — data-parallel training across processes: the process group (dist.c) and the model
 * across ranks — the collective plan, gradient averaging, ZeRO-1 (dist_plan.c).
 *
 * Processes are started by an MPI launcher (`mpirun -np N ...`, or a scheduler's MPI launcher);
 * llm_dist_init() reads the launch from the environment. GPU ranks may also be started by any
 * launcher without MPI: LLMPY_RANK / LLMPY_WORLD_SIZE (or torchrun's RANK / WORLD_SIZE) announce
 * them, NCCL carries everything and its id travels through a file in LLMPY_DIST_DIR (the CUDA
 * backend must be initialised first). A single process needs no MPI and no launcher: it is rank
 * 0 of 1 and every collective below is a no-op (or a local operation).
 *
 * Every rank holds the whole model. The gradients are averaged over the ranks by the collective
 * plan, layer by layer while the backward goes on; with ZeRO-1 (zero_stage 1) the AdamW moments
 * are sharded instead: the gradients are reduce-scattered, each rank updates its part of every
 * slice of the parameters with its part of the moments, and the parameters are all-gathered.
 * Checkpoints always hold the full optimizer state.
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

#include "core/llmpy.h"

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
// Ranks an MPI launcher announced in the environment: 1 when not launched by an MPI launcher,
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

// Seconds a collective waits for the other ranks before it gives up (LLMPY_DIST_TIMEOUT, default
// 90): the error names this rank and the collective, and the caller ends the job.
double llm_dist_timeout(void);

// Collectives on host memory; each gives up after llm_dist_timeout() (LLM_EBACKEND).
// timeout_s > 0: wait at most that long instead (a barrier while one rank prepares data).
llm_status llm_dist_barrier(double timeout_s);
// x[0..n) <- the sum over ranks of x[0..n), in place (metrics: losses, flags).
llm_status llm_dist_all_reduce_sum_f64(double *x, size_t n);
// buf[0..n) of rank `root` copied to every rank.
llm_status llm_dist_broadcast(void *buf, size_t n, int root);

// ----------------------------------------------------------------------------
// the model across ranks (dist_plan.c)
//
// The collective plan: the gradient buffer is reduced in buckets, in the order the backward
// finishes them — layer L-1, ..., layer 0 (each: its slice of the 12 per-layer tensors), then
// wte, wpe, lnfw, lnfb after the encoder backward (wte gets gradients from the lm_head and the
// encoder). Each (tensor, layer) slice is cut into pieces of at most LLM_COMM_MAX_SPLIT_SPAN
// elements; a rank's ZeRO-1 shard is its part of every piece (comm.h's split), so every rank
// owns 1/N of every slice. The optimizer step is llm_step() for one process and many alike
// (gpt2.c): the plan only supplies the reduction before it, the shard it updates, the sum of
// the gradient norm over the ranks and the all-gather after it.

// Collective. Makes m one replica of a data-parallel model (idempotent with the same arguments):
// checks that every rank holds the same model shape, device, zero_stage and overlap (LLM_EINVAL
// naming the first rank that differs), copies rank 0's parameters to every rank and sets up the
// plan and its transport (MPI for CPU models, NCCL for CUDA ones). From then on llm_step()
// averages the gradients over the ranks (zero_stage 0), or reduce-scatters them, updates this
// rank's shard — whose AdamW moments are all it keeps — and all-gathers the parameters
// (zero_stage 1). overlap 1: a backward with sync (llm_dist_backward) starts each bucket's
// reduction as soon as its gradients are final, while the backward goes on below; overlap 0:
// llm_step() starts them all (the same collectives in the same order: identical results).
// With one process nothing moves and the step is the plain one.
llm_status llm_dist_attach(llm_model *m, int zero_stage, int overlap);
// -1 when m is not attached, else its zero_stage.
int llm_dist_zero_stage(const llm_model *m);
// The backward of the last micro-step before llm_step(), with sync = 1: the reductions start as
// the backward finishes each bucket (when attached with overlap). sync = 0, or llm_backward():
// the gradients only accumulate, and llm_step() reduces them. After a backward with sync, the
// next backward needs an llm_step() or llm_zero_grad() first (LLM_ESTATE).
llm_status llm_dist_backward(llm_model *m, float loss_scale, int sync);
// Collective. Writes the training state with the FULL moments (llm_model_save_state's file, which
// resumes on any number of ranks and either stage): zero_stage 1 gathers the shards on rank 0;
// rank 0 writes, the other ranks write nothing (tag: as llm_model_save_state, read on rank 0).
// Not attached: llm_model_save_state.
llm_status llm_dist_save_state(llm_model *m, const char *path, const char *json, const llm_state_tag *tag);
// Seconds this rank's training thread has spent in the plan's communication since attach:
// starting, advancing and waiting for collectives — what did not overlap with computation.
double llm_dist_comm_seconds(const llm_model *m);
// This rank's ZeRO-1 shard as (start, length) ranges of the flat parameter buffer: writes up to
// max of them (either array may be NULL) and returns how many there are (zero_stage 0: one range,
// the whole buffer; not attached: 0).
size_t llm_dist_shard(const llm_model *m, size_t *starts, size_t *lens, size_t max);

#ifdef __cplusplus
}
#endif
#endif // LLMPY_DIST_H
