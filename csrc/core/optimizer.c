/*
 * optimizer.c — the AdamW step, written once for one process and for data-parallel ranks.
 *
 * Validation, gradient clipping (PyTorch's clip_grad_norm_), the weight-decay rule (2-D tensors
 * only) and the AdamW calls through the backend's ops live here. A data-parallel model
 * (dist_plan.c, m->dist) supplies only what differs: the reduction of the gradients before the
 * step, the parts of the flat buffers this rank updates (ZeRO-1: its shard), the sum of the
 * gradient norm over the ranks and the all-gather of the parameters after it. llm_grad_norm gives
 * the norm ahead of the step, for a caller that decides on it whether to step at all.
 */
#include <math.h>

#include "core/common.h"
#include "core/gpt2.h"

// Element i of a floatX buffer (pointer arithmetic in bytes: the element size is the backend's).
#define AT(p, i) ((floatX *)((char *)(p) + (size_t)(i) * xs))

// The AdamW moments for what this process updates: allocated on the first step; full moments
// (a loaded checkpoint) handed to a ZeRO-1 shard part by part.
static llm_status ensure_moments(llm_model *m, const gpt2_part *parts, size_t nparts, size_t elems) {
    const llm_ops *ops = m->ops;
    if (m->m && m->moment_elems == elems) return LLM_OK;
    float *mm = NULL, *vv = NULL;
    LLM_TRY(ops->alloc((void **)&mm, (elems ? elems : 1) * sizeof(float)));
    llm_status s = ops->alloc((void **)&vv, (elems ? elems : 1) * sizeof(float));
    if (s == LLM_OK && m->m) {
        if (m->moment_elems != m->total)
            s = llm_fail(LLM_ESTATE, "the AdamW moments are a shard of another layout (%zu elements, %zu needed)",
                         m->moment_elems, elems);
        for (size_t k = 0; s == LLM_OK && k < nparts; k++) {
            s = ops->copy(mm + parts[k].moment, m->m + parts[k].offset, parts[k].n * sizeof(float));
            if (s == LLM_OK) s = ops->copy(vv + parts[k].moment, m->v + parts[k].offset, parts[k].n * sizeof(float));
        }
    }
    if (s != LLM_OK) {
        ops->free(mm);
        ops->free(vv);
        return s;
    }
    ops->free(m->m);
    ops->free(m->v);
    m->m = mm;
    m->v = vv;
    m->moment_elems = elems;
    return LLM_OK;
}

// The parts of the flat buffers this process updates: every tensor whole, or the plan's parts.
static const gpt2_part *update_parts(const llm_model *m, gpt2_part whole[LLM_NUM_TENSORS], size_t *nparts,
                                     size_t *elems) {
    if (m->dist) {
        *nparts = m->dist->nparts;
        *elems = m->dist->moment_elems;
        return m->dist->parts;
    }
    for (int i = 0; i < LLM_NUM_TENSORS; i++) whole[i] = (gpt2_part){i, m->offsets[i], m->sizes[i], m->offsets[i]};
    *nparts = LLM_NUM_TENSORS;
    *elems = m->total;
    return whole;
}

// The gradients averaged across the ranks (data parallelism) and their global norm, once per
// backward: llm_grad_norm and llm_step share it, so that the two calls are llm_step alone.
static llm_status reduce_and_norm(llm_model *m) {
    if (m->norm_ready) return LLM_OK;
    const llm_ops *ops = m->ops;
    const size_t xs = m->xsize;
    const gpt2_dist *dist = m->dist;
    if (dist) LLM_TRY(dist->reduce(dist->ctx)); // the averaged gradients (or this rank's shard of them)
    gpt2_part whole[LLM_NUM_TENSORS];
    size_t nparts, elems;
    const gpt2_part *parts = update_parts(m, whole, &nparts, &elems);
    double sq = 0.0;
    if (!dist && m->weights_sq >= 0.0) { // the backward summed the big ones (gpt2.h): the rest here
        sq = m->weights_sq;
        for (int i = 0; i < LLM_NUM_TENSORS; i++) {
            if (gpt2_summed_by_backward(i)) continue;
            double part;
            LLM_TRY(ops->norm_squared(&part, AT(m->grads, m->offsets[i]), m->sizes[i]));
            sq += part;
        }
    } else if (!dist || dist->whole) { // every gradient: one reduction
        LLM_TRY(ops->norm_squared(&sq, m->grads, m->total));
    } else {
        for (size_t k = 0; k < nparts; k++) {
            double part;
            LLM_TRY(ops->norm_squared(&part, AT(m->grads, parts[k].offset), parts[k].n));
            sq += part;
        }
    }
    if (dist) LLM_TRY(dist->sum_norm(dist->ctx, &sq));
    m->grad_norm = (float)sqrt(sq);
    m->norm_ready = 1;
    return LLM_OK;
}

llm_status llm_grad_norm(llm_model *m, float *norm) {
    if (!m || !norm) return llm_fail(LLM_EINVAL, "model or norm is NULL");
    if (!m->has_grad) return llm_fail(LLM_ESTATE, "grad_norm() needs gradients: call backward() first");
    LLM_TRY(reduce_and_norm(m));
    *norm = m->grad_norm;
    return LLM_OK;
}

// One optimizer step for one process and for many alike: with data parallelism (m->dist) the
// plan supplies the reduction before it, the parts this rank updates, the sum of the gradient
// norm over the ranks and the all-gather after it; validation, clipping, the weight-decay rule
// and the AdamW calls are these.
llm_status llm_step(llm_model *m, float lr, float beta1, float beta2, float eps, float weight_decay,
                    float grad_clip, float *norm) {
    if (!m) return llm_fail(LLM_EINVAL, "model is NULL");
    if (!m->has_grad) return llm_fail(LLM_ESTATE, "step() needs gradients: call backward() first");
    if (!(lr >= 0.0f) || !isfinite(lr)) return llm_fail(LLM_EINVAL, "lr must be finite and >= 0, got %g", lr);
    if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f))
        return llm_fail(LLM_EINVAL, "betas must be in [0, 1), got (%g, %g)", beta1, beta2);
    if (!(eps >= 0.0f) || !(weight_decay >= 0.0f) || !isfinite(eps) || !isfinite(weight_decay))
        return llm_fail(LLM_EINVAL, "eps and weight_decay must be finite and >= 0, got %g and %g", eps, weight_decay);
    // a NaN would compare false below and silently turn clipping off: refused, like a negative one
    if (!(grad_clip >= 0.0f))
        return llm_fail(LLM_EINVAL, "grad_clip must be >= 0 (0: no clipping), got %g", grad_clip);
    const llm_ops *ops = m->ops;
    const size_t xs = m->xsize;
    const gpt2_dist *dist = m->dist;
    LLM_TRY(reduce_and_norm(m));
    m->norm_ready = 0; // the next step needs a new backward (or averages these gradients again)
    gpt2_part whole[LLM_NUM_TENSORS];
    size_t nparts, elems;
    const gpt2_part *parts = update_parts(m, whole, &nparts, &elems);
    LLM_TRY(ensure_moments(m, parts, nparts, elems));
    const float gnorm = m->grad_norm;
    // PyTorch's clip_grad_norm_: scale = min(1, max_norm / (norm + 1e-6))
    float scale = 1.0f;
    if (grad_clip > 0.0f) {
        float c = grad_clip / (gnorm + 1e-6f);
        scale = c < 1.0f ? c : 1.0f;
    }
    m->t++;
    for (size_t k = 0; k < nparts; k++) {
        const gpt2_part *q = &parts[k];
        const int i = q->tensor;
        // the stochastic rounding of mixed precision draws from (step, tensor) and each element's
        // index in its tensor: a tensor updated in parts rounds as it does whole
        uint32_t seed = (uint32_t)gpt2_mix64((uint64_t)m->t * LLM_NUM_TENSORS + (uint64_t)i);
        LLM_TRY(ops->adamw_update(AT(m->params, q->offset), m->master ? m->master + q->offset : NULL,
                                  AT(m->grads, q->offset), m->m + q->moment, m->v + q->moment, q->n, lr, beta1, beta2,
                                  eps, llm_tensor_spec_of(i)->decays ? weight_decay : 0.0f, scale, m->t, seed,
                                  (uint64_t)(q->offset - m->offsets[i])));
        if (dist) LLM_TRY(dist->updated(dist->ctx, k));
    }
    if (dist) LLM_TRY(dist->gather(dist->ctx));
    if (norm) *norm = gnorm;
    return LLM_OK;
}
