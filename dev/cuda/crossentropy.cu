/*
 * dev/cuda/crossentropy.cu — checks and times cuda/crossentropy.cu, the fused classifier
 * (included, not copied).
 *
 * Build: make -C dev/cuda crossentropy && dev/cuda/crossentropy
 * Checks against a double host reference, fp32 and bf16: the losses, the full backward
 * (written, zero on padding columns; also in place over the logits) and backward_cols on
 * slices (from column 0, in the middle, across V, the whole row), with V and Vp off the vector
 * width. Times forward, backward and backward_cols (whole row) at B*T = 8192 rows of the GPT-2
 * vocabulary (V=50257, Vp=50304) in GB/s against the cudaMemcpy bandwidth.
 */
#include "dev_common.cuh"

#include "../../cuda/crossentropy.cu"

template <typename X> static void check_size(int B, int T, int V, int Vp) {
    printf("%s B=%d T=%d V=%d Vp=%d\n", xname<X>(), B, T, V, Vp);
    const size_t BT = (size_t)B * T;
    std::vector<float> logits = randn_vec(BT * Vp, 3.0f);
    round_vec<X>(logits);
    std::vector<int32_t> targets(BT);
    for (auto &t : targets) t = (int32_t)(dev_uniform() * V) % V;
    const float dloss = 1.0f / (float)BT;
    int32_t *dt;
    DEV_CUDA(cudaMalloc(&dt, BT * sizeof(int32_t)));
    DEV_CUDA(cudaMemcpy(dt, targets.data(), BT * sizeof(int32_t), cudaMemcpyHostToDevice));
    DevBuf<X> dlog(logits), dgrad(BT * Vp);
    DevBuf<float> losses(BT);

    std::vector<double> ref_loss(BT), ref_grad(BT * Vp, 0.0);
    for (size_t r = 0; r < BT; r++) {
        const float *x = &logits[r * Vp];
        double m = -1e300, s = 0;
        for (int i = 0; i < V; i++) m = std::max(m, (double)x[i]);
        for (int i = 0; i < V; i++) s += exp(x[i] - m);
        ref_loss[r] = log(s) + m - x[targets[r]];
        for (int i = 0; i < V; i++) ref_grad[r * Vp + i] = (exp(x[i] - m) / s - (i == targets[r])) * dloss;
    }
    DEV_OP(cuda_crossentropy_forward<X>(losses.p, dlog.p, dt, B, T, V, Vp, llm_cuda_stream));
    std::vector<float> got_loss = losses.download();
    check("crossentropy_forward losses", got_loss, ref_loss, 1e-5);
    DEV_OP(cuda_crossentropy_backward<X>(dgrad.p, dlog.p, dt, dloss, B, T, V, Vp, llm_cuda_stream));
    check("crossentropy_backward dlogits", dgrad.download(), ref_grad, tolerance<X>());

    // slices rebuilt from the kernel's own losses (as the model uses them)
    const int slices[][2] = {{0, std::min(Vp, 64)}, {Vp / 3, Vp / 3}, {std::max(0, V - 5), Vp - std::max(0, V - 5)},
                             {0, Vp}};
    for (auto &sl : slices) {
        const int v0 = sl[0], n = sl[1];
        if (n <= 0) continue;
        DevBuf<X> dcols(BT * n);
        DEV_OP(cuda_crossentropy_backward_cols<X>(dcols.p, dlog.p, losses.p, dt, dloss, B, T, V, Vp, v0, n,
                                                  llm_cuda_stream));
        std::vector<double> ref(BT * n);
        for (size_t r = 0; r < BT; r++)
            for (int i = 0; i < n; i++) ref[r * n + i] = ref_grad[r * Vp + v0 + i];
        char what[80];
        snprintf(what, sizeof what, "crossentropy_backward_cols v0=%d n=%d", v0, n);
        check(what, dcols.download(), ref, tolerance<X>());
    }
    // in place: dlogits = logits
    DEV_OP(cuda_crossentropy_backward<X>(dlog.p, dlog.p, dt, dloss, B, T, V, Vp, llm_cuda_stream));
    check("crossentropy_backward in place", dlog.download(), ref_grad, tolerance<X>());
    DEV_CUDA(cudaFree(dt));
}

template <typename X> static void bench(int B, int T, int V, int Vp) {
    const size_t BT = (size_t)B * T;
    DevBuf<X> logits(randn_vec(BT * Vp)), grad(BT * Vp);
    DevBuf<float> losses(BT);
    std::vector<int32_t> targets(BT);
    for (auto &t : targets) t = (int32_t)(dev_uniform() * V) % V;
    int32_t *dt;
    DEV_CUDA(cudaMalloc(&dt, BT * sizeof(int32_t)));
    DEV_CUDA(cudaMemcpy(dt, targets.data(), BT * sizeof(int32_t), cudaMemcpyHostToDevice));
    const double bytes = (double)BT * Vp * sizeof(X);
    char name[96];
    snprintf(name, sizeof name, "%s crossentropy_forward %zux%d", xname<X>(), BT, Vp);
    report_bandwidth(name, time_ms([&] { cuda_crossentropy_forward<X>(losses.p, logits.p, dt, B, T, V, Vp, llm_cuda_stream); }),
                     bytes);
    snprintf(name, sizeof name, "%s crossentropy_backward", xname<X>());
    report_bandwidth(name, time_ms([&] {
        cuda_crossentropy_backward<X>(grad.p, logits.p, dt, 1.0f, B, T, V, Vp, llm_cuda_stream);
    }), 2 * bytes);
    snprintf(name, sizeof name, "%s crossentropy_backward_cols (whole row)", xname<X>());
    report_bandwidth(name, time_ms([&] {
        cuda_crossentropy_backward_cols<X>(grad.p, logits.p, losses.p, dt, 1.0f, B, T, V, Vp, 0, Vp, llm_cuda_stream);
    }), 2 * bytes);
    DEV_CUDA(cudaFree(dt));
}

int main() {
    dev_init();
    const int shapes[][4] = {{1, 1, 1, 1}, {2, 3, 5, 8}, {2, 7, 1000, 1003}, {1, 5, 3, 3}, {4, 8, 50257, 50304}};
    for (auto &s : shapes) {
        check_size<float>(s[0], s[1], s[2], s[3]);
        check_size<bf16>(s[0], s[1], s[2], s[3]);
    }
    printf("timing\n");
    bench<float>(8, 1024, 50257, 50304);
    bench<bf16>(8, 1024, 50257, 50304);
    return dev_finish();
}
