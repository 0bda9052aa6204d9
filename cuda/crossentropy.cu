/*
 * crossentropy.cu — softmax + cross-entropy over the vocabulary on CUDA: the fused classifier
 * (mirrors csrc/cpu/crossentropy.c).
 *
 * Shapes (letters defined in ops.h):
 *   losses: (B,T) fp32   logits: (B,T,Vp) floatX   targets: (B,T) int32 in [0,V)
 *   dlogits: (B,T,Vp) (crossentropy_backward) or (B,T,n) (crossentropy_backward_cols) floatX
 * Only the first V of the Vp columns are real; padding columns are ignored by the forward and
 * receive a zero gradient.
 *   loss = logsumexp(logits[0:V]) - logits[target]
 *   dlogits = (softmax(logits[0:V]) - onehot(target)) * dloss
 * Gradient convention: the exception to ops.h's rule — the backward ops WRITE dlogits (=).
 *
 * The probabilities are never stored. One block per row (B*T rows):
 *   forward: one pass over the row keeping an online (max, sum of exp) per thread, merged
 *     across the block; loss = log(sum) + max - logit[target].
 *   backward: the same statistics pass, then one pass writing (exp(x - max) / sum - onehot) *
 *     dloss. dlogits may alias logits: the statistics are complete (block barrier) before the
 *     first write, and each element is then read and written by the same thread.
 *   backward_cols: the slice v0 .. v0+n of the gradient in one pass, the row's log-sum-exp
 *     rebuilt from the forward's loss: lse = loss + logit[target] (read before any write, so
 *     the full slice v0 = 0, n = Vp may also alias logits).
 * All arithmetic is fp32. A target outside [0,V) yields a NaN loss (the model validates targets
 * on the host; the kernel never reads out of bounds).
 * 128-bit loads when the row stride (Vp, and v0, n for the slice) is a multiple of the pack and
 * the pointers are 16-byte aligned.
 */
#include "cuda_ops.cuh"

#define CE_THREADS 512

// ----------------------------------------------------------------------------
// kernels

// Online (max, sum of exp) of x[0..V) over the block; every thread returns the row's result.
template <typename floatX, int P>
__device__ __forceinline__ void row_softmax_stats(const floatX *x, int V, float &m, float &s) {
    m = -INFINITY;
    s = 0.0f;
    const int packs = V / P;
    for (int i = threadIdx.x; i < packs; i += blockDim.x) {
        const Pack<floatX, P> v = load_pack<floatX, P>(x + (size_t)i * P);
        float pm = -INFINITY;
#pragma unroll
        for (int k = 0; k < P; k++) pm = fmaxf(pm, to_f32(v.v[k]));
        if (pm == -INFINITY) continue; // nothing to add (all -inf)
        const float mn = fmaxf(m, pm);
        float ps = 0.0f;
#pragma unroll
        for (int k = 0; k < P; k++) ps += expf(to_f32(v.v[k]) - mn);
        s = s * expf(m - mn) + ps; // m = -inf: s is 0 and expf(-inf) = 0
        m = mn;
    }
    for (int i = packs * P + threadIdx.x; i < V; i += blockDim.x) { // tail (P > 1 only)
        const float xv = to_f32(x[i]);
        if (xv == -INFINITY) continue;
        const float mn = fmaxf(m, xv);
        s = s * expf(m - mn) + expf(xv - mn);
        m = mn;
    }
    block_softmax_merge(m, s);
}

template <typename floatX, int P>
static __global__ void crossentropy_forward_kernel(float *losses, const floatX *logits, const int32_t *targets,
                                                   int V, int Vp) {
    const size_t row = blockIdx.x;
    const floatX *x = logits + row * Vp;
    float m, s;
    row_softmax_stats<floatX, P>(x, V, m, s);
    if (threadIdx.x == 0) {
        const int t = targets[row];
        losses[row] = (t >= 0 && t < V) ? logf(s) + m - to_f32(x[t]) : NAN;
    }
}

template <typename floatX, int P>
static __global__ void crossentropy_backward_kernel(floatX *dlogits, const floatX *logits, const int32_t *targets,
                                                    float dloss, int V, int Vp) {
    const size_t row = blockIdx.x;
    const floatX *x = logits + row * Vp;
    floatX *dx = dlogits + row * Vp;
    float m, s;
    row_softmax_stats<floatX, P>(x, V, m, s); // ends with a barrier: no write precedes any read
    const int t = targets[row];
    const float scale = dloss / s;
    const int packs = Vp / P;
    for (int i = threadIdx.x; i < packs; i += blockDim.x) {
        const Pack<floatX, P> v = load_pack<floatX, P>(x + (size_t)i * P);
        Pack<floatX, P> g;
#pragma unroll
        for (int k = 0; k < P; k++) {
            const int col = i * P + k;
            float d = 0.0f;
            if (col < V) d = expf(to_f32(v.v[k]) - m) * scale - (col == t ? dloss : 0.0f);
            g.v[k] = from_f32<floatX>(d);
        }
        store_pack<floatX, P>(dx + (size_t)i * P, g);
    }
    for (int col = packs * P + threadIdx.x; col < Vp; col += blockDim.x) { // tail (P > 1 only)
        float d = 0.0f;
        if (col < V) d = expf(to_f32(x[col]) - m) * scale - (col == t ? dloss : 0.0f);
        dx[col] = from_f32<floatX>(d);
    }
}

template <typename floatX, int P>
static __global__ void crossentropy_backward_cols_kernel(floatX *dlogits, const floatX *logits, const float *losses,
                                                         const int32_t *targets, float dloss, int V, int Vp, int v0,
                                                         int n) {
    __shared__ float lse_shared;
    const size_t row = blockIdx.x;
    const floatX *xr = logits + row * Vp;
    const int t = targets[row];
    if (threadIdx.x == 0)
        lse_shared = (t >= 0 && t < V) ? losses[row] + to_f32(xr[t]) : NAN;
    __syncthreads(); // the target logit is read before any thread writes (dlogits may alias logits)
    const float lse = lse_shared;
    const floatX *x = xr + v0;
    floatX *dx = dlogits + row * n;
    const int packs = n / P;
    for (int i = threadIdx.x; i < packs; i += blockDim.x) {
        const Pack<floatX, P> v = load_pack<floatX, P>(x + (size_t)i * P);
        Pack<floatX, P> g;
#pragma unroll
        for (int k = 0; k < P; k++) {
            const int col = v0 + i * P + k;
            float d = 0.0f;
            if (col < V) d = (expf(to_f32(v.v[k]) - lse) - (col == t ? 1.0f : 0.0f)) * dloss;
            g.v[k] = from_f32<floatX>(d);
        }
        store_pack<floatX, P>(dx + (size_t)i * P, g);
    }
    for (int i = packs * P + threadIdx.x; i < n; i += blockDim.x) { // tail (P > 1 only)
        const int col = v0 + i;
        float d = 0.0f;
        if (col < V) d = (expf(to_f32(x[i]) - lse) - (col == t ? 1.0f : 0.0f)) * dloss;
        dx[i] = from_f32<floatX>(d);
    }
}

// ----------------------------------------------------------------------------
// launchers

template <typename floatX>
static void crossentropy_forward_launch(float *losses, const floatX *logits, const int32_t *targets, unsigned rows,
                                        int V, int Vp, cudaStream_t stream) {
    constexpr int P = pack128<floatX>();
    if (Vp % P == 0 && aligned16(logits))
        crossentropy_forward_kernel<floatX, P><<<rows, CE_THREADS, 0, stream>>>(losses, logits, targets, V, Vp);
    else
        crossentropy_forward_kernel<floatX, 1><<<rows, CE_THREADS, 0, stream>>>(losses, logits, targets, V, Vp);
}

template <typename floatX>
static void crossentropy_backward_launch(floatX *dlogits, const floatX *logits, const int32_t *targets, float dloss,
                                         unsigned rows, int V, int Vp, cudaStream_t stream) {
    constexpr int P = pack128<floatX>();
    if (Vp % P == 0 && aligned16(logits, dlogits))
        crossentropy_backward_kernel<floatX, P><<<rows, CE_THREADS, 0, stream>>>(dlogits, logits, targets, dloss, V, Vp);
    else
        crossentropy_backward_kernel<floatX, 1><<<rows, CE_THREADS, 0, stream>>>(dlogits, logits, targets, dloss, V, Vp);
}

template <typename floatX>
static void crossentropy_backward_cols_launch(floatX *dlogits, const floatX *logits, const float *losses,
                                              const int32_t *targets, float dloss, unsigned rows, int V, int Vp,
                                              int v0, int n, cudaStream_t stream) {
    constexpr int P = pack128<floatX>();
    if (Vp % P == 0 && v0 % P == 0 && n % P == 0 && aligned16(logits, dlogits))
        crossentropy_backward_cols_kernel<floatX, P><<<rows, CE_THREADS, 0, stream>>>(dlogits, logits, losses, targets,
                                                                                     dloss, V, Vp, v0, n);
    else
        crossentropy_backward_cols_kernel<floatX, 1><<<rows, CE_THREADS, 0, stream>>>(dlogits, logits, losses, targets,
                                                                                     dloss, V, Vp, v0, n);
}

// ----------------------------------------------------------------------------
// entries

static llm_status ce_check_sizes(const char *op, int B, int T, int V, int Vp) {
    if (B <= 0 || T <= 0 || V <= 0 || Vp < V)
        return llm_fail(LLM_EINVAL, "%s: need B, T, V > 0 and Vp >= V (B=%d T=%d V=%d Vp=%d)", op, B, T, V, Vp);
    if ((size_t)B * T > (size_t)INT32_MAX) return llm_fail(LLM_EINVAL, "%s: B*T exceeds 2^31", op);
    return LLM_OK;
}

template <typename floatX>
llm_status cuda_crossentropy_forward(float *losses, const floatX *logits, const int32_t *targets, int B, int T,
                                     int V, int Vp, cudaStream_t stream) {
    LLM_TRY(ce_check_sizes("crossentropy_forward", B, T, V, Vp));
    if (!losses || !logits || !targets) return llm_fail(LLM_EINVAL, "crossentropy_forward: NULL pointer");
    crossentropy_forward_launch(losses, logits, targets, (unsigned)(B * T), V, Vp, stream);
    CUDA_TRY_LAUNCH("crossentropy_forward");
    return LLM_OK;
}

template <typename floatX>
llm_status cuda_crossentropy_backward(floatX *dlogits, const floatX *logits, const int32_t *targets, float dloss,
                                      int B, int T, int V, int Vp, cudaStream_t stream) {
    LLM_TRY(ce_check_sizes("crossentropy_backward", B, T, V, Vp));
    if (!dlogits || !logits || !targets) return llm_fail(LLM_EINVAL, "crossentropy_backward: NULL pointer");
    crossentropy_backward_launch(dlogits, logits, targets, dloss, (unsigned)(B * T), V, Vp, stream);
    CUDA_TRY_LAUNCH("crossentropy_backward");
    return LLM_OK;
}

template <typename floatX>
llm_status cuda_crossentropy_backward_cols(floatX *dlogits, const floatX *logits, const float *losses,
                                           const int32_t *targets, float dloss, int B, int T, int V, int Vp,
                                           int v0, int n, cudaStream_t stream) {
    LLM_TRY(ce_check_sizes("crossentropy_backward_cols", B, T, V, Vp));
    if (v0 < 0 || n < 0 || (int64_t)v0 + n > Vp)
        return llm_fail(LLM_EINVAL, "crossentropy_backward_cols: columns %d..%d outside 0..Vp=%d", v0, v0 + n, Vp);
    if (n == 0) return LLM_OK;
    if (!dlogits || !logits || !losses || !targets)
        return llm_fail(LLM_EINVAL, "crossentropy_backward_cols: NULL pointer");
    crossentropy_backward_cols_launch(dlogits, logits, losses, targets, dloss, (unsigned)(B * T), V, Vp, v0, n,
                                      stream);
    CUDA_TRY_LAUNCH("crossentropy_backward_cols");
    return LLM_OK;
}

#define CE_INSTANTIATE(X)                                                                                          \
    template llm_status cuda_crossentropy_forward<X>(float *, const X *, const int32_t *, int, int, int, int,     \
                                                     cudaStream_t);                                               \
    template llm_status cuda_crossentropy_backward<X>(X *, const X *, const int32_t *, float, int, int, int, int, \
                                                      cudaStream_t);                                              \
    template llm_status cuda_crossentropy_backward_cols<X>(X *, const X *, const float *, const int32_t *, float, \
                                                           int, int, int, int, int, int, cudaStream_t);
CE_INSTANTIATE(float)
CE_INSTANTIATE(bf16)
