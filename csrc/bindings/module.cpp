/*
 * bindings.cpp — the pybind11 module llmpy._C: a thin layer over llmpy.h.
 *
 * Arrays in and out without copies, C status codes turned into Python exceptions, the GIL
 * released around every long call. No model logic lives here: validation that needs numpy
 * (dtypes, friendly conversions) is in python/llmpy/model.py, everything else in C.
 *
 * Status -> exception mapping: bindings.h.
 */
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "bindings/bindings.h"

extern "C" {
#include "core/formats.h"
#include "core/ops.h"
}

namespace py = pybind11;

void llmpy_register_model(py::module_ &m);     // bindings_model.cpp
void llmpy_register_ops(py::module_ &m, const llm_ops *be); // bindings_ops.cpp
void llmpy_register_data(py::module_ &m);      // bindings_data.cpp
void llmpy_register_tokenizer(py::module_ &m); // bindings_tokenizer.cpp
void llmpy_register_dist(py::module_ &m);      // bindings_dist.cpp
void llmpy_register_hellaswag(py::module_ &m); // hellaswag.cpp

#ifndef LLMPY_VERSION
#define LLMPY_VERSION "0.0.0"
#endif

// ----------------------------------------------------------------------------
// module

PYBIND11_MODULE(_C, mod) {
    mod.doc() = "llmpy C core (thin pybind11 bindings over csrc/core/llmpy.h)";
    llmpy_register_model(mod);

    py::list names; // from the C side, so they cannot drift
    for (int i = 0; i < LLM_NUM_TENSORS; i++) names.append(llm_tensor_name(i));
    mod.attr("TENSOR_NAMES") = names;

    mod.def("set_num_threads", &llm_set_num_threads, py::arg("n"));
    mod.def("get_num_threads", &llm_get_num_threads);
    mod.def("build_info", [] {
        py::dict d;
        d["version"] = LLMPY_VERSION;
        d["compiler"] = llm_build_compiler();
        d["openmp"] = (bool)llm_build_has_openmp();
        d["cuda"] = (bool)llm_build_has_cuda();
        d["mpi"] = (bool)llm_build_has_mpi();
        d["nccl"] = (bool)llm_build_has_nccl();
        d["cpu_isa"] = llm_cpu_isa();
        d["cpu_isas"] = std::string(llm_cpu_isa_list());
        return d;
    });
    mod.def(
        "parse_device",
        [](const std::string &spec) {
            llm_device d;
            llmpy_check(llm_device_parse(spec.c_str(), &d));
            char buf[32];
            return std::string(llm_device_format(&d, buf, sizeof buf));
        },
        py::arg("spec"), "Checks a device string (auto, cpu, cuda, cuda:N) and returns it in canonical form.");
    mod.def(
        "resolve_device",
        [](const std::string &spec, int cuda_count, int local_rank, const std::string &why_no_cuda) {
            llm_device d, r;
            llmpy_check(llm_device_parse(spec.c_str(), &d));
            llmpy_check(llm_device_resolve(&d, cuda_count, local_rank, why_no_cuda.c_str(), &r));
            char buf[32];
            return std::string(llm_device_format(&r, buf, sizeof buf));
        },
        py::arg("spec"), py::arg("cuda_count"), py::arg("local_rank"), py::arg("why_no_cuda") = "",
        "The device this process uses for spec: 'cpu' or 'cuda:N' (rules in csrc/core/device.c).");
    mod.def(
        "set_cpu_isa", [](const std::string &name) { llmpy_check(llm_set_cpu_isa(name.c_str())); }, py::arg("name"),
        "Selects the CPU kernels' instruction-set variant ('auto' = the best this CPU supports).");
    py::dict formats;
    formats["HEADER_INTS"] = LLM_HEADER_INTS;
    formats["MODEL_MAGIC"] = LLM_MODEL_MAGIC;
    formats["MODEL_VERSION_FP32"] = LLM_MODEL_VERSION_FP32;
    formats["MODEL_VERSION_BF16"] = LLM_MODEL_VERSION_BF16;
    formats["STATE_MAGIC"] = LLM_STATE_MAGIC;
    formats["STATE_VERSION"] = LLM_STATE_VERSION;
    formats["SHARD_MAGIC"] = LLM_SHARD_MAGIC;
    formats["SHARD_VERSION"] = LLM_SHARD_VERSION;
    formats["TOKENIZER_MAGIC"] = LLM_TOKENIZER_MAGIC;
    formats["TOKENIZER_VERSION"] = LLM_TOKENIZER_VERSION;
    formats["HELLASWAG_MAGIC"] = LLM_HELLASWAG_MAGIC;
    formats["HELLASWAG_VERSION"] = LLM_HELLASWAG_VERSION;
    formats["TRAIN_STATE_MAGIC"] = LLM_TRAIN_STATE_MAGIC;
    formats["TRAIN_STATE_VERSION"] = LLM_TRAIN_STATE_VERSION;
    formats["VOCAB_PAD"] = LLM_VOCAB_PAD;
    mod.attr("formats") = formats;

    py::module_ ops = mod.def_submodule("ops", "single ops of the CPU backend, for tests and development");
    llmpy_register_ops(ops, &llm_cpu_ops);
    py::module_ data = mod.def_submodule("data", "token shards and the C data loader");
    llmpy_register_data(data);
    py::module_ tok = mod.def_submodule("tokenizer", "BPE training hot loop and token decoding");
    llmpy_register_tokenizer(tok);
    py::module_ dist = mod.def_submodule("dist", "data parallelism: MPI process group, gradient averaging, ZeRO-1");
    llmpy_register_dist(dist);
    py::module_ hellaswag = mod.def_submodule("hellaswag", "HellaSwag eval sets and the scorer (csrc/data/hellaswag.h)");
    llmpy_register_hellaswag(hellaswag);
}
