/*
 * dev/cuda/dev_common.cuh — what the kernel development programs of dev/cuda share: the backend
 * context (cuda/context.cu, included so that each program is one translation unit), random
 * inputs, host<->device copies with fp32 <-> floatX conversion, error measures, event timing
 * and the device's measured ceilings (memory bandwidth, bf16 GEMM rate).
 *
 * Programs are main()s: they may exit on setup errors. Each returns 1 when a check fails.
 * Error measure: max |got - ref| / max |ref| (a relative error that does not explode on the
 * entries near zero); limits: fp32 1e-5, bf16 1e-2 (as tests/test_cuda_*.py).
 */
#ifndef LLMPY_DEV_CUDA_COMMON_CUH
#define LLMPY_DEV_CUDA_COMMON_CUH

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "../../cuda/context.cu"

// common.cuh's sync-mode flag, which the library defines in ops_cuda.cu (not part of these
// programs): off, so error messages read as in the library by default.
int llm_cuda_sync_ops = 0;

// ----------------------------------------------------------------------------
// checks (main programs: exiting is fine)

#define DEV_CUDA(call)                                                                             \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)
#define DEV_LLM(call)                                                                              \
    do {                                                                                           \
        if ((call) != LLM_OK) {                                                                    \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, llm_last_error());       \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)

static int dev_failures = 0;

// An op under test that fails: print, count, and leave the (void) check function.
#define DEV_OP(call)                                                                               \
    do {                                                                                           \
        if ((call) != LLM_OK) {                                                                    \
            printf("  %s FAILED: %s\n", #call, llm_last_error());                                 \
            dev_failures++;                                                                        \
            return;                                                                                \
        }                                                                                          \
    } while (0)

// ----------------------------------------------------------------------------
// random numbers (xorshift64*, Box-Muller)

static uint64_t dev_rng = 0x9E3779B97F4A7C15ull;
static double dev_uniform() { // (0, 1)
    dev_rng ^= dev_rng >> 12, dev_rng ^= dev_rng << 25, dev_rng ^= dev_rng >> 27;
    return ((dev_rng * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0) + 1e-300;
}
static float dev_randn() { return (float)(sqrt(-2.0 * log(dev_uniform())) * cos(6.283185307179586 * dev_uniform())); }
static std::vector<float> randn_vec(size_t n, float scale = 1.0f) {
    std::vector<float> v(n);
    for (auto &x : v) x = dev_randn() * scale;
    return v;
}

// ----------------------------------------------------------------------------
// element types on the host

template <typename X> static float host_round(float x);
template <> float host_round<float>(float x) { return x; }
template <> float host_round<bf16>(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }
// Rounds a host vector to what X can hold, so that a reference sees the kernel's inputs.
template <typename X> static void round_vec(std::vector<float> &v) {
    for (auto &x : v) x = host_round<X>(x);
}
template <typename X> static const char *xname() { return sizeof(X) == 4 ? "fp32" : "bf16"; }
template <typename X> static double tolerance() { return sizeof(X) == 4 ? 1e-5 : 1e-2; }

// A device buffer of n elements of X (plus `pad` elements in front, to misalign on purpose).
template <typename X> struct DevBuf {
    X *base = nullptr, *p = nullptr;
    size_t n = 0;
    explicit DevBuf(size_t n_, size_t pad = 0) : n(n_) {
        DEV_CUDA(cudaMalloc(&base, (n + pad + 1) * sizeof(X)));
        p = base + pad;
        DEV_CUDA(cudaMemset(base, 0, (n + pad + 1) * sizeof(X)));
    }
    DevBuf(const std::vector<float> &h, size_t pad = 0) : DevBuf(h.size(), pad) { upload(h); }
    ~DevBuf() { cudaFree(base); }
    DevBuf(const DevBuf &) = delete;
    DevBuf &operator=(const DevBuf &) = delete;
    void upload(const std::vector<float> &h) {
        std::vector<X> t(h.size());
        for (size_t i = 0; i < h.size(); i++) t[i] = (X)h[i];
        DEV_CUDA(cudaMemcpy(p, t.data(), t.size() * sizeof(X), cudaMemcpyHostToDevice));
    }
    std::vector<float> download() const {
        std::vector<X> t(n);
        DEV_CUDA(cudaMemcpy(t.data(), p, n * sizeof(X), cudaMemcpyDeviceToHost));
        std::vector<float> h(n);
        for (size_t i = 0; i < n; i++) h[i] = (float)t[i];
        return h;
    }
};
template <> inline void DevBuf<bf16>::upload(const std::vector<float> &h) {
    std::vector<bf16> t(h.size());
    for (size_t i = 0; i < h.size(); i++) t[i] = __float2bfloat16_rn(h[i]);
    DEV_CUDA(cudaMemcpy(p, t.data(), t.size() * sizeof(bf16), cudaMemcpyHostToDevice));
}
template <> inline std::vector<float> DevBuf<bf16>::download() const {
    std::vector<bf16> t(n);
    DEV_CUDA(cudaMemcpy(t.data(), p, n * sizeof(bf16), cudaMemcpyDeviceToHost));
    std::vector<float> h(n);
    for (size_t i = 0; i < n; i++) h[i] = __bfloat162float(t[i]);
    return h;
}

// ----------------------------------------------------------------------------
// error measures

// max |got - ref| / max |ref| over the elements; prints a line and counts a failure over `tol`.
static double check(const char *what, const std::vector<float> &got, const std::vector<double> &ref, double tol) {
    double max_err = 0.0, max_ref = 0.0;
    size_t worst = 0;
    bool finite = got.size() == ref.size();
    for (size_t i = 0; i < got.size() && i < ref.size(); i++) {
        if (!std::isfinite(got[i])) finite = false;
        const double e = fabs((double)got[i] - ref[i]);
        if (e > max_err) max_err = e, worst = i;
        max_ref = std::max(max_ref, fabs(ref[i]));
    }
    const double rel = max_ref > 0 ? max_err / max_ref : max_err;
    const bool ok = finite && rel <= tol;
    if (!ok) dev_failures++;
    printf("  %-44s max abs %.3e  rel %.3e  (tol %.0e) %s", what, max_err, rel, tol, ok ? "ok" : "FAIL");
    if (!ok && worst < got.size()) printf("  [i=%zu got %.6g ref %.6g]", worst, got[worst], ref[worst]);
    if (got.size() != ref.size()) printf("  [size %zu vs %zu]", got.size(), ref.size());
    printf("\n");
    return rel;
}

// ----------------------------------------------------------------------------
// timing and ceilings

// Median milliseconds of `reps` runs of f (after two warm-up runs), timed with CUDA events.
template <typename F> static float time_ms(F f, int reps = 20) {
    cudaEvent_t a, b;
    DEV_CUDA(cudaEventCreate(&a));
    DEV_CUDA(cudaEventCreate(&b));
    for (int i = 0; i < 2; i++) f();
    std::vector<float> t;
    for (int i = 0; i < reps; i++) {
        DEV_CUDA(cudaEventRecord(a, llm_cuda_stream));
        f();
        DEV_CUDA(cudaEventRecord(b, llm_cuda_stream));
        DEV_CUDA(cudaEventSynchronize(b));
        float ms;
        DEV_CUDA(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms);
    }
    DEV_CUDA(cudaEventDestroy(a));
    DEV_CUDA(cudaEventDestroy(b));
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

// Device memory bandwidth (GB/s) of a 1 GiB device-to-device cudaMemcpy (read + write counted).
static double measured_bandwidth() {
    static double gbs = 0;
    if (gbs > 0) return gbs;
    const size_t bytes = (size_t)1 << 30;
    void *a, *b;
    DEV_CUDA(cudaMalloc(&a, bytes));
    DEV_CUDA(cudaMalloc(&b, bytes));
    const float ms = time_ms([&] { DEV_CUDA(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, llm_cuda_stream)); }, 10);
    DEV_CUDA(cudaFree(a));
    DEV_CUDA(cudaFree(b));
    gbs = 2.0 * bytes / (ms * 1e-3) / 1e9;
    return gbs;
}

// cuBLAS bf16 GEMM rate (TFLOP/s, fp32 accumulation) at 8192^3.
static double measured_gemm_tflops() {
    static double tf = 0;
    if (tf > 0) return tf;
    const int n = 8192;
    void *a, *b, *c;
    DEV_CUDA(cudaMalloc(&a, (size_t)n * n * 2));
    DEV_CUDA(cudaMalloc(&b, (size_t)n * n * 2));
    DEV_CUDA(cudaMalloc(&c, (size_t)n * n * 2));
    DEV_CUDA(cudaMemset(a, 0, (size_t)n * n * 2));
    DEV_CUDA(cudaMemset(b, 0, (size_t)n * n * 2));
    const float alpha = 1.0f, beta = 0.0f;
    const float ms = time_ms([&] {
        cublasStatus_t st = cublasGemmEx(llm_cuda_cublas, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a, CUDA_R_16BF, n,
                                         b, CUDA_R_16BF, n, &beta, c, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                                         CUBLAS_GEMM_DEFAULT);
        if (st != CUBLAS_STATUS_SUCCESS) {
            fprintf(stderr, "cublasGemmEx failed: %d\n", (int)st);
            exit(2);
        }
    }, 10);
    DEV_CUDA(cudaFree(a));
    DEV_CUDA(cudaFree(b));
    DEV_CUDA(cudaFree(c));
    tf = 2.0 * n * (double)n * n / (ms * 1e-3) / 1e12;
    return tf;
}

static void report_bandwidth(const char *what, float ms, double bytes) {
    const double gbs = bytes / (ms * 1e-3) / 1e9;
    printf("  %-44s %9.3f ms  %8.1f GB/s  %5.1f%% of %.0f GB/s\n", what, ms, gbs, 100.0 * gbs / measured_bandwidth(),
           measured_bandwidth());
}
static void report_flops(const char *what, float ms, double flops) {
    const double tf = flops / (ms * 1e-3) / 1e12;
    printf("  %-44s %9.3f ms  %8.1f TFLOP/s  %5.1f%% of %.0f TFLOP/s (cuBLAS bf16)\n", what, ms, tf,
           100.0 * tf / measured_gemm_tflops(), measured_gemm_tflops());
}

// ----------------------------------------------------------------------------
// setup

static void dev_init() {
    DEV_LLM(cuda_context_init(0));
    cudaDeviceProp prop;
    DEV_CUDA(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s (%d SMs)\n", prop.name, llm_cuda_sm_count);
}

static int dev_finish() {
    DEV_CUDA(cudaDeviceSynchronize());
    printf(dev_failures ? "FAILED: %d check(s)\n" : "all checks passed\n", dev_failures);
    return dev_failures ? 1 : 0;
}

#endif // LLMPY_DEV_CUDA_COMMON_CUH
