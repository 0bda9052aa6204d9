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
 */
#include <math.h>

#include "cpu_ops.h"

#define LN_EPS 1e-5

// ----------------------------------------------------------------------------
// forward

llm_status cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                                 const float *weight, const float *bias, int B, int T, int C) {
    const long long BT = (long long)B * T;
#pragma omp parallel for if (BT * C >= CPU_PAR_MIN_ELEMS)
    for (long long r = 0; r < BT; r++) {
        const float *x = inp + (size_t)r * C;
        float *o = out + (size_t)r * C;
        double sum = 0.0;
        for (int c = 0; c < C; c++) sum += x[c];
        double mu = sum / C;
        double ss = 0.0;
        for (int c = 0; c < C; c++) {
            double d = x[c] - mu;
            ss += d * d;
        }
        double s = 1.0 / sqrt(ss / C + LN_EPS);
        for (int c = 0; c < C; c++) o[c] = (float)((x[c] - mu) * s) * weight[c] + bias[c];
        mean[r] = (float)mu;
        rstd[r] = (float)s;
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
        double sum_g = 0.0, sum_gn = 0.0;
        for (int c = 0; c < C; c++) {
            float n = (x[c] - mu) * s;
            float g = d[c] * weight[c];
            sum_g += g;
            sum_gn += (double)g * n;
        }
        const float mean_g = (float)(sum_g / C), mean_gn = (float)(sum_gn / C);
        for (int c = 0; c < C; c++) {
            float n = (x[c] - mu) * s;
            float g = d[c] * weight[c];
            dx[c] += s * (g - mean_g - n * mean_gn);
        }
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
