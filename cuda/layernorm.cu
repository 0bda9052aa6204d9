/*
 * layernorm.cu — layer normalisation over the channel dimension on CUDA (mirrors
 * csrc/cpu/layernorm.c), plus the fused residual + layernorm forward.
 *
 * Shapes (letters defined in ops.h):
 *   out, inp, residual, inp1, inp2, dinp, dout: (B,T,C) floatX   mean, rstd: (B,T) fp32
 *   weight, bias, dweight, dbias: (C) floatX
 *   mean = sum(x)/C, var = sum((x-mean)^2)/C (biased), rstd = 1/sqrt(var + 1e-5)
 *   out = (x - mean) * rstd * weight + bias
 * Gradient convention (ops.h): dweight += and dbias += (parameters), dinp += (activation).
 * residual_layernorm_forward: residual = inp1 + inp2 (rounded to floatX and stored), then
 * out = layernorm(residual) — exactly what the two unfused ops compute. residual may alias
 * inp1 or inp2.
 *
 * Forward: one warp per row (B*T rows of C), two passes over the row for the statistics (sum,
 * then centred sum of squares — no cancellation), a third to write; the row stays in L1/L2.
 * Backward, with n = (x - mean) * rstd and g = dout * weight per row:
 *   dinp += rstd * (g - mean(g) - n * mean(g * n))          kernel 1, one warp per row
 *   dweight += sum over rows of dout * n, dbias += sum over rows of dout:
 *     kernel 2: thread per channel, block row-chunks -> fp32 partial sums in device scratch
 *     kernel 3: thread per channel sums the partials in chunk order and accumulates
 * No atomics: the result does not depend on scheduling (deterministic run to run).
 * 128-bit loads when C is a multiple of the pack size and the pointers are 16-byte aligned.
 */
#include "cuda_ops.cuh"

#define LN_EPS 1e-5f
#define LN_THREADS 256            // 8 warps, 8 rows per block
#define LN_ROWS_PER_BLOCK (LN_THREADS / 32)
#define LN_PARTIAL_THREADS 256    // channels per block of the partial-sum kernel

// ----------------------------------------------------------------------------
// forward kernels

// Statistics of one row held in memory (x: C elements); every lane returns them.
template <typename floatX, int P>
__device__ __forceinline__ void row_stats(const floatX *x, int C, int lane, float &mu, float &s) {
    const int packs = C / P;
    float sum = 0.0f;
    for (int i = lane; i < packs; i += 32) {
        const Pack<floatX, P> v = load_pack<floatX, P>(x + (size_t)i * P);
#pragma unroll
        for (int k = 0; k < P; k++) sum += to_f32(v.v[k]);
    }
    mu = warp_sum(sum) / (float)C;
    float ss = 0.0f;
    for (int i = lane; i < packs; i += 32) {
        const Pack<floatX, P> v = load_pack<floatX, P>(x + (size_t)i * P);
#pragma unroll
        for (int k = 0; k < P; k++) {
            const float d = to_f32(v.v[k]) - mu;
            ss += d * d;
        }
    }
    s = 1.0f / sqrtf(warp_sum(ss) / (float)C + LN_EPS);
}

// out = (x - mu) * s * weight + bias for one row.
template <typename floatX, int P>
__device__ __forceinline__ void row_normalise(floatX *o, const floatX *x, const floatX *weight, const floatX *bias,
                                              int C, int lane, float mu, float s) {
    const int packs = C / P;
    for (int i = lane; i < packs; i += 32) {
        const Pack<floatX, P> v = load_pack<floatX, P>(x + (size_t)i * P);
        const Pack<floatX, P> w = load_pack<floatX, P>(weight + (size_t)i * P);
        const Pack<floatX, P> b = load_pack<floatX, P>(bias + (size_t)i * P);
        Pack<floatX, P> r;
#pragma unroll
        for (int k = 0; k < P; k++)
            r.v[k] = from_f32<floatX>((to_f32(v.v[k]) - mu) * s * to_f32(w.v[k]) + to_f32(b.v[k]));
        store_pack<floatX, P>(o + (size_t)i * P, r);
    }
}

template <typename floatX, int P>
static __global__ void layernorm_forward_kernel(floatX *out, float *mean, float *rstd, const floatX *inp,
                                                const floatX *weight, const floatX *bias, size_t rows, int C) {
    const size_t row = (size_t)blockIdx.x * LN_ROWS_PER_BLOCK + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return; // the whole warp leaves together
    const floatX *x = inp + row * C;
    float mu, s;
    row_stats<floatX, P>(x, C, lane, mu, s);
    row_normalise<floatX, P>(out + row * C, x, weight, bias, C, lane, mu, s);
    if (lane == 0) {
        if (mean) mean[row] = mu;
        if (rstd) rstd[row] = s;
    }
}

template <typename floatX, int P>
static __global__ void residual_layernorm_forward_kernel(floatX *residual, floatX *out, float *mean, float *rstd,
                                                         const floatX *inp1, const floatX *inp2,
                                                         const floatX *weight, const floatX *bias, size_t rows,
                                                         int C) {
    const size_t row = (size_t)blockIdx.x * LN_ROWS_PER_BLOCK + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const int packs = C / P;
    floatX *res = residual + row * C;
    const floatX *a = inp1 + row * C, *b = inp2 + row * C;
    // residual, rounded to floatX; each lane later re-reads only the packs it wrote itself
    for (int i = lane; i < packs; i += 32) {
        const Pack<floatX, P> va = load_pack<floatX, P>(a + (size_t)i * P), vb = load_pack<floatX, P>(b + (size_t)i * P);
        Pack<floatX, P> r;
#pragma unroll
        for (int k = 0; k < P; k++) r.v[k] = from_f32<floatX>(to_f32(va.v[k]) + to_f32(vb.v[k]));
        store_pack<floatX, P>(res + (size_t)i * P, r);
    }
    float mu, s;
    row_stats<floatX, P>(res, C, lane, mu, s);
    row_normalise<floatX, P>(out + row * C, res, weight, bias, C, lane, mu, s);
    if (lane == 0) {
        if (mean) mean[row] = mu;
        if (rstd) rstd[row] = s;
    }
}

// ----------------------------------------------------------------------------
// backward kernels

template <typename floatX, int P>
static __global__ void layernorm_backward_dinp_kernel(floatX *dinp, const floatX *dout, const floatX *inp,
                                                      const floatX *weight, const float *mean, const float *rstd,
                                                      size_t rows, int C) {
    const size_t row = (size_t)blockIdx.x * LN_ROWS_PER_BLOCK + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const int packs = C / P;
    const floatX *x = inp + row * C, *d = dout + row * C;
    floatX *dx = dinp + row * C;
    const float mu = mean[row], s = rstd[row];
    float sum_g = 0.0f, sum_gn = 0.0f;
    for (int i = lane; i < packs; i += 32) {
        const Pack<floatX, P> vx = load_pack<floatX, P>(x + (size_t)i * P), vd = load_pack<floatX, P>(d + (size_t)i * P);
        const Pack<floatX, P> vw = load_pack<floatX, P>(weight + (size_t)i * P);
#pragma unroll
        for (int k = 0; k < P; k++) {
            const float n = (to_f32(vx.v[k]) - mu) * s, g = to_f32(vd.v[k]) * to_f32(vw.v[k]);
            sum_g += g;
            sum_gn += g * n;
        }
    }
    const float mean_g = warp_sum(sum_g) / (float)C, mean_gn = warp_sum(sum_gn) / (float)C;
    for (int i = lane; i < packs; i += 32) {
        const Pack<floatX, P> vx = load_pack<floatX, P>(x + (size_t)i * P), vd = load_pack<floatX, P>(d + (size_t)i * P);
        const Pack<floatX, P> vw = load_pack<floatX, P>(weight + (size_t)i * P);
        Pack<floatX, P> g0 = load_pack<floatX, P>(dx + (size_t)i * P);
#pragma unroll
        for (int k = 0; k < P; k++) {
            const float n = (to_f32(vx.v[k]) - mu) * s, g = to_f32(vd.v[k]) * to_f32(vw.v[k]);
            g0.v[k] = from_f32<floatX>(to_f32(g0.v[k]) + s * (g - mean_g - n * mean_gn));
        }
        store_pack<floatX, P>(dx + (size_t)i * P, g0);
    }
}

// partial_w/partial_b: (chunks, C). Block (x: channel block, y: chunk of rows_per_chunk rows).
template <typename floatX>
static __global__ void layernorm_backward_partial_kernel(float *partial_w, float *partial_b, const floatX *dout,
                                                         const floatX *inp, const float *mean, const float *rstd,
                                                         size_t rows, size_t rows_per_chunk, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const size_t r0 = (size_t)blockIdx.y * rows_per_chunk;
    const size_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    float acc_w = 0.0f, acc_b = 0.0f;
    for (size_t r = r0; r < r1; r++) {
        const float d = to_f32(dout[r * C + c]);
        const float n = (to_f32(inp[r * C + c]) - mean[r]) * rstd[r];
        acc_w += d * n;
        acc_b += d;
    }
    partial_w[(size_t)blockIdx.y * C + c] = acc_w;
    partial_b[(size_t)blockIdx.y * C + c] = acc_b;
}

template <typename floatX>
static __global__ void layernorm_backward_finish_kernel(floatX *dweight, floatX *dbias, const float *partial_w,
                                                        const float *partial_b, int chunks, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float w = 0.0f, b = 0.0f;
    for (int k = 0; k < chunks; k++) {
        w += partial_w[(size_t)k * C + c];
        b += partial_b[(size_t)k * C + c];
    }
    dweight[c] = from_f32<floatX>(to_f32(dweight[c]) + w);
    dbias[c] = from_f32<floatX>(to_f32(dbias[c]) + b);
}

// ----------------------------------------------------------------------------
// launchers

static unsigned ln_row_blocks(size_t rows) { return (unsigned)((rows + LN_ROWS_PER_BLOCK - 1) / LN_ROWS_PER_BLOCK); }

template <typename floatX>
static void layernorm_forward_launch(floatX *out, float *mean, float *rstd, const floatX *inp, const floatX *weight,
                                     const floatX *bias, size_t rows, int C, cudaStream_t stream) {
    constexpr int P = pack128<floatX>();
    if (C % P == 0 && aligned16(out, inp, weight, bias))
        layernorm_forward_kernel<floatX, P><<<ln_row_blocks(rows), LN_THREADS, 0, stream>>>(out, mean, rstd, inp,
                                                                                           weight, bias, rows, C);
    else
        layernorm_forward_kernel<floatX, 1><<<ln_row_blocks(rows), LN_THREADS, 0, stream>>>(out, mean, rstd, inp,
                                                                                           weight, bias, rows, C);
}

template <typename floatX>
static void residual_layernorm_forward_launch(floatX *residual, floatX *out, float *mean, float *rstd,
                                              const floatX *inp1, const floatX *inp2, const floatX *weight,
                                              const floatX *bias, size_t rows, int C, cudaStream_t stream) {
    constexpr int P = pack128<floatX>();
    if (C % P == 0 && aligned16(residual, out, inp1, inp2, weight, bias))
        residual_layernorm_forward_kernel<floatX, P><<<ln_row_blocks(rows), LN_THREADS, 0, stream>>>(
            residual, out, mean, rstd, inp1, inp2, weight, bias, rows, C);
    else
        residual_layernorm_forward_kernel<floatX, 1><<<ln_row_blocks(rows), LN_THREADS, 0, stream>>>(
            residual, out, mean, rstd, inp1, inp2, weight, bias, rows, C);
}

// Row chunks of the parameter-gradient partial sums: enough blocks to fill the device (about
// 8 blocks of 256 threads per SM), each chunk at least 16 rows.
static void ln_chunks(size_t rows, int C, size_t *chunks, size_t *rows_per_chunk) {
    const size_t cblocks = ((size_t)C + LN_PARTIAL_THREADS - 1) / LN_PARTIAL_THREADS;
    const size_t target = (size_t)(llm_cuda_sm_count > 0 ? llm_cuda_sm_count : 132) * 8;
    size_t want = (target + cblocks - 1) / cblocks;
    size_t max_chunks = (rows + 15) / 16;
    if (want > max_chunks) want = max_chunks;
    if (want > 65535) want = 65535; // gridDim.y limit
    if (want < 1) want = 1;
    *rows_per_chunk = (rows + want - 1) / want;
    *chunks = (rows + *rows_per_chunk - 1) / *rows_per_chunk;
}

template <typename floatX>
static void layernorm_backward_launch(floatX *dinp, floatX *dweight, floatX *dbias, float *partials,
                                      const floatX *dout, const floatX *inp, const floatX *weight, const float *mean,
                                      const float *rstd, size_t rows, int C, size_t chunks, size_t rows_per_chunk,
                                      cudaStream_t stream) {
    constexpr int P = pack128<floatX>();
    if (C % P == 0 && aligned16(dinp, dout, inp, weight))
        layernorm_backward_dinp_kernel<floatX, P><<<ln_row_blocks(rows), LN_THREADS, 0, stream>>>(
            dinp, dout, inp, weight, mean, rstd, rows, C);
    else
        layernorm_backward_dinp_kernel<floatX, 1><<<ln_row_blocks(rows), LN_THREADS, 0, stream>>>(
            dinp, dout, inp, weight, mean, rstd, rows, C);
    const unsigned cblocks = (unsigned)((C + LN_PARTIAL_THREADS - 1) / LN_PARTIAL_THREADS);
    float *partial_w = partials, *partial_b = partials + chunks * (size_t)C;
    layernorm_backward_partial_kernel<floatX><<<dim3(cblocks, (unsigned)chunks), LN_PARTIAL_THREADS, 0, stream>>>(
        partial_w, partial_b, dout, inp, mean, rstd, rows, rows_per_chunk, C);
    layernorm_backward_finish_kernel<floatX><<<cblocks, LN_PARTIAL_THREADS, 0, stream>>>(
        dweight, dbias, partial_w, partial_b, (int)chunks, C);
}

// ----------------------------------------------------------------------------
// entries

static llm_status ln_check_sizes(const char *op, int B, int T, int C) {
    if (B <= 0 || T <= 0 || C <= 0) return llm_fail(LLM_EINVAL, "%s: sizes must be positive (B=%d T=%d C=%d)", op, B, T, C);
    if ((size_t)B * (size_t)T > (size_t)INT32_MAX * LN_ROWS_PER_BLOCK)
        return llm_fail(LLM_EINVAL, "%s: too many rows (B*T=%zu)", op, (size_t)B * (size_t)T);
    return LLM_OK;
}

template <typename floatX>
llm_status cuda_layernorm_forward(floatX *out, float *mean, float *rstd, const floatX *inp, const floatX *weight,
                                  const floatX *bias, int B, int T, int C, cudaStream_t stream) {
    LLM_TRY(ln_check_sizes("layernorm_forward", B, T, C));
    if (!out || !inp || !weight || !bias) return llm_fail(LLM_EINVAL, "layernorm_forward: NULL pointer");
    layernorm_forward_launch(out, mean, rstd, inp, weight, bias, (size_t)B * T, C, stream);
    CUDA_TRY_LAUNCH("layernorm_forward");
    return LLM_OK;
}

template <typename floatX>
llm_status cuda_residual_layernorm_forward(floatX *residual, floatX *out, float *mean, float *rstd,
                                           const floatX *inp1, const floatX *inp2, const floatX *weight,
                                           const floatX *bias, int B, int T, int C, cudaStream_t stream) {
    LLM_TRY(ln_check_sizes("residual_layernorm_forward", B, T, C));
    if (!residual || !out || !inp1 || !inp2 || !weight || !bias)
        return llm_fail(LLM_EINVAL, "residual_layernorm_forward: NULL pointer");
    residual_layernorm_forward_launch(residual, out, mean, rstd, inp1, inp2, weight, bias, (size_t)B * T, C, stream);
    CUDA_TRY_LAUNCH("residual_layernorm_forward");
    return LLM_OK;
}

template <typename floatX>
llm_status cuda_layernorm_backward(floatX *dinp, floatX *dweight, floatX *dbias, const floatX *dout,
                                   const floatX *inp, const floatX *weight, const float *mean, const float *rstd,
                                   int B, int T, int C, cudaStream_t stream) {
    LLM_TRY(ln_check_sizes("layernorm_backward", B, T, C));
    if (!dinp || !dweight || !dbias || !dout || !inp || !weight || !mean || !rstd)
        return llm_fail(LLM_EINVAL, "layernorm_backward: NULL pointer");
    const size_t rows = (size_t)B * T;
    size_t chunks, rows_per_chunk;
    ln_chunks(rows, C, &chunks, &rows_per_chunk);
    void *scratch;
    LLM_TRY(cuda_device_scratch(&scratch, 2 * chunks * (size_t)C * sizeof(float)));
    layernorm_backward_launch(dinp, dweight, dbias, (float *)scratch, dout, inp, weight, mean, rstd, rows, C, chunks,
                              rows_per_chunk, stream);
    CUDA_TRY_LAUNCH("layernorm_backward");
    return LLM_OK;
}

#define LN_INSTANTIATE(X)                                                                                          \
    template llm_status cuda_layernorm_forward<X>(X *, float *, float *, const X *, const X *, const X *, int, int, \
                                                  int, cudaStream_t);                                              \
    template llm_status cuda_residual_layernorm_forward<X>(X *, X *, float *, float *, const X *, const X *,       \
                                                           const X *, const X *, int, int, int, cudaStream_t);     \
    template llm_status cuda_layernorm_backward<X>(X *, X *, X *, const X *, const X *, const X *, const float *,  \
                                                   const float *, int, int, int, cudaStream_t);
LN_INSTANTIATE(float)
LN_INSTANTIATE(bf16)
