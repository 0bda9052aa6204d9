/*
 * cublas_common.cuh — the cuBLAS and cuBLASLt handles the backend shares (context.cu creates
 * them on llm_cuda_stream) and a return-code check that becomes an llm_status.
 *
 * Used by matmul.cu (cuBLASLt, with the bias epilogue) and attention.cu (batched cuBLAS
 * products). Precision: both use CUBLAS_COMPUTE_32F (fp32 accumulation); with fp32 operands
 * this never uses TF32, so the fp32 mode matches the CPU backend closely.
 */
#ifndef LLMPY_CUDA_CUBLAS_COMMON_CUH
#define LLMPY_CUDA_CUBLAS_COMMON_CUH

#include <cublasLt.h>
#include <cublas_v2.h>

#include "common.cuh"

// ----------------------------------------------------------------------------
// handles (context.cu)

extern cublasHandle_t llm_cuda_cublas;       // bound to llm_cuda_stream
extern cublasLtHandle_t llm_cuda_cublaslt;   // stream passed per call
extern void *llm_cuda_cublaslt_workspace;    // device memory for cuBLASLt's algorithms
extern size_t llm_cuda_cublaslt_workspace_bytes;

// ----------------------------------------------------------------------------
// checks

static inline llm_status cublas_check(cublasStatus_t st, const char *what, const char *file, int line) {
    if (st == CUBLAS_STATUS_SUCCESS) return LLM_OK;
    return llm_fail(LLM_EBACKEND, "cuBLAS error in %s (%s:%d): %s (%d)", what, file, line,
                    cublasGetStatusString(st), (int)st);
}
#define CUBLAS_TRY(call)                                                                \
    do {                                                                                \
        llm_status s_ = cublas_check((call), #call, __FILE__, __LINE__);                \
        if (s_ != LLM_OK) return s_;                                                    \
    } while (0)

// The cuBLAS data type of an element type.
template <typename T> inline cudaDataType_t cuda_dtype();
template <> inline cudaDataType_t cuda_dtype<float>() { return CUDA_R_32F; }
template <> inline cudaDataType_t cuda_dtype<bf16>() { return CUDA_R_16BF; }

#endif // LLMPY_CUDA_CUBLAS_COMMON_CUH
