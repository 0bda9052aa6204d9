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

#include "bindings.h"

extern "C" {
#include "formats.h"
}

namespace py = pybind11;

void llmpy_register_ops(py::module_ &m);       // bindings_ops.cpp
void llmpy_register_data(py::module_ &m);      // bindings_data.cpp
void llmpy_register_tokenizer(py::module_ &m); // bindings_tokenizer.cpp
void llmpy_register_dist(py::module_ &m);      // bindings_dist.cpp

#ifndef LLMPY_VERSION
#define LLMPY_VERSION "0.0.0"
#endif

// ----------------------------------------------------------------------------
// the model handle (struct Model: bindings.h)

using TokenArray = py::array_t<int32_t, py::array::c_style>;

static void check_tokens(const py::array &a, const char *what) {
    if (a.ndim() != 2) throw py::value_error(std::string(what) + " must be a 2-D (B, T) array");
    if (!a.dtype().is(py::dtype::of<int32_t>())) throw py::value_error(std::string(what) + " must have dtype int32");
    if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(what) + " must be C-contiguous");
}

static py::dict config_dict(const llm_config &c) {
    py::dict d;
    d["n_layer"] = c.n_layer;
    d["n_head"] = c.n_head;
    d["n_embd"] = c.n_embd;
    d["vocab_size"] = c.vocab_size;
    d["block_size"] = c.block_size;
    d["padded_vocab_size"] = c.padded_vocab_size;
    return d;
}

// A float32 view of backend memory kept alive by `base`.
static py::array view(float *data, std::vector<py::ssize_t> shape, std::vector<py::ssize_t> strides, py::handle base) {
    return py::array(py::dtype::of<float>(), shape, strides, data, base);
}

static py::array block_view(float *data, llm_block *block, std::vector<py::ssize_t> shape,
                            std::vector<py::ssize_t> strides) {
    py::capsule owner(block, [](void *p) { llm_block_release(static_cast<llm_block *>(p)); });
    return view(data, std::move(shape), std::move(strides), owner);
}

static py::array tensor_view(py::object self, int i, bool want_grad) {
    Model &m = self.cast<Model &>();
    llm_tensor t;
    llmpy_check(llm_model_tensor(m.m, i, &t));
    std::vector<py::ssize_t> shape(t.shape, t.shape + t.ndim), strides(t.ndim);
    py::ssize_t s = sizeof(float);
    for (int d = t.ndim - 1; d >= 0; d--) { strides[d] = s; s *= t.shape[d]; }
    return view(want_grad ? t.grad : t.data, shape, strides, self);
}

// ----------------------------------------------------------------------------
// module

PYBIND11_MODULE(_C, mod) {
    mod.doc() = "llmpy C core (thin pybind11 bindings over csrc/llmpy.h)";

    py::class_<Model>(mod, "Model")
        .def_static(
            "create",
            [](int n_layer, int n_head, int n_embd, int vocab_size, int block_size, int padded_vocab_size,
               const std::string &device, uint64_t seed) {
                llm_config c{n_layer, n_head, n_embd, vocab_size, block_size, padded_vocab_size};
                llm_model *p = nullptr;
                llmpy_check(llmpy_nogil([&] { return llm_model_create(&p, &c, device.c_str(), seed); }));
                return new Model(p);
            },
            py::arg("n_layer"), py::arg("n_head"), py::arg("n_embd"), py::arg("vocab_size"), py::arg("block_size"),
            py::arg("padded_vocab_size") = 0, py::arg("device") = "cpu", py::arg("seed") = 0)
        .def_static(
            "load",
            [](const std::string &path, const std::string &device) {
                llm_model *p = nullptr;
                llmpy_check(llmpy_nogil([&] { return llm_model_load(&p, path.c_str(), device.c_str()); }));
                return new Model(p);
            },
            py::arg("path"), py::arg("device") = "cpu")
        .def("save",
             [](Model &m, const std::string &path) { llmpy_check(llmpy_nogil([&] { return llm_model_save(m.m, path.c_str()); })); })
        .def(
            "save_state",
            [](Model &m, const std::string &path, const std::string &json) {
                llmpy_check(llmpy_nogil([&] { return llm_model_save_state(m.m, path.c_str(), json.c_str()); }));
            },
            py::arg("path"), py::arg("json") = "")
        .def(
            "load_state",
            [](Model &m, const std::string &path) {
                char *json = nullptr;
                llmpy_check(llmpy_nogil([&] { return llm_model_load_state(m.m, path.c_str(), &json); }));
                std::string text(json ? json : "");
                llm_free(json);
                return text;
            },
            py::arg("path"))
        .def(
            "forward",
            [](Model &m, py::array idx, py::object targets) -> py::object {
                check_tokens(idx, "idx");
                const int32_t *tp = nullptr;
                if (!targets.is_none()) {
                    py::array t = targets.cast<py::array>();
                    check_tokens(t, "targets");
                    if (t.shape(0) != idx.shape(0) || t.shape(1) != idx.shape(1))
                        throw py::value_error("targets shape must equal idx shape");
                    tp = static_cast<const int32_t *>(t.data());
                }
                if (idx.shape(0) > INT32_MAX || idx.shape(1) > INT32_MAX) throw py::value_error("batch too large");
                int B = (int)idx.shape(0), T = (int)idx.shape(1);
                const int32_t *ip = static_cast<const int32_t *>(idx.data());
                float loss = 0.0f;
                llmpy_check(llmpy_nogil([&] { return llm_forward(m.m, ip, tp, B, T, &loss); }));
                if (!tp) return py::none();
                return py::float_(loss);
            },
            py::arg("idx"), py::arg("targets") = py::none())
        .def("zero_grad", [](Model &m) { llmpy_check(llmpy_nogil([&] { return llm_zero_grad(m.m); })); })
        .def(
            "backward", [](Model &m, float s) { llmpy_check(llmpy_nogil([&] { return llm_backward(m.m, s); })); },
            py::arg("loss_scale") = 1.0f)
        .def(
            "step",
            [](Model &m, float lr, float b1, float b2, float eps, float wd, float clip) {
                float norm = 0.0f;
                llmpy_check(llmpy_nogil([&] { return llm_step(m.m, lr, b1, b2, eps, wd, clip, &norm); }));
                return norm;
            },
            py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
            py::arg("grad_clip"))
        .def("tensor", [](py::object self, int i) { return tensor_view(self, i, false); })
        .def("grad", [](py::object self, int i) { return tensor_view(self, i, true); })
        .def("logits",
             [](Model &m) {
                 float *p;
                 int B, T, V, Vp;
                 llm_block *b;
                 llmpy_check(llm_model_logits(m.m, &p, &B, &T, &V, &Vp, &b));
                 py::ssize_t f = sizeof(float);
                 return block_view(p, b, {B, T, V}, {(py::ssize_t)T * Vp * f, (py::ssize_t)Vp * f, f});
             })
        .def("losses",
             [](Model &m) {
                 float *p;
                 int B, T;
                 llm_block *b;
                 llmpy_check(llm_model_losses(m.m, &p, &B, &T, &b));
                 py::ssize_t f = sizeof(float);
                 return block_view(p, b, {B, T}, {(py::ssize_t)T * f, f});
             })
        .def_property_readonly("config", [](Model &m) { return config_dict(llm_model_config(m.m)); })
        .def_property_readonly("num_parameters", [](Model &m) { return llm_model_num_parameters(m.m); })
        .def_property_readonly("steps", [](Model &m) { return llm_model_steps(m.m); })
        .def_property_readonly("device", [](Model &m) { return std::string(llm_model_device(m.m)); });

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
        d["cpu_isa"] = llm_cpu_isa();
        d["cpu_isas"] = std::string(llm_cpu_isa_list());
        return d;
    });
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
    formats["TRAIN_STATE_MAGIC"] = LLM_TRAIN_STATE_MAGIC;
    formats["TRAIN_STATE_VERSION"] = LLM_TRAIN_STATE_VERSION;
    formats["VOCAB_PAD"] = LLM_VOCAB_PAD;
    mod.attr("formats") = formats;

    py::module_ ops = mod.def_submodule("ops", "single ops of the CPU backend, for tests and development");
    llmpy_register_ops(ops);
    py::module_ data = mod.def_submodule("data", "token shards and the C data loader");
    llmpy_register_data(data);
    py::module_ tok = mod.def_submodule("tokenizer", "BPE training hot loop and token decoding");
    llmpy_register_tokenizer(tok);
    py::module_ dist = mod.def_submodule("dist", "data parallelism: MPI process group, gradient averaging, ZeRO-1");
    llmpy_register_dist(dist);
}
