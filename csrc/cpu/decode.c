/*
 * decode.c — the CPU ops of generation with a KV cache (ops.h: encoder_at, attention_cached,
 * matmul_rows), driven by csrc/core/generate.c.
 *
 * Shapes (letters defined in ops.h; hs = C/NH; S cache slots of maxT positions):
 *   encoder_at        out (N,T,C) = wte[inp[n,t]] + wpe[pos[n]+t]
 *   attention_cached  kcache, vcache: (S,NH,maxT,hs); qkv: (N,T,3C); out: (N,T,C)
 *                     keys/values of (n,t) go to slot rows[n], position pos[n]+t; query (n,t)
 *                     attends over positions 0 .. pos[n]+t of its slot
 *   matmul_rows       out (M,OC) = inp (M,C) @ weight^T + bias, weight (OC,C) fp32 or bf16
 * Forward only: generation has no gradients.
 *
 * matmul_rows is the decoding GEMV. With M (sequences) small, the training GEMM's packing of
 * the weight would cost as much memory traffic as the product itself, and decoding is bound by
 * the bytes of weights read per token. So every weight row is read once, straight from the
 * parameters, and multiplied with all M input rows while it is in registers: OB = 4 weight rows
 * times up to MB = 4 input rows per register tile (16 vector accumulators), input rows from L1.
 * The weights are prefetched PF_BYTES ahead: with several input rows the loop spends more
 * instructions per cache line, and the out-of-order window alone then keeps too few lines in
 * flight (measured on 2 Sapphire Rapids cores: batch-8 bf16 from 41% to ~55% of a plain sum's
 * bandwidth, batch 1 bf16 from 85% to ~95%). The OB rows of a tile are contiguous, so the
 * prefetches run PF_BYTES ahead of the tile's position in that flat stream (not of each row:
 * a bf16 row of 768 weights is 1.5 KiB, so "2 KiB further along row j" fell in rows the tile was
 * already reading, and the next tile's lines were not requested ahead; dev/cpu/decode.c: the
 * bf16 GEMVs of a GPT-2 124M step from 9.4-9.9 to 9.1 ms on 2 cores, fp32 17.6-19.3 to 17.3).
 * Threads own disjoint blocks of output columns (contiguous weight rows, so each streams its own
 * part of the matrix; handed out dynamically, so that a thread the OS preempts holds no one up);
 * each output is reduced by one thread in a fixed order (vector lanes, then the lanes added as a
 * tree, four outputs at a time with AVX-512), so results do not depend on the thread count.
 * bf16 weights (half the bytes per token) are multiplied in one of two ways:
 *   - AVX-512 BF16 (VDPBF16PS, in the avx512 variant when the CPU has avx512_bf16): the M input
 *     rows are rounded to bf16 once per call, then each instruction multiplies 32 bf16 pairs and
 *     accumulates in fp32;
 *   - elsewhere, the conversion path: 16-bit weights widened to fp32 (a shift), fp32 FMAs with
 *     the fp32 inputs (only the weights are rounded).
 *
 * attention_cached is parallel over (sequence, head, query); each query computes its scores
 * in fp32 (dot products in vector lanes, four keys' lanes reduced together), the softmax with cpu_expf, and the weighted sum of
 * values, in a per-thread buffer of maxT scores (cpu_scratch slot 2).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_DPBF16 1
#endif

#include "core/common.h"
#include "cpu_ops.h"

#define OB 4 // weight rows per register tile
#define MB 4 // input rows per register tile
#define ATT_PAR_MIN (1 << 20) // multiply-adds below which attention_cached runs on one thread
#define ROWS_PAR_MIN (1 << 18) // weights below which matmul_rows runs on one thread
#ifndef PF_BYTES
#define PF_BYTES 2048 // how far ahead in each weight row the GEMV prefetches (measured: 512..2048 alike)
#endif
#define ROWS_CHUNK 16 // blocks of OB weight rows a thread takes at a time (dynamic: a preempted thread holds up no one)
// The OB rows of a tile (from row o0 of w) are contiguous: the prefetch streams PF_BYTES ahead of
// the tile's position in that flat run, after the j-th load of n elements at column c.
#define PREFETCH_W(w, ldw, o0, c, j, n) \
    CPU_PREFETCH((const char *)((w) + (size_t)(o0) * (ldw)) + PF_BYTES + (size_t)(OB * (c) + (j) * (n)) * sizeof *(w))
#define SCORES_SLOT 2 // cpu_scratch slot: attention scores of one query
#define XBF16_SLOT 3  // cpu_scratch slot: the input rows rounded to bf16 (VDPBF16PS path)

// ----------------------------------------------------------------------------
// vector types (GCC/Clang vector extensions; plain C elsewhere)

#if defined(__GNUC__) || defined(__clang__)
#if defined(__AVX512F__)
#define VL 16
#elif defined(__AVX__)
#define VL 8
#else
#define VL 4
#endif
typedef float vf __attribute__((vector_size(VL * sizeof(float)), aligned(4)));
typedef uint16_t vh __attribute__((vector_size(VL * sizeof(uint16_t)), aligned(2)));
typedef uint32_t vu __attribute__((vector_size(VL * sizeof(uint32_t))));
#define HAVE_VEC 1

// lanes summed as a tree (halves added until one lane is left): a fixed order, so the result is
// the same on every call, and a short dependency chain (one of these per output)
static inline float hsum(vf v) {
    float a[VL];
    memcpy(a, &v, sizeof a);
    for (int w = VL / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) a[l] += a[l + w];
    return a[0];
}
// s[j] = the lanes of a[j] summed, j < 4, in a fixed order. With AVX-512 the four reductions
// share their shuffles (pairs interleaved, then 128-bit lanes added): about a third of the
// instructions of four separate trees, which matters once several rows share each weight.
#if defined(__AVX512F__)
static inline void hsum4_512(__m512 a0, __m512 a1, __m512 a2, __m512 a3, float s[4]) {
    const __m512 t0 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
    const __m512 t1 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
    const __m512 t = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t1))),
                                   _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t1))));
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(t), _mm512_extractf32x8_ps(t, 1));
    _mm_storeu_ps(s, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}
#endif
static inline void hsum4(vf a0, vf a1, vf a2, vf a3, float s[4]) {
#if defined(__AVX512F__) && VL == 16
    hsum4_512((__m512)a0, (__m512)a1, (__m512)a2, (__m512)a3, s);
#else
    s[0] = hsum(a0), s[1] = hsum(a1), s[2] = hsum(a2), s[3] = hsum(a3);
#endif
}
static inline vf load_f32(const float *p) { return *(const vf *)p; }
// bf16 widened to fp32 exactly: the 16 bits become the high half of the fp32 word
static inline vf load_bf16(const uint16_t *p) {
    vu u = __builtin_convertvector(*(const vh *)p, vu) << 16;
    return (vf)u;
}
#endif

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// ----------------------------------------------------------------------------
// encoder_at

llm_status cpu_encoder_at(float *out, const int32_t *inp, const int32_t *pos, const float *wte, const float *wpe,
                          int N, int T, int C) {
    const long long NT = (long long)N * T;
#pragma omp parallel for if (NT > 16)
    for (long long i = 0; i < NT; i++) {
        const size_t n = (size_t)(i / T), t = (size_t)(i % T);
        float *o = out + (size_t)i * C;
        const float *tok = wte + (size_t)inp[i] * C, *p = wpe + ((size_t)pos[n] + t) * C;
        for (int c = 0; c < C; c++) o[c] = tok[c] + p[c];
    }
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// attention_cached

// sum of a[i] * b[i] in fp32, in 16 independent lanes so the loop vectorises
static inline float dot_f32(const float *a, const float *b, size_t n) {
    float lane[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) lane[l] += a[i + l] * b[i + l];
    float s = 0.0f;
    for (; i < n; i++) s += a[i] * b[i];
    for (int l = 0; l < 16; l++) s += lane[l];
    return s;
}

#ifdef HAVE_VEC
// s[j] = (q . k_j) * scale for the 4 keys k_j = k + j*n, each summed in vector lanes (then the tail
// of n % VL channels in order) and the lanes of the four reduced together (hsum4): one horizontal
// reduction per four scores instead of a 16-step scalar chain per score
static inline void scores4(float *s, const float *q, const float *k, size_t n, float scale) {
    vf a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    size_t i = 0;
    for (; i + VL <= n; i += VL) {
        const vf qv = load_f32(q + i);
        a0 += qv * load_f32(k + i);
        a1 += qv * load_f32(k + n + i);
        a2 += qv * load_f32(k + 2 * n + i);
        a3 += qv * load_f32(k + 3 * n + i);
    }
    hsum4(a0, a1, a2, a3, s);
    for (int j = 0; j < 4; j++) {
        for (size_t c = i; c < n; c++) s[j] += q[c] * k[j * n + c];
        s[j] *= scale;
    }
}
#endif

llm_status cpu_attention_cached(float *out, float *kcache, float *vcache, const float *qkv, const int32_t *rows,
                                const int32_t *pos, int N, int T, int C, int NH, int maxT) {
    const size_t hs = (size_t)(C / NH), C3 = 3 * (size_t)C, Tz = (size_t)T, mT = (size_t)maxT;
    const float scale = 1.0f / sqrtf((float)hs);
    const long long units = (long long)N * NH * T;
    int failed = 0;
    // multiply-adds of the scores, bounded above; one thread below ATT_PAR_MIN (decoding a few
    // sequences over short contexts)
    int longest = 0;
    for (int n = 0; n < N; n++) longest = pos[n] > longest ? pos[n] : longest;
    const int parallel = (double)units * (longest + T) * hs >= ATT_PAR_MIN;
    (void)parallel; // read by the OpenMP clauses only

    // the new keys and values into the cache
#pragma omp parallel for if (parallel)
    for (long long u = 0; u < units; u++) {
        const size_t n = (size_t)u / (NH * Tz), h = (size_t)u / Tz % NH, t = (size_t)u % Tz;
        const size_t at = (((size_t)rows[n] * NH + h) * mT + (size_t)pos[n] + t) * hs;
        const float *k = qkv + ((size_t)n * Tz + t) * C3 + C + h * hs;
        memcpy(kcache + at, k, hs * sizeof(float));
        memcpy(vcache + at, k + C, hs * sizeof(float));
    }

#pragma omp parallel if (parallel)
    {
        float *att = cpu_scratch(SCORES_SLOT, mT);
        if (!att) {
#pragma omp atomic write
            failed = 1;
        }
        // the late (long) queries first
#pragma omp for schedule(dynamic, 1)
        for (long long u = 0; u < units; u++) {
            if (!att) continue;
            const size_t n = (size_t)u / (NH * Tz), h = (size_t)u / Tz % NH, t = Tz - 1 - (size_t)u % Tz;
            const size_t np = (size_t)pos[n] + t + 1; // keys 0 .. pos+t
            const float *q = qkv + ((size_t)n * Tz + t) * C3 + h * hs;
            const float *K = kcache + ((size_t)rows[n] * NH + h) * mT * hs, *V = vcache + (K - kcache);
            float *o = out + ((size_t)n * Tz + t) * (size_t)C + h * hs;
            size_t j = 0;
#ifdef HAVE_VEC
            for (; j + 4 <= np; j += 4) scores4(att + j, q, K + j * hs, hs, scale);
#endif
            for (; j < np; j++) att[j] = dot_f32(q, K + j * hs, hs) * scale;
            const float m = cpu_max(att, np);
            for (size_t j = 0; j < np; j++) att[j] = cpu_expf(att[j] - m);
            const float inv = (float)(1.0 / cpu_sum(att, np));
            memset(o, 0, hs * sizeof(float));
            for (size_t j = 0; j < np; j++) {
                const float p = att[j] * inv, *v = V + j * hs;
                for (size_t d = 0; d < hs; d++) o[d] += p * v[d];
            }
        }
    }
    if (failed) return llm_fail(LLM_ENOMEM, "attention_cached: out of memory for %d scores per thread", maxT);
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// matmul_rows: fp32 weights, and bf16 weights through the conversion path

// out[i, o0 + j] for i < mb, j < nw: OB weight rows against mb (<= MB, a constant after inlining)
// input rows. Rows beyond nw (a partial last block) repeat row 0 and are not stored.
#define DEFINE_TILE(NAME, WT, LOADW, WSCALAR)                                                                   \
    static inline __attribute__((always_inline)) void NAME(float *out, int ldo, const float *x, int ldx,       \
                                                           const WT *w, size_t ldw, const float *bias, int o0,   \
                                                           int nw, int C, const int mb) {                       \
        const WT *wr[OB];                                                                                       \
        for (int j = 0; j < OB; j++) wr[j] = w + (size_t)(o0 + (j < nw ? j : 0)) * ldw;                        \
        vf acc[OB][MB];                                                                                         \
        for (int j = 0; j < OB; j++)                                                                            \
            for (int i = 0; i < mb; i++) acc[j][i] = (vf){0};                                                  \
        int c = 0;                                                                                              \
        for (; c + VL <= C; c += VL) {                                                                          \
            vf wv[OB];                                                                                          \
            for (int j = 0; j < OB; j++) wv[j] = LOADW(wr[j] + c);                                              \
            for (int j = 0; j < OB; j++) PREFETCH_W(w, ldw, o0, c, j, VL);                                       \
            for (int i = 0; i < mb; i++) {                                                                      \
                const vf xv = load_f32(x + (size_t)i * ldx + c);                                                \
                for (int j = 0; j < OB; j++) acc[j][i] += wv[j] * xv;                                           \
            }                                                                                                   \
        }                                                                                                       \
        _Static_assert(OB == 4, "hsum4 reduces OB = 4 accumulators");                                          \
        for (int i = 0; i < mb; i++) {                                                                          \
            float s[4];                                                                                         \
            hsum4(acc[0][i], acc[1][i], acc[2][i], acc[3][i], s);                                               \
            for (int j = 0; j < nw; j++) {                                                                      \
                for (int cc = c; cc < C; cc++) s[j] += WSCALAR(wr[j][cc]) * x[(size_t)i * ldx + cc];            \
                out[(size_t)i * ldo + o0 + j] = s[j] + (bias ? bias[o0 + j] : 0.0f);                            \
            }                                                                                                   \
        }                                                                                                       \
    }

#define F32_SCALAR(v) (v)
#ifdef HAVE_VEC
DEFINE_TILE(tile_f32, float, load_f32, F32_SCALAR)
DEFINE_TILE(tile_bf16, uint16_t, load_bf16, bf16_to_f32)
#else
// plain C: one output at a time
#define DEFINE_SCALAR(NAME, WT, WSCALAR)                                                                        \
    static void NAME(float *out, int ldo, const float *x, int ldx, const WT *w, size_t ldw, const float *bias,  \
                     int o0, int nw, int C, const int mb) {                                                     \
        for (int j = 0; j < nw; j++)                                                                            \
            for (int i = 0; i < mb; i++) {                                                                      \
                float s = 0.0f;                                                                                 \
                for (int c = 0; c < C; c++) s += WSCALAR(w[(size_t)(o0 + j) * ldw + c]) * x[(size_t)i * ldx + c]; \
                out[(size_t)i * ldo + o0 + j] = s + (bias ? bias[o0 + j] : 0.0f);                              \
            }                                                                                                   \
    }
DEFINE_SCALAR(tile_f32, float, F32_SCALAR)
DEFINE_SCALAR(tile_bf16, uint16_t, bf16_to_f32)
#endif

// One block of OB output columns for all M rows, MB rows at a time (mb a constant per call site).
#define RUN_BLOCK(TILE, W)                                                                                      \
    do {                                                                                                        \
        for (int m0 = 0; m0 < M; m0 += MB) {                                                                    \
            const float *xm = inp + (size_t)m0 * C;                                                             \
            float *om = out + (size_t)m0 * OC;                                                                  \
            switch (M - m0 < MB ? M - m0 : MB) {                                                                \
            case 1: TILE(om, OC, xm, C, W, (size_t)C, bias, o0, nw, C, 1); break;                               \
            case 2: TILE(om, OC, xm, C, W, (size_t)C, bias, o0, nw, C, 2); break;                               \
            case 3: TILE(om, OC, xm, C, W, (size_t)C, bias, o0, nw, C, 3); break;                               \
            default: TILE(om, OC, xm, C, W, (size_t)C, bias, o0, nw, C, 4); break;                              \
            }                                                                                                   \
        }                                                                                                       \
    } while (0)

static void rows_f32(float *out, const float *inp, const float *w, const float *bias, int M, int C, int OC) {
    const long long blocks = (OC + OB - 1) / OB;
#pragma omp parallel for schedule(dynamic, ROWS_CHUNK) if ((size_t)OC * C >= ROWS_PAR_MIN)
    for (long long b = 0; b < blocks; b++) {
        const int o0 = (int)b * OB, nw = OC - o0 < OB ? OC - o0 : OB;
        RUN_BLOCK(tile_f32, w);
    }
}

static void rows_bf16_convert(float *out, const float *inp, const uint16_t *w, const float *bias, int M, int C,
                              int OC) {
    const long long blocks = (OC + OB - 1) / OB;
#pragma omp parallel for schedule(dynamic, ROWS_CHUNK) if ((size_t)OC * C >= ROWS_PAR_MIN)
    for (long long b = 0; b < blocks; b++) {
        const int o0 = (int)b * OB, nw = OC - o0 < OB ? OC - o0 : OB;
        RUN_BLOCK(tile_bf16, w);
    }
}

// ----------------------------------------------------------------------------
// matmul_rows: bf16 weights through AVX-512 BF16 (VDPBF16PS)

#ifdef HAVE_DPBF16
#define DP_TARGET __attribute__((target("avx512bf16,avx512bw,avx512vl,avx512f")))

// 1 when this CPU runs VDPBF16PS (asked once)
static int cpu_has_dpbf16(void) {
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
    }
    return known;
}

// xb (M, Cp) bf16 pairs: x rounded to nearest even, zero padded to Cp (a multiple of 32)
static DP_TARGET void round_rows_bf16(uint16_t *xb, const float *x, int M, int C, int Cp) {
    for (int i = 0; i < M; i++) {
        const float *src = x + (size_t)i * C;
        uint16_t *dst = xb + (size_t)i * Cp;
        for (int c = 0; c < Cp; c += 32) {
            const int n = C - c;
            const __mmask16 lo = n >= 16 ? 0xffff : (n > 0 ? (__mmask16)((1u << n) - 1) : 0);
            const __mmask16 hi = n >= 32 ? 0xffff : (n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0);
            const __m512 a = _mm512_maskz_loadu_ps(lo, src + c), b = _mm512_maskz_loadu_ps(hi, src + c + 16);
            __m512bh h = _mm512_cvtne2ps_pbh(b, a); // low half from a
            _mm512_storeu_si512((void *)(dst + c), (__m512i)h);
        }
    }
}

static inline DP_TARGET __attribute__((always_inline)) void tile_dp(float *out, int ldo, const uint16_t *xb, int Cp,
                                                                   const uint16_t *w, int C, const float *bias,
                                                                   int o0, int nw, const int mb) {
    const uint16_t *wr[OB];
    for (int j = 0; j < OB; j++) wr[j] = w + (size_t)(o0 + (j < nw ? j : 0)) * C;
    __m512 acc[OB][MB];
    for (int j = 0; j < OB; j++)
        for (int i = 0; i < mb; i++) acc[j][i] = _mm512_setzero_ps();
    int c = 0;
    for (; c + 32 <= C; c += 32) { // whole chunks: plain loads
        __m512bh wv[OB];
#pragma GCC unroll 4
        for (int j = 0; j < OB; j++) wv[j] = (__m512bh)_mm512_loadu_si512((const void *)(wr[j] + c));
#pragma GCC unroll 4
        for (int j = 0; j < OB; j++) PREFETCH_W(w, (size_t)C, o0, c, j, 32);
#pragma GCC unroll 4
        for (int i = 0; i < mb; i++) {
            const __m512bh xv = (__m512bh)_mm512_loadu_si512((const void *)(xb + (size_t)i * Cp + c));
#pragma GCC unroll 4
            for (int j = 0; j < OB; j++) acc[j][i] = _mm512_dpbf16_ps(acc[j][i], wv[j], xv);
        }
    }
    if (c < C) { // the last C % 32 weights, masked (the bf16 inputs are zero padded)
        const __mmask32 mask = (__mmask32)((1u << (C - c)) - 1);
        __m512bh wv[OB];
        for (int j = 0; j < OB; j++) wv[j] = (__m512bh)_mm512_maskz_loadu_epi16(mask, wr[j] + c);
        for (int i = 0; i < mb; i++) {
            const __m512bh xv = (__m512bh)_mm512_loadu_si512((const void *)(xb + (size_t)i * Cp + c));
            for (int j = 0; j < OB; j++) acc[j][i] = _mm512_dpbf16_ps(acc[j][i], wv[j], xv);
        }
    }
    for (int i = 0; i < mb; i++) {
        float s[4];
        hsum4_512(acc[0][i], acc[1][i], acc[2][i], acc[3][i], s);
        for (int j = 0; j < nw; j++) out[(size_t)i * ldo + o0 + j] = s[j] + (bias ? bias[o0 + j] : 0.0f);
    }
}

// One block of OB output columns for all M rows (the OpenMP loop below stays outside the
// target("avx512bf16") functions: clang does not pass the attribute to outlined parallel regions).
static DP_TARGET void block_dp(float *out, const uint16_t *xb, int Cp, const uint16_t *w, const float *bias, int M,
                               int C, int OC, int o0, int nw) {
    for (int m0 = 0; m0 < M; m0 += MB) {
        const uint16_t *xm = xb + (size_t)m0 * Cp;
        float *om = out + (size_t)m0 * OC;
        switch (M - m0 < MB ? M - m0 : MB) {
        case 1: tile_dp(om, OC, xm, Cp, w, C, bias, o0, nw, 1); break;
        case 2: tile_dp(om, OC, xm, Cp, w, C, bias, o0, nw, 2); break;
        case 3: tile_dp(om, OC, xm, Cp, w, C, bias, o0, nw, 3); break;
        default: tile_dp(om, OC, xm, Cp, w, C, bias, o0, nw, 4); break;
        }
    }
}

static void rows_bf16_dp(float *out, const uint16_t *xb, int Cp, const uint16_t *w, const float *bias, int M, int C,
                         int OC) {
    const long long blocks = (OC + OB - 1) / OB;
#pragma omp parallel for schedule(dynamic, ROWS_CHUNK) if ((size_t)OC * C >= ROWS_PAR_MIN)
    for (long long b = 0; b < blocks; b++) {
        const int o0 = (int)b * OB, nw = OC - o0 < OB ? OC - o0 : OB;
        block_dp(out, xb, Cp, w, bias, M, C, OC, o0, nw);
    }
}
#endif

llm_status cpu_matmul_rows(float *out, const float *inp, const void *weight, llm_dtype wtype, const float *bias,
                           int M, int C, int OC) {
    if (M < 1 || C < 1 || OC < 1) return LLM_OK;
    if (wtype == LLM_F32) {
        rows_f32(out, inp, weight, bias, M, C, OC);
        return LLM_OK;
    }
    if (wtype != LLM_BF16) return llm_fail(LLM_EINVAL, "matmul_rows: unknown weight type %d", (int)wtype);
#ifdef HAVE_DPBF16
    if (cpu_has_dpbf16()) {
        const int Cp = (C + 31) / 32 * 32;
        uint16_t *xb = (uint16_t *)cpu_scratch(XBF16_SLOT, ((size_t)M * Cp + 1) / 2);
        if (!xb) return llm_fail(LLM_ENOMEM, "matmul_rows: out of memory for %d bf16 input rows", M);
        round_rows_bf16(xb, inp, M, C, Cp);
        rows_bf16_dp(out, xb, Cp, weight, bias, M, C, OC);
        return LLM_OK;
    }
#endif
    rows_bf16_convert(out, inp, weight, bias, M, C, OC);
    return LLM_OK;
}

// Which bf16 path cpu_matmul_rows takes on this CPU: "avx512_bf16" or "convert".
const char *cpu_matmul_rows_bf16_path(void) {
#ifdef HAVE_DPBF16
    if (cpu_has_dpbf16()) return "avx512_bf16";
#endif
    return "convert";
}
