/*
 * dev/cpu/matmul.c — development benchmark and check of the production GEMM (csrc/cpu/matmul.c,
 * included below, so there is no copy to drift).
 *
 * Times matmul_forward / matmul_backward on the GPT-2 shapes of the CPU benchmark and prints
 * GFLOP/s by wall time and by CPU time (the second is robust on a shared machine: run with
 * OMP_WAIT_POLICY=passive so that idle threads do not spin), and checks each result against a
 * naive double-precision product on a few random entries.
 *
 * Build (one ISA variant at a time, the flags of CMakeLists.txt), from the repository root:
 *   gcc -O3 -fno-math-errno -fopenmp -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx2 -mfma \
 *       -mprefer-vector-width=512 -DLLMPY_CPU_ISA=avx512 -Icsrc dev/cpu/matmul.c \
 *       csrc/cpu/ops_cpu.c csrc/core/error.c -DLLMPY_CPU_HAVE_GENERIC -o /tmp/matmul_bench -lm
 *   OMP_NUM_THREADS=2 /tmp/matmul_bench [reps] [shape filter, e.g. "124m"] [cold]
 * With "cold", 256 MiB are written between two calls, so that the weight comes from memory as
 * in a model's step (whose weights do not fit in any cache) rather than from L2/L3.
 * (ops_cpu.c provides cpu_scratch; its dispatch table is unused here, which is why the
 * generic variant it names is defined as a stub below.)
 */
#include "../../csrc/cpu/matmul.c"

#include <stdio.h>

#include "dev_common.h"

static float *randn(size_t n, unsigned *seed) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        x[i] = ((float)(*seed >> 8) / (float)(1 << 24) - 0.5f);
    }
    return x;
}

// max relative error of c (M,N) against sum_k a(i,k) b(k,j) on 64 sampled entries
static double check(const float *c, cpu_view a, cpu_view b, size_t M, size_t N, size_t K, const float *c0) {
    double worst = 0;
    for (int s = 0; s < 64; s++) {
        size_t i = (size_t)s * 7919 % M, j = (size_t)s * 104729 % N;
        double ref = c0 ? c0[i * N + j] : 0.0, mag = fabs(ref);
        for (size_t k = 0; k < K; k++) {
            double t = (double)a.p[i * a.rs + k * a.cs] * b.p[k * b.rs + j * b.cs];
            ref += t;
            mag += fabs(t);
        }
        double e = fabs(c[i * N + j] - ref) / (mag + 1e-30);
        worst = e > worst ? e : worst;
    }
    return worst;
}

typedef struct shape {
    const char *name;
    int BT, C, OC;
} shape;

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    const shape shapes[] = {
        {"124m qkv", 256, 768, 2304},    {"124m attproj", 256, 768, 768}, {"124m fc", 256, 768, 3072},
        {"124m fcproj", 256, 3072, 768}, {"124m lm_head", 256, 768, 50304}, {"124m lm slice", 256, 768, 8192},
        {"d6 qkv", 2048, 384, 1152},     {"d6 fc", 2048, 384, 1536},      {"d6 fcproj", 2048, 1536, 384},
        {"d6 lm_head", 2048, 384, 50304}, {"d6 lm slice", 2048, 384, 1024},
        {"sgemm 2048", 2048, 2048, 2048}, // the square product of dev/bench/cpu_step.py's sgemm line
    };
    unsigned seed = 1;
    const int cold = argc > 3 && !strcmp(argv[3], "cold");
    const size_t flush_n = (size_t)64 << 20; // floats: 256 MiB
    float *flush = cold ? calloc(flush_n, sizeof(float)) : NULL;
#ifdef _OPENMP
    printf("threads %d, MR %d NR %d KC %d MC %d NC %d\n", omp_get_max_threads(), MR, NR, KC, MC, NC);
#endif
    printf("%-14s %6s %6s %6s | %-25s | %-25s | %-25s\n", "shape", "BT", "C", "OC", "forward GFLOP/s wall cpu",
           "dinp", "dweight");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const shape sh = shapes[s];
        if (argc > 2 && !strstr(sh.name, argv[2])) continue; // a filter on the shape names
        const size_t BT = sh.BT, C = sh.C, OC = sh.OC;
        float *inp = randn(BT * C, &seed), *w = randn(OC * C, &seed), *dout = randn(BT * OC, &seed);
        float *out = calloc(BT * OC, 4), *dinp = calloc(BT * C, 4), *dw = calloc(OC * C, 4);
        double flops = 2.0 * BT * C * OC, res[3][2];
        for (int which = 0; which < 3; which++) {
            double best_w = 1e30, best_c = 1e30;
            for (int r = 0; r < reps; r++) {
                if (flush)
                    for (size_t i = 0; i < flush_n; i += 16) flush[i] += 1.0f; // one store per line
                double w0 = dev_wall(), c0 = dev_cpu();
                if (which == 0) cpu_matmul_forward(out, inp, w, NULL, 1, (int)BT, (int)C, (int)OC);
                if (which == 1) gemm(dinp, C, (cpu_view){dout, OC, 1}, (cpu_view){w, C, 1}, BT, C, OC, 0, NULL, NULL);
                if (which == 2) gemm(dw, C, (cpu_view){dout, 1, OC}, (cpu_view){inp, C, 1}, OC, C, BT, 0, NULL, NULL);
                double w1 = dev_wall(), c1 = dev_cpu();
                best_w = w1 - w0 < best_w ? w1 - w0 : best_w;
                best_c = c1 - c0 < best_c ? c1 - c0 : best_c;
            }
            res[which][0] = flops / best_w / 1e9;
            res[which][1] = flops / best_c / 1e9;
        }
        double e = check(out, (cpu_view){inp, C, 1}, (cpu_view){w, 1, C}, BT, OC, C, NULL);
        printf("%-14s %6zu %6zu %6zu | %8.1f %8.1f          | %8.1f %8.1f          | %8.1f %8.1f  err %.1e\n",
               sh.name, BT, C, OC, res[0][0], res[0][1], res[1][0], res[1][1], res[2][0], res[2][1], e);
        free(inp), free(w), free(dout), free(out), free(dinp), free(dw);
    }
    free(flush);
    return 0;
}
