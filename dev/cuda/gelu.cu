/*
 * dev/cuda/gelu.cu — checks and times cuda/gelu.cu (included, not copied).
 *
 * Build (from the repository root; see dev/cuda/Makefile):  make -C dev/cuda gelu && dev/cuda/gelu
 * Checks forward and backward (dinp written over NaN, and in place of dout) against a double-precision
 * host reference written from the textbook formula 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3))),
 * for fp32 and bf16, sizes that are not multiples of the vector width, and misaligned pointers
 * (the scalar path). Times both at GPT-2 124M's MLP size (B=8, T=1024, 4C=3072) in GB/s
 * against the device's cudaMemcpy bandwidth.
 */
#include "dev_common.cuh"

#include "../../cuda/gelu.cu"

static double gelu_ref(double x) { return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
static double gelu_grad_ref(double x) {
    const double u = 0.7978845608028654 * (x + 0.044715 * x * x * x), th = tanh(u);
    return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
}

template <typename X> static void check_size(size_t N, size_t pad) {
    printf("%s N=%zu%s\n", xname<X>(), N, pad ? " (misaligned)" : "");
    std::vector<float> x = randn_vec(N, 2.0f), d = randn_vec(N), g0(N, NAN);
    round_vec<X>(x), round_vec<X>(d);
    DevBuf<X> dx(x, pad), dout(d, pad), dinp(g0, pad), out(N, pad), inplace(d, pad);
    DEV_OP(cuda_gelu_forward<X>(out.p, dx.p, N, llm_cuda_stream));
    DEV_OP(cuda_gelu_backward<X>(dinp.p, dx.p, dout.p, N, llm_cuda_stream));
    DEV_OP(cuda_gelu_backward<X>(inplace.p, dx.p, inplace.p, N, llm_cuda_stream));
    std::vector<double> ref(N), gref(N);
    for (size_t i = 0; i < N; i++) {
        ref[i] = gelu_ref(x[i]);
        gref[i] = gelu_grad_ref(x[i]) * d[i];
    }
    check("gelu_forward", out.download(), ref, tolerance<X>());
    check("gelu_backward (dinp written over NaN)", dinp.download(), gref, tolerance<X>());
    check("gelu_backward (dinp is dout)", inplace.download(), gref, tolerance<X>());
}

template <typename X> static void bench() {
    const size_t N = (size_t)8 * 1024 * 3072;
    DevBuf<X> x(randn_vec(N)), d(randn_vec(N)), g(N), o(N);
    char name[64];
    snprintf(name, sizeof name, "%s gelu_forward N=%zu", xname<X>(), N);
    report_bandwidth(name, time_ms([&] { cuda_gelu_forward<X>(o.p, x.p, N, llm_cuda_stream); }), 2.0 * N * sizeof(X));
    snprintf(name, sizeof name, "%s gelu_backward N=%zu", xname<X>(), N);
    report_bandwidth(name, time_ms([&] { cuda_gelu_backward<X>(g.p, x.p, d.p, N, llm_cuda_stream); }),
                     4.0 * N * sizeof(X));
}

int main() {
    dev_init();
    for (size_t N : {(size_t)1, (size_t)7, (size_t)1000, (size_t)1000003}) {
        check_size<float>(N, 0);
        check_size<bf16>(N, 0);
    }
    check_size<float>(1001, 1);
    check_size<bf16>(1001, 3);
    printf("timing\n");
    bench<float>();
    bench<bf16>();
    return dev_finish();
}
