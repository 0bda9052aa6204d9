/*
 * matmul.cu — fully connected layer on CUDA through cuBLASLt: out = inp @ weight^T + bias
 * (mirrors csrc/cpu/matmul.c).
 *
 * Shapes (letters defined in ops.h):
 *   out, pre: (B,T,OC)   inp: (B,T,C)   weight: (OC,C)   bias: (OC) or NULL   (all floatX)
 * Gradient convention (ops.h): dweight += (or =, with LLM_MM_WRITE_DWEIGHT) and dbias +=
 * (parameters); dinp is written (=, beta 0: cuBLASLt then never reads it) unless the flags hold
 * LLM_MM_ACCUMULATE_DINP (+=, beta 1); dweight likewise, beta 0 when written;
 * dinp and dbias may be NULL in the backward, then they are skipped.
 *
 * cuBLAS(Lt) is column-major; a row-major (R, K) matrix is the column-major (K, R) matrix with
 * leading dimension K, i.e. its transpose. With BT = B*T, D (m,n) column-major and op(A) (m,k),
 * op(B) (k,n), the three products are:
 *   forward  out^T     = weight   @ inp^T    m=OC n=BT k=C:  A = weight (op T, lda C),  B = inp  (op N, ldb C)
 *   dinp     dinp^T  (+)= weight^T @ dout^T   m=C  n=BT k=OC: A = weight (op N, lda C),  B = dout (op N, ldb OC)
 *   dweight  dweight^T (+)= inp^T @ dout     m=C  n=OC k=BT: A = inp    (op N, lda C),  B = dout (op T, ldb OC)
 * The backward products run with C = D in place: beta = 1 accumulates, beta = 0 writes (per
 * the flags; one rounding of the fp32 accumulator into floatX either way).
 * Epilogue: the forward adds the bias in the GEMM (CUBLASLT_EPILOGUE_BIAS, bias of length m =
 * OC). When its requirements are not met (bias not 16-byte aligned, or no algorithm offered),
 * the plain GEMM runs and a small kernel adds the bias.
 * matmul_gelu_forward is that forward writing pre, then gelu.cu's kernel out = gelu(pre). It
 * does not use cuBLASLt's GELU epilogue (GELU_AUX_BIAS), on purpose: the backward
 * differentiates gelu.cu's formula, and cuBLASLt does not document how it evaluates the tanh
 * (the hardware tanh.approx.f32, 2^-11 relative error, would shift gelu in the negative tail by
 * tens of percent relative), so forward and backward would not be one function; in bf16 the
 * epilogue also applies GELU to the unrounded fp32 pre-activation while the backward sees the
 * bf16 pre. One formula costs one extra read of pre (a memory-bound pass over (B,T,OC)).
 * dbias: column sums of dout by a two-stage deterministic reduction (fp32 partials per row
 * chunk in device scratch, then one thread per column sums them in order and accumulates).
 *
 * Precision: CUBLAS_COMPUTE_32F with fp32 scale; fp32 operands therefore never use TF32 (tight
 * parity with the CPU), bf16 operands use the tensor cores with fp32 accumulation.
 * Alignment: cuBLASLt assumes 256-byte aligned matrices unless told otherwise, so every call
 * states the actual alignment of its pointers in the algorithm preference. The algorithm the
 * heuristic picks is cached per problem (shapes, types, epilogue, alignments); not thread-safe
 * (ops are issued from one thread).
 */
#include <string.h>

#include "cublas_common.cuh"
#include "cuda_ops.cuh"

#define BIAS_THREADS 256

// ----------------------------------------------------------------------------
// cuBLASLt call

// Largest power of two (at most 256) that divides the address.
static uint32_t pointer_alignment(const void *p) {
    uint32_t a = 256;
    while (a > 1 && ((uintptr_t)p % a) != 0) a >>= 1;
    return a;
}

// The algorithm cuBLASLt's heuristic chose, per problem (shapes, types, epilogue, alignments):
// the heuristic query costs tens of microseconds, and a training step repeats the same few
// problems. A small table, replaced round-robin when full.
struct AlgoKey {
    int dtype, m, n, k, lda, ldb, ldd, transA, transB, epilogue, al_a, al_b, al_d, accumulate;
    bool operator==(const AlgoKey &o) const { return memcmp(this, &o, sizeof o) == 0; }
};
#define ALGO_CACHE_SIZE 64
static AlgoKey algo_keys[ALGO_CACHE_SIZE];
static cublasLtMatmulAlgo_t algo_values[ALGO_CACHE_SIZE];
static int algo_count = 0, algo_next = 0;

static const cublasLtMatmulAlgo_t *algo_cache_find(const AlgoKey &key) {
    for (int i = 0; i < algo_count; i++)
        if (algo_keys[i] == key) return &algo_values[i];
    return nullptr;
}
static const cublasLtMatmulAlgo_t *algo_cache_add(const AlgoKey &key, const cublasLtMatmulAlgo_t &algo) {
    const int i = algo_count < ALGO_CACHE_SIZE ? algo_count++ : (algo_next++ % ALGO_CACHE_SIZE);
    algo_keys[i] = key;
    algo_values[i] = algo;
    return &algo_values[i];
}

// Destroys the descriptors of one call on every return path.
struct LtCall {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulPreference_t pref = nullptr;
    ~LtCall() {
        if (pref) cublasLtMatmulPreferenceDestroy(pref);
        if (d) cublasLtMatrixLayoutDestroy(d);
        if (b) cublasLtMatrixLayoutDestroy(b);
        if (a) cublasLtMatrixLayoutDestroy(a);
        if (desc) cublasLtMatmulDescDestroy(desc);
    }
};

// D (m,n, column-major, ldd) = op(A) (m,k) @ op(B) (k,n) [+ beta D] with an optional epilogue.
// Returns LLM_EUNSUPPORTED (no message) when cuBLASLt offers no algorithm, so that callers with a
// fallback can take it.
template <typename floatX>
static llm_status lt_matmul(floatX *D, const floatX *A, const floatX *B, int m, int n, int k, bool transA,
                            bool transB, int lda, int ldb, int ldd, float beta, cublasLtEpilogue_t epilogue,
                            const floatX *bias, cudaStream_t stream) {
    const cudaDataType_t t = cuda_dtype<floatX>();
    LtCall c;
    CUBLAS_TRY(cublasLtMatmulDescCreate(&c.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t opA = transA ? CUBLAS_OP_T : CUBLAS_OP_N, opB = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(c.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof opA));
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(c.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof opB));
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(c.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
    if (bias) {
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(c.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(c.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &t, sizeof t));
    }
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&c.a, t, transA ? k : m, transA ? m : k, lda));
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&c.b, t, transB ? n : k, transB ? k : n, ldb));
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&c.d, t, m, n, ldd));

    CUBLAS_TRY(cublasLtMatmulPreferenceCreate(&c.pref));
    const uint64_t ws = llm_cuda_cublaslt_workspace_bytes;
    CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(c.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    const uint32_t al_a = pointer_alignment(A), al_b = pointer_alignment(B), al_d = pointer_alignment(D);
    CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(c.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a));
    CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(c.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b));
    CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(c.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d, sizeof al_d));
    CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(c.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof al_d));

    const AlgoKey key = {(int)t, m, n, k, lda, ldb, ldd, (int)transA, (int)transB, (int)epilogue, (int)al_a,
                         (int)al_b, (int)al_d, beta != 0.0f};
    const cublasLtMatmulAlgo_t *algo = algo_cache_find(key);
    if (!algo) {
        cublasLtMatmulHeuristicResult_t heuristic;
        int found = 0;
        cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(llm_cuda_cublaslt, c.desc, c.a, c.b, c.d, c.d, c.pref, 1,
                                                           &heuristic, &found);
        if (st == CUBLAS_STATUS_NOT_SUPPORTED || (st == CUBLAS_STATUS_SUCCESS && found == 0)) return LLM_EUNSUPPORTED;
        CUBLAS_TRY(st);
        algo = algo_cache_add(key, heuristic.algo);
    }

    const float alpha = 1.0f;
    CUBLAS_TRY(cublasLtMatmul(llm_cuda_cublaslt, c.desc, &alpha, A, c.a, B, c.b, &beta, D, c.d, D, c.d, algo,
                              llm_cuda_cublaslt_workspace, llm_cuda_cublaslt_workspace_bytes, stream));
    return LLM_OK;
}

// lt_matmul that reports a missing algorithm as an error (for calls without a fallback).
template <typename floatX>
static llm_status lt_matmul_required(const char *op, floatX *D, const floatX *A, const floatX *B, int m, int n,
                                     int k, bool transA, bool transB, int lda, int ldb, int ldd, float beta,
                                     cudaStream_t stream) {
    llm_status s = lt_matmul(D, A, B, m, n, k, transA, transB, lda, ldb, ldd, beta, CUBLASLT_EPILOGUE_DEFAULT,
                             (const floatX *)nullptr, stream);
    if (s == LLM_EUNSUPPORTED) {
        const cudaError_t sticky = cuda_sticky_error(); // no algorithm because the context is dead?
        if (sticky != cudaSuccess) return cuda_check(sticky, op, __FILE__, __LINE__);
        return llm_fail(LLM_EBACKEND, "%s: cuBLASLt has no %s algorithm for m=%d n=%d k=%d", op,
                        dtype_name<floatX>(), m, n, k);
    }
    return s;
}

// ----------------------------------------------------------------------------
// kernels

// out (rows, OC) += bias (OC), for when the bias epilogue cannot be used.
template <typename floatX>
static __global__ void add_bias_kernel(floatX *out, const floatX *bias, size_t rows, int OC) {
    const size_t n = rows * (size_t)OC, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = from_f32<floatX>(to_f32(out[i]) + to_f32(bias[i % OC]));
}

// partial (chunks, OC): column sums of dout over chunks of rows_per_chunk rows.
template <typename floatX>
static __global__ void bias_partial_kernel(float *partial, const floatX *dout, size_t rows, size_t rows_per_chunk,
                                           int OC) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= OC) return;
    const size_t r0 = (size_t)blockIdx.y * rows_per_chunk;
    const size_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    float acc = 0.0f;
    for (size_t r = r0; r < r1; r++) acc += to_f32(dout[r * OC + c]);
    partial[(size_t)blockIdx.y * OC + c] = acc;
}

template <typename floatX>
static __global__ void bias_finish_kernel(floatX *dbias, const float *partial, int chunks, int OC) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= OC) return;
    float acc = 0.0f;
    for (int k = 0; k < chunks; k++) acc += partial[(size_t)k * OC + c];
    dbias[c] = from_f32<floatX>(to_f32(dbias[c]) + acc);
}

// ----------------------------------------------------------------------------
// launchers

template <typename floatX>
static void add_bias_launch(floatX *out, const floatX *bias, size_t rows, int OC, cudaStream_t stream) {
    add_bias_kernel<floatX><<<grid_for(rows * OC, BIAS_THREADS), BIAS_THREADS, 0, stream>>>(out, bias, rows, OC);
}

// Row chunks for the dbias partial sums: about 8 blocks of 256 threads per SM, >= 16 rows each.
static void bias_chunks(size_t rows, int OC, size_t *chunks, size_t *rows_per_chunk) {
    const size_t cblocks = ((size_t)OC + BIAS_THREADS - 1) / BIAS_THREADS;
    const size_t target = (size_t)(llm_cuda_sm_count > 0 ? llm_cuda_sm_count : 132) * 8;
    size_t want = (target + cblocks - 1) / cblocks, max_chunks = (rows + 15) / 16;
    if (want > max_chunks) want = max_chunks;
    if (want > 65535) want = 65535;
    if (want < 1) want = 1;
    *rows_per_chunk = (rows + want - 1) / want;
    *chunks = (rows + *rows_per_chunk - 1) / *rows_per_chunk;
}

template <typename floatX>
static void bias_backward_launch(floatX *dbias, float *partial, const floatX *dout, size_t rows, int OC,
                                 size_t chunks, size_t rows_per_chunk, cudaStream_t stream) {
    const unsigned cblocks = (unsigned)((OC + BIAS_THREADS - 1) / BIAS_THREADS);
    bias_partial_kernel<floatX><<<dim3(cblocks, (unsigned)chunks), BIAS_THREADS, 0, stream>>>(partial, dout, rows,
                                                                                              rows_per_chunk, OC);
    bias_finish_kernel<floatX><<<cblocks, BIAS_THREADS, 0, stream>>>(dbias, partial, (int)chunks, OC);
}

// ----------------------------------------------------------------------------
// entries

static llm_status matmul_check_sizes(const char *op, int B, int T, int C, int OC) {
    if (B <= 0 || T <= 0 || C <= 0 || OC <= 0)
        return llm_fail(LLM_EINVAL, "%s: sizes must be positive (B=%d T=%d C=%d OC=%d)", op, B, T, C, OC);
    if ((size_t)B * T > (size_t)INT32_MAX) return llm_fail(LLM_EINVAL, "%s: B*T exceeds 2^31", op);
    return LLM_OK;
}

// out = inp @ weight^T (+ bias), with the bias in the epilogue when it is 16-byte aligned.
template <typename floatX>
static llm_status matmul_forward_impl(floatX *out, const floatX *inp, const floatX *weight, const floatX *bias,
                                      int BT, int C, int OC, cudaStream_t stream) {
    if (bias && aligned16(bias)) {
        llm_status s = lt_matmul(out, weight, inp, OC, BT, C, true, false, C, C, OC, 0.0f, CUBLASLT_EPILOGUE_BIAS,
                                 bias, stream);
        if (s != LLM_EUNSUPPORTED) return s;
    }
    LLM_TRY(lt_matmul_required("matmul_forward", out, weight, inp, OC, BT, C, true, false, C, C, OC, 0.0f, stream));
    if (bias) {
        add_bias_launch(out, bias, (size_t)BT, OC, stream);
        CUDA_TRY_LAUNCH("matmul_forward (bias)");
    }
    return LLM_OK;
}

template <typename floatX>
llm_status cuda_matmul_forward(floatX *out, const floatX *inp, const floatX *weight, const floatX *bias, int B,
                               int T, int C, int OC, cudaStream_t stream) {
    LLM_TRY(matmul_check_sizes("matmul_forward", B, T, C, OC));
    if (!out || !inp || !weight) return llm_fail(LLM_EINVAL, "matmul_forward: NULL pointer");
    return matmul_forward_impl(out, inp, weight, bias, B * T, C, OC, stream);
}

template <typename floatX>
llm_status cuda_matmul_gelu_forward(floatX *pre, floatX *out, const floatX *inp, const floatX *weight,
                                    const floatX *bias, int B, int T, int C, int OC, cudaStream_t stream) {
    LLM_TRY(matmul_check_sizes("matmul_gelu_forward", B, T, C, OC));
    if (!pre || !out || !inp || !weight) return llm_fail(LLM_EINVAL, "matmul_gelu_forward: NULL pointer");
    const int BT = B * T;
    // pre = inp @ weight^T + bias, then out = gelu(pre) by the kernel whose formula gelu_backward
    // differentiates (file comment: why not cuBLASLt's GELU epilogue)
    LLM_TRY(matmul_forward_impl(pre, inp, weight, bias, BT, C, OC, stream));
    return cuda_gelu_forward(out, (const floatX *)pre, (size_t)BT * OC, stream);
}

template <typename floatX>
llm_status cuda_matmul_backward(floatX *dinp, floatX *dweight, floatX *dbias, const floatX *dout,
                                const floatX *inp, const floatX *weight, int B, int T, int C, int OC, int flags,
                                cudaStream_t stream) {
    LLM_TRY(matmul_check_sizes("matmul_backward", B, T, C, OC));
    if (!dweight || !dout || !inp || !weight) return llm_fail(LLM_EINVAL, "matmul_backward: NULL pointer");
    const int BT = B * T;
    if (dinp) // dinp (BT,C) = or += dout (BT,OC) @ weight (OC,C)
        LLM_TRY(lt_matmul_required("matmul_backward (dinp)", dinp, weight, dout, C, BT, OC, false, false, C, OC, C,
                                   (flags & LLM_MM_ACCUMULATE_DINP) ? 1.0f : 0.0f, stream));
    // dweight (OC,C) (+)= dout^T (OC,BT) @ inp (BT,C)
    LLM_TRY(lt_matmul_required("matmul_backward (dweight)", dweight, inp, dout, C, OC, BT, false, true, C, OC, C,
                               (flags & LLM_MM_WRITE_DWEIGHT) ? 0.0f : 1.0f, stream));
    if (dbias) {
        size_t chunks, rows_per_chunk;
        bias_chunks((size_t)BT, OC, &chunks, &rows_per_chunk);
        void *scratch;
        LLM_TRY(cuda_device_scratch(&scratch, chunks * (size_t)OC * sizeof(float)));
        bias_backward_launch(dbias, (float *)scratch, dout, (size_t)BT, OC, chunks, rows_per_chunk, stream);
        CUDA_TRY_LAUNCH("matmul_backward (dbias)");
    }
    return LLM_OK;
}

#define MATMUL_INSTANTIATE(X)                                                                                      \
    template llm_status cuda_matmul_forward<X>(X *, const X *, const X *, const X *, int, int, int, int,          \
                                               cudaStream_t);                                                     \
    template llm_status cuda_matmul_gelu_forward<X>(X *, X *, const X *, const X *, const X *, int, int, int, int, \
                                                    cudaStream_t);                                                \
    template llm_status cuda_matmul_backward<X>(X *, X *, X *, const X *, const X *, const X *, int, int, int, int, \
                                                int, cudaStream_t);
MATMUL_INSTANTIATE(float)
MATMUL_INSTANTIATE(bf16)
