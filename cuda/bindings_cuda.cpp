/*
 * bindings_cuda.cpp — the pybind11 module llmpy._cuda: the CUDA backend.
 *
 * It carries its own copy of the C core, with the CUDA op tables registered in it by init(), and
 * the same Model class as llmpy._C (csrc/bindings_model.cpp), so python/llmpy/model.py drives
 * both the same way. Importing it touches no GPU; init(device) selects one (llmpy.cuda.module()
 * calls it). ops_fp32 / ops_bf16 expose the single ops of each precision for tests and dev/.
 */
#include <pybind11/pybind11.h>

#include <string>

#include "../csrc/bindings.h"

extern "C" {
#include "../csrc/ops.h"
#include "ops_cuda.h"
}

namespace py = pybind11;

void llmpy_register_model(py::module_ &m);                  // csrc/bindings_model.cpp
void llmpy_register_ops(py::module_ &m, const llm_ops *be); // csrc/bindings_ops.cpp

PYBIND11_MODULE(_cuda, mod) {
    mod.doc() = "llmpy CUDA backend (the C core with the CUDA op tables; see llmpy.cuda)";
    llmpy_register_model(mod);
    mod.def("device_count", &llm_cuda_device_count, "usable GPUs (0 without a driver or a GPU)");
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
}
