/*
 * dev/cpu/step.c — times GPT-2 training steps through the public C API (no Python), phase by
 * phase: forward (with targets), zero_grad, backward, gradient norm, AdamW. For profiling the CPU backend
 * with perf, whose symbols the stripped Python module lacks.
 *
 * Build against the core library (any build directory), from the repository root:
 *   cmake -S . -B /tmp/llmpy-c -G Ninja && cmake --build /tmp/llmpy-c
 *   gcc -O2 -g -fopenmp -Icsrc dev/cpu/step.c /tmp/llmpy-c/libllmpy_core.a -lm -o /tmp/step
 * Run:
 *   OMP_NUM_THREADS=2 /tmp/step 124m 20        # config (124m | d6), steps; prints medians
 *   OMP_NUM_THREADS=1 perf record -D 8000 /tmp/step d6 10 && perf report
 *   OMP_NUM_THREADS=2 /tmp/step 124m 20 fwd    # forwards only (with targets), as --forward-only
 * Configs as in dev/bench/cpu_step.py: 124m = L12 C768, B=4 T=64; d6 = L6 C384, B=8 T=256.
 * The first two steps are warmup (excluded from the medians).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/llmpy.h"
#include "dev_common.h"

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof *x, cmp);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

#define CHECK(call)                                                                                \
    do {                                                                                           \
        if ((call) != LLM_OK) {                                                                    \
            fprintf(stderr, "%s: %s\n", #call, llm_last_error());                                 \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

int main(int argc, char **argv) {
    const int d6 = argc > 1 && strcmp(argv[1], "d6") == 0;
    const int steps = argc > 2 ? atoi(argv[2]) : 10;
    const int fwd_only = argc > 3 && strcmp(argv[3], "fwd") == 0;
    if (steps < 3 || (argc > 3 && !fwd_only)) {
        fprintf(stderr, "usage: %s [124m|d6] [steps >= 3] [fwd]\n", argv[0]);
        return 2;
    }
    llm_config cfg = d6 ? (llm_config){6, 6, 384, 50257, 1024, 0} : (llm_config){12, 12, 768, 50257, 1024, 0};
    const int B = d6 ? 8 : 4, T = d6 ? 256 : 64;
    printf("%s, B=%d T=%d, %d threads, cpu_isa %s (built: %s)\n", d6 ? "d6" : "124m", B, T, llm_get_num_threads(),
           llm_cpu_isa(), llm_cpu_isa_list());
    llm_model *m;
    CHECK(llm_model_create(&m, &cfg, "cpu", NULL, 0));
    int32_t *x = malloc(sizeof(int32_t) * B * T), *y = malloc(sizeof(int32_t) * B * T);
    for (int i = 0; i < B * T; i++) {
        x[i] = (int32_t)((i * 7919u) % 50257u);
        y[i] = (int32_t)((i * 104729u) % 50257u);
    }
    double *fwd = malloc(sizeof(double) * steps), *bwd = malloc(sizeof(double) * steps);
    double *adam = malloc(sizeof(double) * steps), *tot = malloc(sizeof(double) * steps);
    double *cpu = malloc(sizeof(double) * steps), *zero = malloc(sizeof(double) * steps);
    double *norm = malloc(sizeof(double) * steps);
    for (int s = 0; s < steps; s++) {
        float loss;
        double c0 = dev_cpu(), t0 = dev_wall();
        CHECK(llm_forward(m, x, y, B, T, &loss));
        double t1 = dev_wall();
        if (fwd_only) {
            cpu[s] = (dev_cpu() - c0) * 1e3;
            fwd[s] = tot[s] = (t1 - t0) * 1e3, zero[s] = bwd[s] = norm[s] = adam[s] = 0.0;
            if (s < 2 || s == steps - 1) printf("forward %d loss %.4f %.1f ms\n", s, loss, tot[s]);
            continue;
        }
        CHECK(llm_zero_grad(m));
        double t1z = dev_wall();
        CHECK(llm_backward(m, 1.0f));
        double t2 = dev_wall();
        float gnorm;
        CHECK(llm_grad_norm(m, &gnorm)); // computed once: llm_step below reuses it
        double t2n = dev_wall();
        CHECK(llm_step(m, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, NULL));
        double t3 = dev_wall();
        cpu[s] = (dev_cpu() - c0) * 1e3;
        fwd[s] = (t1 - t0) * 1e3, zero[s] = (t1z - t1) * 1e3, bwd[s] = (t2 - t1z) * 1e3, norm[s] = (t2n - t2) * 1e3;
        adam[s] = (t3 - t2n) * 1e3, tot[s] = (t3 - t0) * 1e3;
        if (s < 2 || s == steps - 1) printf("step %d loss %.4f total %.1f ms\n", s, loss, tot[s]);
    }
    const int n = steps - 2;
    printf("median of %d steps: forward %.1f  zero_grad %.1f  backward %.1f  norm %.1f  adamw %.1f  total %.1f ms "
           "(cpu time %.1f ms)\n",
           n, median(fwd + 2, n), median(zero + 2, n), median(bwd + 2, n), median(norm + 2, n), median(adam + 2, n),
           median(tot + 2, n), median(cpu + 2, n));
    llm_model_free(m);
    free(x), free(y), free(fwd), free(bwd), free(adam), free(tot), free(cpu), free(zero), free(norm);
    return 0;
}
