/*
 * dev/cuda/adamw.cu — checks and times cuda/adamw.cu (included, not copied).
 *
 * Build: make -C dev/cuda adamw && dev/cuda/adamw
 * Checks against a double host reference of torch.optim.AdamW's update (three steps, with grad
 * scaling and weight decay):
 *   fp32: params, m, v (params are the master);
 *   bf16 with fp32 master: master, m, v; every bf16 param is one of the two bf16 neighbours of
 *   its master value (stochastic rounding never goes further); with lr = 0 the rounding of a
 *   value 1/3 of the way between two bf16 numbers goes up in 1/3 of a million cases (unbiased);
 *   the same seed repeats the rounding, another seed changes it.
 * Times one step over N = 124M elements (GPT-2 124M) in GB/s against the cudaMemcpy bandwidth
 * (traffic: fp32 28 bytes/element, bf16 + master 30).
 */
#include "dev_common.cuh"

#include "../../cuda/adamw.cu"

struct Hyper {
    float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, wd = 0.1f, scale = 0.5f;
};

static void adamw_ref(std::vector<double> &p, std::vector<double> &m, std::vector<double> &v,
                      const std::vector<float> &g, const Hyper &h, int t) {
    const double bc1 = 1.0 - pow((double)h.beta1, t), bc2 = 1.0 - pow((double)h.beta2, t);
    for (size_t i = 0; i < p.size(); i++) {
        const double gi = (double)g[i] * h.scale;
        m[i] = h.beta1 * m[i] + (1.0 - h.beta1) * gi;
        v[i] = h.beta2 * v[i] + (1.0 - h.beta2) * gi * gi;
        p[i] *= 1.0 - (double)h.lr * h.wd;
        p[i] -= h.lr * (m[i] / bc1) / (sqrt(v[i] / bc2) + h.eps);
    }
}

// Distance from x to the next bf16 number away from zero at x's magnitude.
static double bf16_ulp(double x) {
    int e;
    frexp(fabs(x) > 0 ? fabs(x) : 1e-38, &e);
    return ldexp(1.0, e - 8);
}

template <typename X> static void check_size(size_t N) {
    printf("%s N=%zu%s\n", xname<X>(), N, sizeof(X) == 2 ? " (fp32 master)" : "");
    const bool mixed = sizeof(X) == 2;
    Hyper h;
    std::vector<float> p0 = randn_vec(N, 0.02f), m0 = randn_vec(N, 0.01f), v0(N);
    for (auto &x : v0) x = (float)(dev_uniform() * 1e-4);
    std::vector<double> p(p0.begin(), p0.end()), m(m0.begin(), m0.end()), v(v0.begin(), v0.end());
    DevBuf<X> params(p0);
    DevBuf<float> master(p0), dm(m0), dv(v0);
    for (int t = 1; t <= 3; t++) {
        std::vector<float> g = randn_vec(N, 0.1f);
        round_vec<X>(g);
        DevBuf<X> grads(g);
        DEV_OP(cuda_adamw_update<X>(params.p, mixed ? master.p : nullptr, grads.p, dm.p, dv.p, N, h.lr, h.beta1, h.beta2,
                                    h.eps, h.wd, h.scale, t, 1234u + t, 0, llm_cuda_stream));
        adamw_ref(p, m, v, g, h, t);
    }
    check(mixed ? "adamw master" : "adamw params", mixed ? master.download() : params.download(), p, 1e-5);
    check("adamw m", dm.download(), m, 1e-5);
    check("adamw v", dv.download(), v, 1e-5);
    if (mixed) {
        std::vector<float> pb = params.download(), pm = master.download();
        size_t bad = 0;
        for (size_t i = 0; i < N; i++)
            if (fabs((double)pb[i] - pm[i]) > bf16_ulp(pm[i])) bad++;
        printf("  %-44s %zu of %zu %s\n", "bf16 params off the master's neighbours", bad, N, bad ? "FAIL" : "ok");
        if (bad) dev_failures++;
    }
}

static void check_rounding() {
    printf("bf16 stochastic rounding\n");
    const size_t N = 1 << 20;
    const double lo = 1.0, ulp = 1.0 / 128, x = lo + ulp / 3; // between 1 and 1 + 2^-7
    std::vector<float> master_h(N, (float)x), zeros(N, 0.0f);
    DevBuf<bf16> params(N), grads(zeros);
    DevBuf<float> master(master_h), m(N), v(N);
    DEV_OP(cuda_adamw_update<bf16>(params.p, master.p, grads.p, m.p, v.p, N, 0.0f, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, 1,
                                   42u, 0, llm_cuda_stream));
    std::vector<float> a = params.download();
    size_t up = 0, other = 0;
    for (float f : a) up += f == (float)(lo + ulp), other += f != (float)lo && f != (float)(lo + ulp);
    const double frac = (double)up / N;
    const bool ok = other == 0 && fabs(frac - 1.0 / 3) < 0.005;
    printf("  %-44s %.4f (expect 0.3333), %zu off-grid %s\n", "fraction rounded up", frac, other, ok ? "ok" : "FAIL");
    if (!ok) dev_failures++;
    DEV_OP(cuda_adamw_update<bf16>(params.p, master.p, grads.p, m.p, v.p, N, 0.0f, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, 1,
                                   42u, 0, llm_cuda_stream));
    const bool same = params.download() == a;
    DEV_OP(cuda_adamw_update<bf16>(params.p, master.p, grads.p, m.p, v.p, N, 0.0f, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, 1,
                                   43u, 0, llm_cuda_stream));
    const bool differs = params.download() != a;
    printf("  %-44s %s\n", "same seed repeats, another seed differs", same && differs ? "ok" : "FAIL");
    if (!(same && differs)) dev_failures++;
}

template <typename X> static void bench(size_t N) {
    const bool mixed = sizeof(X) == 2;
    DevBuf<X> params(N), grads(N);
    DevBuf<float> master(mixed ? N : 1), m(N), v(N);
    char name[80];
    snprintf(name, sizeof name, "%s adamw_update N=%zu", mixed ? "bf16+master" : "fp32", N);
    report_bandwidth(name, time_ms([&] {
        cuda_adamw_update<X>(params.p, mixed ? master.p : nullptr, grads.p, m.p, v.p, N, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f,
                             1.0f, 1, 7u, 0, llm_cuda_stream);
    }), (mixed ? 30.0 : 28.0) * N);
}

int main() {
    dev_init();
    for (size_t N : {(size_t)1, (size_t)7, (size_t)1000, (size_t)1000003}) {
        check_size<float>(N);
        check_size<bf16>(N);
    }
    check_rounding();
    printf("timing\n");
    bench<float>(124475904);
    bench<bf16>(124475904);
    return dev_finish();
}
