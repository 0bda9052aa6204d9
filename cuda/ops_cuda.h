/*
 * ops_cuda.h — the CUDA backend's C entry points (usable from C and C++; no CUDA headers).
 *
 * llm_cuda_init() must come first: it selects the GPU, creates the stream and the cuBLAS(Lt)
 * handles, and registers the two op tables with the core under ("cuda", "fp32") and
 * ("cuda", "bf16"). Every op runs on one stream (llm_cuda_get_stream()); ops are asynchronous
 * except the memory copies, norm_squared and sum_f32 (their results are host values), and
 * encoder_backward when it is not given the token ids on the host; those synchronise it.
 *
 * Precision: "bf16" is the fast path (tensor cores, fp32 accumulation, fp32 master weights) and
 * the default. "fp32" exists for parity with the CPU backend and the PyTorch oracle, not for
 * speed: its GEMMs use CUBLAS_COMPUTE_32F on fp32 operands without TF32, so no tensor cores, and
 * its flash attention runs on CUDA cores.
 *
 * Errors. A kernel that faults (illegal address, trap, ...) is reported asynchronously, by
 * whichever later call synchronises or launches; such messages end with a hint to set
 * LLMPY_CUDA_SYNC=1. Environment, read once by llm_cuda_init():
 *   LLMPY_CUDA_SYNC=1         after every op of the tables, synchronise the stream and check:
 *                             a failure is LLM_EBACKEND "CUDA error in op <name>: ..." naming the
 *                             op that failed (slower; for debugging).
 *   LLMPY_CUDA_FAULT_OP=<op>  for tests only: the op of that llm_ops member name (e.g.
 *                             layernorm_forward) first launches a kernel that traps, which kills
 *                             the CUDA context of the process.
 *
 * Attention: "flash" (the default: cuda/flash_attention.cu, head sizes 64 and 128; other head
 * sizes fall back to the reference automatically, decided per call from C/NH) or "reference"
 * (cuda/attention.cu: batched cuBLAS products + a causal-softmax kernel, saves (B,NH,T,T)
 * probabilities). The choice decides what the forward saves, so switch only between a backward
 * and the next forward (the model re-sizes its state buffers at every forward).
 */
#ifndef LLMPY_OPS_CUDA_H
#define LLMPY_OPS_CUDA_H

#include <stddef.h>

#include "core/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

// The two op tables (name "cuda", host_memory 0, lm_head_in_place 1): fp32 (parity, see above),
// and bf16 with fp32 master weights (speed).
extern const llm_ops llm_cuda_ops_fp32;
extern const llm_ops llm_cuda_ops_bf16;

// Selects GPU `device`, creates the stream, handles and workspace, and registers both tables.
// Idempotent for the same device; LLM_EINVAL for another device once initialised;
// LLM_EUNSUPPORTED when there is no driver or GPU.
llm_status llm_cuda_init(int device);
// "flash" (default) or "reference"; LLM_EINVAL for any other name.
llm_status llm_cuda_set_attention(const char *name);
const char *llm_cuda_attention(void);
// Number of usable GPUs; 0 when there is no driver or GPU (never fails).
int llm_cuda_device_count(void);
// The same count; when it is 0, why[0..n) receives the reason, starting with "no driver:",
// "no device:" or "driver error:" (context.cu). Touches no GPU state beyond the driver's probe.
int llm_cuda_probe(char *why, size_t n);
// Name of the initialised device (device 0 before llm_cuda_init), NUL-terminated, truncated to n.
llm_status llm_cuda_device_name(char *buf, size_t n);
// Waits for all work on the backend's stream; reports asynchronous errors. OK before init.
llm_status llm_cuda_synchronize(void);
// The backend's cudaStream_t (NULL before init), e.g. for NCCL.
void *llm_cuda_get_stream(void);
// *used_peak: the most device memory llmpy held at once (tables' allocations, scratch,
// workspace); *total: the device's memory. LLM_ESTATE before llm_cuda_init.
llm_status llm_cuda_memory(size_t *used_peak, size_t *total);

#ifdef __cplusplus
}
#endif
#endif // LLMPY_OPS_CUDA_H
