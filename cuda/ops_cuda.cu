/*
 * ops_cuda.cu — the CUDA backend's llm_ops tables (fp32, and bf16 with fp32 master weights),
 * its device memory, and the C entry points of ops_cuda.h.
 *
 * Each op of the tables is a thin wrapper that casts the table's untyped floatX pointers to the
 * element type of its precision (float or __nv_bfloat16) and calls the op file's template
 * (cuda_ops.cuh) on llm_cuda_stream, through run_op(): in sync mode (LLMPY_CUDA_SYNC=1) it then
 * waits for the op's work and reports a CUDA error as "CUDA error in op <name>: ...", and the
 * test hook LLMPY_CUDA_FAULT_OP=<name> makes the named op launch a trapping kernel first
 * (ops_cuda.h). Attention is dispatched per call between the flash kernel
 * (flash_attention.cuh) and the reference one (attention.cu); state and scratch sizes follow
 * the same rule (use_flash), so what the forward saves is what the backward expects.
 *
 * Memory: cudaMalloc (with accounting, context.cu) + zero fill; the host<->device copies are
 * synchronous (issued on the stream, then the stream is synchronised). upload_f32/download_f32
 * convert between host fp32 and device floatX through a device staging buffer (the scratch of
 * common.cuh), a chunk at a time, rounding to nearest even for bf16.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "context.cuh"
#include "cuda_ops.cuh"
#include "flash_attention.cuh"
#include "ops_cuda.h"
#ifdef LLMPY_HAVE_NCCL
#include "nccl_comm.h"
#endif

#define CONVERT_THREADS 256
#define STAGING_FLOATS ((size_t)8 << 20) // 32 MiB of fp32 per conversion chunk

// ----------------------------------------------------------------------------
// memory

static llm_status need_init(const char *what) {
    if (cuda_context_device() < 0)
        return llm_fail(LLM_ESTATE, "%s: the CUDA backend is not initialised (call llm_cuda_init first)", what);
    return LLM_OK;
}

static llm_status cuda_alloc(void **out, size_t bytes) {
    if (!out) return llm_fail(LLM_EINVAL, "alloc: NULL output pointer");
    *out = NULL;
    LLM_TRY(need_init("alloc"));
    void *p;
    LLM_TRY(cuda_malloc_tracked(&p, bytes));
    cudaError_t err = cudaMemsetAsync(p, 0, bytes, llm_cuda_stream);
    if (err == cudaSuccess) err = cudaStreamSynchronize(llm_cuda_stream);
    if (err != cudaSuccess) {
        cuda_free_tracked(p);
        return cuda_check(err, "alloc (zero fill)", __FILE__, __LINE__);
    }
    *out = p;
    return LLM_OK;
}

static void cuda_free(void *p) { cuda_free_tracked(p); }

static llm_status cuda_zero(void *p, size_t bytes) {
    if (bytes == 0) return LLM_OK;
    if (!p) return llm_fail(LLM_EINVAL, "zero: NULL pointer");
    CUDA_TRY(cudaMemsetAsync(p, 0, bytes, llm_cuda_stream));
    return LLM_OK;
}

static llm_status cuda_to_device(void *dst, const void *src_host, size_t bytes) {
    if (bytes == 0) return LLM_OK;
    if (!dst || !src_host) return llm_fail(LLM_EINVAL, "to_device: NULL pointer");
    CUDA_TRY(cudaMemcpyAsync(dst, src_host, bytes, cudaMemcpyHostToDevice, llm_cuda_stream));
    CUDA_TRY(cudaStreamSynchronize(llm_cuda_stream));
    return LLM_OK;
}

static llm_status cuda_to_host(void *dst_host, const void *src, size_t bytes) {
    if (bytes == 0) return LLM_OK;
    if (!dst_host || !src) return llm_fail(LLM_EINVAL, "to_host: NULL pointer");
    CUDA_TRY(cudaMemcpyAsync(dst_host, src, bytes, cudaMemcpyDeviceToHost, llm_cuda_stream));
    CUDA_TRY(cudaStreamSynchronize(llm_cuda_stream));
    return LLM_OK;
}

static llm_status cuda_copy(void *dst, const void *src, size_t bytes) {
    if (bytes == 0) return LLM_OK;
    if (!dst || !src) return llm_fail(LLM_EINVAL, "copy: NULL pointer");
    CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, llm_cuda_stream));
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// fp32 <-> floatX conversion

template <typename X> static __global__ void f32_to_x_kernel(X *dst, const float *src, size_t n) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) dst[i] = from_f32<X>(src[i]);
}
template <typename X> static __global__ void x_to_f32_kernel(float *dst, const X *src, size_t n) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) dst[i] = to_f32(src[i]);
}

template <typename X> static llm_status upload_f32(floatX *dst, const float *src_host, size_t N) {
    if constexpr (std::is_same<X, float>::value) return cuda_to_device(dst, src_host, N * sizeof(float));
    if (N == 0) return LLM_OK;
    if (!dst || !src_host) return llm_fail(LLM_EINVAL, "upload_f32: NULL pointer");
    void *staging;
    LLM_TRY(cuda_device_scratch(&staging, (N < STAGING_FLOATS ? N : STAGING_FLOATS) * sizeof(float)));
    for (size_t off = 0; off < N; off += STAGING_FLOATS) {
        const size_t n = N - off < STAGING_FLOATS ? N - off : STAGING_FLOATS;
        // ordered after the previous chunk's kernel on the stream, so the staging is free
        CUDA_TRY(cudaMemcpyAsync(staging, src_host + off, n * sizeof(float), cudaMemcpyHostToDevice, llm_cuda_stream));
        f32_to_x_kernel<X><<<grid_for(n, CONVERT_THREADS), CONVERT_THREADS, 0, llm_cuda_stream>>>(
            (X *)dst + off, (const float *)staging, n);
        CUDA_TRY_LAUNCH("upload_f32");
    }
    CUDA_TRY(cudaStreamSynchronize(llm_cuda_stream));
    return LLM_OK;
}

template <typename X> static llm_status download_f32(float *dst_host, const floatX *src, size_t N) {
    if constexpr (std::is_same<X, float>::value) return cuda_to_host(dst_host, src, N * sizeof(float));
    if (N == 0) return LLM_OK;
    if (!dst_host || !src) return llm_fail(LLM_EINVAL, "download_f32: NULL pointer");
    void *staging;
    LLM_TRY(cuda_device_scratch(&staging, (N < STAGING_FLOATS ? N : STAGING_FLOATS) * sizeof(float)));
    for (size_t off = 0; off < N; off += STAGING_FLOATS) {
        const size_t n = N - off < STAGING_FLOATS ? N - off : STAGING_FLOATS;
        x_to_f32_kernel<X><<<grid_for(n, CONVERT_THREADS), CONVERT_THREADS, 0, llm_cuda_stream>>>(
            (float *)staging, (const X *)src + off, n);
        CUDA_TRY_LAUNCH("download_f32");
        CUDA_TRY(cudaMemcpyAsync(dst_host + off, staging, n * sizeof(float), cudaMemcpyDeviceToHost, llm_cuda_stream));
        CUDA_TRY(cudaStreamSynchronize(llm_cuda_stream));
    }
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// sync mode and fault injection (both read from the environment once, by llm_cuda_init)

// LLMPY_CUDA_SYNC=1: run_op synchronises after every op and names the op in the error.
int llm_cuda_sync_ops = 0;
// LLMPY_CUDA_FAULT_OP=<op name>, for tests only: that op first launches a kernel that traps, so a
// test can see how a kernel fault is reported. Empty: off.
static char fault_op[64] = "";

static void read_environment(void) {
    const char *sync = getenv("LLMPY_CUDA_SYNC");
    llm_cuda_sync_ops = sync && strcmp(sync, "1") == 0;
    const char *fault = getenv("LLMPY_CUDA_FAULT_OP");
    snprintf(fault_op, sizeof fault_op, "%s", fault ? fault : "");
}

static __global__ void fault_kernel(void) { __trap(); }

// Before op: the injected fault, when op is the one named.
static llm_status before_op(const char *op) {
    if (fault_op[0] == '\0' || strcmp(op, fault_op) != 0) return LLM_OK;
    fault_kernel<<<1, 1, 0, llm_cuda_stream>>>();
    CUDA_TRY_LAUNCH("fault_kernel (LLMPY_CUDA_FAULT_OP)");
    return LLM_OK;
}

// After op returned s: in sync mode, wait for its work and report any CUDA error as this op's.
static llm_status after_op(const char *op, llm_status s) {
    if (!llm_cuda_sync_ops) return s;
    if (s == LLM_EBACKEND) { // failed inside: keep its message, say which op
        char msg[768];
        snprintf(msg, sizeof msg, "%s", llm_last_error());
        return llm_fail(s, "CUDA error in op %s: %s", op, msg);
    }
    if (s != LLM_OK) return s;
    cudaError_t err = cudaStreamSynchronize(llm_cuda_stream);
    if (err == cudaSuccess) err = cudaGetLastError();
    if (err != cudaSuccess)
        return llm_fail(LLM_EBACKEND, "CUDA error in op %s: %s (%s)", op, cudaGetErrorString(err),
                        cudaGetErrorName(err));
    return LLM_OK;
}

// Every op of the tables runs through here: f() is the op's work, op its llm_ops member name.
// (An injected fault that already shows at its launch is reported as the op's as well.)
template <typename F> static llm_status run_op(const char *op, F &&f) {
    llm_status s = before_op(op);
    if (s == LLM_OK) s = f();
    return after_op(op, s);
}

// ----------------------------------------------------------------------------
// attention dispatch

static int attention_flash = 1; // 1: flash where the head size allows, 0: always the reference

static bool use_flash(int C, int NH) {
    return attention_flash && NH > 0 && C % NH == 0 && flash_attention_supported(C, NH);
}

template <typename X> static size_t attention_state_bytes(int B, int T, int C, int NH) {
    return use_flash(C, NH) ? flash_attention_state_bytes(B, T, C, NH) : cuda_attention_state_bytes<X>(B, T, C, NH);
}
template <typename X> static size_t attention_scratch_bytes(int B, int T, int C, int NH) {
    return use_flash(C, NH) ? flash_attention_scratch_bytes(B, T, C, NH)
                            : cuda_attention_scratch_bytes<X>(B, T, C, NH);
}
template <typename X>
static llm_status attention_forward(floatX *out, void *state, void *scratch, const floatX *qkv, int B, int T, int C,
                                    int NH) {
    return run_op("attention_forward", [&] {
        if (use_flash(C, NH))
            return flash_attention_forward<X>((X *)out, (float *)state, (const X *)qkv, B, T, C, NH, llm_cuda_stream);
        return cuda_attention_forward<X>((X *)out, state, scratch, (const X *)qkv, B, T, C, NH, llm_cuda_stream);
    });
}
template <typename X>
static llm_status attention_backward(floatX *dqkv, void *scratch, const floatX *dout, const floatX *qkv,
                                     const floatX *out, const void *state, int B, int T, int C, int NH) {
    return run_op("attention_backward", [&] {
        if (use_flash(C, NH))
            return flash_attention_backward<X>((X *)dqkv, scratch, (const X *)dout, (const X *)qkv, (const X *)out,
                                               (const float *)state, B, T, C, NH, llm_cuda_stream);
        return cuda_attention_backward<X>((X *)dqkv, scratch, (const X *)dout, (const X *)qkv, (const X *)out, state,
                                          B, T, C, NH, llm_cuda_stream);
    });
}

// ----------------------------------------------------------------------------
// the other ops: cast and forward to the op files

static llm_status zero_op(void *p, size_t bytes) {
    return run_op("zero", [&] { return cuda_zero(p, bytes); });
}
static llm_status to_device_op(void *dst, const void *src_host, size_t bytes) {
    return run_op("to_device", [&] { return cuda_to_device(dst, src_host, bytes); });
}
static llm_status to_host_op(void *dst_host, const void *src, size_t bytes) {
    return run_op("to_host", [&] { return cuda_to_host(dst_host, src, bytes); });
}
static llm_status copy_op(void *dst, const void *src, size_t bytes) {
    return run_op("copy", [&] { return cuda_copy(dst, src, bytes); });
}
template <typename X> static llm_status upload_f32_op(floatX *dst, const float *src_host, size_t N) {
    return run_op("upload_f32", [&] { return upload_f32<X>(dst, src_host, N); });
}
template <typename X> static llm_status download_f32_op(float *dst_host, const floatX *src, size_t N) {
    return run_op("download_f32", [&] { return download_f32<X>(dst_host, src, N); });
}
template <typename X>
static llm_status encoder_forward(floatX *out, const int32_t *inp, const floatX *wte, const floatX *wpe, int B, int T,
                                  int C) {
    return run_op("encoder_forward", [&] {
        return cuda_encoder_forward<X>((X *)out, inp, (const X *)wte, (const X *)wpe, B, T, C, llm_cuda_stream);
    });
}
template <typename X>
static llm_status encoder_backward(floatX *dwte, floatX *dwpe, const floatX *dout, const int32_t *inp,
                                   const int32_t *inp_host, int B, int T, int C) {
    return run_op("encoder_backward", [&] {
        return cuda_encoder_backward<X>((X *)dwte, (X *)dwpe, (const X *)dout, inp, inp_host, B, T, C,
                                        llm_cuda_stream);
    });
}
template <typename X>
static llm_status layernorm_forward(floatX *out, float *mean, float *rstd, const floatX *inp, const floatX *weight,
                                    const floatX *bias, int B, int T, int C) {
    return run_op("layernorm_forward", [&] {
        return cuda_layernorm_forward<X>((X *)out, mean, rstd, (const X *)inp, (const X *)weight, (const X *)bias, B, T,
                                         C, llm_cuda_stream);
    });
}
template <typename X>
static llm_status layernorm_backward(floatX *dinp, floatX *dweight, floatX *dbias, const floatX *dout,
                                     const floatX *inp, const floatX *weight, const float *mean, const float *rstd,
                                     int B, int T, int C) {
    return run_op("layernorm_backward", [&] {
        return cuda_layernorm_backward<X>((X *)dinp, (X *)dweight, (X *)dbias, (const X *)dout, (const X *)inp,
                                          (const X *)weight, mean, rstd, B, T, C, llm_cuda_stream);
    });
}
template <typename X>
static llm_status residual_layernorm_forward(floatX *residual, floatX *out, float *mean, float *rstd,
                                             const floatX *inp1, const floatX *inp2, const floatX *weight,
                                             const floatX *bias, int B, int T, int C) {
    return run_op("residual_layernorm_forward", [&] {
        return cuda_residual_layernorm_forward<X>((X *)residual, (X *)out, mean, rstd, (const X *)inp1,
                                                  (const X *)inp2, (const X *)weight, (const X *)bias, B, T, C,
                                                  llm_cuda_stream);
    });
}
template <typename X>
static llm_status matmul_forward(floatX *out, const floatX *inp, const floatX *weight, const floatX *bias, int B,
                                 int T, int C, int OC) {
    return run_op("matmul_forward", [&] {
        return cuda_matmul_forward<X>((X *)out, (const X *)inp, (const X *)weight, (const X *)bias, B, T, C, OC,
                                      llm_cuda_stream);
    });
}
template <typename X>
static llm_status matmul_backward(floatX *dinp, floatX *dweight, floatX *dbias, const floatX *dout, const floatX *inp,
                                  const floatX *weight, int B, int T, int C, int OC, int flags) {
    return run_op("matmul_backward", [&] {
        return cuda_matmul_backward<X>((X *)dinp, (X *)dweight, (X *)dbias, (const X *)dout, (const X *)inp,
                                       (const X *)weight, B, T, C, OC, flags, llm_cuda_stream);
    });
}
template <typename X>
static llm_status matmul_gelu_forward(floatX *pre, floatX *out, const floatX *inp, const floatX *weight,
                                      const floatX *bias, int B, int T, int C, int OC) {
    return run_op("matmul_gelu_forward", [&] {
        return cuda_matmul_gelu_forward<X>((X *)pre, (X *)out, (const X *)inp, (const X *)weight, (const X *)bias, B,
                                           T, C, OC, llm_cuda_stream);
    });
}
template <typename X> static llm_status gelu_forward(floatX *out, const floatX *inp, size_t N) {
    return run_op("gelu_forward", [&] { return cuda_gelu_forward<X>((X *)out, (const X *)inp, N, llm_cuda_stream); });
}
template <typename X> static llm_status gelu_backward(floatX *dinp, const floatX *inp, const floatX *dout, size_t N) {
    return run_op("gelu_backward", [&] {
        return cuda_gelu_backward<X>((X *)dinp, (const X *)inp, (const X *)dout, N, llm_cuda_stream);
    });
}
template <typename X>
static llm_status residual_forward(floatX *out, const floatX *inp1, const floatX *inp2, size_t N) {
    return run_op("residual_forward", [&] {
        return cuda_residual_forward<X>((X *)out, (const X *)inp1, (const X *)inp2, N, llm_cuda_stream);
    });
}
template <typename X> static llm_status residual_backward(floatX *dinp1, floatX *dinp2, const floatX *dout, size_t N) {
    return run_op("residual_backward", [&] {
        return cuda_residual_backward<X>((X *)dinp1, (X *)dinp2, (const X *)dout, N, llm_cuda_stream);
    });
}
template <typename X>
static llm_status crossentropy_forward(float *losses, const floatX *logits, const int32_t *targets, int B, int T,
                                       int V, int Vp) {
    return run_op("crossentropy_forward", [&] {
        return cuda_crossentropy_forward<X>(losses, (const X *)logits, targets, B, T, V, Vp, llm_cuda_stream);
    });
}
template <typename X>
static llm_status crossentropy_backward(floatX *dlogits, const floatX *logits, const int32_t *targets, float dloss,
                                        int B, int T, int V, int Vp) {
    return run_op("crossentropy_backward", [&] {
        return cuda_crossentropy_backward<X>((X *)dlogits, (const X *)logits, targets, dloss, B, T, V, Vp,
                                             llm_cuda_stream);
    });
}
template <typename X>
static llm_status crossentropy_backward_cols(floatX *dlogits, const floatX *logits, const float *losses,
                                             const int32_t *targets, float dloss, int B, int T, int V, int Vp, int v0,
                                             int n) {
    return run_op("crossentropy_backward_cols", [&] {
        return cuda_crossentropy_backward_cols<X>((X *)dlogits, (const X *)logits, losses, targets, dloss, B, T, V, Vp,
                                                  v0, n, llm_cuda_stream);
    });
}
template <typename X>
static llm_status adamw_update(floatX *params, float *master, const floatX *grads, float *m, float *v, size_t N,
                               float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                               int64_t t, uint32_t seed, uint64_t index0) {
    return run_op("adamw_update", [&] {
        return cuda_adamw_update<X>((X *)params, master, (const X *)grads, m, v, N, lr, beta1, beta2, eps,
                                    weight_decay, grad_scale, t, seed, index0, llm_cuda_stream);
    });
}
template <typename X> static llm_status norm_squared(double *out, const floatX *x, size_t N) {
    return run_op("norm_squared", [&] { return cuda_norm_squared<X>(out, (const X *)x, N, llm_cuda_stream); });
}
static llm_status sum_f32(double *out, const float *x, size_t N) {
    return run_op("sum_f32", [&] { return cuda_sum_f32(out, x, N, llm_cuda_stream); });
}

// generation (decode.cu)
template <typename X>
static llm_status encoder_at(floatX *out, const int32_t *inp, const int32_t *pos, const floatX *wte, const floatX *wpe,
                             int N, int T, int C) {
    return run_op("encoder_at", [&] {
        return cuda_encoder_at<X>((X *)out, inp, pos, (const X *)wte, (const X *)wpe, N, T, C, llm_cuda_stream);
    });
}
template <typename X>
static llm_status attention_cached(floatX *out, floatX *kcache, floatX *vcache, const floatX *qkv,
                                   const int32_t *rows, const int32_t *pos, int N, int T, int C, int NH, int maxT) {
    return run_op("attention_cached", [&] {
        return cuda_attention_cached<X>((X *)out, (X *)kcache, (X *)vcache, (const X *)qkv, rows, pos, N, T, C, NH,
                                        maxT, llm_cuda_stream);
    });
}
template <typename X>
static llm_status matmul_rows(floatX *out, const floatX *inp, const void *weight, llm_dtype wtype, const floatX *bias,
                              int M, int C, int OC) {
    return run_op("matmul_rows", [&] {
        return cuda_matmul_rows<X>((X *)out, (const X *)inp, weight, wtype, (const X *)bias, M, C, OC,
                                   llm_cuda_stream);
    });
}

// ----------------------------------------------------------------------------
// the tables

template <typename X> static llm_ops make_table(llm_dtype dtype) {
    llm_ops o;
    memset(&o, 0, sizeof o);
    o.name = "cuda";
    o.dtype = dtype;
    o.host_memory = 0;
    // the classifier backward in two kernels over the whole vocabulary, in place of the logits
    // (ops.h): slices would cost ~1,200 launches per step at B*T >= 8192 and, in bf16, hundreds of
    // roundings of the running dln
    o.lm_head_in_place = 1;
    o.alloc = cuda_alloc;
    o.free = cuda_free;
    o.zero = zero_op;
    o.to_device = to_device_op;
    o.to_host = to_host_op;
    o.copy = copy_op;
    o.upload_f32 = upload_f32_op<X>;
    o.download_f32 = download_f32_op<X>;
    o.encoder_forward = encoder_forward<X>;
    o.encoder_backward = encoder_backward<X>;
    o.layernorm_forward = layernorm_forward<X>;
    o.layernorm_backward = layernorm_backward<X>;
    o.residual_layernorm_forward = residual_layernorm_forward<X>;
    o.matmul_forward = matmul_forward<X>;
    o.matmul_backward = matmul_backward<X>;
    o.matmul_gelu_forward = matmul_gelu_forward<X>;
    o.attention_state_bytes = attention_state_bytes<X>;
    o.attention_scratch_bytes = attention_scratch_bytes<X>;
    o.attention_forward = attention_forward<X>;
    o.attention_backward = attention_backward<X>;
    o.gelu_forward = gelu_forward<X>;
    o.gelu_backward = gelu_backward<X>;
    o.residual_forward = residual_forward<X>;
    o.residual_backward = residual_backward<X>;
    o.crossentropy_forward = crossentropy_forward<X>;
    o.crossentropy_backward = crossentropy_backward<X>;
    o.crossentropy_backward_cols = crossentropy_backward_cols<X>;
    o.adamw_update = adamw_update<X>;
    o.norm_squared = norm_squared<X>;
    o.sum_f32 = sum_f32;
    o.encoder_at = encoder_at<X>;
    o.attention_cached = attention_cached<X>;
    o.matmul_rows = matmul_rows<X>;
    o.matmul_rows_bf16 = 1; // bf16 weights under the fp32 table too (a converted copy)
    return o;
}

// fp32: for parity with the CPU backend and the oracle, not for speed — its GEMMs run
// CUBLAS_COMPUTE_32F on fp32 operands, which never uses TF32 or the tensor cores, and its flash
// attention runs on CUDA cores. bf16 (tensor cores, fp32 accumulation) is the fast path.
extern "C" const llm_ops llm_cuda_ops_fp32 = make_table<float>(LLM_F32);
extern "C" const llm_ops llm_cuda_ops_bf16 = make_table<bf16>(LLM_BF16);

// ----------------------------------------------------------------------------
// C entry points

extern "C" llm_status llm_cuda_init(int device) {
    const bool first = cuda_context_device() < 0;
    LLM_TRY(cuda_context_init(device));
    if (first) read_environment();
    LLM_TRY(llm_register_backend("cuda", "fp32", &llm_cuda_ops_fp32));
    LLM_TRY(llm_register_backend("cuda", "bf16", &llm_cuda_ops_bf16));
#ifdef LLMPY_HAVE_NCCL
    LLM_TRY(llm_cuda_register_nccl()); // data parallelism of CUDA models (comm.h)
#endif
    return LLM_OK;
}

extern "C" llm_status llm_cuda_set_attention(const char *name) {
    if (name && strcmp(name, "flash") == 0) {
        attention_flash = 1;
        return LLM_OK;
    }
    if (name && strcmp(name, "reference") == 0) {
        attention_flash = 0;
        return LLM_OK;
    }
    return llm_fail(LLM_EINVAL, "unknown CUDA attention '%s' (use 'flash' or 'reference')", name ? name : "(null)");
}

extern "C" const char *llm_cuda_attention(void) { return attention_flash ? "flash" : "reference"; }

extern "C" int llm_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" llm_status llm_cuda_device_name(char *buf, size_t n) {
    if (!buf || n == 0) return llm_fail(LLM_EINVAL, "device_name: empty buffer");
    buf[0] = '\0';
    const int device = cuda_context_device() >= 0 ? cuda_context_device() : 0;
    if (llm_cuda_device_count() <= device) return llm_fail(LLM_EUNSUPPORTED, "no CUDA device available");
    cudaDeviceProp prop;
    CUDA_TRY(cudaGetDeviceProperties(&prop, device));
    snprintf(buf, n, "%s", prop.name);
    return LLM_OK;
}

extern "C" llm_status llm_cuda_synchronize(void) {
    if (cuda_context_device() < 0) return LLM_OK;
    CUDA_TRY(cudaStreamSynchronize(llm_cuda_stream));
    CUDA_TRY(cudaGetLastError());
    return LLM_OK;
}

extern "C" void *llm_cuda_get_stream(void) { return (void *)llm_cuda_stream; }

extern "C" llm_status llm_cuda_memory(size_t *used_peak, size_t *total) {
    LLM_TRY(need_init("memory"));
    size_t free_bytes = 0, total_bytes = 0;
    CUDA_TRY(cudaMemGetInfo(&free_bytes, &total_bytes));
    if (used_peak) cuda_memory_stats(NULL, used_peak);
    if (total) *total = total_bytes;
    return LLM_OK;
}
