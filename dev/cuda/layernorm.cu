/*
 * dev/cuda/layernorm.cu — checks and times cuda/layernorm.cu (included, not copied).
 *
 * Build: make -C dev/cuda layernorm && dev/cuda/layernorm
 * Checks layernorm_forward (out, mean, rstd), residual_layernorm_forward (residual rounded to
 * floatX, then the same) and layernorm_backward (dinp, dweight, dbias accumulated onto random
 * values) against a double host reference, fp32 and bf16, with C off the vector width and
 * misaligned pointers; the backward is also run twice to check it is bitwise deterministic.
 * Times the three at B=8, T=1024, C=768 in GB/s (the minimum traffic: each tensor once)
 * against the cudaMemcpy bandwidth.
 */
#include "dev_common.cuh"

#include "../../cuda/layernorm.cu"

struct LnRef {
    std::vector<double> out, mean, rstd;
};
static LnRef ln_ref(const std::vector<float> &x, const std::vector<float> &w, const std::vector<float> &b, size_t rows,
                    int C) {
    LnRef r;
    r.out.resize(rows * C), r.mean.resize(rows), r.rstd.resize(rows);
    for (size_t i = 0; i < rows; i++) {
        const float *xr = &x[i * C];
        double mu = 0, var = 0;
        for (int c = 0; c < C; c++) mu += xr[c];
        mu /= C;
        for (int c = 0; c < C; c++) var += (xr[c] - mu) * (xr[c] - mu);
        const double s = 1.0 / sqrt(var / C + 1e-5);
        for (int c = 0; c < C; c++) r.out[i * C + c] = (xr[c] - mu) * s * w[c] + b[c];
        r.mean[i] = mu, r.rstd[i] = s;
    }
    return r;
}

template <typename X> static void check_size(int B, int T, int C, size_t pad) {
    printf("%s B=%d T=%d C=%d%s\n", xname<X>(), B, T, C, pad ? " (misaligned)" : "");
    const size_t rows = (size_t)B * T, N = rows * C;
    std::vector<float> x = randn_vec(N, 3.0f), w = randn_vec(C), b = randn_vec(C), x2 = randn_vec(N);
    std::vector<float> d = randn_vec(N), g0 = randn_vec(N), gw0 = randn_vec(C), gb0 = randn_vec(C);
    for (auto *v : {&x, &w, &b, &x2, &d, &g0, &gw0, &gb0}) round_vec<X>(*v);
    for (size_t i = 0; i < N; i++) x[i] += 0.5f; // a non-zero mean
    round_vec<X>(x);

    // forward
    DevBuf<X> dx(x, pad), dw(w, pad), db(b, pad), out(N, pad);
    DevBuf<float> mean(rows), rstd(rows);
    DEV_OP(cuda_layernorm_forward<X>(out.p, mean.p, rstd.p, dx.p, dw.p, db.p, B, T, C, llm_cuda_stream));
    LnRef r = ln_ref(x, w, b, rows, C);
    check("layernorm_forward out", out.download(), r.out, tolerance<X>());
    check("layernorm_forward mean", mean.download(), r.mean, 1e-5);
    check("layernorm_forward rstd", rstd.download(), r.rstd, 1e-5);

    // fused residual + layernorm, in place (residual = inp1)
    std::vector<float> res(N);
    for (size_t i = 0; i < N; i++) res[i] = host_round<X>(x[i] + x2[i]);
    DevBuf<X> dres(x, pad), dx2(x2, pad), out2(N, pad);
    DEV_OP(cuda_residual_layernorm_forward<X>(dres.p, out2.p, mean.p, rstd.p, dres.p, dx2.p, dw.p, db.p, B, T, C,
                                               llm_cuda_stream));
    LnRef r2 = ln_ref(res, w, b, rows, C);
    check("residual_layernorm_forward residual", dres.download(), std::vector<double>(res.begin(), res.end()),
          tolerance<X>());
    check("residual_layernorm_forward out", out2.download(), r2.out, tolerance<X>());
    check("residual_layernorm_forward rstd", rstd.download(), r2.rstd, 1e-5);

    // backward, from the reference statistics of x
    std::vector<float> mf(r.mean.begin(), r.mean.end()), sf(r.rstd.begin(), r.rstd.end());
    DevBuf<float> dmean(mf), drstd(sf);
    DevBuf<X> dd(d, pad), dinp(g0, pad), dwg(gw0, pad), dbg(gb0, pad);
    DEV_OP(cuda_layernorm_backward<X>(dinp.p, dwg.p, dbg.p, dd.p, dx.p, dw.p, dmean.p, drstd.p, B, T, C,
                                       llm_cuda_stream));
    std::vector<double> gi(N), gw(gw0.begin(), gw0.end()), gb(gb0.begin(), gb0.end());
    for (size_t i = 0; i < rows; i++) {
        double sg = 0, sgn = 0;
        for (int c = 0; c < C; c++) {
            const double n = (x[i * C + c] - r.mean[i]) * r.rstd[i], g = (double)d[i * C + c] * w[c];
            sg += g, sgn += g * n;
            gw[c] += d[i * C + c] * n;
            gb[c] += d[i * C + c];
        }
        for (int c = 0; c < C; c++) {
            const double n = (x[i * C + c] - r.mean[i]) * r.rstd[i], g = (double)d[i * C + c] * w[c];
            gi[i * C + c] = g0[i * C + c] + r.rstd[i] * (g - sg / C - n * sgn / C);
        }
    }
    check("layernorm_backward dinp +=", dinp.download(), gi, tolerance<X>());
    check("layernorm_backward dweight +=", dwg.download(), gw, tolerance<X>());
    check("layernorm_backward dbias +=", dbg.download(), gb, tolerance<X>());
    // determinism: the same accumulation again from the same start gives the same bits
    std::vector<float> first = dwg.download();
    dwg.upload(gw0);
    DEV_OP(cuda_layernorm_backward<X>(dinp.p, dwg.p, dbg.p, dd.p, dx.p, dw.p, dmean.p, drstd.p, B, T, C,
                                       llm_cuda_stream));
    std::vector<float> second = dwg.download();
    const bool same = memcmp(first.data(), second.data(), first.size() * sizeof(float)) == 0;
    printf("  %-44s %s\n", "layernorm_backward deterministic", same ? "ok" : "FAIL");
    if (!same) dev_failures++;
}

template <typename X> static void bench() {
    const int B = 8, T = 1024, C = 768;
    const size_t rows = (size_t)B * T, N = rows * C;
    DevBuf<X> x(randn_vec(N)), x2(randn_vec(N)), w(randn_vec(C)), b(randn_vec(C)), o(N), d(randn_vec(N)), g(N), gw(C),
        gb(C), res(N);
    DevBuf<float> mean(rows), rstd(rows);
    DEV_OP(cuda_layernorm_forward<X>(o.p, mean.p, rstd.p, x.p, w.p, b.p, B, T, C, llm_cuda_stream));
    char name[80];
    snprintf(name, sizeof name, "%s layernorm_forward %dx%dx%d", xname<X>(), B, T, C);
    report_bandwidth(name, time_ms([&] {
        cuda_layernorm_forward<X>(o.p, mean.p, rstd.p, x.p, w.p, b.p, B, T, C, llm_cuda_stream);
    }), 2.0 * N * sizeof(X));
    snprintf(name, sizeof name, "%s residual_layernorm_forward", xname<X>());
    report_bandwidth(name, time_ms([&] {
        cuda_residual_layernorm_forward<X>(res.p, o.p, mean.p, rstd.p, x.p, x2.p, w.p, b.p, B, T, C, llm_cuda_stream);
    }), 4.0 * N * sizeof(X));
    snprintf(name, sizeof name, "%s layernorm_backward", xname<X>());
    report_bandwidth(name, time_ms([&] {
        cuda_layernorm_backward<X>(g.p, gw.p, gb.p, d.p, x.p, w.p, mean.p, rstd.p, B, T, C, llm_cuda_stream);
    }), 4.0 * N * sizeof(X));
}

int main() {
    dev_init();
    const int shapes[][3] = {{1, 1, 1}, {2, 3, 5}, {3, 17, 768}, {1, 5, 1601}, {4, 64, 768}, {2, 300, 64}};
    for (auto &s : shapes) {
        check_size<float>(s[0], s[1], s[2], 0);
        check_size<bf16>(s[0], s[1], s[2], 0);
    }
    check_size<float>(2, 9, 768, 1);
    check_size<bf16>(2, 9, 768, 1);
    printf("timing\n");
    bench<float>();
    bench<bf16>();
    return dev_finish();
}
