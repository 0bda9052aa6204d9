/*
 * dev/cuda/attention.cu — checks and times cuda/attention.cu, the reference attention
 * (included, not copied). dev/cuda/flash_attention.cu does the same for the flash kernel.
 *
 * Build: make -C dev/cuda attention && dev/cuda/attention
 * Checks against a double host reference (naive causal softmax attention), fp32 and bf16:
 * out, the saved probabilities (state, zero above the diagonal), and dqkv written over a buffer
 * of NaN (every element written, none read); head sizes 2..64, T = 1..100. Times forward and backward at GPT-2 124M's shape
 * (B=8, T=1024, C=768, NH=12) in TFLOP/s of useful causal work (forward 4*B*NH*hs*T(T+1)/2,
 * backward 2.5x that; this version computes the full T x T, twice that) against cuBLAS's bf16
 * GEMM rate.
 */
#include "dev_common.cuh"

#include "../../cuda/attention.cu"

template <typename X> static void check_size(int B, int T, int C, int NH) {
    printf("%s B=%d T=%d C=%d NH=%d\n", xname<X>(), B, T, C, NH);
    const int hs = C / NH;
    const size_t C3 = 3 * (size_t)C, BT = (size_t)B * T;
    std::vector<float> qkv = randn_vec(BT * C3), dout = randn_vec(BT * C), g0(BT * C3, NAN);
    for (auto *v : {&qkv, &dout}) round_vec<X>(*v);
    DevBuf<X> dqkv_in(qkv), out(BT * C), ddout(dout), dg(g0);
    const size_t state_bytes = cuda_attention_state_bytes<X>(B, T, C, NH);
    const size_t scratch_bytes = cuda_attention_scratch_bytes<X>(B, T, C, NH);
    DevBuf<X> state(state_bytes / sizeof(X));
    DevBuf<char> scratch(scratch_bytes);
    DEV_OP(cuda_attention_forward<X>(out.p, state.p, scratch.p, dqkv_in.p, B, T, C, NH, llm_cuda_stream));
    DEV_OP(cuda_attention_backward<X>(dg.p, scratch.p, ddout.p, dqkv_in.p, out.p, state.p, B, T, C, NH,
                                      llm_cuda_stream));

    std::vector<double> ref_out(BT * C), ref_p((size_t)B * NH * T * T, 0.0), ref_g(BT * C3, 0.0);
    const double scale = 1.0 / sqrt((double)hs);
    std::vector<double> p(T), dp(T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const float *q = &qkv[((size_t)b * T + t) * C3 + (size_t)h * hs];
                double m = -1e300;
                for (int j = 0; j <= t; j++) {
                    const float *k = &qkv[((size_t)b * T + j) * C3 + C + (size_t)h * hs];
                    double s = 0;
                    for (int d = 0; d < hs; d++) s += (double)q[d] * k[d];
                    p[j] = s * scale;
                    m = std::max(m, p[j]);
                }
                double sum = 0;
                for (int j = 0; j <= t; j++) sum += (p[j] = exp(p[j] - m));
                for (int j = 0; j <= t; j++) p[j] /= sum;
                double *pr = &ref_p[(((size_t)b * NH + h) * T + t) * T];
                for (int j = 0; j <= t; j++) pr[j] = p[j];
                const float *go = &dout[((size_t)b * T + t) * C + (size_t)h * hs];
                double row = 0;
                for (int j = 0; j <= t; j++) {
                    const float *v = &qkv[((size_t)b * T + j) * C3 + 2 * C + (size_t)h * hs];
                    double s = 0;
                    for (int d = 0; d < hs; d++) {
                        ref_out[((size_t)b * T + t) * C + (size_t)h * hs + d] += p[j] * v[d];
                        s += (double)go[d] * v[d];
                    }
                    dp[j] = s;
                    row += p[j] * s;
                }
                double *gq = &ref_g[((size_t)b * T + t) * C3 + (size_t)h * hs];
                for (int j = 0; j <= t; j++) {
                    const double ds = p[j] * (dp[j] - row) * scale;
                    const float *k = &qkv[((size_t)b * T + j) * C3 + C + (size_t)h * hs];
                    double *gk = &ref_g[((size_t)b * T + j) * C3 + C + (size_t)h * hs];
                    double *gv = gk + C;
                    for (int d = 0; d < hs; d++) {
                        gq[d] += ds * k[d];
                        gk[d] += ds * q[d];
                        gv[d] += p[j] * go[d];
                    }
                }
            }
    check("attention_forward out", out.download(), ref_out, tolerance<X>());
    check("attention_forward state (probabilities)", state.download(), ref_p, tolerance<X>());
    check("attention_backward dqkv (written over NaN)", dg.download(), ref_g, tolerance<X>());
}

template <typename X> static void bench(int B, int T, int C, int NH) {
    const size_t BT = (size_t)B * T;
    DevBuf<X> qkv(randn_vec(BT * 3 * C)), out(BT * C), dout(randn_vec(BT * C)), dqkv(BT * 3 * C);
    DevBuf<X> state(cuda_attention_state_bytes<X>(B, T, C, NH) / sizeof(X));
    DevBuf<char> scratch(cuda_attention_scratch_bytes<X>(B, T, C, NH));
    const double fwd = 4.0 * B * NH * (C / NH) * (double)T * (T + 1) / 2;
    char name[96];
    snprintf(name, sizeof name, "%s attention_forward %dx%d C=%d NH=%d", xname<X>(), B, T, C, NH);
    report_flops(name, time_ms([&] {
        cuda_attention_forward<X>(out.p, state.p, scratch.p, qkv.p, B, T, C, NH, llm_cuda_stream);
    }, 10), fwd);
    snprintf(name, sizeof name, "%s attention_backward", xname<X>());
    report_flops(name, time_ms([&] {
        cuda_attention_backward<X>(dqkv.p, scratch.p, dout.p, qkv.p, out.p, state.p, B, T, C, NH, llm_cuda_stream);
    }, 10), 2.5 * fwd);
    printf("  state %.1f MiB, scratch %.1f MiB\n", cuda_attention_state_bytes<X>(B, T, C, NH) / 1048576.0,
           cuda_attention_scratch_bytes<X>(B, T, C, NH) / 1048576.0);
}

int main() {
    dev_init();
    const int shapes[][4] = {{1, 1, 4, 2}, {2, 7, 12, 3}, {2, 65, 128, 2}, {1, 100, 192, 3}, {2, 64, 768, 12}};
    for (auto &s : shapes) {
        check_size<float>(s[0], s[1], s[2], s[3]);
        check_size<bf16>(s[0], s[1], s[2], s[3]);
    }
    printf("timing\n");
    bench<float>(8, 1024, 768, 12);
    bench<bf16>(8, 1024, 768, 12);
    return dev_finish();
}
