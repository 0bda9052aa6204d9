/*
 * test_generate.c — the KV-cache generator of the C core (csrc/core/generate.c) against the
 * model's full forward, on every CPU kernel variant this build has; CI also runs it under
 * AddressSanitizer + UndefinedBehaviorSanitizer.
 *
 *   test_generate            exit code 0 when every check passes, 1 otherwise
 *
 * Oracle: llm_forward over the whole sequence (itself checked against PyTorch by test_gpt2.c and
 * tests/test_parity.py). Checks: decode logits at every position (fp32: max |diff| / max |logit|
 * <= 1e-5; a bf16 copy of the weights: <= 1e-2), ragged prompts in permuted slots prefilled
 * together in several chunks, a cache that grows between calls, and the refusals (a full slot,
 * an empty slot, a slot given twice, ids out of range).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/llmpy.h"

static int failures = 0;

#define CHECK(call)                                                                              \
    do {                                                                                         \
        if ((call) != LLM_OK) {                                                                  \
            printf("FAIL %s:%d %s: %s\n", __FILE__, __LINE__, #call, llm_last_error());          \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

static void expect(int ok, const char *what, double got, double limit) {
    printf("%s %-58s %.3e (limit %.0e)\n", ok ? "ok  " : "FAIL", what, got, limit);
    if (!ok) failures++;
}

static void refused(llm_status s, const char *what) {
    printf("%s refuses %s%s%s\n", s != LLM_OK ? "ok  " : "FAIL", what, s != LLM_OK ? ": " : "",
           s != LLM_OK ? llm_last_error() : "");
    if (s == LLM_OK) failures++;
}

// max |a - b| / max |b| over n values
static double rel(const float *a, const float *b, size_t n) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? d / m : d;
}

// logits (T, V) of one sequence by the full forward
static void forward_logits(llm_model *m, const int32_t *seq, int T, float *out) {
    CHECK(llm_forward(m, seq, NULL, 1, T, NULL));
    CHECK(llm_model_copy_logits(m, out));
}

static void run(llm_model *m, const char *isa) {
    const llm_config cfg = llm_model_config(m);
    const int V = cfg.vocab_size, T = cfg.block_size;
    int32_t *seq = malloc((size_t)T * sizeof(int32_t));
    float *ref = malloc((size_t)T * V * sizeof(float)), *got = malloc((size_t)T * V * sizeof(float));
    for (int t = 0; t < T; t++) seq[t] = (t * 37 + 11) % V;
    forward_logits(m, seq, T, ref);
    char what[128];

    // decode at every position after a 3-token prompt, fp32 and a bf16 copy
    const char *weights[] = {"fp32", "bf16"};
    const double limits[] = {1e-5, 1e-2};
    for (int k = 0; k < 2; k++) {
        llm_gen *g;
        CHECK(llm_gen_create(&g, m, weights[k]));
        CHECK(llm_gen_reserve(g, 2, T));
        const int row = 1;
        CHECK(llm_gen_prefill(g, seq, (int32_t[]){3}, &row, 1, got + 2 * (size_t)V));
        for (int t = 3; t < T; t++) CHECK(llm_gen_decode(g, seq + t, &row, 1, got + (size_t)t * V));
        snprintf(what, sizeof what, "[%s] %s decode vs full forward, positions 2..%d", isa, weights[k], T - 1);
        const double e = rel(got + 2 * (size_t)V, ref + 2 * (size_t)V, (size_t)(T - 2) * V);
        expect(e <= limits[k], what, e, limits[k]);
        snprintf(what, sizeof what, "a full slot (%s)", weights[k]);
        refused(llm_gen_decode(g, seq, &row, 1, got), what);
        llm_gen_free(g);
    }

    // 37 ragged prompts in permuted slots: more than one prefill chunk of 1024 rows
    llm_gen *g;
    CHECK(llm_gen_create(&g, m, NULL));
    CHECK(llm_gen_reserve(g, 8, 16)); // grown below
    const int n = 37;
    int32_t lengths[37], rows[37];
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        lengths[i] = 1 + (i * 7) % T;
        rows[i] = (i * 7 + 3) % 40; // distinct: 7 is prime to 40
        total += (size_t)lengths[i];
    }
    lengths[0] = T;
    total += (size_t)(T - 1);
    int32_t *tokens = malloc(total * sizeof(int32_t));
    for (size_t i = 0, o = 0; i < (size_t)n; o += (size_t)lengths[i], i++)
        memcpy(tokens + o, seq, (size_t)lengths[i] * sizeof(int32_t)); // every prompt: a prefix of seq
    CHECK(llm_gen_reserve(g, 40, T));
    float *logits = malloc((size_t)n * V * sizeof(float));
    CHECK(llm_gen_prefill(g, tokens, lengths, rows, n, logits));
    double e = 0;
    for (int i = 0; i < n; i++) e = fmax(e, rel(logits + (size_t)i * V, ref + (size_t)(lengths[i] - 1) * V, (size_t)V));
    snprintf(what, sizeof what, "[%s] 37 ragged prompts prefilled together", isa);
    expect(e <= 1e-5, what, e, 1e-5);
    // one more token for the prompts that have room, in a different order of slots
    int32_t next[37], nrows[37], at[37];
    int nd = 0;
    for (int i = n - 1; i >= 0; i--)
        if (lengths[i] < T) next[nd] = seq[lengths[i]], nrows[nd] = rows[i], at[nd] = lengths[i], nd++;
    CHECK(llm_gen_decode(g, next, nrows, nd, logits));
    e = 0;
    for (int i = 0; i < nd; i++) e = fmax(e, rel(logits + (size_t)i * V, ref + (size_t)at[i] * V, (size_t)V));
    snprintf(what, sizeof what, "[%s] then one decode step each", isa);
    expect(e <= 1e-5, what, e, 1e-5);

    int32_t bad = V;
    refused(llm_gen_decode(g, &bad, rows, 1, logits), "an id out of range");
    refused(llm_gen_decode(g, next, (int32_t[]){rows[1], rows[1]}, 2, logits), "a slot given twice");
    int32_t empty = 0; // a slot no prompt went to
    for (int used = 1; used;) {
        used = 0;
        for (int i = 0; i < n; i++) used |= rows[i] == empty;
        empty += used;
    }
    refused(llm_gen_decode(g, next, &empty, 1, logits), "an empty slot");
    refused(llm_gen_prefill(g, tokens, (int32_t[]){0}, rows, 1, logits), "an empty prompt");
    refused(llm_gen_reserve(g, 1, T + 1), "max_len beyond block_size");
    llm_gen_info info;
    llm_gen_get_info(g, &info);
    const size_t want = 2 * (size_t)cfg.n_layer * 40 * T * cfg.n_embd * sizeof(float);
    printf("%s cache of 40 x %d positions: %zu bytes (want %zu)\n", info.cache_bytes == want ? "ok  " : "FAIL", T,
           info.cache_bytes, want);
    if (info.cache_bytes != want) failures++;
    llm_gen_free(g);
    free(logits);
    free(tokens);
    free(seq);
    free(ref);
    free(got);
}

int main(void) {
    llm_config cfg = {2, 4, 64, 101, 48, 0};
    llm_model *m;
    CHECK(llm_model_create(&m, &cfg, "cpu", NULL, 7));
    char list[128];
    snprintf(list, sizeof list, "%s", llm_cpu_isa_list());
    for (char *isa = strtok(list, ","); isa; isa = strtok(NULL, ",")) {
        if (llm_set_cpu_isa(isa) != LLM_OK) {
            printf("skip %s: %s\n", isa, llm_last_error());
            continue;
        }
        run(m, isa);
    }
    llm_model_free(m);
    printf(failures ? "FAILED: %d check(s)\n" : "all checks passed\n", failures);
    return failures ? 1 : 0;
}
