/*
 * dev/cuda/residual.cu — checks and times cuda/residual.cu (included, not copied).
 *
 * Build: make -C dev/cuda residual && dev/cuda/residual
 * Checks out = inp1 + inp2 (also in place, out aliasing inp1) and dinp1 += dout, dinp2 += dout
 * against a double host reference, fp32 and bf16, sizes off the vector width and misaligned
 * pointers. Times both at B=8, T=1024, C=768 in GB/s against the cudaMemcpy bandwidth.
 */
#include "dev_common.cuh"

#include "../../cuda/residual.cu"

template <typename X> static void check_size(size_t N, size_t pad) {
    printf("%s N=%zu%s\n", xname<X>(), N, pad ? " (misaligned)" : "");
    std::vector<float> a = randn_vec(N), b = randn_vec(N), d = randn_vec(N), g1 = randn_vec(N), g2 = randn_vec(N);
    round_vec<X>(a), round_vec<X>(b), round_vec<X>(d), round_vec<X>(g1), round_vec<X>(g2);
    DevBuf<X> da(a, pad), db(b, pad), dd(d, pad), dg1(g1, pad), dg2(g2, pad), out(N, pad);
    DEV_OP(cuda_residual_forward<X>(out.p, da.p, db.p, N, llm_cuda_stream));
    DEV_OP(cuda_residual_backward<X>(dg1.p, dg2.p, dd.p, N, llm_cuda_stream));
    std::vector<double> ref(N), r1(N), r2(N);
    for (size_t i = 0; i < N; i++) ref[i] = (double)a[i] + b[i], r1[i] = (double)g1[i] + d[i], r2[i] = (double)g2[i] + d[i];
    check("residual_forward", out.download(), ref, tolerance<X>());
    check("residual_backward dinp1 +=", dg1.download(), r1, tolerance<X>());
    check("residual_backward dinp2 +=", dg2.download(), r2, tolerance<X>());
    DEV_OP(cuda_residual_forward<X>(da.p, da.p, db.p, N, llm_cuda_stream)); // in place
    check("residual_forward in place (out = inp1)", da.download(), ref, tolerance<X>());
}

template <typename X> static void bench() {
    const size_t N = (size_t)8 * 1024 * 768;
    DevBuf<X> a(randn_vec(N)), b(randn_vec(N)), o(N), g1(N), g2(N);
    char name[64];
    snprintf(name, sizeof name, "%s residual_forward N=%zu", xname<X>(), N);
    report_bandwidth(name, time_ms([&] { cuda_residual_forward<X>(o.p, a.p, b.p, N, llm_cuda_stream); }),
                     3.0 * N * sizeof(X));
    snprintf(name, sizeof name, "%s residual_backward N=%zu", xname<X>(), N);
    report_bandwidth(name, time_ms([&] { cuda_residual_backward<X>(g1.p, g2.p, a.p, N, llm_cuda_stream); }),
                     5.0 * N * sizeof(X));
}

int main() {
    dev_init();
    for (size_t N : {(size_t)1, (size_t)9, (size_t)4096, (size_t)1000003}) {
        check_size<float>(N, 0);
        check_size<bf16>(N, 0);
    }
    check_size<float>(1001, 1);
    check_size<bf16>(1001, 5);
    printf("timing\n");
    bench<float>();
    bench<bf16>();
    return dev_finish();
}
