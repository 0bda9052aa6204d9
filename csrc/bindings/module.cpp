/*
 * bindings/module.cpp — the pybind11 module llmpy._C: a thin layer over llmpy.h.
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
#include <vector>

#include "bindings/bindings.h"

extern "C" {
#include "core/formats.h"
#include "core/ops.h"
}

namespace py = pybind11;

void llmpy_register_model(py::module_ &m);     // bindings/model.cpp
void llmpy_register_ops(py::module_ &m, const llm_ops *be); // bindings/ops.cpp
void llmpy_register_data(py::module_ &m);      // bindings/data.cpp
void llmpy_register_tokenizer(py::module_ &m); // bindings/tokenizer.cpp
void llmpy_register_dist(py::module_ &m);      // bindings/dist.cpp
void llmpy_register_model_file(py::module_ &m); // bindings/model_file.cpp
void llmpy_register_hellaswag(py::module_ &m); // bindings/hellaswag.cpp
void llmpy_register_run(py::module_ &m);       // bindings/run.cpp

#ifndef LLMPY_VERSION
#define LLMPY_VERSION "0.0.0"
#endif

// ----------------------------------------------------------------------------
// module

PYBIND11_MODULE(_C, mod) {
    mod.doc() = "llmpy C core (thin pybind11 bindings over csrc/core/llmpy.h)";
    llmpy_register_model(mod);
    llmpy_register_model_file(mod);

    // the tensor table (llmpy.h: llm_tensor_spec), from the C side so that it cannot drift
    static const char *const dim_names[] = {"", "L", "Vp", "maxT", "C", "3C", "4C"};
    static const char *const init_names[] = {"zero", "one", "normal", "normal_residual"};
    py::list names, specs;
    for (int i = 0; i < LLM_NUM_TENSORS; i++) {
        const llm_tensor_spec *t = llm_tensor_spec_of(i);
        py::list dims;
        for (int d = 0; d < 3 && t->dims[d] != LLM_DIM_NONE; d++) dims.append(dim_names[t->dims[d]]);
        py::dict row;
        row["name"] = t->name;
        row["dims"] = py::tuple(dims);
        row["per_layer"] = (bool)llm_tensor_per_layer(i);
        row["decays"] = (bool)t->decays;
        row["init"] = init_names[t->init];
        names.append(t->name);
        specs.append(row);
    }
    mod.attr("TENSOR_NAMES") = names;
    mod.attr("TENSORS") = specs;
    mod.def(
        "check_config",
        [](int n_layer, int n_head, int n_embd, int vocab_size, int block_size, int padded_vocab_size) {
            llm_config c{n_layer, n_head, n_embd, vocab_size, block_size, padded_vocab_size};
            llmpy_check(llm_config_check(&c));
        },
        py::arg("n_layer"), py::arg("n_head"), py::arg("n_embd"), py::arg("vocab_size"), py::arg("block_size"),
        py::arg("padded_vocab_size") = 0,
        "ValueError naming the field when the core cannot build this configuration (llm_config_check)");
    mod.def(
        "tensor_shapes",
        [](int n_layer, int n_head, int n_embd, int vocab_size, int block_size, int padded_vocab_size) {
            llm_config c{n_layer, n_head, n_embd, vocab_size, block_size, padded_vocab_size};
            llmpy_check(llm_config_check(&c));
            py::list out;
            for (int i = 0; i < LLM_NUM_TENSORS; i++) {
                int64_t shape[3];
                int nd = llm_tensor_shape(&c, i, shape);
                out.append(py::tuple(py::cast(std::vector<int64_t>(shape, shape + nd))));
            }
            return out;
        },
        py::arg("n_layer"), py::arg("n_head"), py::arg("n_embd"), py::arg("vocab_size"), py::arg("block_size"),
        py::arg("padded_vocab_size") = 0,
        "the 16 tensors' shapes for a configuration, in the model-file layout (wte with the padded rows)");

    // training rules shared with train_gpt2 (llmpy.h: llm_schedule)
    auto schedule = [](int max_steps, double lr, int warmup_steps, const std::string &kind, double min_lr_frac) {
        llm_schedule s{LLM_LR_COSINE, lr, warmup_steps, max_steps, min_lr_frac};
        llmpy_check(llm_schedule_parse(kind.c_str(), &s.kind));
        llmpy_check(llm_schedule_check(&s));
        return s;
    };
    mod.def(
        "check_schedule",
        [schedule](int max_steps, double lr, int warmup_steps, const std::string &kind, double min_lr_frac) {
            schedule(max_steps, lr, warmup_steps, kind, min_lr_frac);
        },
        py::arg("max_steps"), py::arg("lr"), py::arg("warmup_steps"), py::arg("schedule"), py::arg("min_lr_frac"),
        "ValueError naming the flag when the schedule's settings are invalid");
    mod.def(
        "lr_at",
        [schedule](int64_t step, int max_steps, double lr, int warmup_steps, const std::string &kind,
                   double min_lr_frac) {
            llm_schedule s = schedule(max_steps, lr, warmup_steps, kind, min_lr_frac);
            return llm_lr_at(&s, step);
        },
        py::arg("step"), py::arg("max_steps"), py::arg("lr"), py::arg("warmup_steps"), py::arg("schedule"),
        py::arg("min_lr_frac"));
    mod.def(
        "grad_accumulation",
        [](int64_t total_batch_size, int B, int T, int world_size) {
            int accum = 0;
            llmpy_check(llm_grad_accumulation(total_batch_size, B, T, world_size, &accum));
            return accum;
        },
        py::arg("total_batch_size"), py::arg("batch_size"), py::arg("seq_len"), py::arg("world_size"));
    mod.def(
        "check_train_flags",
        [](int batch_size, int seq_len, int val_steps, int eval_every, int sample_every, int sample_tokens,
           int checkpoint_every, int hellaswag_every, int keep_checkpoints, int threads, int zero_stage, double beta1,
           double beta2, double weight_decay, double grad_clip) {
            llm_train_flags f{batch_size,      seq_len,          val_steps, eval_every, sample_every,
                              sample_tokens,   checkpoint_every, hellaswag_every, keep_checkpoints,
                              threads,         zero_stage,       beta1,     beta2,      weight_decay, grad_clip};
            llmpy_check(llm_train_flags_check(&f));
        },
        py::kw_only(), py::arg("batch_size"), py::arg("seq_len"), py::arg("val_steps"), py::arg("eval_every"),
        py::arg("sample_every"), py::arg("sample_tokens"), py::arg("checkpoint_every"), py::arg("hellaswag_every"),
        py::arg("keep_checkpoints"), py::arg("threads"), py::arg("zero_stage"), py::arg("beta1"), py::arg("beta2"),
        py::arg("weight_decay"), py::arg("grad_clip"),
        "ValueError naming the flag when a training flag is out of range (llm_train_flags_check)");
    mod.def(
        "set_num_threads", [](int n) { llmpy_check(llm_set_num_threads(n)); }, py::arg("n"),
        "OpenMP threads of the CPU backend (ValueError for n < 1)");
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
    formats["TRAIN_STATE_VERSION_V1"] = LLM_TRAIN_STATE_VERSION_V1;
    formats["RUN_ID_AT"] = LLM_RUN_ID_AT;
    formats["RUN_ID_MAX"] = LLM_RUN_ID_MAX;
    formats["INTEGRITY_AT"] = LLM_INTEGRITY_AT;
    formats["INTEGRITY_MAGIC"] = LLM_INTEGRITY_MAGIC;
    formats["CHECKSUM_CRC32C"] = LLM_CHECKSUM_CRC32C;
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
    py::module_ run = mod.def_submodule("run", "run folders: lock, new-run check, resumed log, resumable flags");
    llmpy_register_run(run);
}
