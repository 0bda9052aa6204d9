/*
 * context.cu — the CUDA backend's process-wide state: the device, the stream every op runs on,
 * the cuBLAS/cuBLASLt handles and workspace, device-memory accounting, and the scratch buffers
 * of common.cuh.
 *
 * One device and one stream per process: every op and every copy is issued on llm_cuda_stream,
 * so ops are ordered among themselves without further synchronisation. The stream is a
 * blocking one (it also orders with the legacy default stream), which keeps mixed use with
 * other libraries that use the default stream safe.
 *
 * Memory accounting: cuda_malloc_tracked/cuda_free_tracked record the size of each block, so
 * that llm_cuda_memory() can report the peak of what llmpy held (parameters, activations,
 * scratch, workspace), independently of what other libraries in the process allocate.
 *
 * Not thread-safe beyond the allocation table (which has a mutex): ops are issued from one
 * thread at a time, as the model does.
 */
#include <stdio.h>
#include <stdlib.h>

#include <mutex>
#include <unordered_map>

#include "context.cuh"

// ----------------------------------------------------------------------------
// global state

cudaStream_t llm_cuda_stream = nullptr;
int llm_cuda_sm_count = 0;
cublasHandle_t llm_cuda_cublas = nullptr;
cublasLtHandle_t llm_cuda_cublaslt = nullptr;
void *llm_cuda_cublaslt_workspace = nullptr;
size_t llm_cuda_cublaslt_workspace_bytes = 0;

static int context_device = -1;

// cuBLASLt workspace: 32 MiB is what NVIDIA recommends for Hopper (enough for every algorithm).
#define CUBLASLT_WORKSPACE_BYTES ((size_t)32 << 20)

// ----------------------------------------------------------------------------
// tracked device memory

static std::mutex alloc_mutex;
static std::unordered_map<void *, size_t> alloc_sizes;
static size_t alloc_current = 0, alloc_peak = 0;

llm_status cuda_malloc_tracked(void **out, size_t bytes) {
    *out = nullptr;
    if (bytes == 0) bytes = 1; // a valid, freeable pointer for empty buffers
    void *p = nullptr;
    cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
        (void)cudaGetLastError(); // clear the sticky-free error state of the runtime
        if (err == cudaErrorMemoryAllocation)
            return llm_fail(LLM_ENOMEM, "CUDA out of memory allocating %zu bytes (llmpy holds %zu)", bytes,
                            alloc_current);
        return cuda_check(err, "cudaMalloc", __FILE__, __LINE__);
    }
    std::lock_guard<std::mutex> lock(alloc_mutex);
    alloc_sizes[p] = bytes;
    alloc_current += bytes;
    if (alloc_current > alloc_peak) alloc_peak = alloc_current;
    *out = p;
    return LLM_OK;
}

void cuda_free_tracked(void *p) {
    if (!p) return;
    {
        std::lock_guard<std::mutex> lock(alloc_mutex);
        auto it = alloc_sizes.find(p);
        if (it != alloc_sizes.end()) {
            alloc_current -= it->second;
            alloc_sizes.erase(it);
        }
    }
    (void)cudaFree(p); // implicitly waits for the device; nothing useful to do on failure
}

void cuda_memory_stats(size_t *current, size_t *peak) {
    std::lock_guard<std::mutex> lock(alloc_mutex);
    if (current) *current = alloc_current;
    if (peak) *peak = alloc_peak;
}

// ----------------------------------------------------------------------------
// scratch

static void *dev_scratch = nullptr, *host_scratch = nullptr;
static size_t dev_scratch_bytes = 0, host_scratch_bytes = 0;

// Round a request up to whole MiB so that slowly growing requests do not reallocate each time.
static size_t scratch_round(size_t bytes) { return (bytes + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1); }

llm_status cuda_device_scratch(void **out, size_t bytes) {
    *out = nullptr;
    if (bytes > dev_scratch_bytes) {
        // earlier ops on the stream may still use the old buffer
        CUDA_TRY(cudaStreamSynchronize(llm_cuda_stream));
        cuda_free_tracked(dev_scratch);
        dev_scratch = nullptr;
        dev_scratch_bytes = 0;
        const size_t n = scratch_round(bytes);
        LLM_TRY(cuda_malloc_tracked(&dev_scratch, n));
        dev_scratch_bytes = n;
    }
    *out = dev_scratch;
    return LLM_OK;
}

llm_status cuda_host_scratch(void **out, size_t bytes) {
    *out = nullptr;
    if (bytes > host_scratch_bytes) {
        CUDA_TRY(cudaStreamSynchronize(llm_cuda_stream));
        if (host_scratch) (void)cudaFreeHost(host_scratch);
        host_scratch = nullptr;
        host_scratch_bytes = 0;
        const size_t n = scratch_round(bytes);
        cudaError_t err = cudaMallocHost(&host_scratch, n);
        if (err != cudaSuccess) {
            (void)cudaGetLastError();
            host_scratch = nullptr;
            return llm_fail(LLM_ENOMEM, "cudaMallocHost of %zu bytes failed: %s", n, cudaGetErrorString(err));
        }
        host_scratch_bytes = n;
    }
    *out = host_scratch;
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// initialisation

int cuda_context_device(void) { return context_device; }

static void context_release(void) {
    if (llm_cuda_cublaslt_workspace) cuda_free_tracked(llm_cuda_cublaslt_workspace);
    if (llm_cuda_cublaslt) cublasLtDestroy(llm_cuda_cublaslt);
    if (llm_cuda_cublas) cublasDestroy(llm_cuda_cublas);
    if (llm_cuda_stream) cudaStreamDestroy(llm_cuda_stream);
    llm_cuda_cublaslt_workspace = nullptr;
    llm_cuda_cublaslt_workspace_bytes = 0;
    llm_cuda_cublaslt = nullptr;
    llm_cuda_cublas = nullptr;
    llm_cuda_stream = nullptr;
}

static llm_status context_create(int device) {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        (void)cudaGetLastError();
        return llm_fail(LLM_EUNSUPPORTED, "no CUDA device available (%s)",
                        err != cudaSuccess ? cudaGetErrorString(err) : "device count is 0");
    }
    if (device < 0 || device >= count)
        return llm_fail(LLM_EINVAL, "CUDA device %d does not exist (%d device%s)", device, count,
                        count == 1 ? "" : "s");
    CUDA_TRY(cudaSetDevice(device));
    CUDA_TRY(cudaDeviceGetAttribute(&llm_cuda_sm_count, cudaDevAttrMultiProcessorCount, device));
    CUDA_TRY(cudaStreamCreate(&llm_cuda_stream));
    CUBLAS_TRY(cublasCreate(&llm_cuda_cublas));
    CUBLAS_TRY(cublasSetStream(llm_cuda_cublas, llm_cuda_stream));
    // fp32 products in fp32 (no TF32): the default math mode with CUBLAS_COMPUTE_32F
    CUBLAS_TRY(cublasSetMathMode(llm_cuda_cublas, CUBLAS_DEFAULT_MATH));
    CUBLAS_TRY(cublasLtCreate(&llm_cuda_cublaslt));
    LLM_TRY(cuda_malloc_tracked(&llm_cuda_cublaslt_workspace, CUBLASLT_WORKSPACE_BYTES));
    llm_cuda_cublaslt_workspace_bytes = CUBLASLT_WORKSPACE_BYTES;
    return LLM_OK;
}

llm_status cuda_context_init(int device) {
    if (context_device >= 0) {
        if (device == context_device) return LLM_OK;
        return llm_fail(LLM_EINVAL, "the CUDA backend is already initialised on device %d (asked for %d)",
                        context_device, device);
    }
    llm_status s = context_create(device);
    if (s != LLM_OK) {
        context_release();
        return s;
    }
    context_device = device;
    return LLM_OK;
}

// ----------------------------------------------------------------------------
// why there is no usable GPU

extern "C" int llm_cuda_probe(char *why, size_t n) {
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    (void)cudaGetLastError(); // a failed probe must not look like a failed op later
    if (err == cudaSuccess && count > 0) {
        if (why && n) why[0] = '\0';
        return count;
    }
    if (!why || n == 0) return 0;
    int driver = 0, runtime = 0;
    (void)cudaDriverGetVersion(&driver); // 0: no driver library could be loaded
    (void)cudaRuntimeGetVersion(&runtime);
    (void)cudaGetLastError();
    if (err == cudaSuccess || err == cudaErrorNoDevice) {
        const char *visible = getenv("CUDA_VISIBLE_DEVICES");
        snprintf(why, n, "no device: the NVIDIA driver found no GPU%s%s%s", visible ? " (CUDA_VISIBLE_DEVICES=" : "",
                 visible ? visible : "", visible ? ")" : "");
    } else if (driver == 0) {
        snprintf(why, n, "no driver: the NVIDIA driver (libcuda.so.1) is not installed or could not be loaded");
    } else if (err == cudaErrorInsufficientDriver) {
        snprintf(why, n, "no driver: the NVIDIA driver supports CUDA %d.%d, this llmpy was built with CUDA %d.%d; "
                         "update the driver", driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
    } else {
        snprintf(why, n, "driver error: %s (%s)", cudaGetErrorString(err), cudaGetErrorName(err));
    }
    return 0;
}
