/*
 * bindings_cuda.cpp — the pybind11 module llmpy._cuda: the CUDA backend, and nothing else.
 *
 * The C core lives once per process in libllmpy.so, which llmpy._C and this module both link:
 * the Model class, the backend registry, the MPI state and the error slot are llmpy._C's. This
 * module adds the CUDA op tables to that registry (init) and the CUDA-only functions, so a
 * model created through llmpy._C with device "cuda" runs here once init() has been called.
 * Importing it touches no GPU (llmpy.cuda.module() calls init). A CPU-only install never has
 * this module, and so never needs the CUDA libraries.
 *
 * ops_fp32 / ops_bf16: the single ops of each precision on host arrays (copied in and out), for
 * tests; raw_fp32 / raw_bf16: ops on device pointers (bindings_raw.cpp), for benchmarks.
 */
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/bindings.h"

extern "C" {
#include "core/ops.h"
#include "ops_cuda.h"
}

namespace py = pybind11;

void llmpy_register_ops(py::module_ &m, const llm_ops *be); // csrc/bindings/ops.cpp
void llmpy_register_raw(py::module_ &m, const llm_ops *be); // cuda/bindings_raw.cpp

PYBIND11_MODULE(_cuda, mod) {
    mod.doc() = "llmpy CUDA backend: registers the CUDA op tables in the core (see llmpy.cuda)";
    mod.def("device_count", &llm_cuda_device_count, "usable GPUs (0 without a driver or a GPU)");
    mod.def(
        "probe",
        [] {
            char why[512] = {0};
            const int n = llm_cuda_probe(why, sizeof why);
            return py::make_tuple(n, std::string(why));
        },
        "(usable GPUs, reason when there are none: 'no driver: ...', 'no device: ...', 'driver error: ...')");
    mod.def(
        "init", [](int device) { llmpy_check(llmpy_nogil([&] { return llm_cuda_init(device); })); },
        py::arg("device") = 0, "selects the GPU and registers the 'cuda' backend (fp32 and bf16); idempotent");
    mod.def("device_name", [] {
        char buf[256] = {0};
        llmpy_check(llm_cuda_device_name(buf, sizeof buf));
        return std::string(buf);
    });
    mod.def(
        "set_attention", [](const std::string &name) { llmpy_check(llm_cuda_set_attention(name.c_str())); },
        py::arg("name"), "'flash' (our flash-attention kernels, the default) or 'reference' (cuBLAS + softmax)");
    mod.def("attention", [] { return std::string(llm_cuda_attention()); });
    mod.def("synchronize", [] { llmpy_check(llmpy_nogil([] { return llm_cuda_synchronize(); })); });
    mod.def("memory", [] {
        size_t peak = 0, total = 0;
        llmpy_check(llm_cuda_memory(&peak, &total));
        return py::make_tuple(peak, total);
    }, "(peak bytes llmpy allocated, device memory in bytes)");
    py::module_ f32 = mod.def_submodule("ops_fp32", "single CUDA ops in fp32 (arrays copied in and out)");
    llmpy_register_ops(f32, &llm_cuda_ops_fp32);
    py::module_ bf16 = mod.def_submodule("ops_bf16", "single CUDA ops in bf16 (inputs rounded to bf16, fp32 out)");
    llmpy_register_ops(bf16, &llm_cuda_ops_bf16);
    py::module_ rf32 = mod.def_submodule("raw_fp32", "CUDA ops in fp32 on device pointers (for benchmarks)");
    llmpy_register_raw(rf32, &llm_cuda_ops_fp32);
    py::module_ rbf16 = mod.def_submodule("raw_bf16", "CUDA ops in bf16 on device pointers (for benchmarks)");
    llmpy_register_raw(rbf16, &llm_cuda_ops_bf16);
}
