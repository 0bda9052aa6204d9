/*
 * dev/cuda/matmul.cu — checks and times cuda/matmul.cu (included, not copied; its GELU is
 * cuda/gelu.cu's kernel, included too).
 *
 * Build: make -C dev/cuda matmul && dev/cuda/matmul
 * Checks against a double host reference, fp32 and bf16:
 *   matmul_forward (with and without bias), matmul_gelu_forward (pre and out, and out equal bit
 *   for bit to gelu_forward(pre): one GELU formula for forward and backward), matmul_backward
 *   (dweight, dbias accumulated onto random values; dinp accumulated onto random values with
 *   accumulate = 1 and written over NaN with accumulate = 0; and with dinp = dbias = NULL),
 * on awkward sizes and on pointers misaligned by one element (alignment preferences and the
 * bias-kernel fallback). Times the forward, the GELU forward and the backward at GPT-2 124M's
 * MLP shape (B=8, T=1024, C=768, OC=3072) in TFLOP/s against cuBLAS's bf16 GEMM rate.
 */
#include "dev_common.cuh"

#include "../../cuda/gelu.cu"
#include "../../cuda/matmul.cu"

static double gelu_ref(double x) { return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }

template <typename X> static void check_size(int B, int T, int C, int OC, bool with_bias, size_t pad) {
    printf("%s B=%d T=%d C=%d OC=%d%s%s\n", xname<X>(), B, T, C, OC, with_bias ? "" : " (no bias)",
           pad ? " (misaligned)" : "");
    const size_t BT = (size_t)B * T;
    std::vector<float> x = randn_vec(BT * C), w = randn_vec((size_t)OC * C, 0.1f), b = randn_vec(OC);
    std::vector<float> d = randn_vec(BT * OC), gi0 = randn_vec(BT * C), gw0 = randn_vec((size_t)OC * C),
                       gb0 = randn_vec(OC);
    for (auto *v : {&x, &w, &b, &d, &gi0, &gw0, &gb0}) round_vec<X>(*v);
    DevBuf<X> dx(x, pad), dw(w, pad), db(b, pad), out(BT * OC, pad), pre(BT * OC, pad), act(BT * OC, pad);
    const X *bias = with_bias ? db.p : nullptr;

    std::vector<double> ref(BT * OC), gref(BT * OC);
    for (size_t r = 0; r < BT; r++)
        for (int o = 0; o < OC; o++) {
            double s = with_bias ? b[o] : 0.0;
            for (int c = 0; c < C; c++) s += (double)x[r * C + c] * w[(size_t)o * C + c];
            ref[r * OC + o] = s;
            gref[r * OC + o] = gelu_ref(s);
        }
    DEV_OP(cuda_matmul_forward<X>(out.p, dx.p, dw.p, bias, B, T, C, OC, llm_cuda_stream));
    check("matmul_forward", out.download(), ref, tolerance<X>());
    DEV_OP(cuda_matmul_gelu_forward<X>(pre.p, act.p, dx.p, dw.p, bias, B, T, C, OC, llm_cuda_stream));
    check("matmul_gelu_forward pre", pre.download(), ref, tolerance<X>());
    check("matmul_gelu_forward out", act.download(), gref, tolerance<X>());
    {
        DevBuf<X> again(BT * OC, pad);
        DEV_OP(cuda_gelu_forward<X>(again.p, pre.p, BT * OC, llm_cuda_stream));
        const std::vector<float> a = act.download(), b = again.download();
        const bool same = memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
        printf("  %-44s %s\n", "matmul_gelu_forward out == gelu_forward(pre)", same ? "ok" : "FAIL");
        if (!same) dev_failures++;
    }

    DevBuf<X> dd(d, pad), gi(gi0, pad), gw(gw0, pad), gb(gb0, pad);
    DEV_OP(cuda_matmul_backward<X>(gi.p, gw.p, with_bias ? gb.p : nullptr, dd.p, dx.p, dw.p, B, T, C, OC, 1,
                                   llm_cuda_stream));
    std::vector<double> ri(gi0.begin(), gi0.end()), rw(gw0.begin(), gw0.end()), rb(gb0.begin(), gb0.end());
    for (size_t r = 0; r < BT; r++)
        for (int o = 0; o < OC; o++) {
            const double g = d[r * OC + o];
            if (with_bias) rb[o] += g;
            for (int c = 0; c < C; c++) {
                ri[r * C + c] += g * w[(size_t)o * C + c];
                rw[(size_t)o * C + c] += g * x[r * C + c];
            }
        }
    check("matmul_backward dinp +=", gi.download(), ri, tolerance<X>());
    check("matmul_backward dweight +=", gw.download(), rw, tolerance<X>());
    if (with_bias) check("matmul_backward dbias +=", gb.download(), rb, tolerance<X>());
    // dinp and dbias skipped: dweight accumulates a second time, the others stay
    DEV_OP(cuda_matmul_backward<X>(nullptr, gw.p, nullptr, dd.p, dx.p, dw.p, B, T, C, OC, 1, llm_cuda_stream));
    for (size_t i = 0; i < rw.size(); i++) rw[i] += rw[i] - gw0[i];
    check("matmul_backward (dinp, dbias NULL) dweight", gw.download(), rw, tolerance<X>());
    check("matmul_backward (dinp NULL) dinp untouched", gi.download(), ri, tolerance<X>());
    // accumulate = 0: dinp written over NaN (beta 0: never read)
    gi.upload(std::vector<float>(BT * C, NAN));
    DEV_OP(cuda_matmul_backward<X>(gi.p, gw.p, nullptr, dd.p, dx.p, dw.p, B, T, C, OC, 0, llm_cuda_stream));
    for (size_t i = 0; i < ri.size(); i++) ri[i] -= gi0[i];
    check("matmul_backward dinp = (accumulate 0, over NaN)", gi.download(), ri, tolerance<X>());
    // LLM_MM_WRITE_DWEIGHT: dweight written over NaN (beta 0), the product alone
    gw.upload(std::vector<float>((size_t)OC * C, NAN));
    DEV_OP(cuda_matmul_backward<X>(nullptr, gw.p, nullptr, dd.p, dx.p, dw.p, B, T, C, OC, LLM_MM_WRITE_DWEIGHT,
                                   llm_cuda_stream));
    for (size_t i = 0; i < rw.size(); i++) rw[i] = (rw[i] - gw0[i]) / 2; // rw held gw0 + 2 products
    check("matmul_backward dweight = (written, over NaN)", gw.download(), rw, tolerance<X>());
}

template <typename X> static void bench(int B, int T, int C, int OC) {
    const size_t BT = (size_t)B * T;
    DevBuf<X> x(randn_vec(BT * C)), w(randn_vec((size_t)OC * C, 0.02f)), b(randn_vec(OC)), out(BT * OC), pre(BT * OC),
        d(randn_vec(BT * OC)), gi(BT * C), gw((size_t)OC * C), gb(OC);
    const double flops = 2.0 * BT * C * OC;
    char name[96];
    snprintf(name, sizeof name, "%s matmul_forward %dx%dx%d->%d", xname<X>(), B, T, C, OC);
    report_flops(name, time_ms([&] { cuda_matmul_forward<X>(out.p, x.p, w.p, b.p, B, T, C, OC, llm_cuda_stream); }), flops);
    snprintf(name, sizeof name, "%s matmul_gelu_forward", xname<X>());
    report_flops(name, time_ms([&] {
        cuda_matmul_gelu_forward<X>(pre.p, out.p, x.p, w.p, b.p, B, T, C, OC, llm_cuda_stream);
    }), flops);
    snprintf(name, sizeof name, "%s matmul_backward (dinp, dweight, dbias)", xname<X>());
    report_flops(name, time_ms([&] {
        cuda_matmul_backward<X>(gi.p, gw.p, gb.p, d.p, x.p, w.p, B, T, C, OC, 0, llm_cuda_stream);
    }), 2.0 * flops);
}

int main() {
    dev_init();
    const int shapes[][4] = {{1, 1, 1, 1}, {2, 3, 5, 7}, {2, 17, 33, 65}, {1, 31, 768, 2304}, {2, 64, 768, 3072},
                             {1, 40, 64, 50}};
    for (auto &s : shapes) {
        check_size<float>(s[0], s[1], s[2], s[3], true, 0);
        check_size<bf16>(s[0], s[1], s[2], s[3], true, 0);
    }
    check_size<float>(2, 9, 64, 48, false, 0);
    check_size<bf16>(2, 9, 64, 48, false, 0);
    check_size<float>(2, 9, 64, 48, true, 1);
    check_size<bf16>(2, 9, 64, 48, true, 1);
    printf("timing\n");
    for (int oc : {2304, 3072}) {
        bench<float>(8, 1024, 768, oc);
        bench<bf16>(8, 1024, 768, oc);
    }
    bench<bf16>(8, 1024, 3072, 768);
    return dev_finish();
}
