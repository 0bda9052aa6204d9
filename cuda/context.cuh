/*
 * context.cuh — the functions of context.cu beyond common.cuh's scratch: initialisation of the
 * device, stream and handles, and device memory with accounting.
 */
#ifndef LLMPY_CUDA_CONTEXT_CUH
#define LLMPY_CUDA_CONTEXT_CUH

#include "common.cuh"
#include "cublas_common.cuh"

// Selects the device, creates the stream, the cuBLAS/cuBLASLt handles and the workspace.
// Idempotent for the same device; LLM_EINVAL for another device once initialised,
// LLM_EUNSUPPORTED when there is no CUDA device.
llm_status cuda_context_init(int device);
// The initialised device, or -1.
int cuda_context_device(void);

// cudaMalloc with accounting (LLM_ENOMEM when the device is full). Not zero-filled.
llm_status cuda_malloc_tracked(void **out, size_t bytes);
void cuda_free_tracked(void *p);
// Bytes llmpy holds now and at most so far (NULL pointers are skipped).
void cuda_memory_stats(size_t *current, size_t *peak);

#endif // LLMPY_CUDA_CONTEXT_CUH
