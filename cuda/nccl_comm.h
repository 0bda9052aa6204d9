/*
 * nccl_comm.h — the CUDA backend's NCCL transport (cuda/nccl.cu), the "nccl" implementation of
 * csrc/dist/comm.h. Usable from C and C++; no CUDA or NCCL headers. (Not named nccl.h: that name is
 * NCCL's own header.)
 *
 * Built only when CMake finds NCCL (option LLMPY_NCCL), which then defines LLMPY_HAVE_NCCL for the
 * CUDA backend's sources: llm_cuda_init() calls llm_cuda_register_nccl() under that definition.
 */
#ifndef LLMPY_CUDA_NCCL_COMM_H
#define LLMPY_CUDA_NCCL_COMM_H

#include "dist/comm.h"

#ifdef __cplusplus
extern "C" {
#endif

// Registers the NCCL transport for models on device "cuda" (llm_register_comm). Its
// communicators drive the GPU the CUDA backend was initialised on, so create() needs
// llm_cuda_init() first (LLM_ESTATE otherwise); registering needs nothing.
llm_status llm_cuda_register_nccl(void);

#ifdef __cplusplus
}
#endif
#endif // LLMPY_CUDA_NCCL_COMM_H
