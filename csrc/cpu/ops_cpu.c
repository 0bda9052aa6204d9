/*
 * ops_cpu.c — the CPU backend's llm_ops table: host memory, per-thread scratch, and the
 * choice of instruction-set variant at run time.
 *
 * Memory is plain host memory, 64-byte aligned (a cache line, and the widest vector load) and
 * zero-filled on allocation (large blocks lazily, by mmap); "device" copies are memcpy.
 *
 * The compute ops exist once per ISA variant compiled into this build (cpu_ops.h explains
 * how). This file is compiled once, with the baseline flags, so it runs on any CPU of the
 * architecture: on first use it asks the CPU what it supports (x86: __builtin_cpu_supports,
 * which also checks that the OS saves the wide registers; aarch64: the OS's feature bits,
 * getauxval(AT_HWCAP) on Linux, sysctlbyname on macOS) and picks the best variant, or the one
 * named by the environment variable LLMPY_CPU_ISA when the CPU can run it. llm_set_cpu_isa()
 * switches variants later (the ops keep no state, so switching between calls is safe).
 * The table llm_cpu_ops forwards each op to the chosen variant: one indirect call per op,
 * nothing next to the work an op does.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <sys/mman.h>
#define CPU_HAVE_PTHREAD 1
#if !defined(MAP_ANONYMOUS) && defined(MAP_ANON)
#define MAP_ANONYMOUS MAP_ANON
#endif
#ifdef MAP_ANONYMOUS
#define CPU_HAVE_MMAP 1
#endif
#endif

// aarch64: where the OS reports the CPU's features (the neon variant's check, below)
#if defined(LLMPY_CPU_HAVE_NEON) && defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1) // Linux's AArch64 HWCAP bit for Advanced SIMD (uapi asm/hwcap.h)
#endif
#elif defined(LLMPY_CPU_HAVE_NEON) && defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

#include "core/common.h"
#include "core/ops.h"
#include "cpu_ops.h"

#define CPU_ALIGN 64

// ----------------------------------------------------------------------------
// memory

// Every block starts with a header (one alignment unit) that records how it was obtained, so
// that cpu_free returns it the same way. Blocks of at least CPU_MAP_MIN bytes come straight
// from mmap: the kernel supplies zero pages lazily, so memory that is never written (the
// gradients of a model that only runs inference) never becomes resident, and nothing is
// memset twice. Smaller blocks come from aligned_alloc and are cleared with memset.
#define CPU_MAP_MIN ((size_t)1 << 20)
// Mapped blocks of at least this size also ask for transparent huge pages (where the kernel
// offers them on request, THP "madvise" mode): the weights are streamed once per generated token
// and once per training step, and with 4 KiB pages every 4 KiB of a stream costs a TLB miss
// (measured on 2 Sapphire Rapids cores: the decode GEMV over GPT-2 124M's matrices 46 -> 35 ms).
#define CPU_HUGE_MIN ((size_t)4 << 20)

typedef struct block_header {
    size_t total; // bytes obtained from the system, header included
    int mapped;   // 1: mmap, 0: aligned_alloc
} block_header;
_Static_assert(sizeof(block_header) <= CPU_ALIGN, "the header must fit in one alignment unit");

llm_status cpu_alloc(void **out, size_t bytes) {
    *out = NULL;
    // whole alignment units plus the header; guard the round-up against overflow
    if (bytes > SIZE_MAX - 2 * (size_t)CPU_ALIGN - 4096)
        return llm_fail(LLM_ENOMEM, "cpu_alloc: cannot allocate %zu bytes", bytes);
    const size_t total = (bytes + CPU_ALIGN - 1) / CPU_ALIGN * CPU_ALIGN + CPU_ALIGN;
    char *base = NULL;
    int mapped = 0;
#ifdef CPU_HAVE_MMAP
    if (bytes >= CPU_MAP_MIN) {
        void *p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED) base = p, mapped = 1; // page aligned, zero filled
#ifdef MADV_HUGEPAGE
        if (mapped && bytes >= CPU_HUGE_MIN) (void)madvise(p, total, MADV_HUGEPAGE); // a hint: failure is harmless
#endif
    }
#endif
    if (!base) {
#if defined(_MSC_VER)
        base = _aligned_malloc(total, CPU_ALIGN);
#elif defined(__APPLE__) // aligned_alloc needs macOS 10.15; posix_memalign is in every version
        void *p = NULL;
        base = posix_memalign(&p, CPU_ALIGN, total) == 0 ? p : NULL;
#else
        base = aligned_alloc(CPU_ALIGN, total);
#endif
        if (base) memset(base, 0, total);
    }
    if (!base) return llm_fail(LLM_ENOMEM, "cpu_alloc: out of memory allocating %zu bytes", bytes);
    block_header h = {total, mapped};
    memcpy(base, &h, sizeof h);
    *out = base + CPU_ALIGN;
    return LLM_OK;
}

void cpu_free(void *p) {
    if (!p) return;
    char *base = (char *)p - CPU_ALIGN;
    block_header h;
    memcpy(&h, base, sizeof h);
#ifdef CPU_HAVE_MMAP
    if (h.mapped) {
        munmap(base, h.total);
        return;
    }
#endif
#if defined(_MSC_VER)
    _aligned_free(base);
#else
    free(base);
#endif
}

// Large buffers (the gradients: 0.5 GB for GPT-2 124M) are cleared by all threads, 256 KiB at a
// time; one thread cannot saturate the memory bandwidth.
llm_status cpu_zero(void *p, size_t bytes) {
    enum { CHUNK = 256 << 10 };
    if (bytes < (size_t)CHUNK) {
        if (bytes) memset(p, 0, bytes);
        return LLM_OK;
    }
    const long long chunks = (long long)((bytes + CHUNK - 1) / CHUNK);
#pragma omp parallel for schedule(static)
    for (long long i = 0; i < chunks; i++) {
        size_t off = (size_t)i * CHUNK;
        memset((char *)p + off, 0, bytes - off < CHUNK ? bytes - off : CHUNK);
    }
    return LLM_OK;
}

llm_status cpu_to_device(void *dst, const void *src_host, size_t bytes) {
    if (bytes && dst != src_host) memcpy(dst, src_host, bytes);
    return LLM_OK;
}

llm_status cpu_to_host(void *dst_host, const void *src, size_t bytes) {
    if (bytes && dst_host != src) memcpy(dst_host, src, bytes);
    return LLM_OK;
}

llm_status cpu_copy(void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src) memcpy(dst, src, bytes);
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// per-thread scratch

typedef struct thread_scratch {
    float *p[CPU_SCRATCH_SLOTS];
    size_t n[CPU_SCRATCH_SLOTS]; // floats allocated
} thread_scratch;

static _Thread_local thread_scratch tls_scratch;

#ifdef CPU_HAVE_PTHREAD
// A thread-specific key whose destructor frees a thread's buffers when the thread exits.
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_key_ok;

static void scratch_release(void *arg) {
    thread_scratch *s = arg;
    for (int i = 0; i < CPU_SCRATCH_SLOTS; i++) {
        cpu_free(s->p[i]);
        s->p[i] = NULL;
        s->n[i] = 0;
    }
}

static void scratch_key_init(void) { scratch_key_ok = pthread_key_create(&scratch_key, scratch_release) == 0; }
#endif

float *cpu_scratch(int slot, size_t floats) {
    thread_scratch *s = &tls_scratch;
    if (slot < 0 || slot >= CPU_SCRATCH_SLOTS) return NULL;
    if (s->n[slot] >= floats && s->p[slot]) return s->p[slot];
    if (floats > SIZE_MAX / sizeof(float) / 2) return NULL;
#ifdef CPU_HAVE_PTHREAD
    pthread_once(&scratch_once, scratch_key_init);
    if (scratch_key_ok && !pthread_getspecific(scratch_key)) pthread_setspecific(scratch_key, s);
#endif
    cpu_free(s->p[slot]);
    s->p[slot] = NULL;
    s->n[slot] = 0;
    // grow by at least half, so that slowly growing requests do not reallocate every time
    size_t want = floats + floats / 2;
    void *p;
    if (cpu_alloc(&p, want * sizeof(float)) != LLM_OK) return NULL;
    s->p[slot] = p;
    s->n[slot] = want;
    return p;
}

// ----------------------------------------------------------------------------
// instruction-set variants

typedef struct isa_variant {
    const char *name;
    const cpu_kernels *ops;
    int (*supported)(void);
} isa_variant;

static int always(void) { return 1; }

// x86-64-v4 (the AVX-512 subsets the avx512 variant is compiled for) and x86-64-v3
#ifdef LLMPY_CPU_HAVE_AVX512
static int has_avx512(void) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}
extern const cpu_kernels cpu_isa_ops_avx512;
#endif

#ifdef LLMPY_CPU_HAVE_AVX2
static int has_avx2(void) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}
extern const cpu_kernels cpu_isa_ops_avx2;
#endif

// AArch64 Advanced SIMD. Every AArch64 CPU that Linux or macOS runs on has it (the compiler's
// baseline, and so the generic variant, already uses it); asked of the OS all the same.
#ifdef LLMPY_CPU_HAVE_NEON
static int has_neon(void) {
#if defined(__aarch64__) && defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_ASIMD) != 0;
#elif defined(__aarch64__) && defined(__APPLE__)
    const char *names[] = {"hw.optional.AdvSIMD", "hw.optional.neon"}; // newer, older name
    for (int i = 0; i < 2; i++) {
        int v = 0;
        size_t len = sizeof v;
        if (sysctlbyname(names[i], &v, &len, NULL, 0) == 0) return v != 0;
    }
    return 1; // neither name known: an arm64 Mac has it
#elif defined(__aarch64__)
    return 1;
#else
    return 0;
#endif
}
extern const cpu_kernels cpu_isa_ops_neon;
#endif

#ifdef LLMPY_CPU_HAVE_NATIVE
extern const cpu_kernels cpu_isa_ops_native;
#endif
#ifdef LLMPY_CPU_HAVE_GENERIC
extern const cpu_kernels cpu_isa_ops_generic;
#endif

// best first
static const isa_variant variants[] = {
#ifdef LLMPY_CPU_HAVE_NATIVE
    {"native", &cpu_isa_ops_native, always},
#endif
#ifdef LLMPY_CPU_HAVE_AVX512
    {"avx512", &cpu_isa_ops_avx512, has_avx512},
#endif
#ifdef LLMPY_CPU_HAVE_AVX2
    {"avx2", &cpu_isa_ops_avx2, has_avx2},
#endif
#ifdef LLMPY_CPU_HAVE_NEON
    {"neon", &cpu_isa_ops_neon, has_neon},
#endif
#ifdef LLMPY_CPU_HAVE_GENERIC
    {"generic", &cpu_isa_ops_generic, always},
#endif
};
#define NUM_VARIANTS (sizeof variants / sizeof variants[0])

static _Atomic(const isa_variant *) current;

static const isa_variant *best_variant(void) {
    for (size_t i = 0; i < NUM_VARIANTS; i++)
        if (variants[i].supported()) return &variants[i];
    return &variants[NUM_VARIANTS - 1]; // the last one (generic or native) always runs
}

static const isa_variant *find_variant(const char *name) {
    for (size_t i = 0; i < NUM_VARIANTS; i++)
        if (strcmp(variants[i].name, name) == 0) return &variants[i];
    return NULL;
}

// The variant in use, chosen on first call: LLMPY_CPU_ISA if set, compiled in and supported
// by this CPU, else the best supported one. Racing first calls pick the same variant.
static const isa_variant *variant(void) {
    const isa_variant *v = atomic_load_explicit(&current, memory_order_acquire);
    if (v) return v;
    const char *want = getenv("LLMPY_CPU_ISA");
    v = want && *want ? find_variant(want) : NULL;
    if (!v || !v->supported()) v = best_variant();
    atomic_store_explicit(&current, v, memory_order_release);
    return v;
}

const char *llm_cpu_isa(void) { return variant()->name; }

const char *llm_cpu_isa_list(void) {
    static const char list[] = "" // each name with a leading comma; the first one is skipped
#ifdef LLMPY_CPU_HAVE_NATIVE
                               ",native"
#endif
#ifdef LLMPY_CPU_HAVE_AVX512
                               ",avx512"
#endif
#ifdef LLMPY_CPU_HAVE_AVX2
                               ",avx2"
#endif
#ifdef LLMPY_CPU_HAVE_NEON
                               ",neon"
#endif
#ifdef LLMPY_CPU_HAVE_GENERIC
                               ",generic"
#endif
        ;
    return list + 1;
}

llm_status llm_set_cpu_isa(const char *name) {
    const isa_variant *v;
    if (!name || strcmp(name, "auto") == 0) { // "" is a name like any other: not in this build
        v = best_variant();
    } else {
        v = find_variant(name);
        if (!v) return llm_fail(LLM_EINVAL, "CPU ISA '%s' is not in this build (it has: %s, or 'auto')", name,
                                llm_cpu_isa_list());
        if (!v->supported())
            return llm_fail(LLM_EUNSUPPORTED, "CPU ISA '%s' is built in but this CPU cannot run it", name);
    }
    atomic_store_explicit(&current, v, memory_order_release);
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// the table: each op forwards to the chosen variant

#define ISA (variant()->ops)

// floatX is float on the CPU: the void pointers of the table convert implicitly.
static llm_status encoder_forward(floatX *out, const int32_t *inp, const floatX *wte, const floatX *wpe, int B, int T,
                                  int C) {
    return ISA->encoder_forward(out, inp, wte, wpe, B, T, C);
}
static llm_status encoder_backward(floatX *dwte, floatX *dwpe, const floatX *dout, const int32_t *inp,
                                   const int32_t *inp_host, int B, int T, int C) {
    return ISA->encoder_backward(dwte, dwpe, dout, inp, inp_host, B, T, C);
}
static llm_status layernorm_forward(floatX *out, float *mean, float *rstd, const floatX *inp, const floatX *weight,
                                    const floatX *bias, int B, int T, int C) {
    return ISA->layernorm_forward(out, mean, rstd, inp, weight, bias, B, T, C);
}
static llm_status layernorm_backward(floatX *dinp, floatX *dweight, floatX *dbias, const floatX *dout,
                                     const floatX *inp, const floatX *weight, const float *mean, const float *rstd,
                                     int B, int T, int C) {
    return ISA->layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, B, T, C);
}
static llm_status matmul_forward(floatX *out, const floatX *inp, const floatX *weight, const floatX *bias, int B,
                                 int T, int C, int OC) {
    return ISA->matmul_forward(out, inp, weight, bias, B, T, C, OC);
}
static llm_status matmul_backward(floatX *dinp, floatX *dweight, floatX *dbias, const floatX *dout, const floatX *inp,
                                  const floatX *weight, int B, int T, int C, int OC, int flags) {
    return ISA->matmul_backward(dinp, dweight, dbias, dout, inp, weight, B, T, C, OC, flags);
}
static llm_status matmul_backward_sq(floatX *dinp, floatX *dweight, floatX *dbias, const floatX *dout,
                                     const floatX *inp, const floatX *weight, int B, int T, int C, int OC, int flags,
                                     double *dweight_sq) {
    if (ISA->matmul_backward_sq)
        return ISA->matmul_backward_sq(dinp, dweight, dbias, dout, inp, weight, B, T, C, OC, flags, dweight_sq);
    *dweight_sq = -1.0; // not in this variant (cpu_ops.h)
    return ISA->matmul_backward(dinp, dweight, dbias, dout, inp, weight, B, T, C, OC, flags);
}
// The CPU attention saves the (B,NH,T,T) probabilities and needs no scratch of its own.
static size_t attention_state_bytes(int B, int T, int C, int NH) {
    (void)C;
    return (size_t)B * NH * T * T * sizeof(float);
}
static size_t attention_scratch_bytes(int B, int T, int C, int NH) {
    (void)B, (void)T, (void)C, (void)NH;
    return 0;
}
static llm_status attention_forward(floatX *out, void *state, void *scratch, const floatX *qkv, int B, int T, int C,
                                    int NH) {
    (void)scratch;
    return ISA->attention_forward(out, state, qkv, B, T, C, NH);
}
static llm_status attention_backward(floatX *dqkv, void *scratch, const floatX *dout, const floatX *qkv,
                                     const floatX *out, const void *state, int B, int T, int C, int NH) {
    (void)scratch, (void)out;
    return ISA->attention_backward(dqkv, dout, qkv, state, B, T, C, NH);
}
static llm_status gelu_forward(floatX *out, const floatX *inp, size_t N) { return ISA->gelu_forward(out, inp, N); }
static llm_status gelu_backward(floatX *dinp, const floatX *inp, const floatX *dout, size_t N) {
    return ISA->gelu_backward(dinp, inp, dout, N);
}
static llm_status residual_forward(floatX *out, const floatX *inp1, const floatX *inp2, size_t N) {
    return ISA->residual_forward(out, inp1, inp2, N);
}
static llm_status residual_backward(floatX *dinp1, floatX *dinp2, const floatX *dout, size_t N) {
    return ISA->residual_backward(dinp1, dinp2, dout, N);
}
static llm_status crossentropy_forward(float *losses, const floatX *logits, const int32_t *targets, int B, int T,
                                       int V, int Vp) {
    return ISA->crossentropy_forward(losses, logits, targets, B, T, V, Vp);
}
static llm_status crossentropy_backward(floatX *dlogits, const floatX *logits, const int32_t *targets, float dloss,
                                        int B, int T, int V, int Vp) {
    return ISA->crossentropy_backward(dlogits, logits, targets, dloss, B, T, V, Vp);
}
static llm_status crossentropy_backward_cols(floatX *dlogits, const floatX *logits, const float *losses,
                                             const int32_t *targets, float dloss, int B, int T, int V, int Vp, int v0,
                                             int n) {
    return ISA->crossentropy_backward_cols(dlogits, logits, losses, targets, dloss, B, T, V, Vp, v0, n);
}
// fp32 only: the parameters are their own master copy, and no rounding needs a seed.
static llm_status adamw_update(floatX *params, float *master, const floatX *grads, float *m, float *v, size_t N,
                               float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                               int64_t t, uint32_t seed, uint64_t index0) {
    (void)seed;
    (void)index0;
    if (master) return llm_fail(LLM_EUNSUPPORTED, "the CPU backend has no mixed precision (master weights given)");
    return ISA->adamw_update(params, grads, m, v, N, lr, beta1, beta2, eps, weight_decay, grad_scale, t);
}
static llm_status norm_squared(double *out, const floatX *x, size_t N) { return ISA->norm_squared(out, x, N); }
static llm_status sum_f32(double *out, const float *x, size_t N) { return ISA->sum_f32(out, x, N); }
// generation (decode.c)
static llm_status encoder_at(floatX *out, const int32_t *inp, const int32_t *pos, const floatX *wte,
                             const floatX *wpe, int N, int T, int C) {
    return ISA->encoder_at(out, inp, pos, wte, wpe, N, T, C);
}
static llm_status attention_cached(floatX *out, floatX *kcache, floatX *vcache, const floatX *qkv,
                                   const int32_t *rows, const int32_t *pos, int N, int T, int C, int NH, int maxT) {
    return ISA->attention_cached(out, kcache, vcache, qkv, rows, pos, N, T, C, NH, maxT);
}
static llm_status matmul_rows(floatX *out, const floatX *inp, const void *weight, llm_dtype wtype,
                              const floatX *bias, int M, int C, int OC) {
    return ISA->matmul_rows(out, inp, weight, wtype, bias, M, C, OC);
}
const char *llm_cpu_bf16_path(void) { return ISA->matmul_rows_bf16_path(); }
// Host fp32 both sides: conversions are copies.
static llm_status upload_f32(floatX *dst, const float *src_host, size_t N) {
    return cpu_to_device(dst, src_host, N * sizeof(float));
}
static llm_status download_f32(float *dst_host, const floatX *src, size_t N) {
    return cpu_to_host(dst_host, src, N * sizeof(float));
}

const llm_ops llm_cpu_ops = {
    .name = "cpu",
    .dtype = LLM_F32,
    .host_memory = 1,
    // By slices. Measured on 2 AVX-512 cores (dev/bench/cpu_step.py, GPT-2 124M B=4 T=64 and d6
    // B=8 T=256), in place is as fast within noise (0-2%), while slices keep what the host
    // backend promises: zero-copy views of the logits stay valid after backward(), and a second
    // backward() of the same forward accumulates the gradient again.
    .lm_head_in_place = 0,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .to_device = cpu_to_device,
    .to_host = cpu_to_host,
    .copy = cpu_copy,
    .upload_f32 = upload_f32,
    .download_f32 = download_f32,
    .encoder_forward = encoder_forward,
    .encoder_backward = encoder_backward,
    .layernorm_forward = layernorm_forward,
    .layernorm_backward = layernorm_backward,
    .residual_layernorm_forward = NULL,
    .matmul_forward = matmul_forward,
    .matmul_backward = matmul_backward,
    .matmul_backward_sq = matmul_backward_sq,
    .matmul_gelu_forward = NULL,
    .attention_state_bytes = attention_state_bytes,
    .attention_scratch_bytes = attention_scratch_bytes,
    .attention_forward = attention_forward,
    .attention_backward = attention_backward,
    .gelu_forward = gelu_forward,
    .gelu_backward = gelu_backward,
    .residual_forward = residual_forward,
    .residual_backward = residual_backward,
    .crossentropy_forward = crossentropy_forward,
    .crossentropy_backward = crossentropy_backward,
    .crossentropy_backward_cols = crossentropy_backward_cols,
    .adamw_update = adamw_update,
    .norm_squared = norm_squared,
    .sum_f32 = sum_f32,
    .encoder_at = encoder_at,
    .attention_cached = attention_cached,
    .matmul_rows = matmul_rows,
    .matmul_rows_bf16 = 1,
};
