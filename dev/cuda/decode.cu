/*
 * dev/cuda/decode.cu — checks and times cuda/decode.cu (included, not copied): the ops of
 * generation with a KV cache.
 *
 * Build (from the repository root; see dev/cuda/Makefile):  make -C dev/cuda decode && dev/cuda/decode
 * Checks, against double-precision host references, for fp32 and bf16 tables:
 *   - matmul_rows: out = inp @ w^T + bias for M = 1, 3, 8, 11 rows, weights of the table's type
 *     and bf16 weights under the fp32 table, sizes that are not multiples of the vector width and
 *     a misaligned input (the scalar path);
 *   - attention_cached: queries of ragged sequences in permuted cache slots, at positions inside
 *     a cache already holding other keys (decode: T = 1; prefill: T = 5), and the keys and values
 *     it writes into the cache;
 *   - encoder_at: embeddings at per-sequence positions.
 * Times matmul_rows on GPT-2 124M's decode shapes (C=768: qkv 2304, fc 3072, fcproj 768 x 3072,
 * lm head 50257) at M = 1 and 8, in GB/s of weights read against the device's cudaMemcpy bandwidth.
 */
#include "dev_common.cuh"

#include "../../cuda/decode.cu"

template <typename X, typename W> static void check_rows(int M, int C, int OC, size_t pad) {
    printf("%s table, %s weights, M=%d C=%d OC=%d%s\n", xname<X>(), xname<W>(), M, C, OC, pad ? " (misaligned)" : "");
    std::vector<float> x = randn_vec((size_t)M * C), w = randn_vec((size_t)OC * C, 0.05f), b = randn_vec(OC);
    round_vec<X>(x), round_vec<W>(w), round_vec<X>(b);
    DevBuf<X> dx(x, pad), db(b), out((size_t)M * OC);
    DevBuf<W> dw(w);
    std::vector<double> ref((size_t)M * OC);
    for (int m = 0; m < M; m++)
        for (int o = 0; o < OC; o++) {
            double s = b[o];
            for (int c = 0; c < C; c++) s += (double)x[(size_t)m * C + c] * w[(size_t)o * C + c];
            ref[(size_t)m * OC + o] = s;
        }
    const llm_dtype wt = sizeof(W) == 2 ? LLM_BF16 : LLM_F32;
    DEV_OP(cuda_matmul_rows<X>(out.p, dx.p, dw.p, wt, db.p, M, C, OC, llm_cuda_stream));
    check("matmul_rows", out.download(), ref, tolerance<X>());
}

template <typename X> static void check_attention(int T) {
    const int S = 5, NH = 3, hs = 24, C = NH * hs, maxT = 40, N = 3;
    const int rows[N] = {4, 0, 2}, pos[N] = {7, 0, 30};
    printf("%s attention_cached N=%d T=%d C=%d NH=%d maxT=%d\n", xname<X>(), N, T, C, NH, maxT);
    const size_t cache = (size_t)S * NH * maxT * hs;
    std::vector<float> kc = randn_vec(cache), vc = randn_vec(cache), qkv = randn_vec((size_t)N * T * 3 * C);
    round_vec<X>(kc), round_vec<X>(vc), round_vec<X>(qkv);
    DevBuf<X> dk(kc), dv(vc), dqkv(qkv), out((size_t)N * T * C);
    int32_t *drows, *dpos;
    DEV_CUDA(cudaMalloc(&drows, N * sizeof(int32_t)));
    DEV_CUDA(cudaMalloc(&dpos, N * sizeof(int32_t)));
    DEV_CUDA(cudaMemcpy(drows, rows, N * sizeof(int32_t), cudaMemcpyHostToDevice));
    DEV_CUDA(cudaMemcpy(dpos, pos, N * sizeof(int32_t), cudaMemcpyHostToDevice));
    // the reference: the cache after the writes, then the attention over it
    for (int n = 0; n < N; n++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                const size_t at = (((size_t)rows[n] * NH + c / hs) * maxT + pos[n] + t) * hs + c % hs;
                kc[at] = qkv[((size_t)n * T + t) * 3 * C + C + c];
                vc[at] = qkv[((size_t)n * T + t) * 3 * C + 2 * C + c];
            }
    std::vector<double> ref((size_t)N * T * C);
    for (int n = 0; n < N; n++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < NH; h++) {
                const int np = pos[n] + t + 1;
                const size_t head = ((size_t)rows[n] * NH + h) * maxT * hs;
                std::vector<double> p(np);
                double mx = -1e300, sum = 0;
                for (int j = 0; j < np; j++) {
                    double s = 0;
                    for (int d = 0; d < hs; d++) s += (double)qkv[((size_t)n * T + t) * 3 * C + h * hs + d] * kc[head + (size_t)j * hs + d];
                    p[j] = s / sqrt((double)hs);
                    mx = std::max(mx, p[j]);
                }
                for (int j = 0; j < np; j++) sum += (p[j] = exp(p[j] - mx));
                for (int d = 0; d < hs; d++) {
                    double o = 0;
                    for (int j = 0; j < np; j++) o += p[j] / sum * vc[head + (size_t)j * hs + d];
                    ref[((size_t)n * T + t) * C + h * hs + d] = o;
                }
            }
    DEV_OP(cuda_attention_cached<X>(out.p, dk.p, dv.p, dqkv.p, drows, dpos, N, T, C, NH, maxT, llm_cuda_stream));
    check("attention_cached", out.download(), ref, tolerance<X>());
    check("attention_cached: keys in the cache", dk.download(), std::vector<double>(kc.begin(), kc.end()), 0.0);
    check("attention_cached: values in the cache", dv.download(), std::vector<double>(vc.begin(), vc.end()), 0.0);
    cudaFree(drows);
    cudaFree(dpos);
}

template <typename X> static void check_encoder_at() {
    const int N = 3, T = 4, C = 20, V = 11, maxT = 16;
    const int32_t inp[N * T] = {1, 2, 3, 4, 10, 0, 5, 5, 7, 7, 7, 7}, pos[N] = {0, 9, 12};
    printf("%s encoder_at N=%d T=%d C=%d\n", xname<X>(), N, T, C);
    std::vector<float> wte = randn_vec((size_t)V * C), wpe = randn_vec((size_t)maxT * C);
    round_vec<X>(wte), round_vec<X>(wpe);
    DevBuf<X> dwte(wte), dwpe(wpe), out((size_t)N * T * C);
    int32_t *dinp, *dpos;
    DEV_CUDA(cudaMalloc(&dinp, sizeof inp));
    DEV_CUDA(cudaMalloc(&dpos, sizeof pos));
    DEV_CUDA(cudaMemcpy(dinp, inp, sizeof inp, cudaMemcpyHostToDevice));
    DEV_CUDA(cudaMemcpy(dpos, pos, sizeof pos, cudaMemcpyHostToDevice));
    std::vector<double> ref((size_t)N * T * C);
    for (int n = 0; n < N; n++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++)
                ref[((size_t)n * T + t) * C + c] = (double)wte[(size_t)inp[n * T + t] * C + c] + wpe[(size_t)(pos[n] + t) * C + c];
    DEV_OP(cuda_encoder_at<X>(out.p, dinp, dpos, dwte.p, dwpe.p, N, T, C, llm_cuda_stream));
    check("encoder_at", out.download(), ref, tolerance<X>());
    cudaFree(dinp);
    cudaFree(dpos);
}

template <typename X, typename W> static void bench_rows(int M) {
    const int C = 768;
    const int shapes[][2] = {{C, 3 * C}, {C, 4 * C}, {4 * C, C}, {C, 50257}};
    for (auto &s : shapes) {
        const int K = s[0], OC = s[1];
        DevBuf<X> x(randn_vec((size_t)M * K)), out((size_t)M * OC);
        DevBuf<W> w(randn_vec((size_t)OC * K, 0.02f));
        const llm_dtype wt = sizeof(W) == 2 ? LLM_BF16 : LLM_F32;
        char name[96];
        snprintf(name, sizeof name, "%s/%s matmul_rows M=%d %dx%d", xname<X>(), xname<W>(), M, OC, K);
        report_bandwidth(name, time_ms([&] { cuda_matmul_rows<X>(out.p, x.p, w.p, wt, nullptr, M, K, OC, llm_cuda_stream); }),
                         (double)OC * K * sizeof(W));
    }
}

int main() {
    dev_init();
    for (int M : {1, 3, 8, 11}) {
        check_rows<float, float>(M, 768, 100, 0);
        check_rows<float, bf16>(M, 768, 100, 0);
        check_rows<bf16, bf16>(M, 768, 100, 0);
    }
    check_rows<float, float>(2, 37, 9, 1);
    check_rows<float, bf16>(2, 37, 9, 1);
    check_rows<bf16, bf16>(5, 20, 7, 3);
    for (int T : {1, 5}) {
        check_attention<float>(T);
        check_attention<bf16>(T);
    }
    check_encoder_at<float>();
    check_encoder_at<bf16>();
    printf("timing\n");
    for (int M : {1, 8}) {
        bench_rows<float, float>(M);
        bench_rows<float, bf16>(M);
        bench_rows<bf16, bf16>(M);
    }
    return dev_finish();
}
