/*
 * test_gpt2.c — checks the llmpy C core against the PyTorch oracle (dev/train_gpt2.py).
 *
 * The oracle writes a model file and a debug-state file (inputs, targets, logits, loss and
 * the gradients of all 16 parameter tensors for one forward/backward). This program loads the
 * same model through the public C API, runs forward and backward on the same batch and
 * compares every quantity:
 *   logits     max |diff| <= 1e-4 (first V columns of each Vp-wide row)
 *   loss       |diff| / |ref| <= 1e-5
 *   gradients  ||g - g_ref|| / ||g_ref|| <= 1e-4 per tensor (sums in double)
 * It prints one line per check and exits non-zero on any failure or API error.
 *
 * Both strategies of the classifier backward (csrc/core/ops.h: lm_head_in_place) run: the CPU
 * backend as built (vocabulary slices), and a copy of its table with lm_head_in_place = 1
 * registered as device "cpu-inplace". For the latter it also checks the state rules: after
 * backward the logits are refused (LLM_ESTATE) while the losses stay readable, a second backward
 * is refused, and a new forward brings the logits back; the sliced CPU keeps its logits.
 * Before the backward the whole gradient buffer (wte's padding rows included) is filled with
 * NaN, then zero_grad: the first backward after it writes the gradients instead of adding to
 * them (llm_zero_grad), so a gradient it neither writes nor clears would show as NaN; wte's
 * padding rows must come out zero.
 *
 * The CPU kernels are those of the variant the core picks (csrc/cpu/cpu_ops.h), or of the one
 * LLMPY_CPU_ISA names: the program prints which, and fails when the named variant is not the
 * one in use (not built, or not runnable here), so a run meant for one variant tests that one.
 *
 * Run (from the repository root, after building the CMake target test_gpt2):
 *   python dev/train_gpt2.py --n-layer 2 --n-head 3 --n-embd 48 --vocab-size 101 \
 *       --block-size 32 --batch 3 --seq 17 --seed 0 --model-out /tmp/m.bin --state-out /tmp/s.bin
 *   ./build/test_gpt2 /tmp/m.bin /tmp/s.bin
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/formats.h"
#include "core/llmpy.h"
#include "core/ops.h"

#define LOGITS_ATOL 1e-4
#define LOSS_RTOL 1e-5
#define GRAD_RTOL 1e-4

// ----------------------------------------------------------------------------
// the debug state written by the oracle

typedef struct state {
    int B, T;
    int32_t *x;      // (B,T)
    int32_t *y;      // (B,T)
    float *logits;   // (B,T,V)
    float loss;      // mean cross-entropy
    float *grads;    // all 16 gradients in model-file layout (wte: (Vp,C))
    size_t n_grads;  // number of floats in grads
} state;

static void state_free(state *s) {
    free(s->x);
    free(s->y);
    free(s->logits);
    free(s->grads);
    memset(s, 0, sizeof(*s));
}

static int read_exact(FILE *f, void *dst, size_t size, size_t count, const char *path,
                      const char *what) {
    if (fread(dst, size, count, f) != count) {
        fprintf(stderr, "%s: truncated while reading %s\n", path, what);
        return 0;
    }
    return 1;
}

// Number of floats of all 16 gradients in model-file layout (wte with Vp rows).
static int grads_numel(llm_model *m, const llm_config *cfg, size_t *out) {
    size_t total = 0;
    for (int i = 0; i < LLM_NUM_TENSORS; i++) {
        llm_tensor t;
        if (llm_model_tensor(m, i, &t) != LLM_OK) {
            fprintf(stderr, "llm_model_tensor(%d): %s\n", i, llm_last_error());
            return 0;
        }
        size_t n = i == 0 ? (size_t)cfg->padded_vocab_size : (size_t)t.shape[0]; // wte: Vp rows
        for (int d = 1; d < t.ndim; d++) n *= (size_t)t.shape[d];
        total += n;
    }
    *out = total;
    return 1;
}

// Reads and validates the state file; returns 1 on success.
static int state_read(state *s, const char *path, llm_model *m, const llm_config *cfg) {
    memset(s, 0, sizeof(*s));
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 0;
    }
    int ok = 0;
    int32_t header[LLM_HEADER_INTS];
    if (!read_exact(f, header, sizeof(int32_t), LLM_HEADER_INTS, path, "the header")) goto done;
    if (header[0] != LLM_STATE_MAGIC) {
        fprintf(stderr, "%s: bad magic %d (expected %d); not a debug-state file\n", path, header[0],
                LLM_STATE_MAGIC);
        goto done;
    }
    if (header[1] != LLM_STATE_VERSION) {
        fprintf(stderr, "%s: state version %d, expected %d; regenerate it with dev/train_gpt2.py\n",
                path, header[1], LLM_STATE_VERSION);
        goto done;
    }
    s->B = header[2];
    s->T = header[3];
    if (s->B <= 0 || s->T <= 0 || s->T > cfg->block_size) {
        fprintf(stderr, "%s: bad B=%d, T=%d (block_size %d)\n", path, s->B, s->T, cfg->block_size);
        goto done;
    }
    size_t BT = (size_t)s->B * (size_t)s->T;
    size_t n_logits = BT * (size_t)cfg->vocab_size;
    if (!grads_numel(m, cfg, &s->n_grads)) goto done;

    // the file must be exactly header + payload: catches a state written for another model
    size_t expected = sizeof(int32_t) * LLM_HEADER_INTS +
                      sizeof(int32_t) * 2 * BT + sizeof(float) * (n_logits + 1 + s->n_grads);
    if (fseek(f, 0, SEEK_END) != 0) {
        perror(path);
        goto done;
    }
    long size = ftell(f);
    if (size < 0 || (size_t)size != expected) {
        fprintf(stderr, "%s: size %ld bytes, expected %zu for B=%d T=%d and this model\n", path,
                size, expected, s->B, s->T);
        goto done;
    }
    if (fseek(f, (long)(sizeof(int32_t) * LLM_HEADER_INTS), SEEK_SET) != 0) {
        perror(path);
        goto done;
    }

    s->x = malloc(BT * sizeof(int32_t));
    s->y = malloc(BT * sizeof(int32_t));
    s->logits = malloc(n_logits * sizeof(float));
    s->grads = malloc(s->n_grads * sizeof(float));
    if (!s->x || !s->y || !s->logits || !s->grads) {
        fprintf(stderr, "out of memory reading %s\n", path);
        goto done;
    }
    if (!read_exact(f, s->x, sizeof(int32_t), BT, path, "inputs")) goto done;
    if (!read_exact(f, s->y, sizeof(int32_t), BT, path, "targets")) goto done;
    if (!read_exact(f, s->logits, sizeof(float), n_logits, path, "logits")) goto done;
    if (!read_exact(f, &s->loss, sizeof(float), 1, path, "loss")) goto done;
    if (!read_exact(f, s->grads, sizeof(float), s->n_grads, path, "gradients")) goto done;
    ok = 1;
done:
    fclose(f);
    if (!ok) state_free(s);
    return ok;
}

// ----------------------------------------------------------------------------
// checks

static int report(const char *name, double max_abs, double rel, int pass) {
    printf("%-10s max|diff| %.3e  rel %.3e  %s\n", name, max_abs, rel, pass ? "OK" : "FAIL");
    return pass;
}

static int check_logits(llm_model *m, const state *s, const llm_config *cfg) {
    float *data = NULL;
    int B = 0, T = 0, V = 0, Vp = 0;
    llm_block *block = NULL;
    if (llm_model_logits(m, &data, &B, &T, &V, &Vp, &block) != LLM_OK) {
        fprintf(stderr, "llm_model_logits: %s\n", llm_last_error());
        return 0;
    }
    int pass = 1;
    if (B != s->B || T != s->T || V != cfg->vocab_size || Vp < V) {
        fprintf(stderr, "logits have shape (%d,%d,%d) padded %d, expected (%d,%d,%d)\n", B, T, V,
                Vp, s->B, s->T, cfg->vocab_size);
        pass = 0;
    } else {
        double max_abs = 0.0, diff2 = 0.0, ref2 = 0.0;
        for (size_t bt = 0; bt < (size_t)B * (size_t)T; bt++) {
            const float *row = data + bt * (size_t)Vp;
            const float *ref = s->logits + bt * (size_t)V;
            for (int v = 0; v < V; v++) {
                double d = (double)row[v] - (double)ref[v];
                if (!(fabs(d) <= max_abs)) max_abs = isnan(d) ? INFINITY : fabs(d);
                diff2 += d * d;
                ref2 += (double)ref[v] * ref[v];
            }
        }
        double rel = ref2 > 0 ? sqrt(diff2 / ref2) : sqrt(diff2);
        pass = report("logits", max_abs, rel, max_abs <= LOGITS_ATOL);
    }
    llm_block_release(block);
    return pass;
}

static int check_loss(float loss, const state *s) {
    double d = fabs((double)loss - (double)s->loss);
    double rel = s->loss != 0.0f ? d / fabs((double)s->loss) : d;
    printf("loss       llmpy %.6f  oracle %.6f\n", loss, s->loss);
    return report("loss", d, rel, rel <= LOSS_RTOL);
}

// Compares every parameter gradient with the oracle's (wte: the first V of its Vp rows).
static int check_grads(llm_model *m, const state *s, const llm_config *cfg) {
    int all = 1;
    const float *ref = s->grads;
    for (int i = 0; i < LLM_NUM_TENSORS; i++) {
        llm_tensor t;
        if (llm_model_tensor(m, i, &t) != LLM_OK) {
            fprintf(stderr, "llm_model_tensor(%d): %s\n", i, llm_last_error());
            return 0;
        }
        size_t rows = (size_t)t.shape[0], inner = 1;
        for (int d = 1; d < t.ndim; d++) inner *= (size_t)t.shape[d];
        size_t stride = t.row_stride > 0 ? (size_t)t.row_stride : inner;
        size_t ref_rows = i == 0 ? (size_t)cfg->padded_vocab_size : rows;
        double max_abs = 0.0, diff2 = 0.0, ref2 = 0.0;
        for (size_t r = 0; r < rows; r++) {
            const float *g = (const float *)t.grad + r * stride;
            const float *gr = ref + r * inner;
            for (size_t j = 0; j < inner; j++) {
                double d = (double)g[j] - (double)gr[j];
                if (!(fabs(d) <= max_abs)) max_abs = isnan(d) ? INFINITY : fabs(d);
                diff2 += d * d;
                ref2 += (double)gr[j] * gr[j];
            }
        }
        ref += ref_rows * inner;
        double rel = ref2 > 0 ? sqrt(diff2 / ref2) : sqrt(diff2);
        char label[32];
        snprintf(label, sizeof(label), "d%s", t.name ? t.name : "?");
        all &= report(label, max_abs, rel, rel <= GRAD_RTOL);
    }
    if ((size_t)(ref - s->grads) != s->n_grads) {
        fprintf(stderr, "internal: walked %zu gradient floats of %zu\n", (size_t)(ref - s->grads),
                s->n_grads);
        return 0;
    }
    return all;
}

// The logits and losses after backward: refused / kept as the strategy says, and the
// losses' mean is the loss.
static int check_after_backward(llm_model *m, const state *s, const llm_config *cfg, float loss, int in_place) {
    int ok = 1;
    float *data = NULL;
    int B, T, V, Vp;
    llm_block *block = NULL;
    llm_status st = llm_model_logits(m, &data, &B, &T, &V, &Vp, &block);
    if (in_place) {
        int refused = st == LLM_ESTATE && strstr(llm_last_error(), "forward()") != NULL;
        printf("logits after in-place backward refused: %s (%s)\n", refused ? "OK" : "FAIL",
               st == LLM_OK ? "returned" : llm_last_error());
        ok &= refused;
        float *copy = malloc((size_t)s->B * s->T * cfg->vocab_size * sizeof(float));
        st = copy ? llm_model_copy_logits(m, copy) : LLM_ENOMEM;
        printf("copied logits after in-place backward refused: %s\n", st == LLM_ESTATE ? "OK" : "FAIL");
        ok &= st == LLM_ESTATE;
        free(copy);
        st = llm_backward(m, 1.0f);
        printf("second backward after in-place backward refused: %s\n", st == LLM_ESTATE ? "OK" : "FAIL");
        ok &= st == LLM_ESTATE;
    } else {
        printf("logits after sliced backward readable: %s\n", st == LLM_OK ? "OK" : "FAIL");
        ok &= st == LLM_OK;
    }
    if (block) llm_block_release(block);
    if (st == LLM_OK && !in_place) ok &= check_logits(m, s, cfg);
    float *losses = malloc((size_t)s->B * s->T * sizeof(float));
    if (!losses || llm_model_copy_losses(m, losses) != LLM_OK) {
        fprintf(stderr, "llm_model_copy_losses after backward: %s\n", llm_last_error());
        free(losses);
        return 0;
    }
    double sum = 0.0;
    for (int i = 0; i < s->B * s->T; i++) sum += losses[i];
    free(losses);
    const double mean = sum / (s->B * s->T);
    ok &= report("mean(losses) vs loss", fabs(mean - loss), fabs(mean - loss) / fabs(loss),
                 fabs(mean - loss) <= 1e-6 * fabs(loss));
    return ok;
}

// The gradient buffer, from wte's first element to lnfb's last (one block: llmpy.h), including
// wte's padding rows, which no tensor view shows.
static float *grads_span(llm_model *m, size_t *n) {
    llm_tensor first, last;
    if (llm_model_tensor(m, 0, &first) != LLM_OK || llm_model_tensor(m, LLM_NUM_TENSORS - 1, &last) != LLM_OK) {
        fprintf(stderr, "llm_model_tensor: %s\n", llm_last_error());
        return NULL;
    }
    size_t last_n = 1;
    for (int d = 0; d < last.ndim; d++) last_n *= (size_t)last.shape[d];
    *n = (size_t)((float *)last.grad + last_n - (float *)first.grad);
    return first.grad;
}

// Fills every gradient with NaN (see the header).
static int poison_grads(llm_model *m) {
    size_t n;
    float *g = grads_span(m, &n);
    if (!g) return 0;
    for (size_t i = 0; i < n; i++) g[i] = NAN;
    return 1;
}

// wte's padding rows (V .. Vp) have a zero gradient.
static int check_padding_grads(llm_model *m, const llm_config *cfg) {
    size_t n;
    const float *g = grads_span(m, &n);
    if (!g) return 0;
    size_t bad = 0;
    for (size_t i = (size_t)cfg->vocab_size * cfg->n_embd; i < (size_t)cfg->padded_vocab_size * cfg->n_embd; i++)
        bad += g[i] != 0.0f;
    printf("wte padding rows' gradient zero: %s\n", bad ? "FAIL" : "OK");
    return bad == 0;
}

// Loads the model on `device`, runs forward and backward and checks everything against the oracle.
static int run(const char *device, const char *model_path, const char *state_path, int in_place) {
    printf("=== device %s (lm_head %s)\n", device, in_place ? "in place" : "by slices");
    llm_model *m = NULL;
    if (llm_model_load(&m, model_path, device, NULL) != LLM_OK) {
        fprintf(stderr, "llm_model_load(%s): %s\n", model_path, llm_last_error());
        return 0;
    }
    llm_config cfg = llm_model_config(m);
    printf("model: L=%d NH=%d C=%d V=%d Vp=%d maxT=%d, %lld parameters\n", cfg.n_layer, cfg.n_head,
           cfg.n_embd, cfg.vocab_size, cfg.padded_vocab_size, cfg.block_size,
           (long long)llm_model_num_parameters(m));

    state s;
    if (!state_read(&s, state_path, m, &cfg)) {
        llm_model_free(m);
        return 0;
    }
    printf("state: B=%d T=%d\n", s.B, s.T);

    int ok = 1;
    float loss = NAN, again = NAN;
    if (llm_forward(m, s.x, s.y, s.B, s.T, &loss) != LLM_OK) {
        fprintf(stderr, "llm_forward: %s\n", llm_last_error());
        ok = 0;
        goto out;
    }
    ok &= check_logits(m, &s, &cfg);
    ok &= check_loss(loss, &s);

    if (!poison_grads(m) || llm_zero_grad(m) != LLM_OK || llm_backward(m, 1.0f) != LLM_OK) {
        fprintf(stderr, "llm_zero_grad/llm_backward: %s\n", llm_last_error());
        ok = 0;
        goto out;
    }
    ok &= check_grads(m, &s, &cfg);
    ok &= check_padding_grads(m, &cfg);
    ok &= check_after_backward(m, &s, &cfg, loss, in_place);

    // a new forward: the logits are back, and equal to the first ones
    if (llm_forward(m, s.x, s.y, s.B, s.T, &again) != LLM_OK) {
        fprintf(stderr, "llm_forward (again): %s\n", llm_last_error());
        ok = 0;
        goto out;
    }
    printf("loss of the second forward identical: %s\n", again == loss ? "OK" : "FAIL");
    ok &= again == loss;
    ok &= check_logits(m, &s, &cfg);

out:
    state_free(&s);
    llm_model_free(m);
    return ok;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.bin STATE.bin\n"
                        "  files from: python dev/train_gpt2.py ... --model-out MODEL.bin "
                        "--state-out STATE.bin\n",
                argv[0]);
        return 2;
    }
    const char *want_isa = getenv("LLMPY_CPU_ISA");
    printf("cpu kernels: %s (built: %s)\n", llm_cpu_isa(), llm_cpu_isa_list());
    if (want_isa && *want_isa && strcmp(want_isa, llm_cpu_isa()) != 0) {
        fprintf(stderr, "LLMPY_CPU_ISA=%s but the kernels in use are %s (built: %s)\n", want_isa, llm_cpu_isa(),
                llm_cpu_isa_list());
        return 1;
    }
    // the CPU table with the other strategy for the classifier backward (in place of the logits)
    static llm_ops in_place;
    in_place = llm_cpu_ops;
    in_place.lm_head_in_place = 1;
    if (llm_register_backend("cpu-inplace", "fp32", &in_place) != LLM_OK) {
        fprintf(stderr, "llm_register_backend: %s\n", llm_last_error());
        return 1;
    }
    int ok = run("cpu", argv[1], argv[2], llm_cpu_ops.lm_head_in_place);
    ok &= run("cpu-inplace", argv[1], argv[2], 1);
    printf("%s\n", ok ? "ALL OK" : "FAILED");
    return ok ? 0 : 1;
}
