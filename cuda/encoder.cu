/*
 * encoder.cu — GPT-2 input embedding on CUDA: token embedding + position embedding
 * (mirrors csrc/cpu/encoder.c).
 *
 * Shapes (letters defined in ops.h):
 *   out, dout: (B,T,C) floatX   inp: (B,T) int32 token ids in [0,Vp)   wte, dwte: (Vp,C)
 *   wpe, dwpe: (maxT,C), T <= maxT
 *   out[b,t,:] = wte[inp[b,t],:] + wpe[t,:]
 * Gradient convention (ops.h): dwte += and dwpe += (parameters).
 *
 * Forward: one thread per pack of channels of one position (128-bit loads when C is a multiple
 * of the pack and the pointers are aligned).
 *
 * Backward, deterministic without atomics. Several positions may carry the same token, so
 * dwte's rows receive sums over position lists; the lists are built on the host:
 *   1. the (B,T) ids on the host: inp_host when the caller has them (the model keeps the ids of
 *      its forward), so nothing waits for the GPU; otherwise copied from inp to pinned host
 *      memory, which synchronises the stream;
 *   2. counting sort the positions by token (stable: ascending position within a token), into
 *      pinned host scratch,
 *   3. upload [positions | tokens | bucket starts] asynchronously and run one block per distinct
 *      token, its threads over channels, each summing its channel over the token's positions
 *      in order;
 *   4. dwpe: one thread per (t, channel pack) sums over b in order.
 * The upload in 3 reads the pinned scratch after the call has returned. An event recorded
 * behind it guards the scratch: before the host writes it again (the next call's sort) it waits
 * for that event, so a copy still in flight never sees the next call's lists (common.cuh:
 * host scratch contract).
 * Negative token ids are rejected (LLM_EINVAL); ids >= Vp cannot be checked here
 * (Vp is not an argument) — the model validates ids before uploading them.
 */
#include <algorithm>
#include <vector>

#include "cuda_ops.cuh"

#define ENC_THREADS 256

// ----------------------------------------------------------------------------
// kernels

template <typename floatX, int P>
static __global__ void encoder_forward_kernel(floatX *out, const int32_t *inp, const floatX *wte, const floatX *wpe,
                                              size_t BT, int T, int C) {
    const size_t packs = BT * (size_t)(C / P), stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < packs; i += stride) {
        const size_t bt = i * P / C, c = i * P % C, t = bt % (size_t)T;
        const Pack<floatX, P> a = load_pack<floatX, P>(wte + (size_t)inp[bt] * C + c);
        const Pack<floatX, P> b = load_pack<floatX, P>(wpe + t * C + c);
        Pack<floatX, P> o;
#pragma unroll
        for (int k = 0; k < P; k++) o.v[k] = from_f32<floatX>(to_f32(a.v[k]) + to_f32(b.v[k]));
        store_pack<floatX, P>(out + bt * C + c, o);
    }
}

// One block per distinct token u: dwte[tok[u], :] += sum over positions pos[start[u] .. start[u+1]).
template <typename floatX, int P>
static __global__ void encoder_backward_wte_kernel(floatX *dwte, const floatX *dout, const int32_t *pos,
                                                   const int32_t *tok, const int32_t *start, int C) {
    const int u = blockIdx.x;
    const int k0 = start[u], k1 = start[u + 1];
    floatX *row = dwte + (size_t)tok[u] * C;
    for (int j = threadIdx.x; j < C / P; j += blockDim.x) {
        float acc[P];
#pragma unroll
        for (int k = 0; k < P; k++) acc[k] = 0.0f;
        for (int q = k0; q < k1; q++) {
            const Pack<floatX, P> d = load_pack<floatX, P>(dout + (size_t)pos[q] * C + (size_t)j * P);
#pragma unroll
            for (int k = 0; k < P; k++) acc[k] += to_f32(d.v[k]);
        }
        Pack<floatX, P> g = load_pack<floatX, P>(row + (size_t)j * P);
#pragma unroll
        for (int k = 0; k < P; k++) g.v[k] = from_f32<floatX>(to_f32(g.v[k]) + acc[k]);
        store_pack<floatX, P>(row + (size_t)j * P, g);
    }
}

// One thread per (t, channel pack): dwpe[t, c] += sum over b of dout[b, t, c].
template <typename floatX, int P>
static __global__ void encoder_backward_wpe_kernel(floatX *dwpe, const floatX *dout, int B, int T, int C) {
    const size_t packs = (size_t)T * (size_t)(C / P), stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < packs; i += stride) {
        const size_t t = i * P / C, c = i * P % C;
        float acc[P];
#pragma unroll
        for (int k = 0; k < P; k++) acc[k] = 0.0f;
        for (int b = 0; b < B; b++) {
            const Pack<floatX, P> d = load_pack<floatX, P>(dout + ((size_t)b * T + t) * C + c);
#pragma unroll
            for (int k = 0; k < P; k++) acc[k] += to_f32(d.v[k]);
        }
        Pack<floatX, P> g = load_pack<floatX, P>(dwpe + t * C + c);
#pragma unroll
        for (int k = 0; k < P; k++) g.v[k] = from_f32<floatX>(to_f32(g.v[k]) + acc[k]);
        store_pack<floatX, P>(dwpe + t * C + c, g);
    }
}

// ----------------------------------------------------------------------------
// launchers

template <typename floatX>
static void encoder_forward_launch(floatX *out, const int32_t *inp, const floatX *wte, const floatX *wpe, size_t BT,
                                   int T, int C, cudaStream_t stream) {
    constexpr int P = pack128<floatX>();
    if (C % P == 0 && aligned16(out, wte, wpe))
        encoder_forward_kernel<floatX, P><<<grid_for(BT * (C / P), ENC_THREADS), ENC_THREADS, 0, stream>>>(
            out, inp, wte, wpe, BT, T, C);
    else
        encoder_forward_kernel<floatX, 1><<<grid_for(BT * C, ENC_THREADS), ENC_THREADS, 0, stream>>>(
            out, inp, wte, wpe, BT, T, C);
}

template <typename floatX>
static void encoder_backward_launch(floatX *dwte, floatX *dwpe, const floatX *dout, const int32_t *pos,
                                    const int32_t *tok, const int32_t *start, int distinct, int B, int T, int C,
                                    cudaStream_t stream) {
    constexpr int P = pack128<floatX>();
    // dwte: one thread per channel pack, up to ENC_THREADS (a whole warp at least)
    auto wte_threads = [C](int p) { return (unsigned)std::min(ENC_THREADS, std::max(32, (C / p + 31) / 32 * 32)); };
    if (C % P == 0 && aligned16(dwte, dwpe, dout)) {
        encoder_backward_wte_kernel<floatX, P><<<distinct, wte_threads(P), 0, stream>>>(dwte, dout, pos, tok, start, C);
        encoder_backward_wpe_kernel<floatX, P><<<grid_for((size_t)T * (C / P), ENC_THREADS), ENC_THREADS, 0,
                                                 stream>>>(dwpe, dout, B, T, C);
    } else {
        encoder_backward_wte_kernel<floatX, 1><<<distinct, wte_threads(1), 0, stream>>>(dwte, dout, pos, tok, start, C);
        encoder_backward_wpe_kernel<floatX, 1><<<grid_for((size_t)T * C, ENC_THREADS), ENC_THREADS, 0, stream>>>(
            dwpe, dout, B, T, C);
    }
}

// ----------------------------------------------------------------------------
// host bucketing

// Sorts the positions 0..BT by token id, stably (ascending position within a token): pos (BT),
// tok (the distinct tokens, ascending), start (distinct + 1 offsets into pos). Returns the number
// of distinct tokens, -1 when an id is negative, -2 when host memory runs out.
static int bucket_positions(const int32_t *ids, int BT, int32_t *pos, int32_t *tok, int32_t *start) {
    int32_t max_id = 0;
    for (int i = 0; i < BT; i++) {
        if (ids[i] < 0) return -1;
        if (ids[i] > max_id) max_id = ids[i];
    }
    try {
        if ((size_t)max_id <= ((size_t)1 << 24)) {
            // counting sort over the id range (a vocabulary)
            std::vector<int32_t> offset((size_t)max_id + 1, 0);
            for (int i = 0; i < BT; i++) offset[ids[i]]++;
            int32_t total = 0;
            for (size_t v = 0; v <= (size_t)max_id; v++) {
                const int32_t n = offset[v];
                offset[v] = total; // first free slot of bucket v
                total += n;
            }
            for (int i = 0; i < BT; i++) pos[offset[ids[i]]++] = i;
        } else {
            // absurdly large ids: a comparison sort instead of a huge counting array
            for (int i = 0; i < BT; i++) pos[i] = i;
            std::stable_sort(pos, pos + BT, [ids](int32_t a, int32_t b) { return ids[a] < ids[b]; });
        }
    } catch (...) {
        return -2;
    }
    int distinct = 0;
    for (int k = 0; k < BT; k++) {
        if (k == 0 || ids[pos[k]] != ids[pos[k - 1]]) {
            tok[distinct] = ids[pos[k]];
            start[distinct] = k;
            distinct++;
        }
    }
    start[distinct] = BT;
    return distinct;
}

// ----------------------------------------------------------------------------
// the pinned scratch's pending upload

// Recorded on the stream behind the asynchronous upload from host scratch; created on first use.
static cudaEvent_t upload_done = nullptr;
static bool upload_pending = false;

// Waits until the host scratch is no longer read by an upload of an earlier call.
static llm_status host_scratch_wait(void) {
    if (upload_pending) {
        CUDA_TRY(cudaEventSynchronize(upload_done));
        upload_pending = false;
    }
    return LLM_OK;
}

// Marks the host scratch as read by the copies issued so far on stream.
static llm_status host_scratch_record(cudaStream_t stream) {
    if (!upload_done) CUDA_TRY(cudaEventCreateWithFlags(&upload_done, cudaEventDisableTiming));
    CUDA_TRY(cudaEventRecord(upload_done, stream));
    upload_pending = true;
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// entries

template <typename floatX>
llm_status cuda_encoder_forward(floatX *out, const int32_t *inp, const floatX *wte, const floatX *wpe, int B,
                                int T, int C, cudaStream_t stream) {
    if (B <= 0 || T <= 0 || C <= 0)
        return llm_fail(LLM_EINVAL, "encoder_forward: sizes must be positive (B=%d T=%d C=%d)", B, T, C);
    if (!out || !inp || !wte || !wpe) return llm_fail(LLM_EINVAL, "encoder_forward: NULL pointer");
    encoder_forward_launch(out, inp, wte, wpe, (size_t)B * T, T, C, stream);
    CUDA_TRY_LAUNCH("encoder_forward");
    return LLM_OK;
}

template <typename floatX>
llm_status cuda_encoder_backward(floatX *dwte, floatX *dwpe, const floatX *dout, const int32_t *inp,
                                 const int32_t *inp_host, int B, int T, int C, cudaStream_t stream) {
    if (B <= 0 || T <= 0 || C <= 0)
        return llm_fail(LLM_EINVAL, "encoder_backward: sizes must be positive (B=%d T=%d C=%d)", B, T, C);
    if ((size_t)B * T > (size_t)(INT32_MAX / 4))
        return llm_fail(LLM_EINVAL, "encoder_backward: B*T=%zu positions is too many", (size_t)B * T);
    if (!dwte || !dwpe || !dout || !inp) return llm_fail(LLM_EINVAL, "encoder_backward: NULL pointer");
    const int BT = B * T;
    // host layout: ids (BT) | pos (BT) | tok (BT) | start (BT + 1); [pos .. start] is uploaded
    const size_t upload = 3 * (size_t)BT + 1;
    void *hbuf, *dbuf;
    LLM_TRY(cuda_host_scratch(&hbuf, (BT + upload) * sizeof(int32_t)));
    LLM_TRY(cuda_device_scratch(&dbuf, upload * sizeof(int32_t)));
    LLM_TRY(host_scratch_wait()); // an earlier call's upload may still read the scratch
    int32_t *copy = (int32_t *)hbuf, *pos = copy + BT, *tok = pos + BT, *start = tok + BT;
    const int32_t *ids = inp_host;
    if (!ids) { // read them back: this waits for the work queued before
        CUDA_TRY(cudaMemcpyAsync(copy, inp, (size_t)BT * sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
        CUDA_TRY(cudaStreamSynchronize(stream));
        ids = copy;
    }
    const int distinct = bucket_positions(ids, BT, pos, tok, start);
    if (distinct == -1) return llm_fail(LLM_EINVAL, "encoder_backward: negative token id");
    if (distinct < 0) return llm_fail(LLM_ENOMEM, "encoder_backward: out of host memory sorting token ids");
    // pos | tok | start go up in one copy (tok and start keep their BT-sized slots)
    int32_t *dpos = (int32_t *)dbuf, *dtok = dpos + BT, *dstart = dtok + BT;
    CUDA_TRY(cudaMemcpyAsync(dpos, pos, upload * sizeof(int32_t), cudaMemcpyHostToDevice, stream));
    LLM_TRY(host_scratch_record(stream));
    encoder_backward_launch(dwte, dwpe, dout, dpos, dtok, dstart, distinct, B, T, C, stream);
    CUDA_TRY_LAUNCH("encoder_backward");
    return LLM_OK;
}

#define ENC_INSTANTIATE(X)                                                                                         \
    template llm_status cuda_encoder_forward<X>(X *, const int32_t *, const X *, const X *, int, int, int,        \
                                                cudaStream_t);                                                    \
    template llm_status cuda_encoder_backward<X>(X *, X *, const X *, const int32_t *, const int32_t *, int, int, int, \
                                                 cudaStream_t);
ENC_INSTANTIATE(float)
ENC_INSTANTIATE(bf16)
