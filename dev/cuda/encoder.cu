/*
 * dev/cuda/encoder.cu — checks and times cuda/encoder.cu (included, not copied).
 *
 * Build: make -C dev/cuda encoder && dev/cuda/encoder
 * Checks out = wte[token] + wpe[t] and the backward (dwte, dwpe accumulated onto random values,
 * with many repeated tokens) against a double host reference, fp32 and bf16, C off the vector
 * width and misaligned pointers; the backward runs with the ids read back from the device and
 * with them given on the host (then the device copy holds other ids, so the check fails unless
 * the host ones are used), and twice, to check it is bitwise deterministic. Times both at B=8,
 * T=1024, C=768 (GPT-2 vocabulary) in GB/s against the cudaMemcpy bandwidth (the backward
 * includes its host bucketing; without host ids, also the synchronisation).
 */
#include "dev_common.cuh"

#include "../../cuda/encoder.cu"

template <typename X> static void check_size(int B, int T, int C, int Vp, size_t pad) {
    printf("%s B=%d T=%d C=%d Vp=%d%s\n", xname<X>(), B, T, C, Vp, pad ? " (misaligned)" : "");
    const size_t BT = (size_t)B * T, N = BT * C;
    std::vector<int32_t> ids(BT);
    for (auto &v : ids) v = (int32_t)(dev_uniform() * (dev_uniform() < 0.5 ? 3 : Vp)) % Vp; // many repeats
    std::vector<float> wte = randn_vec((size_t)Vp * C), wpe = randn_vec((size_t)T * C), d = randn_vec(N);
    std::vector<float> gte0 = randn_vec((size_t)Vp * C), gpe0 = randn_vec((size_t)T * C);
    for (auto *v : {&wte, &wpe, &d, &gte0, &gpe0}) round_vec<X>(*v);
    int32_t *dids;
    DEV_CUDA(cudaMalloc(&dids, BT * sizeof(int32_t)));
    DEV_CUDA(cudaMemcpy(dids, ids.data(), BT * sizeof(int32_t), cudaMemcpyHostToDevice));
    DevBuf<X> dwte(wte, pad), dwpe(wpe, pad), out(N, pad), dd(d, pad), gte(gte0, pad), gpe(gpe0, pad);
    DEV_OP(cuda_encoder_forward<X>(out.p, dids, dwte.p, dwpe.p, B, T, C, llm_cuda_stream));
    std::vector<double> ref(N), rte(gte0.begin(), gte0.end()), rpe(gpe0.begin(), gpe0.end());
    for (size_t bt = 0; bt < BT; bt++) {
        const size_t t = bt % T;
        for (int c = 0; c < C; c++) {
            ref[bt * C + c] = (double)wte[(size_t)ids[bt] * C + c] + wpe[t * C + c];
            rte[(size_t)ids[bt] * C + c] += d[bt * C + c];
            rpe[t * C + c] += d[bt * C + c];
        }
    }
    check("encoder_forward", out.download(), ref, tolerance<X>());
    DEV_OP(cuda_encoder_backward<X>(gte.p, gpe.p, dd.p, dids, nullptr, B, T, C, llm_cuda_stream));
    std::vector<float> first = gte.download();
    check("encoder_backward dwte +=", first, rte, tolerance<X>());
    check("encoder_backward dwpe +=", gpe.download(), rpe, tolerance<X>());
    // the ids from the host: the device copy is overwritten with others (the reversed order)
    std::vector<int32_t> other(ids.rbegin(), ids.rend());
    DEV_CUDA(cudaMemcpy(dids, other.data(), BT * sizeof(int32_t), cudaMemcpyHostToDevice));
    gte.upload(gte0), gpe.upload(gpe0);
    DEV_OP(cuda_encoder_backward<X>(gte.p, gpe.p, dd.p, dids, ids.data(), B, T, C, llm_cuda_stream));
    std::vector<float> second = gte.download();
    check("encoder_backward dwte += (host ids)", second, rte, tolerance<X>());
    check("encoder_backward dwpe += (host ids)", gpe.download(), rpe, tolerance<X>());
    const bool same = memcmp(first.data(), second.data(), first.size() * sizeof(float)) == 0;
    printf("  %-44s %s\n", "encoder_backward deterministic", same ? "ok" : "FAIL");
    if (!same) dev_failures++;
    DEV_CUDA(cudaFree(dids));
}

template <typename X> static void bench() {
    const int B = 8, T = 1024, C = 768, Vp = 50304;
    const size_t BT = (size_t)B * T, N = BT * C;
    std::vector<int32_t> ids(BT);
    for (auto &v : ids) v = (int32_t)(dev_uniform() * 50257);
    int32_t *dids;
    DEV_CUDA(cudaMalloc(&dids, BT * sizeof(int32_t)));
    DEV_CUDA(cudaMemcpy(dids, ids.data(), BT * sizeof(int32_t), cudaMemcpyHostToDevice));
    DevBuf<X> wte((size_t)Vp * C), wpe((size_t)T * C), out(N), d(randn_vec(N));
    char name[80];
    snprintf(name, sizeof name, "%s encoder_forward %dx%dx%d", xname<X>(), B, T, C);
    report_bandwidth(name, time_ms([&] { cuda_encoder_forward<X>(out.p, dids, wte.p, wpe.p, B, T, C, llm_cuda_stream); }),
                     3.0 * N * sizeof(X));
    snprintf(name, sizeof name, "%s encoder_backward (host sort, sync)", xname<X>());
    report_bandwidth(name, time_ms([&] {
        cuda_encoder_backward<X>(wte.p, wpe.p, d.p, dids, nullptr, B, T, C, llm_cuda_stream);
    }), 3.0 * N * sizeof(X));
    snprintf(name, sizeof name, "%s encoder_backward (host ids, no sync)", xname<X>());
    report_bandwidth(name, time_ms([&] {
        cuda_encoder_backward<X>(wte.p, wpe.p, d.p, dids, ids.data(), B, T, C, llm_cuda_stream);
    }), 3.0 * N * sizeof(X));
    DEV_CUDA(cudaFree(dids));
}

int main() {
    dev_init();
    const int shapes[][4] = {{1, 1, 1, 1}, {2, 5, 7, 13}, {3, 33, 768, 1000}, {4, 64, 768, 50304}, {1, 1024, 20, 5}};
    for (auto &s : shapes) {
        check_size<float>(s[0], s[1], s[2], s[3], 0);
        check_size<bf16>(s[0], s[1], s[2], s[3], 0);
    }
    check_size<float>(2, 9, 768, 100, 1);
    check_size<bf16>(2, 9, 768, 100, 1);
    printf("timing\n");
    bench<float>();
    bench<bf16>();
    return dev_finish();
}
