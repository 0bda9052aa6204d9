/*
 * global_norm.cu — sum of squares of a buffer on CUDA, for the global gradient norm
 * (ops.h norm_squared; the CPU backend does it inline in ops_cpu.c).
 *
 * Shapes: x: (N) floatX; *out: a host double.
 * Two-stage deterministic reduction: a fixed grid (a function of N and the SM count only)
 * where each block sums the squares of a grid-stride share of x in fp32 and writes one fp32
 * partial; the partials are copied to pinned host memory and summed in double there. No
 * atomics, so the result is identical run to run. The call synchronises the stream (its result
 * is a host value). 128-bit loads when x is 16-byte aligned.
 */
#include "cuda_ops.cuh"

#define NORM_THREADS 512

// ----------------------------------------------------------------------------
// kernel

template <typename floatX, int P>
static __global__ void norm_squared_kernel(float *partial, const floatX *x, size_t N) {
    const size_t packs = N / P, stride = (size_t)gridDim.x * blockDim.x;
    float acc = 0.0f;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < packs; i += stride) {
        const Pack<floatX, P> v = load_pack_cs<floatX, P>(x + i * P);
#pragma unroll
        for (int k = 0; k < P; k++) {
            const float f = to_f32(v.v[k]);
            acc += f * f;
        }
    }
    const size_t i = packs * P + threadIdx.x; // tail
    if (blockIdx.x == 0 && i < N) {
        const float f = to_f32(x[i]);
        acc += f * f;
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// ----------------------------------------------------------------------------
// launcher

template <typename floatX>
static unsigned norm_squared_launch(float *partial, const floatX *x, size_t N, cudaStream_t stream) {
    constexpr int P = pack128<floatX>();
    if (aligned16(x)) {
        const unsigned grid = grid_for(N / P, NORM_THREADS);
        norm_squared_kernel<floatX, P><<<grid, NORM_THREADS, 0, stream>>>(partial, x, N);
        return grid;
    }
    const unsigned grid = grid_for(N, NORM_THREADS);
    norm_squared_kernel<floatX, 1><<<grid, NORM_THREADS, 0, stream>>>(partial, x, N);
    return grid;
}

// The grid norm_squared_launch will use (at most), to size the partials.
template <typename floatX> static unsigned norm_squared_grid(size_t N) { return grid_for(N, NORM_THREADS); }

// ----------------------------------------------------------------------------
// entry

template <typename floatX>
llm_status cuda_norm_squared(double *out, const floatX *x, size_t N, cudaStream_t stream) {
    if (!out) return llm_fail(LLM_EINVAL, "norm_squared: NULL result pointer");
    *out = 0.0;
    if (N == 0) return LLM_OK;
    if (!x) return llm_fail(LLM_EINVAL, "norm_squared: NULL pointer");
    const size_t max_grid = norm_squared_grid<floatX>(N);
    void *dpart, *hpart;
    LLM_TRY(cuda_device_scratch(&dpart, max_grid * sizeof(float)));
    LLM_TRY(cuda_host_scratch(&hpart, max_grid * sizeof(float)));
    const unsigned grid = norm_squared_launch((float *)dpart, x, N, stream);
    CUDA_TRY_LAUNCH("norm_squared");
    CUDA_TRY(cudaMemcpyAsync(hpart, dpart, grid * sizeof(float), cudaMemcpyDeviceToHost, stream));
    CUDA_TRY(cudaStreamSynchronize(stream));
    double sum = 0.0;
    for (unsigned b = 0; b < grid; b++) sum += (double)((const float *)hpart)[b];
    *out = sum;
    return LLM_OK;
}

template llm_status cuda_norm_squared<float>(double *, const float *, size_t, cudaStream_t);
template llm_status cuda_norm_squared<bf16>(double *, const bf16 *, size_t, cudaStream_t);
