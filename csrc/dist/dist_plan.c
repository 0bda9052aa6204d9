/*
 * dist_plan.c — a model across ranks (dist.h): the collective plan that says which gradient
 * slices are reduced when, the ZeRO-1 shard, and the hooks through which gpt2.c's one backward
 * and one optimizer step run data-parallel. The transport that moves the data is comm.h's
 * (host MPI for CPU models, NCCL for CUDA ones); this file is the same for both.
 *
 * Plan. Buckets, in the order the backward finishes them: b = 0 .. L-1 is layer L-1-b (its slice
 * of each of the 12 per-layer tensors), b = L is wte, wpe, lnfw, lnfb (final after the encoder
 * backward). Every slice is cut into pieces of at most LLM_COMM_MAX_SPLIT_SPAN elements. With
 * sync and overlap, gpt2.c's backward calls grads_ready() as each bucket is final and the
 * bucket's collectives start at once (all-reduce mean for zero_stage 0, reduce-scatter mean for
 * 1); llm_step() starts what has not started, in bucket order, and waits. Every rank issues the
 * same collectives in the same order whether or not they overlap, so overlap does not change a
 * single bit of the result.
 *
 * ZeRO-1. This rank's shard is its part of every piece (comm.h's split): 1/N of every slice.
 * AdamW moments exist for the shard only, stored piece after piece; the gradient norm is summed
 * over the ranks; after AdamW the parameters (and the fp32 master copy, under mixed precision)
 * are all-gathered. Stochastic rounding draws from each element's index in its tensor, so N
 * ranks round exactly like one. Checkpoints hold the full moments (gathered for the writer), so
 * a run resumes with any number of ranks and either stage.
 *
 * ZeRO-1 reference: Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training
 * Trillion Parameter Models" (stage 1 = optimizer-state partitioning).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/comm.h"
#include "core/common.h"
#include "dist/dist.h"
#include "dist/dist_internal.h"
#include "core/gpt2.h"

typedef struct piece {
    int tensor, bucket;
    size_t offset, n; // elements [offset, offset + n) of the flat buffers
} piece;

typedef struct plan {
    gpt2_dist hooks; // what gpt2.c calls; hooks.ctx is this plan
    llm_model *m;
    llm_comm *comm; // NULL for a plain process
    int comm_owned; // 0: the process group's own transport, lent to the plan (a launch without MPI)
    int zero_stage, overlap, sync, L, W, r;
    piece *pieces; // in bucket order
    size_t npieces;
    size_t *bucket_first; // (L + 2): pieces of bucket b are [bucket_first[b], bucket_first[b + 1])
    unsigned char *started; // (L + 1): the bucket's reduction started since the last step
    int any_started;
    int synced; // a backward with sync ran since the last step / zero_grad
    gpt2_part *parts; // what this rank updates (moment order)
    int *part_bucket; // (nparts) the bucket of each part
    int gathered;     // buckets whose all-gather started during this step
    llm_comm_span *spans; // (npieces) scratch for start()
    double comm_s;        // seconds this thread spent in the transport's calls (exposed communication)
} plan;

static const char *const bucket_names_final = "wte, wpe and the final layernorm";

// ----------------------------------------------------------------------------
// the plan


// Appends the pieces of elements [offset, offset + n) of tensor i to bucket b.
static void add_slice(plan *p, int i, int b, size_t offset, size_t n) {
    for (size_t o = 0; o < n; o += LLM_COMM_MAX_SPLIT_SPAN) {
        size_t k = n - o < LLM_COMM_MAX_SPLIT_SPAN ? n - o : LLM_COMM_MAX_SPLIT_SPAN;
        if (p->pieces) p->pieces[p->npieces] = (piece){i, b, offset + o, k};
        p->npieces++;
    }
}

// Fills p->pieces (or only counts them when it is NULL) and the bucket starts.
static void layout(plan *p) {
    const llm_model *m = p->m;
    const int L = p->L;
    p->npieces = 0;
    for (int b = 0; b <= L; b++) {
        if (p->bucket_first) p->bucket_first[b] = p->npieces;
        for (int i = 0; i < LLM_NUM_TENSORS; i++) {
            if (b < L && llm_tensor_per_layer(i)) {
                const int l = L - 1 - b;
                const size_t per = m->sizes[i] / (size_t)L;
                add_slice(p, i, b, m->offsets[i] + (size_t)l * per, per);
            } else if (b == L && !llm_tensor_per_layer(i)) {
                add_slice(p, i, b, m->offsets[i], m->sizes[i]);
            }
        }
    }
    if (p->bucket_first) p->bucket_first[L + 1] = p->npieces;
}

// What this rank updates: zero_stage 0 (or one rank) the whole tensors, as one process does;
// zero_stage 1 its part of every piece, moments stored piece after piece.
static llm_status make_parts(plan *p) {
    llm_model *m = p->m;
    const int sharded = p->zero_stage == 1 && p->comm;
    size_t n = sharded ? p->npieces : LLM_NUM_TENSORS;
    p->parts = calloc(n ? n : 1, sizeof *p->parts);
    p->part_bucket = calloc(n ? n : 1, sizeof *p->part_bucket);
    if (!p->parts || !p->part_bucket) return llm_fail(LLM_ENOMEM, "out of memory (the ZeRO-1 shard)");
    size_t k = 0, moment = 0;
    p->hooks.whole = !sharded;
    if (p->hooks.whole) {
        for (int i = 0; i < LLM_NUM_TENSORS; i++) p->parts[k++] = (gpt2_part){i, m->offsets[i], m->sizes[i], m->offsets[i]};
        moment = m->total;
    } else {
        for (size_t j = 0; j < p->npieces; j++) {
            const piece *q = &p->pieces[j];
            size_t a = llm_comm_part(q->n, p->r, p->W), b = llm_comm_part(q->n, p->r + 1, p->W);
            if (b == a) continue;
            p->part_bucket[k] = q->bucket;
            p->parts[k++] = (gpt2_part){q->tensor, q->offset + a, b - a, moment};
            moment += b - a;
        }
    }
    p->hooks.parts = p->parts;
    p->hooks.nparts = k;
    p->hooks.moment_elems = moment;
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// collectives of the plan

static const char *bucket_what(const plan *p, int b, char *buf, size_t n, const char *op) {
    if (b == p->L) snprintf(buf, n, "the %s of the gradients of %s", op, bucket_names_final);
    else snprintf(buf, n, "the %s of layer %d's gradients", op, p->L - 1 - b);
    return buf;
}

static llm_status start_bucket(plan *p, int b) {
    if (p->started[b]) return LLM_OK;
    const llm_model *m = p->m;
    const size_t xs = m->xsize;
    size_t k = 0;
    for (size_t j = p->bucket_first[b]; j < p->bucket_first[b + 1]; j++)
        p->spans[k++] = (llm_comm_span){(char *)m->grads + p->pieces[j].offset * xs, p->pieces[j].n};
    char what[128];
    const int scatter = p->zero_stage == 1;
    bucket_what(p, b, what, sizeof what, scatter ? "reduce-scatter" : "all-reduce");
    LLM_TRY(p->comm->ops->start(p->comm, scatter ? LLM_COMM_REDUCE_SCATTER_MEAN : LLM_COMM_ALL_REDUCE_MEAN, p->spans,
                                (int)k, m->ops->dtype, what));
    p->started[b] = 1;
    p->any_started = 1;
    return LLM_OK;
}

static llm_status wait_all(plan *p) {
    LLM_TRY(p->comm->ops->wait(p->comm));
    memset(p->started, 0, (size_t)p->L + 1);
    p->any_started = 0;
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// the hooks gpt2.c calls (only installed with several ranks)

static llm_status hook_backward_begin(void *ctx) {
    plan *p = ctx;
    if (p->any_started || p->synced)
        return llm_fail(LLM_ESTATE, "the gradients are being averaged across the ranks (the last backward had sync): "
                                    "call step() or zero_grad() before the next backward; with gradient "
                                    "accumulation, sync only the last micro-step");
    return LLM_OK;
}

static llm_status hook_grads_ready_untimed(void *ctx, int layer) {
    plan *p = ctx;
    if (p->sync && p->overlap) LLM_TRY(start_bucket(p, layer >= 0 ? p->L - 1 - layer : p->L));
    return p->comm->ops->progress(p->comm); // MPI advances inside MPI calls: one per layer
}

static llm_status hook_reduce_untimed(void *ctx) {
    plan *p = ctx;
    p->synced = 0;
    for (int b = 0; b <= p->L; b++) LLM_TRY(start_bucket(p, b));
    return wait_all(p);
}

static llm_status hook_sum_norm_untimed(void *ctx, double *sq) {
    plan *p = ctx;
    if (p->zero_stage != 1) return LLM_OK; // every rank holds the whole averaged gradient
    return p->comm->ops->all_reduce_sum_f64(p->comm, sq, 1, "the all-reduce of the gradient norm");
}

// After AdamW on the shard: every rank gets every part of the parameters (and of the fp32 master
// copy, so that any rank's checkpoint or parameter read sees the updated values). A bucket's
// all-gather starts as soon as AdamW has moved past it (the rest of AdamW overlaps it); every
// rank starts them in bucket order.
static llm_status start_gathers_before(plan *p, int bucket) {
    llm_model *m = p->m;
    for (; p->gathered < bucket; p->gathered++) {
        const int b = p->gathered;
        const size_t j0 = p->bucket_first[b], j1 = p->bucket_first[b + 1];
        char what[128];
        for (int pass = 0; pass < (m->master ? 2 : 1); pass++) {
            for (size_t j = j0; j < j1; j++) {
                const piece *q = &p->pieces[j];
                void *base = pass == 0 ? (void *)((char *)m->params + q->offset * m->xsize)
                                       : (void *)(m->master + q->offset);
                p->spans[j - j0] = (llm_comm_span){base, q->n};
            }
            bucket_what(p, b, what, sizeof what, pass == 0 ? "all-gather (parameters)" : "all-gather (master weights)");
            LLM_TRY(p->comm->ops->start(p->comm, LLM_COMM_ALL_GATHER, p->spans, (int)(j1 - j0),
                                        pass == 0 ? m->ops->dtype : LLM_F32, what));
        }
    }
    return LLM_OK;
}

static llm_status hook_updated_untimed(void *ctx, size_t k) {
    plan *p = ctx;
    if (p->zero_stage != 1) return LLM_OK;
    return start_gathers_before(p, p->part_bucket[k]);
}

static llm_status hook_gather_untimed(void *ctx) {
    plan *p = ctx;
    if (p->zero_stage != 1) return LLM_OK;
    LLM_TRY(start_gathers_before(p, p->L + 1));
    p->gathered = 0;
    return p->comm->ops->wait(p->comm);
}

static llm_status hook_quiesce_untimed(void *ctx) {
    plan *p = ctx;
    p->synced = 0;
    return p->any_started ? wait_all(p) : LLM_OK;
}

// Every hook that talks to the other ranks, timed: the time the training thread spends in
// communication that did not hide behind computation.
#define TIMED(name, params, args)                                                                     \
    static llm_status name params {                                                                   \
        plan *p = ctx;                                                                                \
        const double t0 = llm_now_s();                                                                    \
        llm_status s = name##_untimed args;                                                           \
        p->comm_s += llm_now_s() - t0;                                                                    \
        return s;                                                                                     \
    }
TIMED(hook_grads_ready, (void *ctx, int layer), (ctx, layer))
TIMED(hook_reduce, (void *ctx), (ctx))
TIMED(hook_sum_norm, (void *ctx, double *sq), (ctx, sq))
TIMED(hook_updated, (void *ctx, size_t k), (ctx, k))
TIMED(hook_gather, (void *ctx), (ctx))
TIMED(hook_quiesce, (void *ctx), (ctx))
#undef TIMED

double llm_dist_comm_seconds(const llm_model *m) {
    const plan *p = m ? m->dist_plan : NULL;
    return p ? p->comm_s : 0.0;
}

// ----------------------------------------------------------------------------
// attach

static void plan_free(void *ctx) {
    plan *p = ctx;
    if (!p) return;
    if (p->comm && p->comm_owned) p->comm->ops->destroy(p->comm);
    free(p->pieces);
    free(p->bucket_first);
    free(p->started);
    free(p->parts);
    free(p->part_bucket);
    free(p->spans);
    free(p);
}

#define CHECK_INTS 10

// Every rank must hold the same model and ask for the same plan; the first rank that differs is
// named with both descriptions.
static llm_status check_same(const llm_model *m, int zero_stage, int overlap) {
    const llm_dist_info info = llm_dist_get();
    const llm_config *c = &m->cfg;
    double mine[CHECK_INTS] = {c->n_layer, c->n_head, c->n_embd, c->vocab_size, c->block_size, c->padded_vocab_size,
                               strcmp(m->device, "cpu") == 0 ? 0 : 1, m->ops->dtype, zero_stage, overlap};
    double ref[CHECK_INTS];
    memcpy(ref, mine, sizeof ref);
    LLM_TRY(llm_dist_broadcast(ref, sizeof ref, 0));
    const int W = info.world_size;
    double *differs = calloc((size_t)W, sizeof *differs);
    if (!differs) return llm_fail(LLM_ENOMEM, "out of memory checking the model across %d ranks", W);
    differs[info.rank] = memcmp(mine, ref, sizeof mine) != 0;
    llm_status s = llm_dist_all_reduce_sum_f64(differs, (size_t)W);
    int bad = -1;
    for (int r = 0; s == LLM_OK && r < W && bad < 0; r++)
        if (differs[r] != 0.0) bad = r;
    free(differs);
    LLM_TRY(s);
    if (bad < 0) return LLM_OK;
    double theirs[CHECK_INTS];
    memcpy(theirs, mine, sizeof theirs);
    LLM_TRY(llm_dist_broadcast(theirs, sizeof theirs, bad));
    const double *a = ref, *b = theirs;
#define DESC "L=%g NH=%g C=%g V=%g maxT=%g Vp=%g on %s (%s), zero_stage %g, overlap %g"
    return llm_fail(LLM_EINVAL,
                    "the ranks disagree on the model: rank 0 has " DESC ", rank %d has " DESC
                    "; start every rank with the same model and flags",
                    a[0], a[1], a[2], a[3], a[4], a[5], a[6] == 0 ? "cpu" : "cuda", a[7] == LLM_BF16 ? "bf16" : "fp32",
                    a[8], a[9], bad, b[0], b[1], b[2], b[3], b[4], b[5], b[6] == 0 ? "cpu" : "cuda",
                    b[7] == LLM_BF16 ? "bf16" : "fp32", b[8], b[9]);
#undef DESC
}

// Rank 0's parameters on every rank (through host fp32, one tensor at a time: the same path for
// every backend, once per run).
static llm_status copy_rank0_parameters(llm_model *m) {
    size_t largest = 0;
    for (int i = 0; i < LLM_NUM_TENSORS; i++) largest = m->sizes[i] > largest ? m->sizes[i] : largest;
    float *host = malloc(largest * sizeof(float));
    if (!host) return llm_fail(LLM_ENOMEM, "out of memory copying rank 0's parameters");
    llm_status s = LLM_OK;
    for (int i = 0; s == LLM_OK && i < LLM_NUM_TENSORS; i++) {
        s = gpt2_get_params(m, m->offsets[i], host, m->sizes[i]);
        if (s == LLM_OK) s = llm_dist_broadcast(host, m->sizes[i] * sizeof(float), 0);
        if (s == LLM_OK) s = gpt2_set_params(m, m->offsets[i], host, m->sizes[i]);
    }
    free(host);
    return s;
}

llm_status llm_dist_attach(llm_model *m, int zero_stage, int overlap) {
    if (!m) return llm_fail(LLM_EINVAL, "model is NULL");
    if (zero_stage != 0 && zero_stage != 1) return llm_fail(LLM_EINVAL, "zero_stage must be 0 or 1, got %d", zero_stage);
    if (overlap != 0 && overlap != 1) return llm_fail(LLM_EINVAL, "overlap must be 0 or 1, got %d", overlap);
    LLM_TRY(llm_dist_init(NULL));
    plan *old = m->dist_plan;
    if (old) {
        if (old->zero_stage == zero_stage && old->overlap == overlap) return LLM_OK;
        return llm_fail(LLM_EINVAL, "the model is already distributed with zero_stage=%d, overlap=%d", old->zero_stage,
                        old->overlap);
    }
    const llm_dist_info info = llm_dist_get();
    plan *p = calloc(1, sizeof *p);
    if (!p) return llm_fail(LLM_ENOMEM, "out of memory (the collective plan)");
    p->m = m;
    p->zero_stage = zero_stage;
    p->overlap = overlap;
    p->L = m->cfg.n_layer;
    p->W = info.world_size;
    p->r = info.rank;
    llm_status s = LLM_OK;
    if (p->W > 1) {
        s = check_same(m, zero_stage, overlap);
        if (s == LLM_OK) s = copy_rank0_parameters(m);
        // every rank says whether it got here: one that failed must not leave the others in the
        // transport's set-up (the agreement itself is timed)
        double ok = s == LLM_OK;
        llm_status s2 = llm_dist_all_reduce_sum_f64(&ok, 1);
        if (s == LLM_OK && s2 != LLM_OK) s = s2;
        if (s == LLM_OK && ok < p->W)
            s = llm_fail(LLM_EBACKEND, "rank %d: another rank failed to set up the data-parallel model (its error is in "
                                       "its output)", p->r);
    }
    // a launched process gets the transport even alone (mpirun -np 1, or a world of one without
    // MPI): the data-parallel path then runs as it would with more ranks, which is how one GPU
    // checks it; a plain process gets none
    if (s == LLM_OK) s = dist_model_comm(&p->comm, &p->comm_owned, m->device);
    if (s == LLM_OK) {
        layout(p); // count
        p->pieces = calloc(p->npieces, sizeof *p->pieces);
        p->bucket_first = calloc((size_t)p->L + 2, sizeof *p->bucket_first);
        p->started = calloc((size_t)p->L + 1, 1);
        p->spans = calloc(p->npieces, sizeof *p->spans);
        if (!p->pieces || !p->bucket_first || !p->started || !p->spans)
            s = llm_fail(LLM_ENOMEM, "out of memory (the collective plan)");
    }
    if (s == LLM_OK) {
        layout(p);
        s = make_parts(p);
    }
    if (s != LLM_OK) {
        plan_free(p);
        return s;
    }
    p->hooks.ctx = p;
    p->hooks.backward_begin = hook_backward_begin;
    p->hooks.grads_ready = hook_grads_ready;
    p->hooks.reduce = hook_reduce;
    p->hooks.sum_norm = hook_sum_norm;
    p->hooks.updated = hook_updated;
    p->hooks.gather = hook_gather;
    p->hooks.quiesce = hook_quiesce;
    m->dist_plan = p;
    m->dist_free = plan_free;
    m->dist = p->comm ? &p->hooks : NULL; // one process: the plain step, nothing moves
    return LLM_OK;
}

int llm_dist_zero_stage(const llm_model *m) {
    const plan *p = m ? m->dist_plan : NULL;
    return p ? p->zero_stage : -1;
}

llm_status llm_dist_backward(llm_model *m, float loss_scale, int sync) {
    if (!m) return llm_fail(LLM_EINVAL, "model is NULL");
    plan *p = m->dist_plan;
    if (!p) return llm_backward(m, loss_scale);
    p->sync = sync != 0;
    llm_status s = llm_backward(m, loss_scale);
    if (s == LLM_OK && p->sync && p->comm) p->synced = 1;
    p->sync = 0;
    return s;
}

size_t llm_dist_shard(const llm_model *m, size_t *starts, size_t *lens, size_t max) {
    const plan *p = m ? m->dist_plan : NULL;
    if (!p) return 0;
    const gpt2_part *parts = p->hooks.parts;
    const size_t n = p->hooks.nparts;
    if (p->hooks.whole) { // the whole buffer
        if (max > 0) {
            if (starts) starts[0] = 0;
            if (lens) lens[0] = m->total;
        }
        return 1;
    }
    for (size_t k = 0; k < n && k < max; k++) {
        if (starts) starts[k] = parts[k].offset;
        if (lens) lens[k] = parts[k].n;
    }
    return n;
}

// ----------------------------------------------------------------------------
// checkpoints: the full moments, whatever the shard

llm_status llm_dist_save_state(llm_model *m, const char *path, const char *json, const llm_state_tag *tag) {
    if (!m || !path) return llm_fail(LLM_EINVAL, "model or path is NULL");
    plan *p = m->dist_plan;
    if (!p || !p->comm) return llm_dist_get().rank == 0 ? llm_model_save_state(m, path, json, tag) : LLM_OK;
    const int root = p->r == 0;
    // before the first step, or with full moments not yet sharded: the model's state is complete
    if (!m->m || m->moment_elems == m->total) return root ? llm_model_save_state(m, path, json, tag) : LLM_OK;
    // zero_stage 1: every rank places its shard at its flat positions of full-size buffers, the
    // all-gather fills in the other ranks' parts, rank 0 writes them
    const llm_ops *ops = m->ops;
    float *mm = NULL, *vv = NULL;
    llm_status s = ops->alloc((void **)&mm, m->total * sizeof(float));
    if (s == LLM_OK) s = ops->alloc((void **)&vv, m->total * sizeof(float));
    double failed = s != LLM_OK; // an allocation failure must not leave the others in the gather
    llm_status s2 = p->comm->ops->all_reduce_sum_f64(p->comm, &failed, 1, "the agreement to save a checkpoint");
    if (s == LLM_OK && s2 != LLM_OK) s = s2;
    if (s == LLM_OK && failed > 0) s = llm_fail(LLM_ENOMEM, "a rank could not allocate the full optimizer state for %s", path);
    for (size_t k = 0; s == LLM_OK && k < p->hooks.nparts; k++) {
        const gpt2_part *q = &p->hooks.parts[k];
        s = ops->copy(mm + q->offset, m->m + q->moment, q->n * sizeof(float));
        if (s == LLM_OK) s = ops->copy(vv + q->offset, m->v + q->moment, q->n * sizeof(float));
    }
    for (int pass = 0; s == LLM_OK && pass < 2; pass++) {
        for (size_t j = 0; j < p->npieces; j++)
            p->spans[j] = (llm_comm_span){(pass == 0 ? mm : vv) + p->pieces[j].offset, p->pieces[j].n};
        s = p->comm->ops->start(p->comm, LLM_COMM_ALL_GATHER, p->spans, (int)p->npieces, LLM_F32,
                                "the gather of the AdamW moments for a checkpoint");
    }
    if (s == LLM_OK) s = p->comm->ops->wait(p->comm);
    if (s == LLM_OK && root) {
        float *keep_m = m->m, *keep_v = m->v;
        const size_t keep_n = m->moment_elems;
        m->m = mm; // lent to the file writer, taken back below
        m->v = vv;
        m->moment_elems = m->total;
        s = llm_model_save_state(m, path, json, tag);
        m->m = keep_m;
        m->v = keep_v;
        m->moment_elems = keep_n;
    }
    ops->free(mm);
    ops->free(vv);
    return s;
}
