/*
 * layernorm.c — layer normalisation over the channel dimension on the CPU.
 *
 * Shapes (letters defined in ops.h):
 *   out: (B,T,C)   mean, rstd: (B,T)   inp: (B,T,C)   weight, bias: (C)
 *   mean = sum(x)/C, var = sum((x-mean)^2)/C (biased), rstd = 1/sqrt(var + 1e-5)
 *   out = (x - mean) * rstd * weight + bias
 * Gradient convention (ops.h): dweight += and dbias += (parameters), dinp += (activation).
 *
 * Row statistics are accumulated in double (two passes: mean, then centred variance), so the
 * only fp32 rounding is in storing the results. The backward, with n = (x - mean) * rstd and
 * g = dout * weight per row:
 *   dinp += rstd * (g - mean(g) - n * mean(g * n))
 *   dweight += sum over rows of dout * n,   dbias += sum over rows of dout
 * dinp is parallel over rows; the parameter sums are parallel over channel blocks (each thread
 * walks every row for its channels), which avoids per-thread copies and is deterministic.
 * The neon variant computes the row sums (in double all the same) and the per-row outputs with
 * NEON intrinsics: a single running double sum, as in the portable loops, cannot be vectorised
 * by the compiler, lanes can. The x86 variants sum in 8 double lanes (LN_LANES), which GCC
 * vectorises: a running double sum is a chain of dependent adds, 4 cycles per channel, and
 * made the forward 1.6 % of a 124M forward (dev/cpu/step.c, perf). The generic variant keeps
 * the running sums, whose order tests/test_golden_run.py pins bit for bit.
 */
#include <math.h>

#include "cpu_ops.h"

#define LN_EPS 1e-5

#ifdef CPU_NEON
// ----------------------------------------------------------------------------
// NEON rows: four floats at a time, double sums in two f64x2 lanes, the last C % 4 channels as
// in the portable code

// widened halves of a float32x4_t
#define LO64(v) vcvt_f64_f32(vget_low_f32(v))
#define HI64(v) vcvt_high_f64_f32(v)

// out = (x - mean) * rstd * weight + bias for one row of C channels; stores mean and rstd.
static void ln_forward_row(float *o, float *mean, float *rstd, const float *x, const float *weight,
                           const float *bias, int C) {
    float64x2_t a0 = vdupq_n_f64(0.0), a1 = a0;
    int c = 0;
    for (; c + 4 <= C; c += 4) {
        const float32x4_t v = vld1q_f32(x + c);
        a0 = vaddq_f64(a0, LO64(v));
        a1 = vaddq_f64(a1, HI64(v));
    }
    double sum = vaddvq_f64(vaddq_f64(a0, a1));
    for (; c < C; c++) sum += x[c];
    const double mu = sum / C;
    const float64x2_t mu2 = vdupq_n_f64(mu);
    a0 = a1 = vdupq_n_f64(0.0);
    for (c = 0; c + 4 <= C; c += 4) {
        const float32x4_t v = vld1q_f32(x + c);
        const float64x2_t d0 = vsubq_f64(LO64(v), mu2), d1 = vsubq_f64(HI64(v), mu2);
        a0 = vfmaq_f64(a0, d0, d0);
        a1 = vfmaq_f64(a1, d1, d1);
    }
    double ss = vaddvq_f64(vaddq_f64(a0, a1));
    for (; c < C; c++) {
        double d = x[c] - mu;
        ss += d * d;
    }
    const double s = 1.0 / sqrt(ss / C + LN_EPS);
    const float64x2_t s2 = vdupq_n_f64(s);
    for (c = 0; c + 4 <= C; c += 4) {
        const float32x4_t v = vld1q_f32(x + c);
        const float64x2_t n0 = vmulq_f64(vsubq_f64(LO64(v), mu2), s2), n1 = vmulq_f64(vsubq_f64(HI64(v), mu2), s2);
        const float32x4_t n = vcvt_high_f32_f64(vcvt_f32_f64(n0), n1);
        vst1q_f32(o + c, vfmaq_f32(vld1q_f32(bias + c), n, vld1q_f32(weight + c)));
    }
    for (; c < C; c++) o[c] = (float)((x[c] - mu) * s) * weight[c] + bias[c];
    *mean = (float)mu;
    *rstd = (float)s;
}

// dx += rstd * (g - mean(g) - n * mean(g * n)) for one row, n = (x - mu) * s, g = dout * weight.
static void ln_backward_row(float *dx, const float *x, const float *d, const float *weight, float mu, float s,
                            int C) {
    const float32x4_t mu4 = vdupq_n_f32(mu), s4 = vdupq_n_f32(s);
    float64x2_t g0 = vdupq_n_f64(0.0), g1 = g0, gn0 = g0, gn1 = g0;
    int c = 0;
    for (; c + 4 <= C; c += 4) {
        const float32x4_t n = vmulq_f32(vsubq_f32(vld1q_f32(x + c), mu4), s4);
        const float32x4_t g = vmulq_f32(vld1q_f32(d + c), vld1q_f32(weight + c));
        g0 = vaddq_f64(g0, LO64(g));
        g1 = vaddq_f64(g1, HI64(g));
        gn0 = vfmaq_f64(gn0, LO64(g), LO64(n));
        gn1 = vfmaq_f64(gn1, HI64(g), HI64(n));
    }
    double sum_g = vaddvq_f64(vaddq_f64(g0, g1)), sum_gn = vaddvq_f64(vaddq_f64(gn0, gn1));
    for (; c < C; c++) {
        float n = (x[c] - mu) * s;
        float g = d[c] * weight[c];
        sum_g += g;
        sum_gn += (double)g * n;
    }
    const float mean_g = (float)(sum_g / C), mean_gn = (float)(sum_gn / C);
    const float32x4_t mg = vdupq_n_f32(mean_g), mgn = vdupq_n_f32(mean_gn);
    for (c = 0; c + 4 <= C; c += 4) {
        const float32x4_t n = vmulq_f32(vsubq_f32(vld1q_f32(x + c), mu4), s4);
        const float32x4_t g = vmulq_f32(vld1q_f32(d + c), vld1q_f32(weight + c));
        const float32x4_t t = vfmsq_f32(vsubq_f32(g, mg), n, mgn); // g - mean_g - n * mean_gn
        vst1q_f32(dx + c, vfmaq_f32(vld1q_f32(dx + c), t, s4));
    }
    for (; c < C; c++) {
        float n = (x[c] - mu) * s;
        float g = d[c] * weight[c];
        dx[c] += s * (g - mean_g - n * mean_gn);
    }
}
#undef LO64
#undef HI64
#endif

#if defined(__AVX2__) && !defined(CPU_NEON)
// ----------------------------------------------------------------------------
// x86 rows: the double sums in 8 lanes (as cpu_sum), combined by cpu_lanes_total
#define LN_LANES 8

// sum over c of (x[c] - mu)^2
static inline double ln_sum_sq(const float *x, int C, double mu) {
    double lane[LN_LANES] = {0};
    int c = 0;
    for (; c + LN_LANES <= C; c += LN_LANES)
        for (int l = 0; l < LN_LANES; l++) {
            const double dv = x[c + l] - mu;
            lane[l] += dv * dv;
        }
    double ss = 0.0;
    for (; c < C; c++) ss += (x[c] - mu) * (x[c] - mu);
    return ss + cpu_lanes_total(lane);
}

// sum over c of g and of g * n, g = d * weight, n = (x - mu) * s (the backward's row sums)
static inline void ln_sums_g(double *sum_g, double *sum_gn, const float *x, const float *d, const float *weight,
                             float mu, float s, int C) {
    double lg[LN_LANES] = {0}, lgn[LN_LANES] = {0};
    int c = 0;
    for (; c + LN_LANES <= C; c += LN_LANES)
        for (int l = 0; l < LN_LANES; l++) {
            const float n = (x[c + l] - mu) * s, g = d[c + l] * weight[c + l];
            lg[l] += g;
            lgn[l] += (double)g * n;
        }
    double a = 0.0, b = 0.0;
    for (; c < C; c++) {
        const float n = (x[c] - mu) * s, g = d[c] * weight[c];
        a += g;
        b += (double)g * n;
    }
    *sum_g = a + cpu_lanes_total(lg);
    *sum_gn = b + cpu_lanes_total(lgn);
}
#endif

// ----------------------------------------------------------------------------
// forward

llm_status cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                                 const float *weight, const float *bias, int B, int T, int C) {
    const long long BT = (long long)B * T;
#pragma omp parallel for if (BT * C >= CPU_PAR_MIN_ELEMS)
    for (long long r = 0; r < BT; r++) {
        const float *x = inp + (size_t)r * C;
        float *o = out + (size_t)r * C;
#ifdef CPU_NEON
        ln_forward_row(o, mean + r, rstd + r, x, weight, bias, C);
#else
#ifdef LN_LANES
        const double mu = cpu_sum(x, (size_t)C) / C;
        const double ss = ln_sum_sq(x, C, mu);
#else
        double sum = 0.0;
        for (int c = 0; c < C; c++) sum += x[c];
        double mu = sum / C;
        double ss = 0.0;
        for (int c = 0; c < C; c++) {
            double d = x[c] - mu;
            ss += d * d;
        }
#endif
        double s = 1.0 / sqrt(ss / C + LN_EPS);
        for (int c = 0; c < C; c++) o[c] = (float)((x[c] - mu) * s) * weight[c] + bias[c];
        mean[r] = (float)mu;
        rstd[r] = (float)s;
#endif
    }
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// backward

llm_status cpu_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                  const float *inp, const float *weight, const float *mean,
                                  const float *rstd, int B, int T, int C) {
    const long long BT = (long long)B * T;

    // dinp, one row per iteration
#pragma omp parallel for
    for (long long r = 0; r < BT; r++) {
        const float *x = inp + (size_t)r * C;
        const float *d = dout + (size_t)r * C;
        float *dx = dinp + (size_t)r * C;
        const float mu = mean[r], s = rstd[r];
#ifdef CPU_NEON
        ln_backward_row(dx, x, d, weight, mu, s, C);
#else
        double sum_g = 0.0, sum_gn = 0.0;
#ifdef LN_LANES
        ln_sums_g(&sum_g, &sum_gn, x, d, weight, mu, s, C);
#else
        for (int c = 0; c < C; c++) {
            float n = (x[c] - mu) * s;
            float g = d[c] * weight[c];
            sum_g += g;
            sum_gn += (double)g * n;
        }
#endif
        const float mean_g = (float)(sum_g / C), mean_gn = (float)(sum_gn / C);
        for (int c = 0; c < C; c++) {
            float n = (x[c] - mu) * s;
            float g = d[c] * weight[c];
            dx[c] += s * (g - mean_g - n * mean_gn);
        }
#endif
    }

    // dweight, dbias: threads own blocks of channels
    enum { CB = 64 };
    const long long blocks = (C + CB - 1) / CB;
#pragma omp parallel for
    for (long long blk = 0; blk < blocks; blk++) {
        size_t c0 = (size_t)blk * CB;
        size_t n = (size_t)C - c0 < CB ? (size_t)C - c0 : CB;
        double acc_w[CB] = {0}, acc_b[CB] = {0};
        for (long long r = 0; r < BT; r++) {
            const float *x = inp + (size_t)r * C + c0;
            const float *d = dout + (size_t)r * C + c0;
            const float mu = mean[r], s = rstd[r];
            for (size_t j = 0; j < n; j++) {
                acc_w[j] += (double)d[j] * ((x[j] - mu) * s);
                acc_b[j] += d[j];
            }
        }
        for (size_t j = 0; j < n; j++) {
            dweight[c0 + j] += (float)acc_w[j];
            dbias[c0 + j] += (float)acc_b[j];
        }
    }
    return LLM_OK;
}
