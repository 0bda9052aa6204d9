/*
 * comm.h — the collectives data parallelism needs, on a model's own buffers, behind one small
 * interface with one implementation per transport:
 *   "mpi"   host MPI (csrc/dist/comm_mpi.c): fp32 buffers in host memory (the CPU backend);
 *           non-blocking MPI collectives, so a layer's reduction overlaps the backward of the
 *           layers below it;
 *   "nccl"  NCCL (cuda/nccl.cu): device buffers (fp32 or bf16) of the CUDA backend; collectives
 *           on their own stream, ordered after the compute stream by an event, and the compute
 *           stream made to wait for them by wait().
 * What is reduced when is decided by the plan (csrc/dist/dist.c), not here: a transport only moves
 * data.
 *
 * Parts. A collective over x[0..n) splits it among the W ranks: rank r's part is
 * [llm_comm_part(n, r, W), llm_comm_part(n, r + 1, W)), for reduce-scatter and all-gather alike.
 * Mean: the sum over the ranks divided by W (exact when W is a power of two).
 *
 * Asynchrony. start() returns once the collectives are issued. Until wait() returns, the caller
 * must neither read nor write the spans (on CUDA: issue no work on the compute stream that
 * touches them — wait() orders the compute stream after the collectives). progress() lets a
 * transport that needs host calls to advance (MPI) do so; it never blocks.
 *
 * Failures. wait() and the blocking calls give up after the communicator's timeout_s and
 * return LLM_EBACKEND with a message naming this rank and the collective (its `what` label,
 * e.g. "reduce-scatter of layer 3's gradients"); the caller then ends the job (llm_dist_abort)
 * instead of hanging. A communicator that timed out or failed is unusable afterwards.
 */
#ifndef LLMPY_COMM_H
#define LLMPY_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "core/llmpy.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum llm_comm_op {
    LLM_COMM_ALL_REDUCE_MEAN = 0,     // every rank: x <- mean over ranks of x
    LLM_COMM_REDUCE_SCATTER_MEAN = 1, // rank r: its part of x <- mean over ranks of that part; the rest of x
                                      // is left unspecified (scratch)
    LLM_COMM_ALL_GATHER = 2,          // every rank: part r of x <- rank r's part r
} llm_comm_op;

// Spans of reduce-scatter and all-gather hold at most this many elements (the plan cuts longer
// slices into pieces), so that every transport splits a span into the same parts; all-reduce
// spans may be of any length.
#define LLM_COMM_MAX_SPLIT_SPAN ((size_t)1 << 22)

// n elements of the collective's dtype at ptr (host memory for "mpi", device memory for "nccl").
typedef struct llm_comm_span {
    void *ptr;
    size_t n;
} llm_comm_span;

typedef struct llm_comm llm_comm;

typedef struct llm_comm_ops {
    const char *name; // "mpi", "nccl"
    // Starts op on every span (one group: they complete together as far as wait() is concerned).
    // Each span is split into parts independently. `what` names the group in error messages.
    llm_status (*start)(llm_comm *c, llm_comm_op op, const llm_comm_span *spans, int count, llm_dtype dtype,
                        const char *what);
    // Advances outstanding collectives without blocking (a no-op where the transport progresses
    // by itself).
    llm_status (*progress)(llm_comm *c);
    // Until every started collective is complete, or the timeout (CUDA: the host polls the
    // collectives' events to enforce the timeout, and the compute stream is then ordered after them).
    llm_status (*wait)(llm_comm *c);
    // Blocking: x[0..n) host doubles <- their sum over the ranks.
    llm_status (*all_reduce_sum_f64)(llm_comm *c, double *x, size_t n, const char *what);
    // Blocking: bytes[0..n) of rank `root` copied to every rank (host memory).
    llm_status (*broadcast)(llm_comm *c, void *bytes, size_t n, int root, const char *what);
    // Frees the communicator (any outstanding collective is abandoned).
    void (*destroy)(llm_comm *c);
} llm_comm_ops;

struct llm_comm {
    const llm_comm_ops *ops;
    int rank, world_size;
    double timeout_s; // wait() and the blocking calls give up after this long
    void *impl;       // the transport's own state
};

// Start of rank r's part of n elements split W ways (r = W gives n).
static inline size_t llm_comm_part(size_t n, int r, int W) { return (size_t)((uint64_t)n * (uint64_t)r / (uint64_t)W); }

// ----------------------------------------------------------------------------
// transports by device: the core has "cpu" -> MPI (when built with it); the CUDA backend
// registers "cuda" -> NCCL when it initialises (cuda/nccl.cu), in the same way as its op tables.

#define LLM_COMM_ID_BYTES 128 // a transport's rendezvous id (ncclUniqueId is 128 bytes)

typedef struct llm_comm_factory {
    const char *name; // the transport: "nccl"
    // Rank 0 makes the id that every rank passes to create() (it travels through MPI, or a file).
    llm_status (*make_id)(unsigned char id[LLM_COMM_ID_BYTES]);
    // Collective over the ranks: joins the communicator of `id` as `rank` of `world_size`.
    llm_status (*create)(llm_comm **out, const unsigned char id[LLM_COMM_ID_BYTES], int rank, int world_size,
                         double timeout_s);
} llm_comm_factory;

// Registers the transport for models on `device` ("cuda"); replaces an earlier registration.
llm_status llm_register_comm(const char *device, const llm_comm_factory *factory);
// The transport registered for `device`, or NULL.
const llm_comm_factory *llm_comm_factory_for(const char *device);

#ifdef __cplusplus
}
#endif
#endif // LLMPY_COMM_H
