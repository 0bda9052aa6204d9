/*
 * dev/cuda/global_norm.cu — checks and times cuda/global_norm.cu (included, not copied).
 *
 * Build: make -C dev/cuda global_norm && dev/cuda/global_norm
 * Checks sum(x^2) against a double host sum (relative error <= 1e-5 for both precisions: the
 * inputs are rounded to floatX first, the sums are fp32 per thread and double across blocks),
 * sizes off the vector width, a misaligned pointer, and that two calls give the same bits; and
 * sum_f32 (fp32 x, double accumulation on the device) within 1e-12 of a double host sum, same
 * bits twice. Times N = 124M (GPT-2 124M's gradients) in GB/s against the cudaMemcpy
 * bandwidth, and sum_f32 at N = 65536 (the losses of B*T = 64K positions, one synchronisation).
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

static void check_sum(size_t N, size_t pad) {
    printf("sum_f32 N=%zu%s\n", N, pad ? " (misaligned)" : "");
    std::vector<float> x = randn_vec(N, 3.0f);
    for (auto &v : x) v += 2.0f; // a mean far from 0: cancellation does not hide errors
    DevBuf<float> dx(x, pad);
    double got = -1, again = -2, ref = 0;
    for (float f : x) ref += f;
    DEV_OP(cuda_sum_f32(&got, dx.p, N, llm_cuda_stream));
    DEV_OP(cuda_sum_f32(&again, dx.p, N, llm_cuda_stream));
    const double err = fabs(got - ref) / fabs(ref);
    const bool ok = err <= 1e-12;
    printf("  %-44s rel %.3e (tol 1e-12) %s\n", "sum_f32", err, ok ? "ok" : "FAIL");
    printf("  %-44s %s\n", "deterministic", got == again ? "ok" : "FAIL");
    if (!ok || got != again) dev_failures++;
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
    for (size_t N : {(size_t)1, (size_t)255, (size_t)65536, (size_t)10000019}) check_sum(N, 0);
    check_sum(4099, 1);
    printf("timing\n");
    bench<float>(124475904);
    bench<bf16>(124475904);
    {
        DevBuf<float> x(randn_vec(65536));
        double out;
        report_bandwidth("sum_f32 N=65536 (incl. sync)",
                         time_ms([&] { cuda_sum_f32(&out, x.p, 65536, llm_cuda_stream); }), 65536.0 * sizeof(float));
    }
    return dev_finish();
}
