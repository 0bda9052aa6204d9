/*
 * encoder.c — GPT-2 input embedding on the CPU: token embedding + position embedding.
 *
 * Shapes (letters defined in ops.h):
 *   out: (B,T,C)   inp: (B,T) token ids in [0,Vp)   wte: (Vp,C)   wpe: (maxT,C), T <= maxT
 *   out[b,t,:] = wte[inp[b,t],:] + wpe[t,:]
 * Gradient convention (ops.h): dwte += and dwpe += (parameters). The ids are host memory here,
 * so the host copy the model may pass (inp_host) adds nothing and is not used.
 *
 * The backward scatters into dwte rows chosen by the token ids, so two positions may hit the
 * same row. Instead of atomics or per-thread copies, threads own disjoint blocks of channels
 * and each walks all positions: no races, and the summation order (hence the result) does
 * not depend on the thread count.
 */
#include "cpu_ops.h"

// ----------------------------------------------------------------------------
// forward

llm_status cpu_encoder_forward(float *out, const int32_t *inp, const float *wte, const float *wpe,
                               int B, int T, int C) {
    const long long BT = (long long)B * T;
#pragma omp parallel for
    for (long long bt = 0; bt < BT; bt++) {
        size_t t = (size_t)(bt % T);
        float *o = out + (size_t)bt * C;
        const float *tok = wte + (size_t)inp[bt] * C;
        const float *pos = wpe + t * C;
        for (int c = 0; c < C; c++) o[c] = tok[c] + pos[c];
    }
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// backward

llm_status cpu_encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *inp,
                                const int32_t *inp_host, int B, int T, int C) {
    (void)inp_host;
    enum { CB = 64 }; // channels per work item
    const long long blocks = (C + CB - 1) / CB;
#pragma omp parallel for
    for (long long blk = 0; blk < blocks; blk++) {
        size_t c0 = (size_t)blk * CB;
        size_t n = (size_t)C - c0 < CB ? (size_t)C - c0 : CB;
        for (size_t b = 0; b < (size_t)B; b++) {
            for (size_t t = 0; t < (size_t)T; t++) {
                size_t bt = b * (size_t)T + t;
                const float *d = dout + bt * C + c0;
                float *gtok = dwte + (size_t)inp[bt] * C + c0;
                float *gpos = dwpe + t * C + c0;
                for (size_t j = 0; j < n; j++) {
                    gtok[j] += d[j];
                    gpos[j] += d[j];
                }
            }
        }
    }
    return LLM_OK;
}
