/*
 * dev/cuda/flash_attention.cu — checks and times the flash attention kernels of
 * cuda/flash_attention.cu (included, not copied).
 *
 * Build and run (dev/cuda/Makefile):
 *   make -C dev/cuda flash_attention
 *   dev/cuda/flash_attention            # checks, then the benchmark table
 *   dev/cuda/flash_attention --quick    # checks only
 *
 * 1. Small sizes (T = 1, 7, 64, 100, 257; hs 64 and 128; fp32 and bf16 kernels) against an fp64
 *    reference on the host: out, lse, and dqkv written over a buffer of NaN (every element must
 *    be written, none read).
 * 2. B=8, NH=12, T in {512, 1024, 2048, 4096}, hs 64 and 128: two heads (the first and the last)
 *    against a naive fp32 GPU reference, then forward, backward and forward+backward times.
 * Error figure: max |got - ref| / max |ref| per quantity (fp32 limit 1e-5, bf16 limit 1e-2).
 * Exit status 1 when any check fails.
 *
 * FLOPs (causal; useful work, as FlashAttention's papers and PyTorch's benchmarks count it):
 *   forward  = 4 * B * NH * hs * T(T+1)/2   (Q K^T and P V over the T(T+1)/2 visible pairs)
 *   backward = 2.5 * forward                (S recomputed, dP, dV, dK, dQ: five products;
 *              our deterministic backward actually runs seven, S and dP twice)
 * The ceiling is cuBLAS's bf16 GEMM (fp32 accumulation) measured at 8192^3 on the same device.
 */
#include <cublas_v2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <functional>
#include <vector>

#include "dev_common.cuh"
#include "../../cuda/flash_attention.cu"

// checks, random inputs and the measured bf16 GEMM ceiling: dev_common.cuh

// Host buffer of floatX values <-> float.
template <typename floatX> static std::vector<floatX> to_x(const std::vector<float> &v) {
    std::vector<floatX> r(v.size());
    for (size_t i = 0; i < v.size(); i++) r[i] = (floatX)v[i];
    return r;
}
template <typename floatX> static std::vector<float> to_f(const std::vector<floatX> &v) {
    std::vector<float> r(v.size());
    for (size_t i = 0; i < v.size(); i++) r[i] = (float)v[i];
    return r;
}
template <typename T> static T *upload(const std::vector<T> &v) {
    T *d;
    DEV_CUDA(cudaMalloc(&d, v.size() * sizeof(T)));
    DEV_CUDA(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}
template <typename T> static std::vector<T> download(const T *d, size_t n) {
    std::vector<T> v(n);
    DEV_CUDA(cudaMemcpy(v.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
}

// Running max |got - ref| and max |ref| of one quantity; report() prints and counts failures.
struct Err {
    double mad = 0, scale = 0;
    bool nan = false;
    void add(double got, double ref) {
        if (got != got) nan = true;
        mad = fmax(mad, fabs(got - ref));
        scale = fmax(scale, fabs(ref));
    }
    double rel(double s) const { return nan ? INFINITY : (s > 0 ? mad / s : mad); }
    // relative to max |ref| of this quantity, or to a larger common scale (dq, dk, dv: the
    // largest of the three, since at T = 1 dq and dk are 0 up to rounding)
    void report(const char *what, double tol, double common = 0) const {
        const double r = rel(fmax(scale, common));
        const bool ok = r <= tol;
        printf("    %-5s rel err %.2e (max abs %.2e)%s\n", what, r, mad, ok ? "" : "   <-- FAIL");
        if (!ok) dev_failures++;
    }
};
static void report_all(const Err &eo, const Err &el, const Err &eq, const Err &ek, const Err &ev, double tol) {
    const double common = fmax(eq.scale, fmax(ek.scale, ev.scale));
    eo.report("out", tol), el.report("lse", tol);
    eq.report("dq", tol, common), ek.report("dk", tol, common), ev.report("dv", tol, common);
}

// ----------------------------------------------------------------------------
// 1. fp64 host reference (all heads): out (B,T,C), lse (B,NH,T), dqkv (B,T,3C) written

static void reference_host(std::vector<double> &out, std::vector<double> &lse, std::vector<double> &dqkv,
                           const std::vector<float> &qkv, const std::vector<float> &dout, int B, int T, int C,
                           int NH) {
    const int hs = C / NH;
    const double scale = 1.0 / sqrt((double)hs);
    const size_t rs = 3 * (size_t)C;
    out.assign((size_t)B * T * C, 0.0), lse.assign((size_t)B * NH * T, 0.0), dqkv.assign((size_t)B * T * rs, 0.0);
    std::vector<double> p(T), dp(T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < T; i++) {
                const float *q = &qkv[((size_t)b * T + i) * rs + h * hs], *dO = &dout[((size_t)b * T + i) * C + h * hs];
                double mx = -INFINITY, sum = 0, D = 0;
                for (int j = 0; j <= i; j++) {
                    const float *k = &qkv[((size_t)b * T + j) * rs + C + h * hs];
                    double s = 0;
                    for (int d = 0; d < hs; d++) s += (double)q[d] * k[d];
                    p[j] = s * scale, mx = fmax(mx, p[j]);
                }
                for (int j = 0; j <= i; j++) p[j] = exp(p[j] - mx), sum += p[j];
                lse[((size_t)b * NH + h) * T + i] = mx + log(sum);
                for (int j = 0; j <= i; j++) {
                    const float *v = &qkv[((size_t)b * T + j) * rs + 2 * C + h * hs];
                    p[j] /= sum;
                    double s = 0;
                    double *o = &out[((size_t)b * T + i) * C + h * hs];
                    for (int d = 0; d < hs; d++) s += (double)dO[d] * v[d], o[d] += p[j] * v[d];
                    dp[j] = s, D += p[j] * s;
                }
                for (int j = 0; j <= i; j++) {
                    const double ds = p[j] * (dp[j] - D);
                    double *gq = &dqkv[((size_t)b * T + i) * rs + h * hs];
                    double *gk = &dqkv[((size_t)b * T + j) * rs + C + h * hs];
                    const float *k = &qkv[((size_t)b * T + j) * rs + C + h * hs];
                    for (int d = 0; d < hs; d++) {
                        gq[d] += scale * ds * k[d];
                        gk[d] += scale * ds * q[d];
                        gk[C + d] += p[j] * dO[d];
                    }
                }
            }
}

template <typename floatX>
static void check_small(int B, int T, int NH, int hs) {
    const int C = NH * hs;
    const size_t nqkv = (size_t)B * T * 3 * C, nout = (size_t)B * T * C, nlse = (size_t)B * NH * T;
    const double tol = sizeof(floatX) == 2 ? 1e-2 : 1e-5;
    std::vector<float> qkv(nqkv), dout(nout);
    for (auto &x : qkv) x = dev_randn();
    for (auto &x : dout) x = dev_randn();
    // the reference sees exactly the values the kernel sees
    qkv = to_f(to_x<floatX>(qkv)), dout = to_f(to_x<floatX>(dout));
    std::vector<double> rout, rlse, rdqkv;
    reference_host(rout, rlse, rdqkv, qkv, dout, B, T, C, NH);

    floatX *d_qkv = upload(to_x<floatX>(qkv)), *d_dout = upload(to_x<floatX>(dout));
    floatX *d_dqkv, *d_out;
    float *d_lse;
    void *d_scratch;
    DEV_CUDA(cudaMalloc(&d_dqkv, nqkv * sizeof(floatX)));
    DEV_CUDA(cudaMalloc(&d_out, nout * sizeof(floatX)));
    DEV_CUDA(cudaMemset(d_dqkv, 0xff, nqkv * sizeof(floatX))); // NaN: written, never read
    DEV_CUDA(cudaMalloc(&d_lse, flash_attention_state_bytes(B, T, C, NH)));
    DEV_CUDA(cudaMalloc(&d_scratch, flash_attention_scratch_bytes(B, T, C, NH)));
    DEV_CUDA(cudaMemset(d_out, 0xff, nout * sizeof(floatX))); // NaN: every element must be written
    DEV_CUDA(cudaMemset(d_lse, 0xff, nlse * sizeof(float)));
    DEV_CUDA(cudaMemset(d_scratch, 0xff, flash_attention_scratch_bytes(B, T, C, NH)));
    DEV_LLM(flash_attention_forward(d_out, d_lse, d_qkv, B, T, C, NH, 0));
    DEV_LLM(flash_attention_backward(d_dqkv, d_scratch, d_dout, d_qkv, d_out, d_lse, B, T, C, NH, 0));
    DEV_CUDA(cudaDeviceSynchronize());
    const std::vector<float> out = to_f(download(d_out, nout)), lse = download(d_lse, nlse);
    const std::vector<float> dqkv = to_f(download(d_dqkv, nqkv));

    printf("  %s B=%d T=%d NH=%d hs=%d\n", sizeof(floatX) == 2 ? "bf16" : "fp32", B, T, NH, hs);
    Err eo, el, eq, ek, ev;
    for (size_t i = 0; i < nout; i++) eo.add(out[i], rout[i]);
    for (size_t i = 0; i < nlse; i++) el.add(lse[i], rlse[i]);
    for (size_t i = 0; i < nqkv; i++) {
        const int part = (int)(i % (3 * C)) / C;
        (part == 0 ? eq : part == 1 ? ek : ev).add(dqkv[i], rdqkv[i]);
    }
    report_all(eo, el, eq, ek, ev, tol);
    cudaFree(d_qkv), cudaFree(d_dout), cudaFree(d_dqkv), cudaFree(d_out), cudaFree(d_lse), cudaFree(d_scratch);
}

// ----------------------------------------------------------------------------
// 2. naive fp32 GPU reference for heads bh = blockIdx.y * bh_step (all of T), for large T

static __device__ float block_reduce(float v, bool is_max) {
    __shared__ float part[32];
    for (int o = 16; o > 0; o /= 2) {
        const float w = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, w) : v + w;
    }
    __syncthreads();
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
    __syncthreads();
    v = part[0];
    for (int w = 1; w < (int)blockDim.x / 32; w++) v = is_max ? fmaxf(v, part[w]) : v + part[w];
    return v;
}

// One block per query row i: out_i, lse_i, D_i and dq_i. Shared: p[T], dp[T].
static __global__ void naive_rows_kernel(float *out, float *lse, float *D, float *dqkv, const float *qkv,
                                         const float *dout, int T, int C, int NH, int hs, int bh_step) {
    extern __shared__ float sh[];
    float *p = sh, *dp = sh + T;
    const int i = blockIdx.x, bh = blockIdx.y * bh_step, b = bh / NH, h = bh % NH;
    const float scale = 1.0f / sqrtf((float)hs);
    const size_t rs = 3 * (size_t)C;
    const float *q = qkv + ((size_t)b * T + i) * rs + h * hs, *dO = dout + ((size_t)b * T + i) * C + h * hs;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j <= i; j += blockDim.x) {
        const float *k = qkv + ((size_t)b * T + j) * rs + C + h * hs, *v = k + C;
        float s = 0, t = 0;
        for (int d = 0; d < hs; d++) s += q[d] * k[d], t += dO[d] * v[d];
        p[j] = s * scale, dp[j] = t, mx = fmaxf(mx, s * scale);
    }
    mx = block_reduce(mx, true);
    float sum = 0;
    for (int j = threadIdx.x; j <= i; j += blockDim.x) p[j] = expf(p[j] - mx), sum += p[j];
    sum = block_reduce(sum, false);
    float Dv = 0;
    for (int j = threadIdx.x; j <= i; j += blockDim.x) p[j] /= sum, Dv += p[j] * dp[j];
    Dv = block_reduce(Dv, false); // (its barriers also publish p)
    for (int d = threadIdx.x; d < hs; d += blockDim.x) {
        float o = 0, g = 0;
        for (int j = 0; j <= i; j++) {
            const float *k = qkv + ((size_t)b * T + j) * rs + C + h * hs;
            o += p[j] * k[C + d], g += p[j] * (dp[j] - Dv) * k[d];
        }
        out[((size_t)b * T + i) * C + h * hs + d] = o;
        dqkv[((size_t)b * T + i) * rs + h * hs + d] = g * scale;
    }
    if (threadIdx.x == 0) lse[(size_t)bh * T + i] = mx + logf(sum), D[(size_t)bh * T + i] = Dv;
}

// One block per key row j: dk_j, dv_j from lse and D. Shared: p[T], ds[T] (indexed i - j).
static __global__ void naive_cols_kernel(float *dqkv, const float *qkv, const float *dout, const float *lse,
                                         const float *D, int T, int C, int NH, int hs, int bh_step) {
    extern __shared__ float sh[];
    float *p = sh, *ds = sh + T;
    const int j = blockIdx.x, bh = blockIdx.y * bh_step, b = bh / NH, h = bh % NH;
    const float scale = 1.0f / sqrtf((float)hs);
    const size_t rs = 3 * (size_t)C;
    const float *k = qkv + ((size_t)b * T + j) * rs + C + h * hs, *v = k + C;
    for (int i = j + threadIdx.x; i < T; i += blockDim.x) {
        const float *q = qkv + ((size_t)b * T + i) * rs + h * hs, *dO = dout + ((size_t)b * T + i) * C + h * hs;
        float s = 0, t = 0;
        for (int d = 0; d < hs; d++) s += q[d] * k[d], t += dO[d] * v[d];
        p[i - j] = expf(s * scale - lse[(size_t)bh * T + i]);
        ds[i - j] = p[i - j] * (t - D[(size_t)bh * T + i]);
    }
    __syncthreads();
    for (int d = threadIdx.x; d < hs; d += blockDim.x) {
        float gk = 0, gv = 0;
        for (int i = j; i < T; i++) {
            gk += ds[i - j] * qkv[((size_t)b * T + i) * rs + h * hs + d];
            gv += p[i - j] * dout[((size_t)b * T + i) * C + h * hs + d];
        }
        dqkv[((size_t)b * T + j) * rs + C + h * hs + d] = gk * scale;
        dqkv[((size_t)b * T + j) * rs + 2 * C + h * hs + d] = gv;
    }
}

// ----------------------------------------------------------------------------
// 3. timing

static float time_ms(cudaEvent_t e0, cudaEvent_t e1, int iters, const std::function<void()> &fn) {
    fn(); // warm-up
    DEV_CUDA(cudaEventRecord(e0));
    for (int it = 0; it < iters; it++) fn();
    DEV_CUDA(cudaEventRecord(e1));
    DEV_CUDA(cudaEventSynchronize(e1));
    float ms;
    DEV_CUDA(cudaEventElapsedTime(&ms, e0, e1));
    return ms / iters;
}

static __global__ void to_float_kernel(float *dst, const bf16 *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __bfloat162float(src[i]);
}
static void to_float_dev(float *dst, const bf16 *src, size_t n) { to_float_kernel<<<1024, 256>>>(dst, src, n); }
static void to_float_dev(float *dst, const float *src, size_t n) {
    DEV_CUDA(cudaMemcpy(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice));
}

template <typename floatX>
static void bench(int B, int T, int NH, int hs, double peak, cudaEvent_t e0, cudaEvent_t e1) {
    const int C = NH * hs;
    const size_t nqkv = (size_t)B * T * 3 * C, nout = (size_t)B * T * C, nlse = (size_t)B * NH * T;
    const bool is_bf16 = sizeof(floatX) == 2;
    std::vector<float> h(nqkv);
    for (auto &x : h) x = dev_randn();
    floatX *qkv = upload(to_x<floatX>(h)), *dqkv, *out;
    h.resize(nout);
    for (auto &x : h) x = dev_randn();
    floatX *dout = upload(to_x<floatX>(h));
    float *lse, *f_qkv, *f_dout, *r_out, *r_lse, *r_D, *r_dqkv;
    void *scratch;
    DEV_CUDA(cudaMalloc(&dqkv, nqkv * sizeof(floatX)));
    DEV_CUDA(cudaMalloc(&out, nout * sizeof(floatX)));
    DEV_CUDA(cudaMalloc(&lse, nlse * sizeof(float)));
    DEV_CUDA(cudaMalloc(&scratch, flash_attention_scratch_bytes(B, T, C, NH)));
    DEV_CUDA(cudaMemset(dqkv, 0xff, nqkv * sizeof(floatX))); // NaN: the backward writes every element

    // check two heads, bh = 0 and bh = B*NH-1, against the naive fp32 reference
    DEV_LLM(flash_attention_forward(out, lse, qkv, B, T, C, NH, 0));
    DEV_LLM(flash_attention_backward(dqkv, scratch, dout, qkv, out, lse, B, T, C, NH, 0));
    DEV_CUDA(cudaMalloc(&f_qkv, nqkv * 4));
    DEV_CUDA(cudaMalloc(&f_dout, nout * 4));
    DEV_CUDA(cudaMalloc(&r_out, nout * 4));
    DEV_CUDA(cudaMalloc(&r_dqkv, nqkv * 4));
    DEV_CUDA(cudaMalloc(&r_lse, nlse * 4));
    DEV_CUDA(cudaMalloc(&r_D, nlse * 4));
    to_float_dev(f_qkv, qkv, nqkv), to_float_dev(f_dout, dout, nout);
    const int step = B * NH - 1 > 0 ? B * NH - 1 : 1, nh = B * NH > 1 ? 2 : 1;
    const size_t sh = 2 * (size_t)T * sizeof(float);
    DEV_CUDA(cudaFuncSetAttribute(naive_rows_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sh));
    DEV_CUDA(cudaFuncSetAttribute(naive_cols_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sh));
    naive_rows_kernel<<<dim3(T, nh), 128, sh>>>(r_out, r_lse, r_D, r_dqkv, f_qkv, f_dout, T, C, NH, hs, step);
    DEV_CUDA(cudaGetLastError());
    naive_cols_kernel<<<dim3(T, nh), 128, sh>>>(r_dqkv, f_qkv, f_dout, r_lse, r_D, T, C, NH, hs, step);
    DEV_CUDA(cudaGetLastError());
    DEV_CUDA(cudaDeviceSynchronize());
    const std::vector<float> go = to_f(download(out, nout)), gl = download(lse, nlse), gd = to_f(download(dqkv, nqkv));
    const std::vector<float> ro = download(r_out, nout), rl = download(r_lse, nlse), rd = download(r_dqkv, nqkv);
    Err eo, el, eq, ek, ev;
    for (int k = 0; k < nh; k++) {
        const int bh = k * step, b = bh / NH, hh = bh % NH;
        for (int t = 0; t < T; t++) {
            el.add(gl[(size_t)bh * T + t], rl[(size_t)bh * T + t]);
            for (int d = 0; d < hs; d++) {
                const size_t io = ((size_t)b * T + t) * C + hh * hs + d, iq = ((size_t)b * T + t) * 3 * C + hh * hs + d;
                eo.add(go[io], ro[io]), eq.add(gd[iq], rd[iq]);
                ek.add(gd[iq + C], rd[iq + C]), ev.add(gd[iq + 2 * C], rd[iq + 2 * C]);
            }
        }
    }
    printf("  %s B=%d NH=%d T=%d hs=%d: 2 heads against naive fp32\n", is_bf16 ? "bf16" : "fp32", B, NH, T, hs);
    const double tol = is_bf16 ? 1e-2 : 1e-5;
    report_all(eo, el, eq, ek, ev, tol);
    cudaFree(f_qkv), cudaFree(f_dout), cudaFree(r_out), cudaFree(r_dqkv), cudaFree(r_lse), cudaFree(r_D);

    const int iters = 10;
    const float fwd = time_ms(e0, e1, iters, [&]() {
        DEV_LLM(flash_attention_forward(out, lse, qkv, B, T, C, NH, 0));
    });
    const float bwd = time_ms(e0, e1, iters, [&]() {
        DEV_LLM(flash_attention_backward(dqkv, scratch, dout, qkv, out, lse, B, T, C, NH, 0));
    });
    const double f = 4.0 * B * NH * hs * ((double)T * (T + 1) / 2);
    const double tf = f / (fwd * 1e-3) / 1e12, tb = 2.5 * f / (bwd * 1e-3) / 1e12;
    const double tt = 3.5 * f / ((fwd + bwd) * 1e-3) / 1e12;
    printf("  %s T=%4d hs=%3d | fwd %8.3f ms %6.1f TFLOP/s %5.1f%% | bwd %8.3f ms %6.1f TFLOP/s %5.1f%% | "
           "fwd+bwd %6.1f TFLOP/s %5.1f%%\n",
           is_bf16 ? "bf16" : "fp32", T, hs, fwd, tf, 100 * tf / peak, bwd, tb, 100 * tb / peak, tt, 100 * tt / peak);
    cudaFree(qkv), cudaFree(dqkv), cudaFree(out), cudaFree(dout), cudaFree(lse), cudaFree(scratch);
}

// ----------------------------------------------------------------------------

int main(int argc, char **argv) {
    const bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    dev_init();

    printf("1. small sizes against fp64 on the host\n");
    const int small[][3] = {{2, 1, 3}, {1, 7, 2}, {2, 64, 3}, {1, 100, 2}, {2, 257, 3}}; // B, T, NH
    for (int hs : {64, 128})
        for (const auto &s : small) {
            check_small<float>(s[0], s[1], s[2], hs);
            check_small<bf16>(s[0], s[1], s[2], hs);
        }
    // unsupported head size must be refused with a status, not run
    if (flash_attention_forward<bf16>(nullptr, nullptr, nullptr, 1, 8, 96, 3, 0) != LLM_EUNSUPPORTED) {
        printf("  head size 32 was not refused   <-- FAIL\n");
        dev_failures++;
    }

    if (!quick) {
        cudaEvent_t e0, e1;
        DEV_CUDA(cudaEventCreate(&e0));
        DEV_CUDA(cudaEventCreate(&e1));
        const double peak = measured_gemm_tflops();
        printf("2. benchmark, B=8 NH=12, causal; cuBLAS bf16 GEMM 8192^3: %.1f TFLOP/s (the %% column)\n", peak);
        for (int hs : {64, 128})
            for (int T : {512, 1024, 2048, 4096}) bench<bf16>(8, T, 12, hs, peak, e0, e1);
        for (int hs : {64, 128}) bench<float>(8, 1024, 12, hs, peak, e0, e1);
    }
    return dev_finish();
}
