/*
 * attention.cu — causal multi-head self-attention on CUDA, the reference version: batched
 * cuBLAS products around a fused causal-softmax kernel (mirrors csrc/cpu/attention.c; the flash
 * kernel in flash_attention.cu replaces it behind the same op, see ops_cuda.cu).
 *
 * Shapes (letters defined in ops.h; hs = C/NH, BH = B*NH):
 *   qkv, dqkv: (B,T,3C) = [q | k | v]; head h of each is channels h*hs .. (h+1)*hs   (floatX)
 *   out, dout: (B,T,C), head h at channels h*hs .. (h+1)*hs                          (floatX)
 *   state: P (B,NH,T,T) floatX, the softmax probabilities; row t is 0 at columns > t (causal)
 *   P[b,h,t,:] = softmax over t2 <= t of (q_t . k_t2) / sqrt(hs);  out_t = sum_t2 P v_t2
 * Gradient convention (ops.h): dqkv is written (=), never read: the unpermute kernel stores
 * every element of it (q, k and v parts of every (b, t, h, d)).
 *
 * Scratch (contents not preserved between calls), regions 256-byte aligned:
 *   q, k, v  (BH,T,hs) each, floatX: qkv permuted so that each head is a contiguous matrix
 *   forward:  o (BH,T,hs) floatX;  S (BH,T,T) fp32 scores
 *   backward: dq, dk, dv (BH,T,hs) floatX;  dO (BH,T,hs) floatX;  dP (BH,T,T) fp32;  dS (BH,T,T) floatX
 * Forward:  permute; S = Q K^T (fp32 output); P = softmax(S / sqrt(hs)) masked (one warp per
 *           row, online max/sum, writes P and the zeros above the diagonal); O = P V; unpermute.
 * Backward: permute q, k, v and dout; dP = dO V^T (fp32); dS = P * (dP - rowsum(P * dP)) / sqrt(hs);
 *           dQ = dS K, dK = dS^T Q, dV = P^T dO (beta 0: the scratch is written, not read);
 *           dqkv = unpermuted (dQ, dK, dV).
 * Products: cublasGemmStridedBatchedEx over the BH heads, CUBLAS_COMPUTE_32F (fp32 accumulation,
 * no TF32 for fp32 operands); scores and their gradients are kept in fp32 so that bf16 rounds
 * only P, dS and the outputs. The products compute the full T x T (the masked half is wasted
 * work: this version is for correctness and as the fallback for head sizes flash lacks).
 */
#include "cublas_common.cuh"
#include "cuda_ops.cuh"

#define ATT_THREADS 256
#define ATT_ROWS_PER_BLOCK (ATT_THREADS / 32)

// ----------------------------------------------------------------------------
// scratch layout

static size_t att_align(size_t bytes) { return (bytes + 255) & ~(size_t)255; }

struct AttLayout {
    size_t q, k, v, o, S;            // forward byte offsets
    size_t dq, dk, dv, dO, dP, dS;   // backward byte offsets
    size_t forward_bytes, backward_bytes;
};

template <typename floatX> static AttLayout att_layout(int B, int T, int C, int NH) {
    const size_t head = att_align((size_t)B * T * C * sizeof(floatX)); // one (BH,T,hs) tensor
    const size_t tt = (size_t)B * NH * T * T;
    AttLayout L;
    L.q = 0;
    L.k = head;
    L.v = 2 * head;
    L.o = 3 * head;
    L.S = 4 * head;
    L.forward_bytes = L.S + att_align(tt * sizeof(float));
    L.dq = 3 * head;
    L.dk = 4 * head;
    L.dv = 5 * head;
    L.dO = 6 * head;
    L.dP = 7 * head;
    L.dS = L.dP + att_align(tt * sizeof(float));
    L.backward_bytes = L.dS + att_align(tt * sizeof(floatX));
    return L;
}

// ----------------------------------------------------------------------------
// kernels

// q, k, v (BH,T,hs) <- qkv (B,T,3,NH,hs). One thread per element of q.
template <typename floatX>
static __global__ void permute_qkv_kernel(floatX *q, floatX *k, floatX *v, const floatX *qkv, int B, int T, int NH,
                                          int hs) {
    const size_t n = (size_t)B * NH * T * hs, stride = (size_t)gridDim.x * blockDim.x;
    const size_t C = (size_t)NH * hs;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const size_t d = i % hs, t = (i / hs) % T, h = (i / ((size_t)hs * T)) % NH, b = i / ((size_t)hs * T * NH);
        const floatX *src = qkv + (b * T + t) * 3 * C + h * hs + d;
        q[i] = src[0];
        k[i] = src[C];
        v[i] = src[2 * C];
    }
}

// dst (BH,T,hs) <- src (B,T,NH,hs) (the layout of out and dout).
template <typename floatX>
static __global__ void permute_heads_kernel(floatX *dst, const floatX *src, int B, int T, int NH, int hs) {
    const size_t n = (size_t)B * NH * T * hs, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const size_t d = i % hs, t = (i / hs) % T, h = (i / ((size_t)hs * T)) % NH, b = i / ((size_t)hs * T * NH);
        dst[i] = src[((b * T + t) * NH + h) * hs + d];
    }
}

// out (B,T,NH,hs) <- o (BH,T,hs).
template <typename floatX>
static __global__ void unpermute_heads_kernel(floatX *out, const floatX *o, int B, int T, int NH, int hs) {
    const size_t n = (size_t)B * NH * T * hs, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const size_t d = i % hs, t = (i / hs) % T, h = (i / ((size_t)hs * T)) % NH, b = i / ((size_t)hs * T * NH);
        out[((b * T + t) * NH + h) * hs + d] = o[i];
    }
}

// dqkv (B,T,3,NH,hs) = (dq, dk, dv) (BH,T,hs): one thread per element of dq, writing its q, k
// and v entries, so every element of dqkv is stored.
template <typename floatX>
static __global__ void unpermute_dqkv_kernel(floatX *dqkv, const floatX *dq, const floatX *dk, const floatX *dv, int B,
                                             int T, int NH, int hs) {
    const size_t n = (size_t)B * NH * T * hs, stride = (size_t)gridDim.x * blockDim.x;
    const size_t C = (size_t)NH * hs;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const size_t d = i % hs, t = (i / hs) % T, h = (i / ((size_t)hs * T)) % NH, b = i / ((size_t)hs * T * NH);
        floatX *dst = dqkv + (b * T + t) * 3 * C + h * hs + d;
        dst[0] = dq[i];
        dst[C] = dk[i];
        dst[2 * C] = dv[i];
    }
}

// P row r = softmax over j <= t of S[r, j] * scale, zero for j > t; t = r % T. One warp per row.
template <typename floatX>
static __global__ void causal_softmax_kernel(floatX *P, const float *S, size_t rows, int T, float scale) {
    const size_t r = (size_t)blockIdx.x * ATT_ROWS_PER_BLOCK + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (r >= rows) return; // the whole warp leaves together
    const int t = (int)(r % T);
    const float *s_row = S + r * T;
    floatX *p_row = P + r * T;
    float m = -INFINITY, s = 0.0f;
    for (int j = lane; j <= t; j += 32) {
        const float x = s_row[j] * scale;
        const float mn = fmaxf(m, x);
        s = s * expf(m - mn) + expf(x - mn);
        m = mn;
    }
    warp_softmax_merge(m, s); // lane 0 always holds column 0, so m is finite
    const float inv = 1.0f / s;
    for (int j = lane; j < T; j += 32)
        p_row[j] = from_f32<floatX>(j <= t ? expf(s_row[j] * scale - m) * inv : 0.0f);
}

// dS row r = P * (dP - sum_{j<=t} P dP) * scale for j <= t, zero beyond. One warp per row.
template <typename floatX>
static __global__ void causal_softmax_backward_kernel(floatX *dS, const floatX *P, const float *dP, size_t rows,
                                                      int T, float scale) {
    const size_t r = (size_t)blockIdx.x * ATT_ROWS_PER_BLOCK + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (r >= rows) return;
    const int t = (int)(r % T);
    const floatX *p_row = P + r * T;
    const float *dp_row = dP + r * T;
    floatX *ds_row = dS + r * T;
    float acc = 0.0f;
    for (int j = lane; j <= t; j += 32) acc += to_f32(p_row[j]) * dp_row[j];
    const float row_term = warp_sum(acc);
    for (int j = lane; j < T; j += 32)
        ds_row[j] = from_f32<floatX>(j <= t ? to_f32(p_row[j]) * (dp_row[j] - row_term) * scale : 0.0f);
}

// ----------------------------------------------------------------------------
// batched products

// Row-major C (M,N) = op(A) (M,K) @ op(B) (K,N) for each of `batch` matrices, through the
// column-major cuBLAS as C^T = op(B)^T op(A)^T (the transpose flags carry over unchanged).
template <typename floatX>
static llm_status bgemm(bool ta, bool tb, int M, int N, int K, const floatX *A, int lda, long long sA,
                        const floatX *B, int ldb, long long sB, void *Cm, cudaDataType_t ctype, int ldc, long long sC,
                        int batch) {
    const float alpha = 1.0f, beta = 0.0f;
    const cudaDataType_t t = cuda_dtype<floatX>();
    CUBLAS_TRY(cublasGemmStridedBatchedEx(llm_cuda_cublas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                          N, M, K, &alpha, B, t, ldb, sB, A, t, lda, sA, &beta, Cm, ctype, ldc, sC,
                                          batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// launchers

static unsigned att_row_blocks(size_t rows) { return (unsigned)((rows + ATT_ROWS_PER_BLOCK - 1) / ATT_ROWS_PER_BLOCK); }

template <typename floatX>
static llm_status attention_forward_launch(floatX *out, floatX *P, char *scratch, const floatX *qkv, int B, int T,
                                           int C, int NH, cudaStream_t stream) {
    const int hs = C / NH, BH = B * NH;
    const AttLayout L = att_layout<floatX>(B, T, C, NH);
    floatX *q = (floatX *)(scratch + L.q), *k = (floatX *)(scratch + L.k), *v = (floatX *)(scratch + L.v);
    floatX *o = (floatX *)(scratch + L.o);
    float *S = (float *)(scratch + L.S);
    const size_t n = (size_t)B * T * C, rows = (size_t)BH * T;
    const long long sh = (long long)T * hs, st = (long long)T * T;

    permute_qkv_kernel<floatX><<<grid_for(n, ATT_THREADS), ATT_THREADS, 0, stream>>>(q, k, v, qkv, B, T, NH, hs);
    CUDA_TRY_LAUNCH("attention_forward (permute)");
    LLM_TRY(bgemm(false, true, T, T, hs, q, hs, sh, k, hs, sh, S, CUDA_R_32F, T, st, BH)); // S = Q K^T
    causal_softmax_kernel<floatX><<<att_row_blocks(rows), ATT_THREADS, 0, stream>>>(P, S, rows, T,
                                                                                   1.0f / sqrtf((float)hs));
    CUDA_TRY_LAUNCH("attention_forward (softmax)");
    LLM_TRY(bgemm(false, false, T, hs, T, P, T, st, v, hs, sh, o, cuda_dtype<floatX>(), hs, sh, BH)); // O = P V
    unpermute_heads_kernel<floatX><<<grid_for(n, ATT_THREADS), ATT_THREADS, 0, stream>>>(out, o, B, T, NH, hs);
    CUDA_TRY_LAUNCH("attention_forward (unpermute)");
    return LLM_OK;
}

template <typename floatX>
static llm_status attention_backward_launch(floatX *dqkv, char *scratch, const floatX *dout, const floatX *qkv,
                                            const floatX *P, int B, int T, int C, int NH, cudaStream_t stream) {
    const int hs = C / NH, BH = B * NH;
    const AttLayout L = att_layout<floatX>(B, T, C, NH);
    floatX *q = (floatX *)(scratch + L.q), *k = (floatX *)(scratch + L.k), *v = (floatX *)(scratch + L.v);
    floatX *dq = (floatX *)(scratch + L.dq), *dk = (floatX *)(scratch + L.dk), *dv = (floatX *)(scratch + L.dv);
    floatX *dO = (floatX *)(scratch + L.dO), *dS = (floatX *)(scratch + L.dS);
    float *dP = (float *)(scratch + L.dP);
    const size_t n = (size_t)B * T * C, rows = (size_t)BH * T;
    const long long sh = (long long)T * hs, st = (long long)T * T;
    const cudaDataType_t xt = cuda_dtype<floatX>();

    permute_qkv_kernel<floatX><<<grid_for(n, ATT_THREADS), ATT_THREADS, 0, stream>>>(q, k, v, qkv, B, T, NH, hs);
    permute_heads_kernel<floatX><<<grid_for(n, ATT_THREADS), ATT_THREADS, 0, stream>>>(dO, dout, B, T, NH, hs);
    CUDA_TRY_LAUNCH("attention_backward (permute)");
    LLM_TRY(bgemm(false, true, T, T, hs, dO, hs, sh, v, hs, sh, dP, CUDA_R_32F, T, st, BH)); // dP = dO V^T
    causal_softmax_backward_kernel<floatX><<<att_row_blocks(rows), ATT_THREADS, 0, stream>>>(
        dS, P, dP, rows, T, 1.0f / sqrtf((float)hs));
    CUDA_TRY_LAUNCH("attention_backward (softmax)");
    LLM_TRY(bgemm(false, false, T, hs, T, dS, T, st, k, hs, sh, dq, xt, hs, sh, BH)); // dQ = dS K
    LLM_TRY(bgemm(true, false, T, hs, T, dS, T, st, q, hs, sh, dk, xt, hs, sh, BH));  // dK = dS^T Q
    LLM_TRY(bgemm(true, false, T, hs, T, P, T, st, dO, hs, sh, dv, xt, hs, sh, BH));  // dV = P^T dO
    unpermute_dqkv_kernel<floatX><<<grid_for(n, ATT_THREADS), ATT_THREADS, 0, stream>>>(dqkv, dq, dk, dv, B, T, NH,
                                                                                        hs);
    CUDA_TRY_LAUNCH("attention_backward (unpermute)");
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// entries

static llm_status att_check_sizes(const char *op, int B, int T, int C, int NH) {
    if (B <= 0 || T <= 0 || C <= 0 || NH <= 0 || C % NH != 0)
        return llm_fail(LLM_EINVAL, "%s: need positive sizes with C %% NH == 0 (B=%d T=%d C=%d NH=%d)", op, B, T, C, NH);
    if ((size_t)B * NH > (size_t)INT32_MAX || (size_t)B * NH * T > (size_t)INT32_MAX * ATT_ROWS_PER_BLOCK)
        return llm_fail(LLM_EINVAL, "%s: too many heads (B*NH*T = %zu)", op, (size_t)B * NH * T);
    return LLM_OK;
}

template <typename floatX> size_t cuda_attention_state_bytes(int B, int T, int C, int NH) {
    (void)C;
    if (B <= 0 || T <= 0 || NH <= 0) return 0;
    return (size_t)B * NH * T * T * sizeof(floatX);
}

template <typename floatX> size_t cuda_attention_scratch_bytes(int B, int T, int C, int NH) {
    if (B <= 0 || T <= 0 || C <= 0 || NH <= 0 || C % NH != 0) return 0;
    const AttLayout L = att_layout<floatX>(B, T, C, NH);
    return L.backward_bytes > L.forward_bytes ? L.backward_bytes : L.forward_bytes;
}

template <typename floatX>
llm_status cuda_attention_forward(floatX *out, void *state, void *scratch, const floatX *qkv, int B, int T, int C,
                                  int NH, cudaStream_t stream) {
    LLM_TRY(att_check_sizes("attention_forward", B, T, C, NH));
    if (!out || !state || !scratch || !qkv) return llm_fail(LLM_EINVAL, "attention_forward: NULL pointer");
    CUBLAS_TRY(cublasSetStream(llm_cuda_cublas, stream));
    return attention_forward_launch(out, (floatX *)state, (char *)scratch, qkv, B, T, C, NH, stream);
}

template <typename floatX>
llm_status cuda_attention_backward(floatX *dqkv, void *scratch, const floatX *dout, const floatX *qkv,
                                   const floatX *out, const void *state, int B, int T, int C, int NH,
                                   cudaStream_t stream) {
    (void)out; // the probabilities in state are all the backward needs
    LLM_TRY(att_check_sizes("attention_backward", B, T, C, NH));
    if (!dqkv || !scratch || !dout || !qkv || !state) return llm_fail(LLM_EINVAL, "attention_backward: NULL pointer");
    CUBLAS_TRY(cublasSetStream(llm_cuda_cublas, stream));
    return attention_backward_launch(dqkv, (char *)scratch, dout, qkv, (const floatX *)state, B, T, C, NH, stream);
}

#define ATT_INSTANTIATE(X)                                                                                         \
    template size_t cuda_attention_state_bytes<X>(int, int, int, int);                                            \
    template size_t cuda_attention_scratch_bytes<X>(int, int, int, int);                                          \
    template llm_status cuda_attention_forward<X>(X *, void *, void *, const X *, int, int, int, int, cudaStream_t); \
    template llm_status cuda_attention_backward<X>(X *, void *, const X *, const X *, const X *, const void *, int, \
                                                   int, int, int, cudaStream_t);
ATT_INSTANTIATE(float)
ATT_INSTANTIATE(bf16)
