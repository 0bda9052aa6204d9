/*
 * cublas_common.cuh — the cuBLAS and cuBLASLt handles the backend shares (context.cu creates
 * them on llm_cuda_stream) and a return-code check that becomes an llm_status.
 *
 * Used by matmul.cu (cuBLASLt, with the bias epilogue) and attention.cu (batched cuBLAS
 * products). Precision: both use CUBLAS_COMPUTE_32F (fp32 accumulation); with fp32 operands
 * this never uses TF32 (no tensor cores), so the fp32 mode matches the CPU backend closely and
 * is slow: it is for parity, bf16 is the fast path (ops_cuda.h).
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

// The asynchronous error a kernel left behind (common.cuh: cuda_error_is_async), or cudaSuccess.
// A library call that fails after a kernel fault reports only its own status ("execution
// failed", "not supported"); this says what really happened.
static inline cudaError_t cuda_sticky_error(void) {
    cudaError_t err = cudaPeekAtLastError();
    if (!cuda_error_is_async(err)) err = cudaStreamQuery(llm_cuda_stream); // a dead context reports here
    return cuda_error_is_async(err) ? err : cudaSuccess;
}

// A failing cuBLAS status as an llm_status; after a kernel fault it also names the CUDA error
// (and, outside sync mode, hints that an earlier op may be to blame).
static inline llm_status cublas_check(cublasStatus_t st, const char *what, const char *file, int line) {
    if (st == CUBLAS_STATUS_SUCCESS) return LLM_OK;
    const cudaError_t sticky = cuda_sticky_error();
    if (sticky != cudaSuccess)
        return llm_fail(LLM_EBACKEND, "cuBLAS error in %s (%s:%d): %s (%d) after CUDA error: %s%s", what, file, line,
                        cublasGetStatusString(st), (int)st, cudaGetErrorString(sticky), cuda_error_hint(sticky));
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
