/*
 * test_cpu_isa.c — the CPU kernel variants of this build (csrc/cpu/cpu_ops.h: avx512, avx2,
 * neon, generic) against double-precision references written here, and against each other.
 *
 * Each case runs one op of the CPU table (llm_cpu_ops) on fixed pseudo-random inputs, once per
 * variant this CPU can run (llm_set_cpu_isa), with shapes chosen to reach the edges of the
 * kernels: partial GEMM micro-tiles and a reduction longer than one packed block (K > 1024),
 * rows whose length is not a multiple of the vector width, exponentials that underflow and
 * overflow, vocabulary slices past V, attention longer than one query block (64).
 * Two oracles:
 *   ref   the op in double precision (this file), for every variant: max over elements of
 *         |got - ref| / (|ref| + floor), floor = max |ref| for reductions (the error relative to
 *         the output's scale, as in tests/test_ops.py) or a small constant for elementwise ops
 *   gen   the generic variant's output (itself checked against PyTorch by tests/test_ops.py),
 *         for the other variants: max |got - gen| / max |gen|
 * One line per check; exits non-zero if any fails. Variants that this CPU cannot run are
 * reported and skipped (on x86-64 without AVX-512, say); a build without `generic` (LLMPY_NATIVE=ON)
 * is checked against the references only.
 *
 * Run: build/test_cpu_isa, or for aarch64 under qemu-user (dev/cross_aarch64.sh):
 *   qemu-aarch64 -L /usr/aarch64-linux-gnu build/aarch64/test_cpu_isa
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/llmpy.h"
#include "core/ops.h"

#define MAX_ISAS 8
#define MAX_OUT 6
// GEMM outputs, relative to max |ref|: sums of ~1000 fp32 products differ from the double sum,
// and between variants (other blocking, FMA or not), by a few 1e-7 (measured: 3.4e-7)
#define TOL_GEMM 2e-6

static const llm_ops *ops = &llm_cpu_ops;
static int failures = 0;

// ----------------------------------------------------------------------------
// inputs, outputs and comparisons

static uint64_t rng_state;

static void seed(uint64_t s) { rng_state = s * 0x9E3779B97F4A7C15ull + 1; }

// uniform in [-1, 1)
static float uniform(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (float)((double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-52 - 1.0);
}

static float *fill(size_t n, float scale) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i < n; i++) p[i] = scale * uniform();
    return p;
}

static float *copy_of(const float *src, size_t n) {
    float *p = fill(n, 0.0f);
    memcpy(p, src, n * sizeof(float));
    return p;
}

static double *dalloc(size_t n) {
    double *p = calloc(n ? n : 1, sizeof(double));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static void ok_or_die(llm_status s, const char *what) {
    if (s != LLM_OK) {
        fprintf(stderr, "%s: %s\n", what, llm_last_error());
        exit(1);
    }
}

// One line: passes when err <= tol (NaN never passes).
static void report(const char *label, const char *isa, const char *oracle, double err, double tol) {
    int pass = err <= tol;
    printf("%-44s %-8s vs %-3s  err %.2e  (tol %.0e)  %s\n", label, isa, oracle, err, tol, pass ? "OK" : "FAIL");
    failures += !pass;
}

// max_i |got - ref| / (|ref| + floor); floor < 0: floor = max |ref|. Mismatched NaN/inf: infinity.
static double rel_err(const float *got, const double *ref, size_t n, double floor) {
    if (floor < 0) {
        floor = 0;
        for (size_t i = 0; i < n; i++) floor = fabs(ref[i]) > floor ? fabs(ref[i]) : floor;
        if (floor == 0) floor = 1;
    }
    double err = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(ref[i]) || isinf(ref[i])) {
            if (!(isnan(ref[i]) ? isnan(got[i]) : got[i] == ref[i])) return INFINITY;
            continue;
        }
        double e = fabs((double)got[i] - ref[i]) / (fabs(ref[i]) + floor);
        if (!(e <= err)) err = isnan(e) ? INFINITY : e;
    }
    return err;
}

// The outputs of one case under one variant, kept to compare the next variants with.
typedef struct outputs {
    int n;
    const char *name[MAX_OUT];
    float *data[MAX_OUT];
    size_t len[MAX_OUT];
    double tol[MAX_OUT]; // against the generic variant: max |got - gen| / max |gen|
} outputs;

static void keep(outputs *o, const char *name, const float *data, size_t len, double tol) {
    o->name[o->n] = name;
    o->data[o->n] = copy_of(data, len);
    o->len[o->n] = len;
    o->tol[o->n] = tol;
    o->n++;
}

static void outputs_free(outputs *o) {
    for (int i = 0; i < o->n; i++) free(o->data[i]);
    o->n = 0;
}

// A case: runs one op under the current variant, checks it against its reference (labels
// start with `label`), and keeps what the variants are compared on.
typedef void (*case_fn)(const char *label, const char *isa, outputs *o);

// ----------------------------------------------------------------------------
// matmul: out = inp @ weight^T + bias, and its backward

static int mm_B, mm_T, mm_C, mm_OC;

static void case_matmul(const char *label, const char *isa, outputs *o) {
    const int B = mm_B, T = mm_T, C = mm_C, OC = mm_OC;
    const size_t BT = (size_t)B * T;
    seed((uint64_t)B * 1000003u + T * 1009u + C * 31u + OC);
    float *inp = fill(BT * C, 1.0f), *weight = fill((size_t)OC * C, 0.5f), *bias = fill(OC, 1.0f);
    float *dout = fill(BT * OC, 1.0f);
    float *out = fill(BT * OC, 0.0f);
    float *dinp0 = fill(BT * C, 1.0f), *dweight0 = fill((size_t)OC * C, 1.0f), *dbias0 = fill(OC, 1.0f);
    float *dinp = copy_of(dinp0, BT * C), *dweight = copy_of(dweight0, (size_t)OC * C);
    float *dbias = copy_of(dbias0, OC), *dinp_acc = copy_of(dinp0, BT * C), *dweight2 = fill((size_t)OC * C, 0.0f);
    ok_or_die(ops->matmul_forward(out, inp, weight, bias, B, T, C, OC), "matmul_forward");
    ok_or_die(ops->matmul_backward(dinp, dweight, dbias, dout, inp, weight, B, T, C, OC, 0), "matmul_backward");
    ok_or_die(ops->matmul_backward(dinp_acc, dweight2, NULL, dout, inp, weight, B, T, C, OC, 1),
              "matmul_backward (accumulate)");

    double *r_out = dalloc(BT * OC), *r_dinp = dalloc(BT * C), *r_dw = dalloc((size_t)OC * C), *r_db = dalloc(OC);
    for (size_t i = 0; i < BT; i++)
        for (int j = 0; j < OC; j++) {
            double s = bias[j];
            for (int k = 0; k < C; k++) s += (double)inp[i * C + k] * weight[(size_t)j * C + k];
            r_out[i * OC + j] = s;
        }
    for (size_t i = 0; i < BT; i++)
        for (int k = 0; k < C; k++) {
            double s = 0;
            for (int j = 0; j < OC; j++) s += (double)dout[i * OC + j] * weight[(size_t)j * C + k];
            r_dinp[i * C + k] = s;
        }
    for (int j = 0; j < OC; j++) {
        double sb = dbias0[j];
        for (int k = 0; k < C; k++) r_dw[(size_t)j * C + k] = dweight0[(size_t)j * C + k];
        for (size_t i = 0; i < BT; i++) {
            const double d = dout[i * OC + j];
            sb += d;
            for (int k = 0; k < C; k++) r_dw[(size_t)j * C + k] += d * inp[i * C + k];
        }
        r_db[j] = sb;
    }
    char l[96];
    snprintf(l, sizeof l, "%s out", label);
    report(l, isa, "ref", rel_err(out, r_out, BT * OC, -1), TOL_GEMM);
    snprintf(l, sizeof l, "%s dinp", label);
    report(l, isa, "ref", rel_err(dinp, r_dinp, BT * C, -1), TOL_GEMM);
    for (size_t i = 0; i < BT * C; i++) r_dinp[i] += dinp0[i];
    snprintf(l, sizeof l, "%s dinp (+=)", label);
    report(l, isa, "ref", rel_err(dinp_acc, r_dinp, BT * C, -1), TOL_GEMM);
    snprintf(l, sizeof l, "%s dweight (+=)", label);
    report(l, isa, "ref", rel_err(dweight, r_dw, (size_t)OC * C, -1), TOL_GEMM);
    snprintf(l, sizeof l, "%s dbias (+=)", label);
    report(l, isa, "ref", rel_err(dbias, r_db, OC, -1), TOL_GEMM);

    keep(o, "out", out, BT * OC, TOL_GEMM);
    keep(o, "dinp", dinp, BT * C, TOL_GEMM);
    keep(o, "dinp (+=)", dinp_acc, BT * C, TOL_GEMM);
    keep(o, "dweight", dweight, (size_t)OC * C, TOL_GEMM);
    keep(o, "dbias", dbias, OC, TOL_GEMM);
    free(inp), free(weight), free(bias), free(dout), free(out), free(dinp0), free(dweight0), free(dbias0);
    free(dinp), free(dweight), free(dbias), free(dinp_acc), free(dweight2);
    free(r_out), free(r_dinp), free(r_dw), free(r_db);
}

// ----------------------------------------------------------------------------
// layernorm

static int ln_C;

static void case_layernorm(const char *label, const char *isa, outputs *o) {
    const int B = 2, T = 5, C = ln_C;
    const size_t BT = (size_t)B * T, N = BT * C;
    seed(77u + (uint64_t)C);
    float *inp = fill(N, 2.0f), *weight = fill(C, 1.0f), *bias = fill(C, 1.0f), *dout = fill(N, 1.0f);
    for (size_t i = 0; i < N; i++) inp[i] += (float)(i / C) - 3.0f; // rows with different means
    float *out = fill(N, 0.0f), *mean = fill(BT, 0.0f), *rstd = fill(BT, 0.0f);
    float *dinp0 = fill(N, 1.0f), *dw0 = fill(C, 1.0f), *db0 = fill(C, 1.0f);
    float *dinp = copy_of(dinp0, N), *dw = copy_of(dw0, C), *db = copy_of(db0, C);
    ok_or_die(ops->layernorm_forward(out, mean, rstd, inp, weight, bias, B, T, C), "layernorm_forward");
    ok_or_die(ops->layernorm_backward(dinp, dw, db, dout, inp, weight, mean, rstd, B, T, C), "layernorm_backward");

    double *r_out = dalloc(N), *r_mean = dalloc(BT), *r_rstd = dalloc(BT), *r_dinp = dalloc(N);
    double *r_dw = dalloc(C), *r_db = dalloc(C);
    for (int c = 0; c < C; c++) r_dw[c] = dw0[c], r_db[c] = db0[c];
    for (size_t r = 0; r < BT; r++) {
        const float *x = inp + r * C, *d = dout + r * C;
        double mu = 0, var = 0, mg = 0, mgn = 0;
        for (int c = 0; c < C; c++) mu += x[c];
        mu /= C;
        for (int c = 0; c < C; c++) var += (x[c] - mu) * (x[c] - mu);
        const double s = 1.0 / sqrt(var / C + 1e-5);
        r_mean[r] = mu, r_rstd[r] = s;
        for (int c = 0; c < C; c++) {
            const double n = (x[c] - mu) * s, g = (double)d[c] * weight[c];
            r_out[r * C + c] = n * weight[c] + bias[c];
            mg += g / C, mgn += g * n / C;
            r_dw[c] += d[c] * n, r_db[c] += d[c];
        }
        for (int c = 0; c < C; c++) {
            const double n = (x[c] - mu) * s, g = (double)d[c] * weight[c];
            r_dinp[r * C + c] = dinp0[r * C + c] + s * (g - mg - n * mgn);
        }
    }
    char l[96];
    snprintf(l, sizeof l, "%s out", label);
    report(l, isa, "ref", rel_err(out, r_out, N, -1), 1e-6);
    snprintf(l, sizeof l, "%s mean, rstd", label);
    report(l, isa, "ref", fmax(rel_err(mean, r_mean, BT, 1e-6), rel_err(rstd, r_rstd, BT, 1e-6)), 1e-6);
    snprintf(l, sizeof l, "%s dinp (+=)", label);
    report(l, isa, "ref", rel_err(dinp, r_dinp, N, -1), 1e-5);
    snprintf(l, sizeof l, "%s dweight, dbias (+=)", label);
    report(l, isa, "ref", fmax(rel_err(dw, r_dw, C, -1), rel_err(db, r_db, C, -1)), 1e-6);
    keep(o, "out", out, N, 1e-6);
    keep(o, "mean", mean, BT, 1e-6);
    keep(o, "rstd", rstd, BT, 1e-6);
    keep(o, "dinp", dinp, N, 1e-5);
    keep(o, "dweight", dw, C, 1e-6);
    keep(o, "dbias", db, C, 1e-6);
    free(inp), free(weight), free(bias), free(dout), free(out), free(mean), free(rstd);
    free(dinp0), free(dw0), free(db0), free(dinp), free(dw), free(db);
    free(r_out), free(r_mean), free(r_rstd), free(r_dinp), free(r_dw), free(r_db);
}

// ----------------------------------------------------------------------------
// GELU

static size_t gelu_N;

static void case_gelu(const char *label, const char *isa, outputs *o) {
    const size_t N = gelu_N;
    seed(5u + N);
    float *inp = fill(N, 6.0f), *dout = fill(N, 1.0f);
    const float special[] = {-100.0f, 100.0f, -20.0f, 20.0f, -9.7f, 9.7f, 0.0f, -1e-20f, 3.0f, -3.0f};
    for (size_t i = 0; i < N && i < sizeof special / sizeof special[0]; i++) inp[N - 1 - i] = special[i];
    float *out = fill(N, 0.0f), *dinp = fill(N, 0.0f);
    ok_or_die(ops->gelu_forward(out, inp, N), "gelu_forward");
    ok_or_die(ops->gelu_backward(dinp, inp, dout, N), "gelu_backward");
    double *r_out = dalloc(N), *r_dinp = dalloc(N);
    const double k = sqrt(2.0 / 3.14159265358979323846);
    for (size_t i = 0; i < N; i++) {
        const double x = inp[i], u = k * (x + 0.044715 * x * x * x), th = tanh(u);
        r_out[i] = 0.5 * x * (1 + th);
        r_dinp[i] = dout[i] * (0.5 * (1 + th) + 0.5 * x * (1 - th * th) * k * (1 + 3 * 0.044715 * x * x));
    }
    char l[96];
    // in the negative tail gelu(x) ~ x exp(2u): the fp32 rounding of 2u (up to ~40 there) is
    // multiplied by |2u| in the exponential, hence a few 1e-6 relative
    snprintf(l, sizeof l, "%s out", label);
    report(l, isa, "ref", rel_err(out, r_out, N, 1e-6), 5e-6);
    // gelu' crosses zero (x near -0.75), where its terms of size ~1 cancel: errors of a few fp32
    // ulps of 1 there, hence the floor
    snprintf(l, sizeof l, "%s dinp", label);
    report(l, isa, "ref", rel_err(dinp, r_dinp, N, 0.1), 5e-6);
    keep(o, "out", out, N, 1e-6);
    keep(o, "dinp", dinp, N, 1e-6);
    free(inp), free(dout), free(out), free(dinp), free(r_out), free(r_dinp);
}

// ----------------------------------------------------------------------------
// softmax + cross-entropy

static int ce_V, ce_Vp;

static void case_crossentropy(const char *label, const char *isa, outputs *o) {
    const int B = 2, T = 3, V = ce_V, Vp = ce_Vp;
    const size_t BT = (size_t)B * T, N = BT * Vp;
    seed(11u + (uint64_t)V);
    float *logits = fill(N, 4.0f);
    for (int v = 0; v < V; v++) logits[(size_t)Vp + v] *= 30.0f; // row 1: most exponentials underflow
    int32_t targets[6];
    for (size_t r = 0; r < BT; r++) targets[r] = (int32_t)((r * 7919u + 3u) % (unsigned)V);
    const float dloss = 1.0f / (float)BT;
    float *losses = fill(BT, 0.0f), *dlogits = fill(N, 1.0f);
    ok_or_die(ops->crossentropy_forward(losses, logits, targets, B, T, V, Vp), "crossentropy_forward");
    ok_or_die(ops->crossentropy_backward(dlogits, logits, targets, dloss, B, T, V, Vp), "crossentropy_backward");
    // slices of the vocabulary: all of it, one inside, one reaching past V into the padding
    const int v0s[3] = {0, V > 8 ? 3 : 0, V > 8 ? V - 5 : 0};
    const int ns[3] = {Vp, V > 8 ? V / 2 : V, V > 8 ? Vp - (V - 5) : Vp};
    float *cols[3];
    for (int s = 0; s < 3; s++) {
        cols[s] = fill(BT * (size_t)ns[s], 1.0f);
        ok_or_die(ops->crossentropy_backward_cols(cols[s], logits, losses, targets, dloss, B, T, V, Vp, v0s[s], ns[s]),
                  "crossentropy_backward_cols");
    }

    double *r_loss = dalloc(BT), *r_d = dalloc(N);
    for (size_t r = 0; r < BT; r++) {
        const float *x = logits + r * Vp;
        double m = x[0], s = 0;
        for (int v = 0; v < V; v++) m = x[v] > m ? x[v] : m;
        for (int v = 0; v < V; v++) s += exp((double)x[v] - m);
        r_loss[r] = log(s) + m - x[targets[r]];
        for (int v = 0; v < V; v++) r_d[r * Vp + v] = (exp((double)x[v] - m) / s - (v == targets[r])) * dloss;
    }
    char l[96];
    snprintf(l, sizeof l, "%s losses", label);
    report(l, isa, "ref", rel_err(losses, r_loss, BT, 1e-3), 1e-6);
    snprintf(l, sizeof l, "%s dlogits", label);
    report(l, isa, "ref", rel_err(dlogits, r_d, N, dloss * 1e-3), 1e-5);
    for (int s = 0; s < 3; s++) {
        double *r_c = dalloc(BT * (size_t)ns[s]);
        for (size_t r = 0; r < BT; r++)
            for (int j = 0; j < ns[s]; j++) r_c[r * ns[s] + j] = r_d[r * Vp + v0s[s] + j];
        snprintf(l, sizeof l, "%s dlogits[:, %d:%d]", label, v0s[s], v0s[s] + ns[s]);
        report(l, isa, "ref", rel_err(cols[s], r_c, BT * (size_t)ns[s], dloss * 1e-3), 1e-5);
        free(r_c);
    }
    keep(o, "losses", losses, BT, 1e-6);
    keep(o, "dlogits", dlogits, N, 1e-6);
    for (int s = 0; s < 3; s++) {
        keep(o, s == 0 ? "dlogits cols (all)" : s == 1 ? "dlogits cols (inside)" : "dlogits cols (past V)", cols[s],
             BT * (size_t)ns[s], 1e-6);
        free(cols[s]);
    }
    free(logits), free(losses), free(dlogits), free(r_loss), free(r_d);
}

// ----------------------------------------------------------------------------
// attention

static int at_T;

static void case_attention(const char *label, const char *isa, outputs *o) {
    const int B = 2, T = at_T, C = 24, NH = 3, hs = C / NH;
    const size_t N = (size_t)B * T * C;
    seed(3u + (uint64_t)T);
    float *qkv = fill(3 * N, 1.5f), *dout = fill(N, 1.0f), *out = fill(N, 0.0f), *dqkv = fill(3 * N, 1.0f);
    const size_t state_floats = ops->attention_state_bytes(B, T, C, NH) / sizeof(float);
    float *state = fill(state_floats, 0.0f);
    ok_or_die(ops->attention_forward(out, state, NULL, qkv, B, T, C, NH), "attention_forward");
    ok_or_die(ops->attention_backward(dqkv, NULL, dout, qkv, out, state, B, T, C, NH), "attention_backward");
    double *r_out = dalloc(N), *p = dalloc(T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const float *q = qkv + ((size_t)b * T + t) * 3 * C + h * hs;
                double m = -INFINITY, s = 0;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *k = qkv + ((size_t)b * T + t2) * 3 * C + C + h * hs;
                    double d = 0;
                    for (int i = 0; i < hs; i++) d += (double)q[i] * k[i];
                    p[t2] = d / sqrt((double)hs);
                    m = p[t2] > m ? p[t2] : m;
                }
                for (int t2 = 0; t2 <= t; t2++) s += (p[t2] = exp(p[t2] - m));
                for (int i = 0; i < hs; i++) {
                    double acc = 0;
                    for (int t2 = 0; t2 <= t; t2++) {
                        const float *v = qkv + ((size_t)b * T + t2) * 3 * C + 2 * C + h * hs;
                        acc += p[t2] / s * v[i];
                    }
                    r_out[((size_t)b * T + t) * C + h * hs + i] = acc;
                }
            }
    char l[96];
    snprintf(l, sizeof l, "%s out", label);
    report(l, isa, "ref", rel_err(out, r_out, N, -1), 1e-6);
    keep(o, "out", out, N, 1e-6);
    keep(o, "probabilities", state, state_floats, 1e-6);
    keep(o, "dqkv", dqkv, 3 * N, 1e-5);
    free(qkv), free(dout), free(out), free(dqkv), free(state), free(r_out), free(p);
}

// ----------------------------------------------------------------------------
// AdamW, residual, reductions (portable C in every variant, except AdamW: fp32 arithmetic in
// the AVX2 and AVX-512 variants, double in the others, see adamw.c; so the parameters may
// differ from the generic variant's by a few fp32 ulps of the update)

static void case_misc(const char *label, const char *isa, outputs *o) {
    const size_t N = 1027;
    seed(99);
    float *p = fill(N, 1.0f), *g = fill(N, 1.0f), *m = fill(N, 0.1f), *v = fill(N, 0.0f);
    for (size_t i = 0; i < N; i++) v[i] = v[i] < 0 ? -v[i] * 0.01f : v[i] * 0.01f;
    float *p0 = copy_of(p, N), *m0 = copy_of(m, N), *v0 = copy_of(v, N);
    ok_or_die(ops->adamw_update(p, NULL, g, m, v, N, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 3, 0, 0), "adamw_update");
    double *r_p = dalloc(N);
    const double bc1 = 1 - pow(0.9, 3), bc2 = 1 - pow(0.95, 3);
    for (size_t i = 0; i < N; i++) {
        const double gi = (double)g[i] * 0.5, mi = 0.9 * m0[i] + 0.1 * gi, vi = 0.95 * v0[i] + 0.05 * gi * gi;
        r_p[i] = p0[i] * (1 - 1e-3 * 0.1) - 1e-3 * (mi / bc1) / (sqrt(vi / bc2) + 1e-8);
    }
    char l[96];
    snprintf(l, sizeof l, "%s adamw params", label);
    report(l, isa, "ref", rel_err(p, r_p, N, 1e-3), 2e-6);
    float *a = fill(N, 1.0f), *b = fill(N, 1.0f), *sum = fill(N, 0.0f);
    ok_or_die(ops->residual_forward(sum, a, b, N), "residual_forward");
    double nsq = 0, s32 = 0, r_nsq = 0, r_s32 = 0;
    ok_or_die(ops->norm_squared(&nsq, a, N), "norm_squared");
    ok_or_die(ops->sum_f32(&s32, a, N), "sum_f32");
    for (size_t i = 0; i < N; i++) r_nsq += (double)a[i] * a[i], r_s32 += a[i];
    snprintf(l, sizeof l, "%s norm_squared, sum_f32", label);
    report(l, isa, "ref", fmax(fabs(nsq - r_nsq) / r_nsq, fabs(s32 - r_s32) / N), 1e-12);
    keep(o, "adamw params", p, N, 1e-6);
    keep(o, "adamw m", m, N, 1e-7);
    keep(o, "adamw v", v, N, 1e-7);
    keep(o, "residual", sum, N, 0);
    free(p), free(g), free(m), free(v), free(p0), free(m0), free(v0), free(r_p), free(a), free(b), free(sum);
}

// ----------------------------------------------------------------------------
// driver

static char isas[MAX_ISAS][32];
static int n_isas;

// Runs a case under every variant; the others are compared with generic (run first).
static void run_case(const char *label, case_fn fn) {
    outputs gen = {0};
    int have_gen = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n_isas; i++) {
            const int is_gen = strcmp(isas[i], "generic") == 0;
            if (is_gen != (pass == 0)) continue; // generic first
            ok_or_die(llm_set_cpu_isa(isas[i]), "llm_set_cpu_isa");
            outputs o = {0};
            fn(label, isas[i], &o);
            if (is_gen) {
                gen = o, have_gen = 1;
                continue;
            }
            for (int k = 0; have_gen && k < o.n; k++) {
                double scale = 0, err = 0;
                // not fmax(): an fmax reduction here crashes GCC 12's vectoriser for aarch64 (an
                // internal compiler error in vect_transform_reduction, at -O3)
                for (size_t j = 0; j < o.len[k]; j++) {
                    const double a = fabs(gen.data[k][j]);
                    scale = a > scale ? a : scale;
                }
                for (size_t j = 0; j < o.len[k]; j++) {
                    const double e = fabs((double)o.data[k][j] - gen.data[k][j]);
                    if (!(e <= err)) err = isnan(e) ? INFINITY : e;
                }
                char l[128];
                snprintf(l, sizeof l, "%s %s", label, o.name[k]);
                report(l, isas[i], "gen", err / (scale > 0 ? scale : 1), o.tol[k]);
            }
            outputs_free(&o);
        }
    outputs_free(&gen);
}

int main(void) {
    // the variants of this build that this CPU runs
    const char *list = llm_cpu_isa_list();
    printf("cpu kernels built: %s; in use by default: %s\n", list, llm_cpu_isa());
    for (const char *p = list; *p && n_isas < MAX_ISAS;) {
        size_t len = strcspn(p, ",");
        if (len < sizeof isas[0]) {
            memcpy(isas[n_isas], p, len);
            isas[n_isas][len] = 0;
            if (llm_set_cpu_isa(isas[n_isas]) == LLM_OK)
                n_isas++;
            else
                printf("skipped: %s (%s)\n", isas[n_isas], llm_last_error());
        }
        p += len + (p[len] == ',');
    }
    if (n_isas == 0) {
        fprintf(stderr, "no runnable CPU kernel variant\n");
        return 1;
    }

    static const int mm[][4] = {{1, 1, 7, 5}, {3, 37, 1030, 45}, {2, 16, 64, 96}, {1, 70, 97, 1100}};
    for (size_t i = 0; i < sizeof mm / sizeof mm[0]; i++) {
        mm_B = mm[i][0], mm_T = mm[i][1], mm_C = mm[i][2], mm_OC = mm[i][3];
        char l[64];
        snprintf(l, sizeof l, "matmul B=%d T=%d C=%d OC=%d", mm_B, mm_T, mm_C, mm_OC);
        run_case(l, case_matmul);
    }
    static const int lnc[] = {3, 48, 771};
    for (size_t i = 0; i < sizeof lnc / sizeof lnc[0]; i++) {
        ln_C = lnc[i];
        char l[64];
        snprintf(l, sizeof l, "layernorm C=%d", ln_C);
        run_case(l, case_layernorm);
    }
    static const size_t gn[] = {10, 11, 4099};
    for (size_t i = 0; i < sizeof gn / sizeof gn[0]; i++) {
        gelu_N = gn[i];
        char l[64];
        snprintf(l, sizeof l, "gelu N=%zu", gelu_N);
        run_case(l, case_gelu);
    }
    static const int ce[][2] = {{5, 8}, {101, 128}, {1003, 1024}};
    for (size_t i = 0; i < sizeof ce / sizeof ce[0]; i++) {
        ce_V = ce[i][0], ce_Vp = ce[i][1];
        char l[64];
        snprintf(l, sizeof l, "crossentropy V=%d Vp=%d", ce_V, ce_Vp);
        run_case(l, case_crossentropy);
    }
    static const int at[] = {5, 70};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        at_T = at[i];
        char l[64];
        snprintf(l, sizeof l, "attention T=%d", at_T);
        run_case(l, case_attention);
    }
    run_case("misc N=1027", case_misc);

    ok_or_die(llm_set_cpu_isa("auto"), "llm_set_cpu_isa(auto)");
    printf("%s (%d failed)\n", failures ? "FAILED" : "ALL OK", failures);
    return failures ? 1 : 0;
}
