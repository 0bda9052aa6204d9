/*
 * decode.cu — the CUDA ops of generation with a KV cache (ops.h: encoder_at, attention_cached,
 * matmul_rows), driven by csrc/core/generate.c; mirrors csrc/cpu/decode.c.
 *
 * Shapes (letters defined in ops.h; hs = C/NH; S cache slots of maxT positions):
 *   encoder_at        out (N,T,C) = wte[inp[n,t]] + wpe[pos[n]+t]
 *   attention_cached  kcache, vcache: (S,NH,maxT,hs); qkv: (N,T,3C); out: (N,T,C); rows, pos: (N)
 *                     keys/values of (n,t) go to slot rows[n], position pos[n]+t; query (n,t)
 *                     attends over positions 0 .. pos[n]+t of its slot
 *   matmul_rows       out (M,OC) = inp (M,C) @ weight^T + bias, weight (OC,C) of floatX, or bf16
 *                     under an fp32 table
 * Forward only; every index array (inp, rows, pos) is device memory. fp32 arithmetic throughout.
 *
 * attention_cached: a kernel copies the new keys and values into the cache, then one block per
 * query (n, t, h): each warp walks a stripe of the keys with an online softmax (running maximum,
 * sum and weighted values, the head's channels spread over the lanes), and the warps' partial
 * results are merged through shared memory. No score buffer: any context length fits.
 * matmul_rows (the decoding GEMV): one warp per output column streams its weight row once,
 * 128-bit loads where aligned, and multiplies it with up to ROWS_M input rows at a time
 * (registers), so each weight is read once per ROWS_M rows; lanes' sums meet by shuffles.
 */
#include <type_traits>

#include "cuda_ops.cuh"

#define DEC_THREADS 256
#define ATT_WARPS 4        // warps per query block
#define ATT_MAX_HS 256     // head sizes up to this (8 channels per lane)
#define ROWS_M 8           // input rows per pass of matmul_rows
#define ROWS_WARPS 8       // output columns per block of matmul_rows

// ----------------------------------------------------------------------------
// kernels

template <typename floatX>
static __global__ void encoder_at_kernel(floatX *out, const int32_t *inp, const int32_t *pos, const floatX *wte,
                                         const floatX *wpe, size_t NT, int T, int C) {
    const size_t n_elems = NT * (size_t)C, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_elems; i += stride) {
        const size_t nt = i / C, c = i % C, n = nt / T, t = nt % T;
        const float a = to_f32(wte[(size_t)inp[nt] * C + c]), b = to_f32(wpe[((size_t)pos[n] + t) * C + c]);
        out[i] = from_f32<floatX>(a + b);
    }
}

// One thread per channel of a new key (and value): into slot rows[n] at position pos[n] + t.
template <typename floatX>
static __global__ void kv_store_kernel(floatX *kcache, floatX *vcache, const floatX *qkv, const int32_t *rows,
                                       const int32_t *pos, int N, int T, int C, int NH, int maxT) {
    const int hs = C / NH;
    const size_t n_elems = (size_t)N * T * C, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_elems; i += stride) {
        const size_t nt = i / C, c = i % C, n = nt / T, t = nt % T, h = c / hs, d = c % hs;
        const size_t at = (((size_t)rows[n] * NH + h) * maxT + (size_t)pos[n] + t) * hs + d;
        const floatX *src = qkv + nt * 3 * (size_t)C + C + c;
        kcache[at] = src[0];
        vcache[at] = src[C];
    }
}

// One block (ATT_WARPS warps) per query (n, t, h), blockIdx.x = (n * T + t) * NH + h.
template <typename floatX>
static __global__ void attention_cached_kernel(floatX *out, const floatX *kcache, const floatX *vcache,
                                               const floatX *qkv, const int32_t *rows, const int32_t *pos, int T,
                                               int C, int NH, int maxT, float scale) {
    constexpr int PER_LANE = ATT_MAX_HS / 32;
    __shared__ float s_m[ATT_WARPS], s_s[ATT_WARPS], s_o[ATT_WARPS][ATT_MAX_HS];
    const int hs = C / NH, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const size_t q_index = blockIdx.x / NH, h = blockIdx.x % NH, n = q_index / T, t = q_index % T;
    const int np = pos[n] + (int)t + 1; // keys 0 .. pos + t
    const floatX *q = qkv + q_index * 3 * (size_t)C + h * hs;
    const size_t head = ((size_t)rows[n] * NH + h) * (size_t)maxT * hs;
    const floatX *K = kcache + head, *V = vcache + head;

    float qr[PER_LANE], acc[PER_LANE];
#pragma unroll
    for (int k = 0; k < PER_LANE; k++) {
        const int d = lane + 32 * k;
        qr[k] = d < hs ? to_f32(q[d]) * scale : 0.0f;
        acc[k] = 0.0f;
    }
    float m = -INFINITY, s = 0.0f;
    for (int j = warp; j < np; j += ATT_WARPS) {
        const floatX *kj = K + (size_t)j * hs, *vj = V + (size_t)j * hs;
        float dot = 0.0f;
#pragma unroll
        for (int k = 0; k < PER_LANE; k++) {
            const int d = lane + 32 * k;
            if (d < hs) dot += qr[k] * to_f32(kj[d]);
        }
        const float score = warp_sum(dot);
        const float m2 = fmaxf(m, score), corr = expf(m - m2), p = expf(score - m2);
        s = s * corr + p;
#pragma unroll
        for (int k = 0; k < PER_LANE; k++) {
            const int d = lane + 32 * k;
            if (d < hs) acc[k] = acc[k] * corr + p * to_f32(vj[d]);
        }
        m = m2;
    }
    if (lane == 0) s_m[warp] = m, s_s[warp] = s;
#pragma unroll
    for (int k = 0; k < PER_LANE; k++) {
        const int d = lane + 32 * k;
        if (d < hs) s_o[warp][d] = acc[k];
    }
    __syncthreads();
    float M = -INFINITY;
    for (int w = 0; w < ATT_WARPS; w++) M = fmaxf(M, s_m[w]);
    float den = 0.0f;
    for (int w = 0; w < ATT_WARPS; w++) den += s_m[w] == -INFINITY ? 0.0f : s_s[w] * expf(s_m[w] - M);
    floatX *o = out + q_index * (size_t)C + h * hs;
    for (int d = threadIdx.x; d < hs; d += blockDim.x) {
        float num = 0.0f;
        for (int w = 0; w < ATT_WARPS; w++)
            if (s_m[w] != -INFINITY) num += s_o[w][d] * expf(s_m[w] - M);
        o[d] = from_f32<floatX>(num / den);
    }
}

// One warp per output column o: out[m, o] = sum_c inp[m, c] * w[o, c] + bias[o] for ROWS_M rows
// m0 .. m0 + mb at a time. P: elements per load of the weight row (8 bf16 / 4 fp32 = 128 bits,
// or 1), PX the same for the input rows.
template <typename floatX, typename W, int P, int PX>
static __global__ void matmul_rows_kernel(floatX *out, const floatX *inp, const W *weight, const floatX *bias, int M,
                                          int C, int OC) {
    const int lane = threadIdx.x % 32;
    const int o = blockIdx.x * ROWS_WARPS + threadIdx.x / 32;
    if (o >= OC) return;
    const W *w = weight + (size_t)o * C;
    for (int m0 = 0; m0 < M; m0 += ROWS_M) {
        const int mb = M - m0 < ROWS_M ? M - m0 : ROWS_M;
        float acc[ROWS_M];
#pragma unroll
        for (int i = 0; i < ROWS_M; i++) acc[i] = 0.0f;
        for (int c = lane * P; c < C; c += 32 * P) {
            const Pack<W, P> wp = load_pack_cs<W, P>(w + c);
#pragma unroll
            for (int i = 0; i < ROWS_M; i++) {
                if (i >= mb) break;
                const floatX *x = inp + (size_t)(m0 + i) * C + c;
#pragma unroll
                for (int k0 = 0; k0 < P; k0 += PX) {
                    const Pack<floatX, PX> xp = load_pack<floatX, PX>(x + k0);
#pragma unroll
                    for (int k = 0; k < PX; k++) acc[i] += to_f32(wp.v[k0 + k]) * to_f32(xp.v[k]);
                }
            }
        }
#pragma unroll
        for (int i = 0; i < ROWS_M; i++) {
            if (i >= mb) break;
            const float sum = warp_sum(acc[i]);
            if (lane == 0)
                out[(size_t)(m0 + i) * OC + o] = from_f32<floatX>(sum + (bias ? to_f32(bias[o]) : 0.0f));
        }
    }
}

// ----------------------------------------------------------------------------
// launchers

template <typename floatX, typename W>
static void matmul_rows_launch(floatX *out, const floatX *inp, const W *weight, const floatX *bias, int M, int C,
                               int OC, cudaStream_t stream) {
    constexpr int P = pack128<W>(), PX = pack128<floatX>() < P ? pack128<floatX>() : P;
    const unsigned grid = (unsigned)((OC + ROWS_WARPS - 1) / ROWS_WARPS), threads = 32 * ROWS_WARPS;
    // 128-bit loads when every row starts on a 16-byte boundary
    if (C % P == 0 && C % PX == 0 && aligned16(inp, weight) && ((size_t)C * sizeof(W)) % 16 == 0 &&
        ((size_t)C * sizeof(floatX)) % 16 == 0)
        matmul_rows_kernel<floatX, W, P, PX><<<grid, threads, 0, stream>>>(out, inp, weight, bias, M, C, OC);
    else
        matmul_rows_kernel<floatX, W, 1, 1><<<grid, threads, 0, stream>>>(out, inp, weight, bias, M, C, OC);
}

// ----------------------------------------------------------------------------
// entries

template <typename floatX>
llm_status cuda_encoder_at(floatX *out, const int32_t *inp, const int32_t *pos, const floatX *wte, const floatX *wpe,
                           int N, int T, int C, cudaStream_t stream) {
    if (N < 1 || T < 1 || C < 1) return llm_fail(LLM_EINVAL, "encoder_at: bad sizes N=%d T=%d C=%d", N, T, C);
    if (!out || !inp || !pos || !wte || !wpe) return llm_fail(LLM_EINVAL, "encoder_at: NULL pointer");
    const size_t NT = (size_t)N * T;
    encoder_at_kernel<floatX><<<grid_for(NT * C, DEC_THREADS), DEC_THREADS, 0, stream>>>(out, inp, pos, wte, wpe, NT,
                                                                                         T, C);
    CUDA_TRY_LAUNCH("encoder_at");
    return LLM_OK;
}

template <typename floatX>
llm_status cuda_attention_cached(floatX *out, floatX *kcache, floatX *vcache, const floatX *qkv, const int32_t *rows,
                                 const int32_t *pos, int N, int T, int C, int NH, int maxT, cudaStream_t stream) {
    if (N < 1 || T < 1 || NH < 1 || C % NH != 0 || maxT < T)
        return llm_fail(LLM_EINVAL, "attention_cached: bad sizes N=%d T=%d C=%d NH=%d maxT=%d", N, T, C, NH, maxT);
    if (C / NH > ATT_MAX_HS)
        return llm_fail(LLM_EUNSUPPORTED, "attention_cached: head size %d above %d", C / NH, ATT_MAX_HS);
    if (!out || !kcache || !vcache || !qkv || !rows || !pos) return llm_fail(LLM_EINVAL, "attention_cached: NULL pointer");
    const size_t NTC = (size_t)N * T * C, queries = (size_t)N * T * NH;
    if (queries > 0x7fffffffu) return llm_fail(LLM_EINVAL, "attention_cached: %zu queries in one call", queries);
    kv_store_kernel<floatX><<<grid_for(NTC, DEC_THREADS), DEC_THREADS, 0, stream>>>(kcache, vcache, qkv, rows, pos, N,
                                                                                    T, C, NH, maxT);
    CUDA_TRY_LAUNCH("attention_cached (store)");
    const float scale = 1.0f / sqrtf((float)(C / NH));
    attention_cached_kernel<floatX><<<(unsigned)queries, 32 * ATT_WARPS, 0, stream>>>(out, kcache, vcache, qkv, rows,
                                                                                       pos, T, C, NH, maxT, scale);
    CUDA_TRY_LAUNCH("attention_cached");
    return LLM_OK;
}

template <typename floatX>
llm_status cuda_matmul_rows(floatX *out, const floatX *inp, const void *weight, llm_dtype wtype, const floatX *bias,
                            int M, int C, int OC, cudaStream_t stream) {
    if (M < 1 || C < 1 || OC < 1) return llm_fail(LLM_EINVAL, "matmul_rows: bad sizes M=%d C=%d OC=%d", M, C, OC);
    if (!out || !inp || !weight) return llm_fail(LLM_EINVAL, "matmul_rows: NULL pointer");
    if (wtype == LLM_BF16) {
        matmul_rows_launch<floatX, bf16>(out, inp, (const bf16 *)weight, bias, M, C, OC, stream);
    } else if constexpr (std::is_same<floatX, float>::value) {
        if (wtype != LLM_F32) return llm_fail(LLM_EINVAL, "matmul_rows: unknown weight type %d", (int)wtype);
        matmul_rows_launch<floatX, float>(out, inp, (const float *)weight, bias, M, C, OC, stream);
    } else {
        return llm_fail(LLM_EINVAL, "matmul_rows: fp32 weights in a %s table", dtype_name<floatX>());
    }
    CUDA_TRY_LAUNCH("matmul_rows");
    return LLM_OK;
}

template llm_status cuda_encoder_at<float>(float *, const int32_t *, const int32_t *, const float *, const float *,
                                           int, int, int, cudaStream_t);
template llm_status cuda_encoder_at<bf16>(bf16 *, const int32_t *, const int32_t *, const bf16 *, const bf16 *, int,
                                          int, int, cudaStream_t);
template llm_status cuda_attention_cached<float>(float *, float *, float *, const float *, const int32_t *,
                                                 const int32_t *, int, int, int, int, int, cudaStream_t);
template llm_status cuda_attention_cached<bf16>(bf16 *, bf16 *, bf16 *, const bf16 *, const int32_t *,
                                                const int32_t *, int, int, int, int, int, cudaStream_t);
template llm_status cuda_matmul_rows<float>(float *, const float *, const void *, llm_dtype, const float *, int, int,
                                            int, cudaStream_t);
template llm_status cuda_matmul_rows<bf16>(bf16 *, const bf16 *, const void *, llm_dtype, const bf16 *, int, int, int,
                                           cudaStream_t);
