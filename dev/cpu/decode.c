/*
 * dev/cpu/decode.c — development benchmark and check of the production decode GEMV
 * (csrc/cpu/decode.c, included below, so there is no copy to drift).
 *
 * Runs the matrix products of one GPT-2 124M decode step (12 layers of qkv, attproj, fc and
 * fcproj, then the lm_head over wte's 50257 rows) through cpu_matmul_rows, with fp32 weights and
 * with bf16 weights, at M = 1 and M = 8 input rows, and prints per matrix kind the milliseconds
 * per step and the weight bytes read per second, next to a plain OpenMP sum over the same bytes
 * (the bandwidth bound on this machine now). Each result is checked against a double-precision
 * product on sampled entries (fp32: 1e-5 relative to the magnitudes; bf16: the inputs rounded
 * the way the path in use rounds them, 1e-5 as well).
 *
 * Build (the avx512 variant's flags of CMakeLists.txt), from the repository root:
 *   gcc -O3 -fno-math-errno -fopenmp -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx2 -mfma -mf16c \
 *       -mprefer-vector-width=512 -DLLMPY_CPU_ISA=avx512 -Icsrc dev/cpu/decode.c \
 *       csrc/cpu/ops_cpu.c csrc/core/error.c -DLLMPY_CPU_HAVE_GENERIC -o /tmp/decode_bench -lm
 *   OMP_NUM_THREADS=2 /tmp/decode_bench [steps] [convert]
 * ("convert" forces the bf16 conversion path, the one of CPUs without avx512_bf16.)
 */
#include "../../csrc/cpu/decode.c"

#include <stdio.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "dev_common.h"

static void fill(float *x, size_t n, unsigned *seed, float scale) {
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        x[i] = ((float)(*seed >> 8) / (float)(1 << 24) - 0.5f) * scale;
    }
}

static uint16_t to_bf16(float f) { // round to nearest even (finite inputs)
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

enum { L = 12, C = 768, V = 50257, KINDS = 5 };
static const char *kind_name[KINDS] = {"qkv", "attproj", "fc", "fcproj", "lm_head"};
static const int kind_in[KINDS] = {C, C, C, 4 * C, C}, kind_out[KINDS] = {3 * C, C, 4 * C, C, V};

// max relative error of out (M,OC) against x @ w^T in double on 64 sampled entries; xr: inputs as
// the path rounds them (NULL: as given)
static double check(const float *out, const float *x, const float *xr, const void *w, int bf16, int M, int K,
                    int OC) {
    double worst = 0;
    for (int s = 0; s < 64; s++) {
        const size_t i = (size_t)s * 7919 % M, j = (size_t)s * 104729 % OC;
        double ref = 0, mag = 0;
        for (int k = 0; k < K; k++) {
            const double wv = bf16 ? bf16_to_f32(((const uint16_t *)w)[j * K + k]) : ((const float *)w)[j * K + k];
            const double t = wv * (xr ? xr : x)[i * K + k];
            ref += t;
            mag += fabs(t);
        }
        const double e = fabs(out[i * OC + j] - ref) / (mag + 1e-30);
        worst = e > worst ? e : worst;
    }
    return worst;
}

int main(int argc, char **argv) {
    const int steps = argc > 1 ? atoi(argv[1]) : 50;
    const int convert = argc > 2 && strcmp(argv[2], "convert") == 0;
    unsigned seed = 1;
    // the weights of every kind, all layers (lm_head: one), fp32 and bf16
    void *w32[KINDS], *w16[KINDS];
    size_t elems[KINDS], total = 0;
    for (int k = 0; k < KINDS; k++) {
        elems[k] = (size_t)kind_in[k] * kind_out[k] * (k == 4 ? 1 : L);
        total += elems[k];
        if (cpu_alloc(&w32[k], elems[k] * 4) != LLM_OK || cpu_alloc(&w16[k], elems[k] * 2) != LLM_OK) return 1;
        fill(w32[k], elems[k], &seed, 0.1f);
        for (size_t i = 0; i < elems[k]; i++) ((uint16_t *)w16[k])[i] = to_bf16(((float *)w32[k])[i]);
    }
    enum { MMAX = 8 };
    float *x = malloc((size_t)MMAX * 4 * C * 4), *xr = malloc((size_t)MMAX * 4 * C * 4);
    float *out = malloc((size_t)MMAX * V * 4);
    fill(x, (size_t)MMAX * 4 * C, &seed, 2.0f);
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    const char *path = convert ? "convert" : cpu_matmul_rows_bf16_path();
    printf("threads %d, bf16 path %s, PF_BYTES %d, %d steps; GB/s = weight bytes / time\n", threads, path,
           PF_BYTES, steps);

    // the bound: a plain sum over the bf16 weights (same bytes as a bf16 step), best of 5
    double bw = 0;
    for (int r = 0; r < 5; r++) {
        double t0 = dev_wall(), sink = 0;
        for (int k = 0; k < KINDS; k++) {
            const float *p = w16[k];
            const long long n = (long long)(elems[k] / 2 / 16);
#pragma omp parallel reduction(+ : sink)
            {
                float lane[16] = {0}; // 16 lanes: the loop vectorises
#pragma omp for schedule(static)
                for (long long i = 0; i < n; i++)
                    for (int l = 0; l < 16; l++) lane[l] += p[i * 16 + l];
                for (int l = 0; l < 16; l++) sink += lane[l];
            }
        }
        double dt = dev_wall() - t0;
        if (sink == 12345.0) printf(" ");
        bw = total * 2 / dt > bw ? total * 2 / dt : bw;
    }
    printf("plain OpenMP sum over the bf16 weights: %.1f GB/s\n", bw / 1e9);

    for (int M = 1; M <= MMAX; M += MMAX - 1) {
        for (int b = 0; b < 2; b++) {
            double t[KINDS] = {0}, err[KINDS] = {0};
            const size_t ws = b ? 2 : 4;
            for (int s = -2; s < steps; s++) { // two warm-up steps
                for (int l = 0; l < L + 1; l++) {
                    for (int k = 0; k < KINDS; k++) {
                        if ((k == 4) != (l == L)) continue;
                        const size_t off = (size_t)(k == 4 ? 0 : l) * kind_in[k] * kind_out[k] * ws;
                        const void *w = (const char *)(b ? w16[k] : w32[k]) + off;
                        const double t0 = dev_wall();
                        if (b && convert) rows_bf16_convert(out, x, w, NULL, M, kind_in[k], kind_out[k]);
                        else cpu_matmul_rows(out, x, w, b ? LLM_BF16 : LLM_F32, NULL, M, kind_in[k], kind_out[k]);
                        if (s >= 0) t[k] += dev_wall() - t0;
                        if (s == 0 && l <= 1) {
                            const float *r = NULL;
                            if (b && !convert && strcmp(path, "avx512_bf16") == 0) {
                                for (size_t i = 0; i < (size_t)M * kind_in[k]; i++) xr[i] = bf16_to_f32(to_bf16(x[i]));
                                r = xr;
                            }
                            double e = check(out, x, r, w, b, M, kind_in[k], kind_out[k]);
                            err[k] = e > err[k] ? e : err[k];
                        }
                    }
                }
            }
            double tt = 0, bytes = 0;
            printf("M=%d %s:", M, b ? "bf16" : "fp32");
            for (int k = 0; k < KINDS; k++) {
                const double by = (double)elems[k] * ws;
                printf(" %s %.2f ms %.1f GB/s%s |", kind_name[k], t[k] / steps * 1e3, by * steps / t[k] / 1e9,
                       err[k] > 1e-5 ? " (CHECK FAILED)" : "");
                tt += t[k];
                bytes += by;
            }
            printf(" step %.2f ms %.1f GB/s (%.0f%% of the sum), max rel err %.1e\n", tt / steps * 1e3,
                   bytes * steps / tt / 1e9, 100 * bytes * steps / tt / bw,
                   err[0] > err[4] ? err[0] : err[4]);
        }
    }
    return 0;
}
