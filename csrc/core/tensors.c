/*
 * tensors.c — the table of GPT-2's 16 parameter tensors (llmpy.h: llm_tensor_spec).
 *
 * One row per tensor, in llm.c's file order: name, shape in terms of the configuration, whether
 * AdamW decays it, how it is initialised. The model (gpt2.c), the optimizer, the distributed plan
 * (dist_plan.c), the bindings and through them the converters (python/llmpy/hf.py) all read it,
 * so no other file knows a tensor by its position.
 */
#include <stddef.h>

#include "core/llmpy.h"

#define D(a, b, c) {LLM_DIM_##a, LLM_DIM_##b, LLM_DIM_##c}

static const llm_tensor_spec specs[LLM_NUM_TENSORS] = {
    [LLM_WTE] = {"wte", D(VP, C, NONE), 1, LLM_INIT_NORMAL},
    [LLM_WPE] = {"wpe", D(MAXT, C, NONE), 1, LLM_INIT_NORMAL},
    [LLM_LN1W] = {"ln1w", D(L, C, NONE), 0, LLM_INIT_ONE},
    [LLM_LN1B] = {"ln1b", D(L, C, NONE), 0, LLM_INIT_ZERO},
    [LLM_QKVW] = {"qkvw", D(L, 3C, C), 1, LLM_INIT_NORMAL},
    [LLM_QKVB] = {"qkvb", D(L, 3C, NONE), 0, LLM_INIT_ZERO},
    [LLM_ATTPROJW] = {"attprojw", D(L, C, C), 1, LLM_INIT_NORMAL_RESIDUAL},
    [LLM_ATTPROJB] = {"attprojb", D(L, C, NONE), 0, LLM_INIT_ZERO},
    [LLM_LN2W] = {"ln2w", D(L, C, NONE), 0, LLM_INIT_ONE},
    [LLM_LN2B] = {"ln2b", D(L, C, NONE), 0, LLM_INIT_ZERO},
    [LLM_FCW] = {"fcw", D(L, 4C, C), 1, LLM_INIT_NORMAL},
    [LLM_FCB] = {"fcb", D(L, 4C, NONE), 0, LLM_INIT_ZERO},
    [LLM_FCPROJW] = {"fcprojw", D(L, C, 4C), 1, LLM_INIT_NORMAL_RESIDUAL},
    [LLM_FCPROJB] = {"fcprojb", D(L, C, NONE), 0, LLM_INIT_ZERO},
    [LLM_LNFW] = {"lnfw", D(C, NONE, NONE), 0, LLM_INIT_ONE},
    [LLM_LNFB] = {"lnfb", D(C, NONE, NONE), 0, LLM_INIT_ZERO},
};

#undef D

const llm_tensor_spec *llm_tensor_spec_of(int i) { return i >= 0 && i < LLM_NUM_TENSORS ? &specs[i] : NULL; }

const char *llm_tensor_name(int i) { return i >= 0 && i < LLM_NUM_TENSORS ? specs[i].name : NULL; }

int llm_tensor_per_layer(int i) { return i >= 0 && i < LLM_NUM_TENSORS && specs[i].dims[0] == LLM_DIM_L; }

static int64_t dim_size(const llm_config *cfg, llm_dim d) {
    const int64_t C = cfg->n_embd;
    switch (d) {
    case LLM_DIM_L: return cfg->n_layer;
    case LLM_DIM_VP: return cfg->padded_vocab_size;
    case LLM_DIM_MAXT: return cfg->block_size;
    case LLM_DIM_C: return C;
    case LLM_DIM_3C: return 3 * C;
    case LLM_DIM_4C: return 4 * C;
    default: return 0;
    }
}

int llm_tensor_shape(const llm_config *cfg, int i, int64_t shape[3]) {
    if (!cfg || i < 0 || i >= LLM_NUM_TENSORS) return 0;
    int ndim = 0;
    while (ndim < 3 && specs[i].dims[ndim] != LLM_DIM_NONE) {
        shape[ndim] = dim_size(cfg, specs[i].dims[ndim]);
        ndim++;
    }
    return ndim;
}
