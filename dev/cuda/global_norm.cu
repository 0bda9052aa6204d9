/*
 * dev/cuda/global_norm.cu — checks and times cuda/global_norm.cu (included, not copied).
 *
 * Build: make -C dev/cuda global_norm && dev/cuda/global_norm
 * Checks sum(x^2) against a double host sum (relative error <= 1e-5 for both precisions: the
 * inputs are rounded to floatX first, the sums are fp32 per thread and double across blocks),
 * sizes off the vector width, a misaligned pointer, and that two calls give the same bits.
 * Times N = 124M (GPT-2 124M's gradients) in GB/s against the cudaMemcpy bandwidth.
 */
#include "dev_common.cuh"

#include "../../cuda/global_norm.cu"

template <typename X> static void check_size(size_t N, size_t pad) {
    printf("%s N=%zu%s\n", xname<X>(), N, pad ? " (misaligned)" : "");
    std::vector<float> x = randn_vec(N, 0.01f);
    round_vec<X>(x);
    DevBuf<X> dx(x, pad);
    double got = -1, again = -2, ref = 0;
    for (float f : x) ref += (double)f * f;
    DEV_OP(cuda_norm_squared<X>(&got, dx.p, N, llm_cuda_stream));
    DEV_OP(cuda_norm_squared<X>(&again, dx.p, N, llm_cuda_stream));
    check("norm_squared", std::vector<float>{(float)got}, std::vector<double>{ref}, 1e-5);
    printf("  %-44s %s\n", "deterministic", got == again ? "ok" : "FAIL");
    if (got != again) dev_failures++;
}

template <typename X> static void bench(size_t N) {
    DevBuf<X> x(randn_vec(N));
    double out;
    char name[80];
    snprintf(name, sizeof name, "%s norm_squared N=%zu (incl. sync)", xname<X>(), N);
    report_bandwidth(name, time_ms([&] { cuda_norm_squared<X>(&out, x.p, N, llm_cuda_stream); }), (double)N * sizeof(X));
}

int main() {
    dev_init();
    for (size_t N : {(size_t)1, (size_t)7, (size_t)4099, (size_t)10000019}) {
        check_size<float>(N, 0);
        check_size<bf16>(N, 0);
    }
    check_size<float>(100001, 1);
    check_size<bf16>(100001, 1);
    printf("timing\n");
    bench<float>(124475904);
    bench<bf16>(124475904);
    return dev_finish();
}
