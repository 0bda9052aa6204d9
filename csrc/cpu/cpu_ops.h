/*
 * cpu_ops.h — the CPU backend's ops, one source file each (csrc/cpu/<op>.c).
 *
 * Every cpu_<op> function implements the matching llm_ops member of csrc/core/ops.h (where the
 * shapes and the gradient convention are documented) with floatX = float; ops_cpu_isa.c
 * collects them into a cpu_kernels table. Pointers are host memory. Shape letters: see ops.h.
 *
 * Instruction-set variants. The op files (and ops_cpu_isa.c) are compiled once per ISA that
 * the build targets — on x86-64 `avx512` (x86-64-v4 flags), `avx2` (x86-64-v3) and `generic`
 * (the baseline), elsewhere `generic` only, or a single `native` variant with
 * LLMPY_NATIVE=ON — with LLMPY_CPU_ISA set to the variant's name. The block of #defines below
 * then gives every public name of the op files that variant's suffix (cpu_matmul_forward ->
 * cpu_matmul_forward_avx512), so the variants link side by side in one library. ops_cpu.c is
 * compiled once: it owns memory and per-thread scratch, picks a variant at run time from the
 * CPU's features (or LLMPY_CPU_ISA in the environment) and exposes the table llm_cpu_ops,
 * whose ops forward to the chosen variant. Code that depends on the vector width (the GEMM's
 * register tile) reads the compiler's predefined macros (__AVX512F__, __AVX2__, ...).
 *
 * AArch64 (variants `neon`, `generic`) is different: NEON is in its baseline, so `generic` is
 * compiled with NEON enabled too (the auto-vectoriser uses it) and the predefined macros
 * cannot tell the variants apart. The build defines LLMPY_CPU_NEON for the `neon` variant (and
 * for `native` on aarch64), and CPU_NEON below switches the ops to their NEON intrinsics
 * sections (`#ifdef CPU_NEON`, with the shared pieces in neon.h and matmul_neon.h); `generic`
 * stays the portable C of every architecture, the reference the NEON kernels are tested
 * against (tests/c/test_cpu_isa.c).
 *
 * Below the ops, internal helpers shared between op files: the blocked GEMM of matmul.c
 * (attention.c is built on it), per-thread scratch (ops_cpu.c), and small inline math
 * routines written so that the compiler vectorises the loops that call them (libm's expf is
 * a scalar call; an fp32 reduction in a single running sum cannot be vectorised without
 * -ffast-math).
 */
#ifndef LLMPY_CPU_OPS_H
#define LLMPY_CPU_OPS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/llmpy.h"
#include "core/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

// --- NEON (aarch64) ---------------------------------------------------------------
#if defined(LLMPY_CPU_NEON) && defined(__aarch64__) && defined(__ARM_NEON)
#define CPU_NEON 1
#endif

// --- per-ISA names ----------------------------------------------------------------
#ifdef LLMPY_CPU_ISA
#define CPU_ISA_CAT_(name, isa) name##_##isa
#define CPU_ISA_CAT(name, isa) CPU_ISA_CAT_(name, isa)
#define CPU_ISA_NAME(name) CPU_ISA_CAT(name, LLMPY_CPU_ISA)
#define cpu_encoder_forward CPU_ISA_NAME(cpu_encoder_forward)
#define cpu_encoder_backward CPU_ISA_NAME(cpu_encoder_backward)
#define cpu_layernorm_forward CPU_ISA_NAME(cpu_layernorm_forward)
#define cpu_layernorm_backward CPU_ISA_NAME(cpu_layernorm_backward)
#define cpu_matmul_forward CPU_ISA_NAME(cpu_matmul_forward)
#define cpu_matmul_backward CPU_ISA_NAME(cpu_matmul_backward)
#define cpu_matmul_backward_sq CPU_ISA_NAME(cpu_matmul_backward_sq)
#define cpu_attention_forward CPU_ISA_NAME(cpu_attention_forward)
#define cpu_attention_backward CPU_ISA_NAME(cpu_attention_backward)
#define cpu_gelu_forward CPU_ISA_NAME(cpu_gelu_forward)
#define cpu_gelu_backward CPU_ISA_NAME(cpu_gelu_backward)
#define cpu_residual_forward CPU_ISA_NAME(cpu_residual_forward)
#define cpu_residual_backward CPU_ISA_NAME(cpu_residual_backward)
#define cpu_crossentropy_forward CPU_ISA_NAME(cpu_crossentropy_forward)
#define cpu_crossentropy_backward CPU_ISA_NAME(cpu_crossentropy_backward)
#define cpu_crossentropy_backward_cols CPU_ISA_NAME(cpu_crossentropy_backward_cols)
#define cpu_adamw_update CPU_ISA_NAME(cpu_adamw_update)
#define cpu_norm_squared CPU_ISA_NAME(cpu_norm_squared)
#define cpu_sum_f32 CPU_ISA_NAME(cpu_sum_f32)
#define cpu_gemm_scratch_floats CPU_ISA_NAME(cpu_gemm_scratch_floats)
#define cpu_gemm_serial CPU_ISA_NAME(cpu_gemm_serial)
#define cpu_isa_ops CPU_ISA_NAME(cpu_isa_ops)
#define cpu_encoder_at CPU_ISA_NAME(cpu_encoder_at)
#define cpu_attention_cached CPU_ISA_NAME(cpu_attention_cached)
#define cpu_matmul_rows CPU_ISA_NAME(cpu_matmul_rows)
#define cpu_matmul_rows_bf16_path CPU_ISA_NAME(cpu_matmul_rows_bf16_path)
#endif

// --- memory and per-thread scratch (ops_cpu.c, compiled once) ----------------------- ---------------------------------------------------------
llm_status cpu_alloc(void **out, size_t bytes);
void cpu_free(void *p);
llm_status cpu_zero(void *p, size_t bytes);
llm_status cpu_to_device(void *dst, const void *src_host, size_t bytes);
llm_status cpu_to_host(void *dst_host, const void *src, size_t bytes);
llm_status cpu_copy(void *dst, const void *src, size_t bytes);
// The calling thread's scratch buffer number `slot` (0 <= slot < CPU_SCRATCH_SLOTS): at least
// `floats` floats, 64-byte aligned, contents undefined; NULL when out of memory. Buffers only
// grow and live until the thread exits, so ops allocate nothing once the sizes of the first
// training step have been seen. Slot 0 is the GEMM's packing buffer (matmul.c).
#define CPU_SCRATCH_SLOTS 4
float *cpu_scratch(int slot, size_t floats);

// --- encoder.c ------------------------------------------------------------------
llm_status cpu_encoder_forward(float *out, const int32_t *inp, const float *wte, const float *wpe,
                               int B, int T, int C);
llm_status cpu_encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *inp,
                                const int32_t *inp_host, int B, int T, int C);

// --- layernorm.c ----------------------------------------------------------------
llm_status cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                                 const float *weight, const float *bias, int B, int T, int C);
llm_status cpu_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                  const float *inp, const float *weight, const float *mean,
                                  const float *rstd, int B, int T, int C);

// --- matmul.c -------------------------------------------------------------------
llm_status cpu_matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                              int B, int T, int C, int OC);
llm_status cpu_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, int B, int T, int C, int OC,
                               int flags);
// cpu_matmul_backward that also sets *dweight_sq to the sum of the squares of dweight after the
// call (ops.h: matmul_backward_sq); dweight_sq NULL: cpu_matmul_backward
llm_status cpu_matmul_backward_sq(float *dinp, float *dweight, float *dbias, const float *dout,
                                  const float *inp, const float *weight, int B, int T, int C, int OC,
                                  int flags, double *dweight_sq);

// --- attention.c ----------------------------------------------------------------
llm_status cpu_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH);
llm_status cpu_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att,
                                  int B, int T, int C, int NH);

// --- gelu.c ---------------------------------------------------------------------
llm_status cpu_gelu_forward(float *out, const float *inp, size_t N);
llm_status cpu_gelu_backward(float *dinp, const float *inp, const float *dout, size_t N);

// --- residual.c -----------------------------------------------------------------
llm_status cpu_residual_forward(float *out, const float *inp1, const float *inp2, size_t N);
llm_status cpu_residual_backward(float *dinp1, float *dinp2, const float *dout, size_t N);

// --- crossentropy.c -------------------------------------------------------------
llm_status cpu_crossentropy_forward(float *losses, const float *logits, const int32_t *targets,
                                    int B, int T, int V, int Vp);
llm_status cpu_crossentropy_backward(float *dlogits, const float *logits, const int32_t *targets,
                                     float dloss, int B, int T, int V, int Vp);
llm_status cpu_crossentropy_backward_cols(float *dlogits, const float *logits, const float *losses,
                                          const int32_t *targets, float dloss, int B, int T, int V, int Vp,
                                          int v0, int n);

// --- adamw.c --------------------------------------------------------------------
llm_status cpu_adamw_update(float *params, const float *grads, float *m, float *v, size_t N,
                            float lr, float beta1, float beta2, float eps, float weight_decay,
                            float grad_scale, int64_t t);

// --- decode.c: generation with a KV cache (ops.h, "generation") -------------------
llm_status cpu_encoder_at(float *out, const int32_t *inp, const int32_t *pos, const float *wte, const float *wpe,
                          int N, int T, int C);
llm_status cpu_attention_cached(float *out, float *kcache, float *vcache, const float *qkv, const int32_t *rows,
                                const int32_t *pos, int N, int T, int C, int NH, int maxT);
llm_status cpu_matmul_rows(float *out, const float *inp, const void *weight, llm_dtype wtype, const float *bias,
                           int M, int C, int OC);
// How this variant multiplies bf16 weights on this CPU: "avx512_bf16" or "convert".
const char *cpu_matmul_rows_bf16_path(void);

// --- ops_cpu_isa.c --------------------------------------------------------------
llm_status cpu_norm_squared(double *out, const float *x, size_t N);
llm_status cpu_sum_f32(double *out, const float *x, size_t N);

// One ISA variant's kernels: the signatures above, with the element type spelled out (float).
// ops_cpu.c adapts them to the llm_ops table (floatX = float on the CPU).
typedef struct cpu_kernels {
    const char *name;
    llm_status (*encoder_forward)(float *, const int32_t *, const float *, const float *, int, int, int);
    llm_status (*encoder_backward)(float *, float *, const float *, const int32_t *, const int32_t *, int, int, int);
    llm_status (*layernorm_forward)(float *, float *, float *, const float *, const float *, const float *, int, int,
                                    int);
    llm_status (*layernorm_backward)(float *, float *, float *, const float *, const float *, const float *,
                                     const float *, const float *, int, int, int);
    llm_status (*matmul_forward)(float *, const float *, const float *, const float *, int, int, int, int);
    llm_status (*matmul_backward)(float *, float *, float *, const float *, const float *, const float *, int, int,
                                  int, int, int);
    // NULL in the variants whose results tests/test_golden_run.py pins bit for bit (generic):
    // there the gradient norm stays one pass over the gradients
    llm_status (*matmul_backward_sq)(float *, float *, float *, const float *, const float *, const float *, int,
                                     int, int, int, int, double *);
    llm_status (*attention_forward)(float *, float *, const float *, int, int, int, int);
    llm_status (*attention_backward)(float *, const float *, const float *, const float *, int, int, int, int);
    llm_status (*gelu_forward)(float *, const float *, size_t);
    llm_status (*gelu_backward)(float *, const float *, const float *, size_t);
    llm_status (*residual_forward)(float *, const float *, const float *, size_t);
    llm_status (*residual_backward)(float *, float *, const float *, size_t);
    llm_status (*crossentropy_forward)(float *, const float *, const int32_t *, int, int, int, int);
    llm_status (*crossentropy_backward)(float *, const float *, const int32_t *, float, int, int, int, int);
    llm_status (*crossentropy_backward_cols)(float *, const float *, const float *, const int32_t *, float, int, int,
                                             int, int, int, int);
    llm_status (*adamw_update)(float *, const float *, float *, float *, size_t, float, float, float, float, float,
                               float, int64_t);
    llm_status (*norm_squared)(double *, const float *, size_t);
    llm_status (*sum_f32)(double *, const float *, size_t);
    // generation (decode.c)
    llm_status (*encoder_at)(float *, const int32_t *, const int32_t *, const float *, const float *, int, int, int);
    llm_status (*attention_cached)(float *, float *, float *, const float *, const int32_t *, const int32_t *, int,
                                   int, int, int, int);
    llm_status (*matmul_rows)(float *, const float *, const void *, llm_dtype, const float *, int, int, int);
    const char *(*matmul_rows_bf16_path)(void);
} cpu_kernels;

// This variant's kernels.
extern const cpu_kernels cpu_isa_ops;

// --- internal: blocked GEMM (matmul.c) -----------------------------------------

// A strided read-only matrix view: element (i, j) is p[i * rs + j * cs]. A transpose is a view
// with the strides swapped.
typedef struct cpu_view {
    const float *p;
    size_t rs, cs;
} cpu_view;

// Floats of scratch cpu_gemm_serial needs (allocate 64-byte aligned, one per thread).
size_t cpu_gemm_scratch_floats(void);
// c (M,N) with row stride ldc += a (M,K) @ b (K,N), on the calling thread only; with store,
// c = a @ b (c's previous contents are never read).
void cpu_gemm_serial(float *c, size_t ldc, cpu_view a, cpu_view b, size_t M, size_t N, size_t K, int store,
                     float *scratch);

// --- internal: threads ----------------------------------------------------------

// Elementwise forward ops over fewer elements than this run on the calling thread: a parallel
// region would cost more than the work (decoding runs them on one row per sequence), and on a
// loaded machine every region also waits until each of its threads gets a core.
#define CPU_PAR_MIN_ELEMS (1 << 15)

// --- internal: vectorisable math ------------------------------------------------

// Hint that *p will be read soon (a no-op where the compiler has no prefetch builtin).
#if defined(__GNUC__) || defined(__clang__)
#define CPU_PREFETCH(p) __builtin_prefetch((p), 0, 3)
#else
#define CPU_PREFETCH(p) ((void)(p))
#endif

// exp(x) in fp32, within 2 ulp of the exact value (libm's expf: 1 ulp); 0 below -87.3, inf
// above 88.3 (where 2^n would overflow the exponent field), NaN stays NaN. Cody-Waite range
// reduction x = n ln2 + r, |r| <= ln2/2, then Cephes' degree-7 polynomial for e^r, and 2^n
// assembled in the exponent bits. Branch-free, so loops calling it vectorise: outside
// [lo, hi] the arithmetic may produce anything (the exponent bits wrap) and the two masks at
// the end replace it, so x needs no clamping first. (A clamp written with ?: lets GCC fold the
// clamped cases to constants and branch to them, and the loop no longer vectorises; the masks
// are integer selects it cannot thread. The results are those of the clamped form for all
// 2^32 inputs.)
static inline float cpu_expf(float x) {
    const float lo = -87.33654f, hi = 88.37626f;
    const float magic = 12582912.0f; // 1.5 * 2^23: adding it rounds to an integer in the low bits
    float t = x * 1.44269504088896341f + magic; // n + magic, n = round(x / ln2)
    float n = t - magic;
    float r = x - n * 0.693359375f; // ln2 in two parts, the first exact in few bits
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t tbits, mbits;
    memcpy(&tbits, &t, sizeof tbits);
    memcpy(&mbits, &magic, sizeof mbits);
    uint32_t sbits = (tbits - mbits + 127u) << 23; // exponent field of 2^n
    float scale;
    memcpy(&scale, &sbits, sizeof scale);
    float y = p * scale;
    // y = x > hi ? inf : (x < lo ? 0 : y), as bit masks (all ones where the comparison holds)
    uint32_t ybits, over = 0u - (uint32_t)(x > hi), under = 0u - (uint32_t)(x < lo);
    memcpy(&ybits, &y, sizeof ybits);
    ybits = (ybits & ~(over | under)) | (0x7f800000u & over);
    memcpy(&y, &ybits, sizeof y);
    return y;
}

// Maximum of x[0:n] (n >= 1), in 16 independent lanes so the loop vectorises.
static inline float cpu_max(const float *x, size_t n) {
    float lane[16];
    size_t i = 0;
    for (int l = 0; l < 16; l++) lane[l] = x[0];
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) lane[l] = x[i + l] > lane[l] ? x[i + l] : lane[l];
    float m = x[0];
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    for (int l = 0; l < 16; l++) m = lane[l] > m ? lane[l] : m;
    return m;
}

// The 8 double lanes of a vectorised sum, combined in a fixed order (every lane sum uses it,
// so their results do not depend on where the sum was written).
static inline double cpu_lanes_total(const double *lane) {
    return ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
}

// Sum of x[0:n] in double, in 8 independent lanes so the loop vectorises.
static inline double cpu_sum(const float *x, size_t n) {
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) lane[l] += x[i + l];
    double s = 0.0;
    for (; i < n; i++) s += x[i];
    return s + cpu_lanes_total(lane);
}

// Sum over i of exp(x[i] - shift) in double, exponentials computed a chunk at a time.
static inline double cpu_sum_exp(const float *x, size_t n, float shift) {
    enum { CHUNK = 256 };
    float e[CHUNK];
    double s = 0.0;
    for (size_t i0 = 0; i0 < n; i0 += CHUNK) {
        size_t c = n - i0 < CHUNK ? n - i0 : CHUNK;
        for (size_t i = 0; i < c; i++) e[i] = cpu_expf(x[i0 + i] - shift);
        s += cpu_sum(e, c);
    }
    return s;
}

#ifdef __cplusplus
}
#endif

#ifdef CPU_NEON
#include "neon.h" // the NEON math of the neon variant (after cpu_expf, which its tails use)
#endif
#endif // LLMPY_CPU_OPS_H
