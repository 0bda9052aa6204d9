/*
 * flash_attention.cu — causal multi-head self-attention without the (T,T) matrix in memory
 * (FlashAttention-2: Dao, "FlashAttention-2: Faster Attention with Better Parallelism and Work
 * Partitioning", 2023; Dao et al., "FlashAttention", 2022). Shapes: flash_attention.cuh.
 *
 * Forward, per (query tile, b, h): keep the tile's queries on chip, stream key/value tiles up to
 * the diagonal (causal block skipping: tiles wholly above the diagonal are never loaded), and
 * keep for each query row a running max m and sum l of exp(score - m) (online softmax, fp32),
 * rescaling the output accumulator when the max grows. At the end out = acc / l and the row's
 * logsumexp lse = m + log(l) is saved: it is all the backward needs to rebuild P exactly.
 *
 * Backward (with D_i = rowsum(dO_i ∘ O_i), so that dS = P ∘ (dP − D)):
 *   1. dot kernel:  D (B,NH,T) into the scratch buffer;
 *   2. dK/dV kernel, per (key tile, b, h): stream the query tiles at or below the diagonal,
 *      recompute P^T = exp(K Q^T·scale − lse) and dP^T = V dO^T, accumulate dV += P^T dO and
 *      dK += dS^T Q · scale in registers, store them into dqkv once at the end;
 *   3. dQ kernel, per (query tile, b, h): stream key tiles up to the diagonal, recompute P and
 *      dP, accumulate dQ += dS K · scale in registers, store it once at the end.
 * Every output element has exactly one owner CTA, so there are no atomics and the result is
 * deterministic (run to run, bit for bit), at the price of recomputing S and dP twice. The
 * owners cover dqkv completely (the dK/dV grid every key row < T, the dQ grid every query row
 * < T, each over all hs columns), which is what lets the backward write dqkv instead of adding.
 *
 * Two implementations behind one interface:
 *   - float: CUDA cores, fp32 throughout; one key (or query) per lane, 4 rows per warp; the
 *     parity reference of the tensor-core path and of the fp32 model.
 *   - __nv_bfloat16: tensor cores through `mma.sync.m16n8k16` (bf16 inputs, fp32 accumulation)
 *     with operands fed by `ldmatrix` from padded shared-memory tiles, filled by `cp.async`
 *     with double buffering. Inline PTX rather than nvcuda::wmma because the online softmax
 *     works directly on the accumulator registers (their layout is documented for mma.sync and
 *     opaque for wmma, which would force a round trip through shared memory per tile), and the
 *     accumulator of S = QK^T converts in registers into the A operand of P·V.
 *     Softmax runs in the log2 domain (exp2f with scores pre-multiplied by log2(e)).
 * Tiles (rows x streamed rows): fp32 32 x 32, 8 warps; bf16 4 warps of 16 rows: forward 64 x 64,
 * dK/dV 64 keys x 64|32 queries, dQ 64 queries x 64|32 keys (hs 64|128, the smaller tile keeping
 * the hs-128 accumulators in registers). Dynamic shared memory up to 85 KiB (opted in per call).
 *
 * Bounds: rows (queries or keys) at or beyond T are loaded as zeros into shared memory (so no
 * garbage, NaN included, can reach an accumulator), masked out of every softmax/gradient, and
 * never stored. Causality masks key j > query i; for a valid row that also masks every key >= T.
 *
 * Gradient convention (csrc/core/ops.h): dqkv, out and lse are written (=); dqkv's previous contents
 * are never read.
 */
#include <math.h>
#include <string.h>

#include "flash_attention.cuh"

// ----------------------------------------------------------------------------
// shared helpers

static constexpr float kLog2e = 1.4426950408889634f;
static constexpr float kLn2 = 0.6931471805599453f;
static constexpr unsigned kFullMask = 0xffffffffu;
// Fully unrolled loop: the register arrays it indexes stay in registers.
#define FA_UNROLL _Pragma("unroll")

// Tiles of `tile` rows that cover n rows.
static __host__ __device__ __forceinline__ int tiles_of(int n, int tile) { return (n + tile - 1) / tile; }

// Element offset of row t of part (0 q, 1 k, 2 v) of head h in a (B,T,3C) qkv buffer.
static __device__ __forceinline__ size_t qkv_index(int b, int t, int part, int h, int T, int C, int hs) {
    return ((size_t)b * T + t) * 3 * (size_t)C + (size_t)part * C + (size_t)h * hs;
}
// Element offset of row t of head h in a (B,T,C) buffer.
static __device__ __forceinline__ size_t out_index(int b, int t, int h, int T, int C, int hs) {
    return ((size_t)b * T + t) * (size_t)C + (size_t)h * hs;
}

// D[(b*NH+h)*T + t] = sum_d dout[b,t,h,d] * out[b,t,h,d], fp32. One warp per (b,h,t) row.
template <typename floatX, int HS>
static __global__ void flash_dot_kernel(float *D, const floatX *dout, const floatX *out, int B, int T, int NH) {
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= (int64_t)B * NH * T) return; // warp-uniform: no shuffle below is left half-done
    const int bh = (int)(row / T), t = (int)(row % T), b = bh / NH, h = bh % NH;
    const size_t off = out_index(b, t, h, T, NH * HS, HS);
    float s = 0.0f;
    for (int d = lane; d < HS; d += 32) s += to_f32(dout[off + d]) * to_f32(out[off + d]);
    s = warp_sum(s);
    if (lane == 0) D[row] = s;
}

// ----------------------------------------------------------------------------
// fp32 kernels (CUDA cores). A CTA is 8 warps; a tile is 32 rows; warp w owns rows 4w..4w+3 of
// its CTA's tile and lane j the j-th row of the streamed tile. Rows that lanes read by index
// are stored with a padded stride HS+1 (conflict-free); rows read by broadcast are not padded.

static constexpr int kF32Tile = 32, kF32Warps = 8, kF32Threads = 32 * kF32Warps;
static constexpr int kF32RowsPerWarp = kF32Tile / kF32Warps;

// dst[r*stride + d] = src row (t0 + r), d < HS, for r < kF32Tile; zeros for rows >= T.
// src points at element d = 0 of row t = 0; rows are row_stride elements apart.
template <int HS, typename floatX>
static __device__ void f32_load_tile(float *dst, int stride, const floatX *src, size_t row_stride, int t0,
                                     int T, float mul) {
    for (int idx = threadIdx.x; idx < kF32Tile * HS; idx += kF32Threads) {
        const int r = idx / HS, d = idx % HS, t = t0 + r;
        dst[r * stride + d] = t < T ? to_f32(src[(size_t)t * row_stride + d]) * mul : 0.0f;
    }
}

template <int HS>
static __global__ void __launch_bounds__(kF32Threads)
    flash_forward_f32_kernel(float *out, float *lse, const float *qkv, int T, int C, int NH, float scale) {
    constexpr int NC = HS / 32; // columns per lane
    extern __shared__ float smem[];
    float *Qs = smem;                     // [32][HS]   q * scale, broadcast reads
    float *Ks = Qs + kF32Tile * HS;       // [32][HS+1] lane j reads row j
    float *Vs = Ks + kF32Tile * (HS + 1); // [32][HS]   lanes read consecutive columns
    const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
    const int qt = gridDim.y - 1 - blockIdx.y; // longest rows first
    const int q0 = qt * kF32Tile, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t rs = 3 * (size_t)C;
    const float *qbase = qkv + qkv_index(b, 0, 0, h, T, C, HS);

    f32_load_tile<HS>(Qs, HS, qbase, rs, q0, T, scale);
    float m[kF32RowsPerWarp], l[kF32RowsPerWarp], acc[kF32RowsPerWarp][NC];
    FA_UNROLL for (int i = 0; i < kF32RowsPerWarp; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
        FA_UNROLL for (int c = 0; c < NC; c++) acc[i][c] = 0.0f;
    }
    for (int kt = 0; kt <= qt; kt++) { // key tiles up to the diagonal (same tile size)
        const int k0 = kt * kF32Tile;
        __syncthreads(); // every warp is done with the previous K/V tile
        f32_load_tile<HS>(Ks, HS + 1, qbase + C, rs, k0, T, 1.0f);
        f32_load_tile<HS>(Vs, HS, qbase + 2 * C, rs, k0, T, 1.0f);
        __syncthreads(); // Q, K, V visible to all
        FA_UNROLL for (int i = 0; i < kF32RowsPerWarp; i++) {
            const int r = warp * kF32RowsPerWarp + i, tq = q0 + r, tk = k0 + lane;
            float s = 0.0f;
            for (int d = 0; d < HS; d++) s += Qs[r * HS + d] * Ks[lane * (HS + 1) + d];
            if (tk > tq) s = -INFINITY; // causal; also masks keys >= T for rows < T
            // key k0 <= tq is never masked, so m_new is finite
            const float m_new = fmaxf(m[i], warp_max(s));
            const float p = expf(s - m_new), alpha = expf(m[i] - m_new);
            l[i] = l[i] * alpha + warp_sum(p);
            m[i] = m_new;
            FA_UNROLL for (int c = 0; c < NC; c++) acc[i][c] *= alpha;
            FA_UNROLL for (int j = 0; j < kF32Tile; j++) {
                const float pj = __shfl_sync(kFullMask, p, j);
                FA_UNROLL for (int c = 0; c < NC; c++) acc[i][c] += pj * Vs[j * HS + lane + 32 * c];
            }
        }
    }
    FA_UNROLL for (int i = 0; i < kF32RowsPerWarp; i++) {
        const int tq = q0 + warp * kF32RowsPerWarp + i;
        if (tq >= T) continue;
        float *o = out + out_index(b, tq, h, T, C, HS);
        FA_UNROLL for (int c = 0; c < NC; c++) o[lane + 32 * c] = acc[i][c] / l[i];
        if (lane == 0) lse[(size_t)bh * T + tq] = m[i] + logf(l[i]);
    }
}

// Per (key tile, b, h): dK, dV of the tile's 32 keys; lane = query within the streamed tile.
template <int HS>
static __global__ void __launch_bounds__(kF32Threads)
    flash_backward_dkdv_f32_kernel(float *dqkv, const float *dout, const float *qkv, const float *lse,
                                   const float *D, int T, int C, int NH, float scale) {
    constexpr int NC = HS / 32;
    extern __shared__ float smem[];
    float *Ks = smem;                      // [32][HS]   broadcast reads
    float *Vs = Ks + kF32Tile * HS;        // [32][HS]
    float *Qs = Vs + kF32Tile * HS;        // [32][HS+1] lane i reads row i
    float *dOs = Qs + kF32Tile * (HS + 1); // [32][HS+1]
    float *Ls = dOs + kF32Tile * (HS + 1); // [32] lse of the query tile
    float *Ds = Ls + kF32Tile;             // [32] D of the query tile
    const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
    const int kt = blockIdx.y; // low key tiles have the most queries: scheduled first
    const int k0 = kt * kF32Tile, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t rs = 3 * (size_t)C;
    const float *qbase = qkv + qkv_index(b, 0, 0, h, T, C, HS);
    const float *dobase = dout + out_index(b, 0, h, T, C, HS);

    f32_load_tile<HS>(Ks, HS, qbase + C, rs, k0, T, 1.0f);
    f32_load_tile<HS>(Vs, HS, qbase + 2 * C, rs, k0, T, 1.0f);
    float dk[kF32RowsPerWarp][NC], dv[kF32RowsPerWarp][NC];
    FA_UNROLL for (int i = 0; i < kF32RowsPerWarp; i++)
        FA_UNROLL for (int c = 0; c < NC; c++) dk[i][c] = dv[i][c] = 0.0f;
    const int nq = tiles_of(T, kF32Tile);
    for (int qt = kt; qt < nq; qt++) { // query tiles at or below the diagonal
        const int q0 = qt * kF32Tile;
        __syncthreads(); // every warp is done with the previous query tile
        f32_load_tile<HS>(Qs, HS + 1, qbase, rs, q0, T, 1.0f);
        f32_load_tile<HS>(dOs, HS + 1, dobase, C, q0, T, 1.0f);
        if (threadIdx.x < kF32Tile) {
            const int t = q0 + threadIdx.x;
            Ls[threadIdx.x] = t < T ? lse[(size_t)bh * T + t] : 0.0f;
            Ds[threadIdx.x] = t < T ? D[(size_t)bh * T + t] : 0.0f;
        }
        __syncthreads();
        const int tq = q0 + lane;
        FA_UNROLL for (int i = 0; i < kF32RowsPerWarp; i++) {
            const int r = warp * kF32RowsPerWarp + i, tk = k0 + r;
            float s = 0.0f, dp = 0.0f;
            for (int d = 0; d < HS; d++) {
                s += Qs[lane * (HS + 1) + d] * Ks[r * HS + d];
                dp += dOs[lane * (HS + 1) + d] * Vs[r * HS + d];
            }
            const float p = (tq >= tk && tq < T) ? expf(s * scale - Ls[lane]) : 0.0f;
            const float ds = p * (dp - Ds[lane]);
            FA_UNROLL for (int ii = 0; ii < kF32Tile; ii++) {
                const float pi = __shfl_sync(kFullMask, p, ii), dsi = __shfl_sync(kFullMask, ds, ii);
                FA_UNROLL for (int c = 0; c < NC; c++) {
                    dv[i][c] += pi * dOs[ii * (HS + 1) + lane + 32 * c];
                    dk[i][c] += dsi * Qs[ii * (HS + 1) + lane + 32 * c];
                }
            }
        }
    }
    FA_UNROLL for (int i = 0; i < kF32RowsPerWarp; i++) {
        const int tk = k0 + warp * kF32RowsPerWarp + i;
        if (tk >= T) continue;
        float *g = dqkv + qkv_index(b, tk, 1, h, T, C, HS);
        FA_UNROLL for (int c = 0; c < NC; c++) {
            g[lane + 32 * c] = dk[i][c] * scale;
            g[C + lane + 32 * c] = dv[i][c];
        }
    }
}

// Per (query tile, b, h): dQ of the tile's 32 queries; lane = key within the streamed tile.
template <int HS>
static __global__ void __launch_bounds__(kF32Threads)
    flash_backward_dq_f32_kernel(float *dqkv, const float *dout, const float *qkv, const float *lse,
                                 const float *D, int T, int C, int NH, float scale) {
    constexpr int NC = HS / 32;
    extern __shared__ float smem[];
    float *Qs = smem;                     // [32][HS]   broadcast reads
    float *dOs = Qs + kF32Tile * HS;      // [32][HS]
    float *Ks = dOs + kF32Tile * HS;      // [32][HS+1] lane j reads row j
    float *Vs = Ks + kF32Tile * (HS + 1); // [32][HS+1]
    const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
    const int qt = gridDim.y - 1 - blockIdx.y;
    const int q0 = qt * kF32Tile, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t rs = 3 * (size_t)C;
    const float *qbase = qkv + qkv_index(b, 0, 0, h, T, C, HS);

    f32_load_tile<HS>(Qs, HS, qbase, rs, q0, T, 1.0f);
    f32_load_tile<HS>(dOs, HS, dout + out_index(b, 0, h, T, C, HS), C, q0, T, 1.0f);
    float L[kF32RowsPerWarp], Dr[kF32RowsPerWarp], dq[kF32RowsPerWarp][NC];
    FA_UNROLL for (int i = 0; i < kF32RowsPerWarp; i++) {
        const int tq = q0 + warp * kF32RowsPerWarp + i;
        L[i] = tq < T ? lse[(size_t)bh * T + tq] : 0.0f;
        Dr[i] = tq < T ? D[(size_t)bh * T + tq] : 0.0f;
        FA_UNROLL for (int c = 0; c < NC; c++) dq[i][c] = 0.0f;
    }
    for (int kt = 0; kt <= qt; kt++) {
        const int k0 = kt * kF32Tile;
        __syncthreads();
        f32_load_tile<HS>(Ks, HS + 1, qbase + C, rs, k0, T, 1.0f);
        f32_load_tile<HS>(Vs, HS + 1, qbase + 2 * C, rs, k0, T, 1.0f);
        __syncthreads();
        const int tk = k0 + lane;
        FA_UNROLL for (int i = 0; i < kF32RowsPerWarp; i++) {
            const int r = warp * kF32RowsPerWarp + i, tq = q0 + r;
            float s = 0.0f, dp = 0.0f;
            for (int d = 0; d < HS; d++) {
                s += Qs[r * HS + d] * Ks[lane * (HS + 1) + d];
                dp += dOs[r * HS + d] * Vs[lane * (HS + 1) + d];
            }
            const float p = (tk <= tq && tq < T) ? expf(s * scale - L[i]) : 0.0f;
            const float ds = p * (dp - Dr[i]);
            FA_UNROLL for (int j = 0; j < kF32Tile; j++) {
                const float dsj = __shfl_sync(kFullMask, ds, j);
                FA_UNROLL for (int c = 0; c < NC; c++) dq[i][c] += dsj * Ks[j * (HS + 1) + lane + 32 * c];
            }
        }
    }
    FA_UNROLL for (int i = 0; i < kF32RowsPerWarp; i++) {
        const int tq = q0 + warp * kF32RowsPerWarp + i;
        if (tq >= T) continue;
        float *g = dqkv + qkv_index(b, tq, 0, h, T, C, HS);
        FA_UNROLL for (int c = 0; c < NC; c++) g[lane + 32 * c] = dq[i][c] * scale;
    }
}

// ----------------------------------------------------------------------------
// bf16 tensor-core building blocks (sm_80+)
//
// mma.m16n8k16, lane = 4*g + t (g = lane/4 "group", t = lane%4):
//   A 16x16 (row-major): a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..]
//   B 16x8  (k x n):     b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]
//   C 16x8  (fp32):      c0,c1 = C[g][2t..2t+1], c2,c3 = C[g+8][2t..2t+1]
// (each 32-bit register holds two bf16, the lower index in the low half).
// ldmatrix.x4: lanes 8i..8i+7 give the row addresses of 8x8 matrix i; register i of lane
// 4g+t receives M_i[g][2t..2t+1] (or, with .trans, M_i[2t][g] and M_i[2t+1][g]).

// Shared-memory row stride of a bf16 tile: HS + 8 elements makes the 8 rows of every ldmatrix
// 8x8 matrix fall in 8 distinct 16-byte bank groups (stride/16 bytes is odd), and keeps rows
// 16-byte aligned for cp.async.
template <int HS>
struct BfTile {
    static constexpr int kStride = HS + 8;
};
static constexpr int kBfWarps = 4, kBfThreads = 32 * kBfWarps;

static __device__ __forceinline__ uint32_t smem_addr(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}
static __device__ __forceinline__ void cp_async16(void *dst_smem, const void *src_global) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(dst_smem)), "l"(src_global)
                 : "memory");
}
static __device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
static __device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

static __device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const bf16 *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p))
                 : "memory");
}
static __device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const bf16 *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p))
                 : "memory");
}
// c += a * b (16x8x16, bf16 in, fp32 accumulate)
static __device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
static __device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi); // .x (low half) = lo
    uint32_t r;
    memcpy(&r, &v, sizeof r);
    return r;
}
// A operand for rows r0..r0+15, k columns c0..c0+15 of a row-major tile M[row][k].
template <int S>
static __device__ __forceinline__ void load_a(uint32_t a[4], const bf16 *M, int r0, int c0, int lane) {
    const int mi = lane >> 3; // matrices: (r+0,c+0) (r+8,c+0) (r+0,c+8) (r+8,c+8) -> a0 a1 a2 a3
    ldmatrix_x4(a, M + (r0 + (lane & 7) + (mi & 1) * 8) * S + c0 + (mi >> 1) * 8);
}
// B operands of two n8 tiles (n0..n0+7 -> b[0],b[1]; n0+8..n0+15 -> b[2],b[3]) for k0..k0+15,
// from a tile stored n-major, M[n][k] (B = M^T: K for S = Q K^T).
template <int S>
static __device__ __forceinline__ void load_b_nk(uint32_t b[4], const bf16 *M, int n0, int k0, int lane) {
    const int mi = lane >> 3; // matrices: (n+0,k+0) (n+0,k+8) (n+8,k+0) (n+8,k+8)
    ldmatrix_x4(b, M + (n0 + (lane & 7) + (mi >> 1) * 8) * S + k0 + (mi & 1) * 8);
}
// The same B operands from a tile stored k-major, M[k][n] (B = M: V for O = P V), transposed
// by ldmatrix on the way.
template <int S>
static __device__ __forceinline__ void load_b_kn(uint32_t b[4], const bf16 *M, int k0, int n0, int lane) {
    const int mi = lane >> 3; // matrices: (k+0,n+0) (k+8,n+0) (k+0,n+8) (k+8,n+8)
    ldmatrix_x4_trans(b, M + (k0 + (lane & 7) + (mi & 1) * 8) * S + n0 + (mi >> 1) * 8);
}
// The A operand of k-step kk from fp32 accumulators c[n-tile][4] of a 16 x (8*NT) product:
// n-tiles 2kk and 2kk+1 are exactly the 16 k-columns of the A fragment (same lane mapping).
static __device__ __forceinline__ void acc_to_a(uint32_t a[4], const float c0[4], const float c1[4]) {
    a[0] = pack_bf16(c0[0], c0[1]);
    a[1] = pack_bf16(c0[2], c0[3]);
    a[2] = pack_bf16(c1[0], c1[1]);
    a[3] = pack_bf16(c1[2], c1[3]);
}
// Rows t0 .. t0+ROWS-1 (HS columns) of src into dst[ROWS][S] with cp.async; zero rows >= T.
// src points at element d = 0 of row t = 0; rows are row_stride elements apart.
template <int HS, int ROWS>
static __device__ __forceinline__ void bf_load_tile(bf16 *dst, const bf16 *src, size_t row_stride, int t0, int T) {
    constexpr int kChunks = HS / 8; // 16-byte chunks per row
    for (int idx = threadIdx.x; idx < ROWS * kChunks; idx += kBfThreads) {
        const int r = idx / kChunks, c = idx % kChunks, t = t0 + r;
        bf16 *d = dst + r * BfTile<HS>::kStride + c * 8;
        if (t < T) cp_async16(d, src + (size_t)t * row_stride + c * 8);
        else *reinterpret_cast<uint4 *>(d) = make_uint4(0u, 0u, 0u, 0u);
    }
}
// p[0..1] = (x0, x1) for two adjacent bf16 in global memory (4-byte aligned), rounded once.
static __device__ __forceinline__ void store_bf16x2(bf16 *p, float x0, float x1) {
    *reinterpret_cast<__nv_bfloat162 *>(p) = __floats2bfloat162_rn(x0, x1);
}

// ----------------------------------------------------------------------------
// bf16 kernels. A CTA is 4 warps; every warp owns 16 rows of its CTA's tile (the M dimension of
// its mma's) and sweeps the whole streamed tile. Streamed tiles are double-buffered: the copy of
// tile n+1 is in flight while tile n is computed. The loop invariant, for every kernel below:
//   at the top of iteration n, tile n is in buffer n&1 and visible to all threads, and every
//   warp has finished reading buffer (n+1)&1, so it may be refilled;
//   the bottom of iteration n waits for its own copies and then __syncthreads().

template <int HS>
struct BfForward {
    static constexpr int kQ = 64, kK = 64, kS = BfTile<HS>::kStride;
    // Q [kQ][kS], K [2][kK][kS], V [2][kK][kS]
    static constexpr size_t kSmemBytes = (size_t)(kQ + 4 * kK) * kS * sizeof(bf16);
};

template <int HS>
static __global__ void __launch_bounds__(kBfThreads)
    flash_forward_bf16_kernel(bf16 *out, float *lse, const bf16 *qkv, int T, int C, int NH, float scale_log2) {
    typedef BfForward<HS> K;
    constexpr int S = K::kS, NT = K::kK / 8, ND = HS / 8; // n8 tiles of S (keys) and of O (head dims)
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *Qs = reinterpret_cast<bf16 *>(smem_raw);
    bf16 *Ks = Qs + K::kQ * S, *Vs = Ks + 2 * K::kK * S;
    const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
    const int q0 = (gridDim.y - 1 - blockIdx.y) * K::kQ; // longest rows first
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, tg = lane & 3;
    const size_t rs = 3 * (size_t)C;
    const bf16 *qbase = qkv + qkv_index(b, 0, 0, h, T, C, HS), *kbase = qbase + C, *vbase = qbase + 2 * C;
    const int n_kt = tiles_of(min(T, q0 + K::kQ), K::kK); // key tiles holding keys <= the last row
    const int wr0 = q0 + warp * 16;                         // the warp's first row

    bf_load_tile<HS, K::kQ>(Qs, qbase, rs, q0, T);
    bf_load_tile<HS, K::kK>(Ks, kbase, rs, 0, T);
    bf_load_tile<HS, K::kK>(Vs, vbase, rs, 0, T);
    cp_async_commit();
    cp_async_wait_all();
    __syncthreads();
    uint32_t qf[HS / 16][4]; // the warp's 16 query rows as A operands, for the whole loop
    FA_UNROLL for (int ks = 0; ks < HS / 16; ks++) load_a<S>(qf[ks], Qs, warp * 16, ks * 16, lane);

    float o[ND][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}; // rows g and g+8
    FA_UNROLL for (int nd = 0; nd < ND; nd++) o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.0f;
    for (int kt = 0; kt < n_kt; kt++) {
        const int buf = kt & 1, k0 = kt * K::kK;
        if (kt + 1 < n_kt) {
            bf_load_tile<HS, K::kK>(Ks + (buf ^ 1) * K::kK * S, kbase, rs, k0 + K::kK, T);
            bf_load_tile<HS, K::kK>(Vs + (buf ^ 1) * K::kK * S, vbase, rs, k0 + K::kK, T);
            cp_async_commit();
        }
        const bf16 *Kb = Ks + buf * K::kK * S, *Vb = Vs + buf * K::kK * S;

        // s = Q K^T for the warp's 16 rows x kK keys, in log2 units
        float s[NT][4];
        FA_UNROLL for (int nt = 0; nt < NT; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
        FA_UNROLL for (int ks = 0; ks < HS / 16; ks++)
            FA_UNROLL for (int np = 0; np < NT / 2; np++) {
                uint32_t bb[4];
                load_b_nk<S>(bb, Kb, np * 16, ks * 16, lane);
                mma_bf16(s[2 * np], qf[ks], bb[0], bb[1]);
                mma_bf16(s[2 * np + 1], qf[ks], bb[2], bb[3]);
            }
        const bool diag = k0 + K::kK - 1 > wr0; // some key of the tile lies after some row of the warp
        FA_UNROLL for (int nt = 0; nt < NT; nt++)
            FA_UNROLL for (int e = 0; e < 4; e++) {
                s[nt][e] *= scale_log2;
                if (diag && k0 + nt * 8 + 2 * tg + (e & 1) > wr0 + g + 8 * (e >> 1)) s[nt][e] = -INFINITY;
            }
        // online softmax: new row max, rescale factor, probabilities; l stays a per-thread partial
        // sum (the 4 lanes of a row share m, so they rescale alike) reduced at the end
        float alpha[2], mb[2];
        FA_UNROLL for (int r = 0; r < 2; r++) {
            float mx = -INFINITY;
            FA_UNROLL for (int nt = 0; nt < NT; nt++) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, 2));
            const float m_new = fmaxf(m[r], mx);
            mb[r] = m_new == -INFINITY ? 0.0f : m_new; // a row with nothing visible yet stays at 0
            alpha[r] = exp2f(m[r] - mb[r]);
            m[r] = m_new;
        }
        float ls[2] = {0.0f, 0.0f};
        FA_UNROLL for (int nt = 0; nt < NT; nt++)
            FA_UNROLL for (int e = 0; e < 4; e++) {
                s[nt][e] = exp2f(s[nt][e] - mb[e >> 1]);
                ls[e >> 1] += s[nt][e];
            }
        FA_UNROLL for (int r = 0; r < 2; r++) l[r] = l[r] * alpha[r] + ls[r];
        FA_UNROLL for (int nd = 0; nd < ND; nd++)
            FA_UNROLL for (int e = 0; e < 4; e++) o[nd][e] *= alpha[e >> 1];
        // o += P V (P rounded to bf16 as the A operand)
        FA_UNROLL for (int kk = 0; kk < NT / 2; kk++) {
            uint32_t a[4];
            acc_to_a(a, s[2 * kk], s[2 * kk + 1]);
            FA_UNROLL for (int np = 0; np < ND / 2; np++) {
                uint32_t bb[4];
                load_b_kn<S>(bb, Vb, kk * 16, np * 16, lane);
                mma_bf16(o[2 * np], a, bb[0], bb[1]);
                mma_bf16(o[2 * np + 1], a, bb[2], bb[3]);
            }
        }
        cp_async_wait_all();
        __syncthreads();
    }
    FA_UNROLL for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(kFullMask, l[r], 1);
        l[r] += __shfl_xor_sync(kFullMask, l[r], 2);
        const int t = wr0 + g + 8 * r;
        if (t >= T) continue;
        const float inv = 1.0f / l[r];
        bf16 *orow = out + out_index(b, t, h, T, C, HS);
        FA_UNROLL for (int nd = 0; nd < ND; nd++)
            *reinterpret_cast<__nv_bfloat162 *>(orow + nd * 8 + 2 * tg) =
                __floats2bfloat162_rn(o[nd][2 * r] * inv, o[nd][2 * r + 1] * inv);
        if (tg == 0) lse[(size_t)bh * T + t] = (m[r] + log2f(l[r])) * kLn2;
    }
}

// Loads lse (times log2 e) and D of query rows t0 .. t0+n-1 into shared memory, 0 for rows >= T.
static __device__ __forceinline__ void bf_load_rows(float *Ls, float *Ds, const float *lse, const float *D, int t0,
                                                    int n, int T) {
    for (int i = threadIdx.x; i < n; i += kBfThreads) {
        const int t = t0 + i;
        Ls[i] = t < T ? lse[t] * kLog2e : 0.0f;
        Ds[i] = t < T ? D[t] : 0.0f;
    }
}

template <int HS>
struct BfBackwardDkDv {
    // kK keys per CTA (16 per warp); query tiles of kQ rows (smaller at hs 128 to fit registers)
    static constexpr int kK = 64, kQ = HS == 64 ? 64 : 32, kS = BfTile<HS>::kStride;
    // K [kK][kS], V [kK][kS], Q [2][kQ][kS], dO [2][kQ][kS], then fp32 lse [2][kQ], D [2][kQ]
    static constexpr size_t kTileBytes = (size_t)(2 * kK + 4 * kQ) * kS * sizeof(bf16);
    static constexpr size_t kSmemBytes = kTileBytes + 4 * kQ * sizeof(float);
};

template <int HS>
static __global__ void __launch_bounds__(kBfThreads)
    flash_backward_dkdv_bf16_kernel(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse,
                                    const float *D, int T, int C, int NH, float scale) {
    typedef BfBackwardDkDv<HS> K;
    constexpr int S = K::kS, NT = K::kQ / 8, ND = HS / 8;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *Ks = reinterpret_cast<bf16 *>(smem_raw), *Vs = Ks + K::kK * S;
    bf16 *Qs = Vs + K::kK * S, *dOs = Qs + 2 * K::kQ * S;
    float *Ls = reinterpret_cast<float *>(smem_raw + K::kTileBytes), *Ds = Ls + 2 * K::kQ;
    const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
    const int k0 = blockIdx.y * K::kK; // low key tiles have the most queries: scheduled first
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, tg = lane & 3;
    const size_t rs = 3 * (size_t)C;
    const bf16 *qbase = qkv + qkv_index(b, 0, 0, h, T, C, HS);
    const bf16 *dobase = dout + out_index(b, 0, h, T, C, HS);
    const float *lse_bh = lse + (size_t)bh * T, *D_bh = D + (size_t)bh * T;
    const int qt_begin = k0 / K::kQ, qt_end = tiles_of(T, K::kQ); // query tiles holding rows >= k0
    const int wk0 = k0 + warp * 16;                                 // the warp's first key

    bf_load_tile<HS, K::kK>(Ks, qbase + C, rs, k0, T);
    bf_load_tile<HS, K::kK>(Vs, qbase + 2 * C, rs, k0, T);
    bf_load_tile<HS, K::kQ>(Qs, qbase, rs, qt_begin * K::kQ, T);
    bf_load_tile<HS, K::kQ>(dOs, dobase, C, qt_begin * K::kQ, T);
    bf_load_rows(Ls, Ds, lse_bh, D_bh, qt_begin * K::kQ, K::kQ, T);
    cp_async_commit();
    cp_async_wait_all();
    __syncthreads();

    float dk[ND][4], dv[ND][4]; // rows: keys wk0+g, wk0+g+8; columns: head dims
    FA_UNROLL for (int nd = 0; nd < ND; nd++)
        FA_UNROLL for (int e = 0; e < 4; e++) dk[nd][e] = dv[nd][e] = 0.0f;
    for (int qt = qt_begin; qt < qt_end; qt++) {
        const int buf = (qt - qt_begin) & 1, q0 = qt * K::kQ;
        if (qt + 1 < qt_end) {
            const int nb = buf ^ 1;
            bf_load_tile<HS, K::kQ>(Qs + nb * K::kQ * S, qbase, rs, q0 + K::kQ, T);
            bf_load_tile<HS, K::kQ>(dOs + nb * K::kQ * S, dobase, C, q0 + K::kQ, T);
            bf_load_rows(Ls + nb * K::kQ, Ds + nb * K::kQ, lse_bh, D_bh, q0 + K::kQ, K::kQ, T);
            cp_async_commit();
        }
        const bf16 *Qb = Qs + buf * K::kQ * S, *dOb = dOs + buf * K::kQ * S;
        const float *Lb = Ls + buf * K::kQ, *Db = Ds + buf * K::kQ;

        // s = K Q^T and dp = V dO^T: the warp's 16 keys x kQ queries
        float s[NT][4], dp[NT][4];
        FA_UNROLL for (int nt = 0; nt < NT; nt++)
            FA_UNROLL for (int e = 0; e < 4; e++) s[nt][e] = dp[nt][e] = 0.0f;
        FA_UNROLL for (int ks = 0; ks < HS / 16; ks++) {
            uint32_t ak[4], av[4];
            load_a<S>(ak, Ks, warp * 16, ks * 16, lane);
            load_a<S>(av, Vs, warp * 16, ks * 16, lane);
            FA_UNROLL for (int np = 0; np < NT / 2; np++) {
                uint32_t bb[4];
                load_b_nk<S>(bb, Qb, np * 16, ks * 16, lane);
                mma_bf16(s[2 * np], ak, bb[0], bb[1]);
                mma_bf16(s[2 * np + 1], ak, bb[2], bb[3]);
                load_b_nk<S>(bb, dOb, np * 16, ks * 16, lane);
                mma_bf16(dp[2 * np], av, bb[0], bb[1]);
                mma_bf16(dp[2 * np + 1], av, bb[2], bb[3]);
            }
        }
        // p = exp(s*scale - lse) where query >= key (and query < T), ds = p * (dp - D)
        FA_UNROLL for (int nt = 0; nt < NT; nt++)
            FA_UNROLL for (int e = 0; e < 4; e++) {
                const int qi = nt * 8 + 2 * tg + (e & 1), tq = q0 + qi, tk = wk0 + g + 8 * (e >> 1);
                const float p = (tq >= tk && tq < T) ? exp2f(s[nt][e] * scale * kLog2e - Lb[qi]) : 0.0f;
                s[nt][e] = p;
                dp[nt][e] = p * (dp[nt][e] - Db[qi]);
            }
        // dv += P^T dO, dk += dS^T Q (the k dimension of these products is the query)
        FA_UNROLL for (int kk = 0; kk < NT / 2; kk++) {
            uint32_t ap[4], ads[4];
            acc_to_a(ap, s[2 * kk], s[2 * kk + 1]);
            acc_to_a(ads, dp[2 * kk], dp[2 * kk + 1]);
            FA_UNROLL for (int np = 0; np < ND / 2; np++) {
                uint32_t bb[4];
                load_b_kn<S>(bb, dOb, kk * 16, np * 16, lane);
                mma_bf16(dv[2 * np], ap, bb[0], bb[1]);
                mma_bf16(dv[2 * np + 1], ap, bb[2], bb[3]);
                load_b_kn<S>(bb, Qb, kk * 16, np * 16, lane);
                mma_bf16(dk[2 * np], ads, bb[0], bb[1]);
                mma_bf16(dk[2 * np + 1], ads, bb[2], bb[3]);
            }
        }
        cp_async_wait_all();
        __syncthreads();
    }
    FA_UNROLL for (int r = 0; r < 2; r++) {
        const int t = wk0 + g + 8 * r;
        if (t >= T) continue;
        bf16 *gk = dqkv + qkv_index(b, t, 1, h, T, C, HS), *gv = gk + C;
        FA_UNROLL for (int nd = 0; nd < ND; nd++) {
            store_bf16x2(gk + nd * 8 + 2 * tg, dk[nd][2 * r] * scale, dk[nd][2 * r + 1] * scale);
            store_bf16x2(gv + nd * 8 + 2 * tg, dv[nd][2 * r], dv[nd][2 * r + 1]);
        }
    }
}

template <int HS>
struct BfBackwardDq {
    // kQ queries per CTA (16 per warp); key tiles of kK rows (smaller at hs 128 to fit registers)
    static constexpr int kQ = 64, kK = HS == 64 ? 64 : 32, kS = BfTile<HS>::kStride;
    // Q [kQ][kS], dO [kQ][kS], K [2][kK][kS], V [2][kK][kS]
    static constexpr size_t kSmemBytes = (size_t)(2 * kQ + 4 * kK) * kS * sizeof(bf16);
};

template <int HS>
static __global__ void __launch_bounds__(kBfThreads)
    flash_backward_dq_bf16_kernel(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse, const float *D,
                                  int T, int C, int NH, float scale) {
    typedef BfBackwardDq<HS> K;
    constexpr int S = K::kS, NT = K::kK / 8, ND = HS / 8;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *Qs = reinterpret_cast<bf16 *>(smem_raw), *dOs = Qs + K::kQ * S;
    bf16 *Ks = dOs + K::kQ * S, *Vs = Ks + 2 * K::kK * S;
    const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
    const int q0 = (gridDim.y - 1 - blockIdx.y) * K::kQ; // longest rows first
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, tg = lane & 3;
    const size_t rs = 3 * (size_t)C;
    const bf16 *qbase = qkv + qkv_index(b, 0, 0, h, T, C, HS), *kbase = qbase + C, *vbase = qbase + 2 * C;
    const int n_kt = tiles_of(min(T, q0 + K::kQ), K::kK); // key tiles holding keys <= the last row
    const int wr0 = q0 + warp * 16;

    bf_load_tile<HS, K::kQ>(Qs, qbase, rs, q0, T);
    bf_load_tile<HS, K::kQ>(dOs, dout + out_index(b, 0, h, T, C, HS), C, q0, T);
    bf_load_tile<HS, K::kK>(Ks, kbase, rs, 0, T);
    bf_load_tile<HS, K::kK>(Vs, vbase, rs, 0, T);
    cp_async_commit();
    float L[2], Dr[2]; // rows wr0+g, wr0+g+8
    FA_UNROLL for (int r = 0; r < 2; r++) {
        const int t = wr0 + g + 8 * r;
        L[r] = t < T ? lse[(size_t)bh * T + t] * kLog2e : 0.0f;
        Dr[r] = t < T ? D[(size_t)bh * T + t] : 0.0f;
    }
    cp_async_wait_all();
    __syncthreads();

    float dq[ND][4];
    FA_UNROLL for (int nd = 0; nd < ND; nd++) dq[nd][0] = dq[nd][1] = dq[nd][2] = dq[nd][3] = 0.0f;
    for (int kt = 0; kt < n_kt; kt++) {
        const int buf = kt & 1, k0 = kt * K::kK;
        if (kt + 1 < n_kt) {
            bf_load_tile<HS, K::kK>(Ks + (buf ^ 1) * K::kK * S, kbase, rs, k0 + K::kK, T);
            bf_load_tile<HS, K::kK>(Vs + (buf ^ 1) * K::kK * S, vbase, rs, k0 + K::kK, T);
            cp_async_commit();
        }
        const bf16 *Kb = Ks + buf * K::kK * S, *Vb = Vs + buf * K::kK * S;

        // s = Q K^T and dp = dO V^T: the warp's 16 queries x kK keys
        float s[NT][4], dp[NT][4];
        FA_UNROLL for (int nt = 0; nt < NT; nt++)
            FA_UNROLL for (int e = 0; e < 4; e++) s[nt][e] = dp[nt][e] = 0.0f;
        FA_UNROLL for (int ks = 0; ks < HS / 16; ks++) {
            uint32_t aq[4], ado[4];
            load_a<S>(aq, Qs, warp * 16, ks * 16, lane);
            load_a<S>(ado, dOs, warp * 16, ks * 16, lane);
            FA_UNROLL for (int np = 0; np < NT / 2; np++) {
                uint32_t bb[4];
                load_b_nk<S>(bb, Kb, np * 16, ks * 16, lane);
                mma_bf16(s[2 * np], aq, bb[0], bb[1]);
                mma_bf16(s[2 * np + 1], aq, bb[2], bb[3]);
                load_b_nk<S>(bb, Vb, np * 16, ks * 16, lane);
                mma_bf16(dp[2 * np], ado, bb[0], bb[1]);
                mma_bf16(dp[2 * np + 1], ado, bb[2], bb[3]);
            }
        }
        // ds = p * (dp - D), p = exp(s*scale - lse) where key <= query (and query < T)
        FA_UNROLL for (int nt = 0; nt < NT; nt++)
            FA_UNROLL for (int e = 0; e < 4; e++) {
                const int r = e >> 1, tq = wr0 + g + 8 * r, tk = k0 + nt * 8 + 2 * tg + (e & 1);
                const float p = (tk <= tq && tq < T) ? exp2f(s[nt][e] * scale * kLog2e - L[r]) : 0.0f;
                s[nt][e] = p * (dp[nt][e] - Dr[r]);
            }
        // dq += dS K (the k dimension of this product is the key)
        FA_UNROLL for (int kk = 0; kk < NT / 2; kk++) {
            uint32_t a[4];
            acc_to_a(a, s[2 * kk], s[2 * kk + 1]);
            FA_UNROLL for (int np = 0; np < ND / 2; np++) {
                uint32_t bb[4];
                load_b_kn<S>(bb, Kb, kk * 16, np * 16, lane);
                mma_bf16(dq[2 * np], a, bb[0], bb[1]);
                mma_bf16(dq[2 * np + 1], a, bb[2], bb[3]);
            }
        }
        cp_async_wait_all();
        __syncthreads();
    }
    FA_UNROLL for (int r = 0; r < 2; r++) {
        const int t = wr0 + g + 8 * r;
        if (t >= T) continue;
        bf16 *gq = dqkv + qkv_index(b, t, 0, h, T, C, HS);
        FA_UNROLL for (int nd = 0; nd < ND; nd++)
            store_bf16x2(gq + nd * 8 + 2 * tg, dq[nd][2 * r] * scale, dq[nd][2 * r + 1] * scale);
    }
}

// ----------------------------------------------------------------------------
// launchers

// Sets the dynamic shared-memory limit a kernel needs above the 48 KiB default.
template <typename Kernel>
static llm_status set_smem(Kernel kernel, size_t bytes) {
    CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    return LLM_OK;
}

template <int HS>
static llm_status forward_hs(float *out, float *lse, const float *qkv, int B, int T, int C, int NH, cudaStream_t st) {
    const size_t smem = (size_t)kF32Tile * (3 * HS + 1) * sizeof(float);
    LLM_TRY(set_smem(flash_forward_f32_kernel<HS>, smem));
    const dim3 grid(B * NH, tiles_of(T, kF32Tile));
    flash_forward_f32_kernel<HS><<<grid, kF32Threads, smem, st>>>(out, lse, qkv, T, C, NH, 1.0f / sqrtf((float)HS));
    CUDA_TRY_LAUNCH("flash_forward_f32_kernel");
    return LLM_OK;
}

template <int HS>
static llm_status backward_hs(float *dqkv, float *D, const float *dout, const float *qkv, const float *lse, int B,
                              int T, int C, int NH, cudaStream_t st) {
    const float scale = 1.0f / sqrtf((float)HS);
    const size_t smem = (size_t)kF32Tile * (4 * HS + 2) * sizeof(float);
    const size_t smem_dkdv = smem + 2 * kF32Tile * sizeof(float);
    LLM_TRY(set_smem(flash_backward_dkdv_f32_kernel<HS>, smem_dkdv));
    LLM_TRY(set_smem(flash_backward_dq_f32_kernel<HS>, smem));
    const dim3 grid(B * NH, tiles_of(T, kF32Tile));
    flash_backward_dkdv_f32_kernel<HS><<<grid, kF32Threads, smem_dkdv, st>>>(dqkv, dout, qkv, lse, D, T, C, NH, scale);
    CUDA_TRY_LAUNCH("flash_backward_dkdv_f32_kernel");
    flash_backward_dq_f32_kernel<HS><<<grid, kF32Threads, smem, st>>>(dqkv, dout, qkv, lse, D, T, C, NH, scale);
    CUDA_TRY_LAUNCH("flash_backward_dq_f32_kernel");
    return LLM_OK;
}

template <int HS>
static llm_status forward_hs(bf16 *out, float *lse, const bf16 *qkv, int B, int T, int C, int NH, cudaStream_t st) {
    typedef BfForward<HS> K;
    LLM_TRY(set_smem(flash_forward_bf16_kernel<HS>, K::kSmemBytes));
    const dim3 grid(B * NH, tiles_of(T, K::kQ));
    flash_forward_bf16_kernel<HS><<<grid, kBfThreads, K::kSmemBytes, st>>>(out, lse, qkv, T, C, NH,
                                                                          kLog2e / sqrtf((float)HS));
    CUDA_TRY_LAUNCH("flash_forward_bf16_kernel");
    return LLM_OK;
}

template <int HS>
static llm_status backward_hs(bf16 *dqkv, float *D, const bf16 *dout, const bf16 *qkv, const float *lse, int B,
                              int T, int C, int NH, cudaStream_t st) {
    typedef BfBackwardDkDv<HS> KV;
    typedef BfBackwardDq<HS> KQ;
    const float scale = 1.0f / sqrtf((float)HS);
    LLM_TRY(set_smem(flash_backward_dkdv_bf16_kernel<HS>, KV::kSmemBytes));
    LLM_TRY(set_smem(flash_backward_dq_bf16_kernel<HS>, KQ::kSmemBytes));
    flash_backward_dkdv_bf16_kernel<HS><<<dim3(B * NH, tiles_of(T, KV::kK)), kBfThreads, KV::kSmemBytes, st>>>(
        dqkv, dout, qkv, lse, D, T, C, NH, scale);
    CUDA_TRY_LAUNCH("flash_backward_dkdv_bf16_kernel");
    flash_backward_dq_bf16_kernel<HS><<<dim3(B * NH, tiles_of(T, KQ::kQ)), kBfThreads, KQ::kSmemBytes, st>>>(
        dqkv, dout, qkv, lse, D, T, C, NH, scale);
    CUDA_TRY_LAUNCH("flash_backward_dq_bf16_kernel");
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// public entries

size_t flash_attention_state_bytes(int B, int T, int C, int NH) {
    (void)C;
    return (size_t)B * NH * T * sizeof(float);
}

size_t flash_attention_scratch_bytes(int B, int T, int C, int NH) {
    (void)C;
    return (size_t)B * NH * T * sizeof(float);
}

int flash_attention_supported(int C, int NH) {
    return C > 0 && NH > 0 && C % NH == 0 && (C / NH == 64 || C / NH == 128);
}

static llm_status check_sizes(const char *op, int B, int T, int C, int NH) {
    if (B < 1 || T < 1 || C < 1 || NH < 1)
        return llm_fail(LLM_EINVAL, "%s: sizes must be >= 1 (B=%d, T=%d, C=%d, NH=%d)", op, B, T, C, NH);
    if (!flash_attention_supported(C, NH))
        return llm_fail(LLM_EUNSUPPORTED,
                        "%s: head size C/NH must be 64 or 128 (C=%d, NH=%d); use the reference attention "
                        "for other head sizes",
                        op, C, NH);
    if ((int64_t)B * NH > 0x7fffffff || tiles_of(T, 16) > 65535)
        return llm_fail(LLM_EINVAL, "%s: B*NH=%lld or T=%d too large for one launch", op, (long long)B * NH, T);
    return LLM_OK;
}

// bf16 tiles are moved 16 bytes at a time (cp.async), and gradients stored two bf16 at a time.
static llm_status check_ptr(const char *op, const char *name, const void *p, size_t align) {
    if (p == NULL) return llm_fail(LLM_EINVAL, "%s: %s is NULL", op, name);
    if ((uintptr_t)p % align != 0)
        return llm_fail(LLM_EINVAL, "%s: %s must be %zu-byte aligned (got %p)", op, name, align, p);
    return LLM_OK;
}
template <typename floatX>
static size_t alignment() {
    return sizeof(floatX) == 2 ? 16 : sizeof(float);
}

template <typename floatX>
llm_status flash_attention_forward(floatX *out, float *lse, const floatX *qkv, int B, int T, int C, int NH,
                                   cudaStream_t stream) {
    const char *op = "flash_attention_forward";
    LLM_TRY(check_sizes(op, B, T, C, NH));
    LLM_TRY(check_ptr(op, "out", out, alignment<floatX>()));
    LLM_TRY(check_ptr(op, "lse", lse, sizeof(float)));
    LLM_TRY(check_ptr(op, "qkv", qkv, alignment<floatX>()));
    if (C / NH == 64) return forward_hs<64>(out, lse, qkv, B, T, C, NH, stream);
    return forward_hs<128>(out, lse, qkv, B, T, C, NH, stream);
}

template <typename floatX>
llm_status flash_attention_backward(floatX *dqkv, void *scratch, const floatX *dout, const floatX *qkv,
                                    const floatX *out, const float *lse, int B, int T, int C, int NH,
                                    cudaStream_t stream) {
    const char *op = "flash_attention_backward";
    LLM_TRY(check_sizes(op, B, T, C, NH));
    LLM_TRY(check_ptr(op, "dqkv", dqkv, alignment<floatX>()));
    LLM_TRY(check_ptr(op, "scratch", scratch, sizeof(float)));
    LLM_TRY(check_ptr(op, "dout", dout, alignment<floatX>()));
    LLM_TRY(check_ptr(op, "qkv", qkv, alignment<floatX>()));
    LLM_TRY(check_ptr(op, "out", out, sizeof(floatX)));
    LLM_TRY(check_ptr(op, "lse", lse, sizeof(float)));
    float *D = (float *)scratch;
    const int hs = C / NH;
    const int64_t rows = (int64_t)B * NH * T;
    const int warps_per_block = 8;
    const unsigned blocks = (unsigned)((rows + warps_per_block - 1) / warps_per_block);
    if (hs == 64) flash_dot_kernel<floatX, 64><<<blocks, 32 * warps_per_block, 0, stream>>>(D, dout, out, B, T, NH);
    else flash_dot_kernel<floatX, 128><<<blocks, 32 * warps_per_block, 0, stream>>>(D, dout, out, B, T, NH);
    CUDA_TRY_LAUNCH("flash_dot_kernel");
    if (hs == 64) return backward_hs<64>(dqkv, D, dout, qkv, lse, B, T, C, NH, stream);
    return backward_hs<128>(dqkv, D, dout, qkv, lse, B, T, C, NH, stream);
}

template llm_status flash_attention_forward<float>(float *, float *, const float *, int, int, int, int, cudaStream_t);
template llm_status flash_attention_forward<bf16>(bf16 *, float *, const bf16 *, int, int, int, int, cudaStream_t);
template llm_status flash_attention_backward<float>(float *, void *, const float *, const float *, const float *,
                                                    const float *, int, int, int, int, cudaStream_t);
template llm_status flash_attention_backward<bf16>(bf16 *, void *, const bf16 *, const bf16 *, const bf16 *,
                                                   const float *, int, int, int, int, cudaStream_t);
