/*
 * bindings/generate.cpp — llmpy._C.Generator: a thin layer over the generator of llmpy.h
 * (csrc/core/generate.c), for every backend.
 *
 * Token ids, lengths and slots go in as int32 numpy arrays (python/llmpy/generate.py converts and
 * checks them first); logits come back as new (n, vocab_size) float32 arrays. The GIL is released
 * around prefill and decode; statuses become exceptions (bindings.h). A Generator keeps its Model
 * alive (the C generator reads the model's parameters).
 */
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/bindings.h"

namespace py = pybind11;

namespace {

struct Generator {
    llm_gen *g = nullptr;
    int vocab_size = 0;
    explicit Generator(llm_gen *p, int V) : g(p), vocab_size(V) {}
    Generator(const Generator &) = delete;
    Generator &operator=(const Generator &) = delete;
    ~Generator() { llm_gen_free(g); }
};

using ints = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

void check_1d(const ints &a, const char *what) {
    if (a.ndim() != 1) throw py::value_error(std::string(what) + " must be a 1-D int32 array");
    if (a.shape(0) > INT32_MAX) throw py::value_error(std::string(what) + " is too long");
}

py::dict info(const Generator &g) {
    llm_gen_info i;
    llm_gen_get_info(g.g, &i);
    py::dict d;
    d["weights"] = i.weights;
    d["slots"] = i.slots;
    d["max_len"] = i.max_len;
    d["cache_bytes"] = i.cache_bytes;
    d["work_bytes"] = i.work_bytes;
    d["copy_bytes"] = i.copy_bytes;
    d["step_bytes"] = i.step_bytes;
    return d;
}

} // namespace

void llmpy_register_generate(py::module_ &mod) {
    py::class_<Generator>(mod, "Generator", "generation with a KV cache over a Model (llmpy.h: llm_gen_*)")
        .def(py::init([](Model &m, py::object weights) {
                 std::string keep;
                 const char *w = nullptr;
                 if (!weights.is_none()) {
                     keep = weights.cast<std::string>();
                     w = keep.c_str();
                 }
                 llm_gen *g = nullptr;
                 llmpy_check(llmpy_nogil([&] { return llm_gen_create(&g, m.m, w); }));
                 return new Generator(g, llm_model_config(m.m).vocab_size);
             }),
             py::arg("model"), py::arg("weights") = py::none(), py::keep_alive<1, 2>(),
             "weights: 'fp32', 'bf16' (a converted copy on an fp32 model) or None (the model's precision)")
        .def(
            "reserve",
            [](Generator &g, int slots, int max_len) {
                llmpy_check(llmpy_nogil([&] { return llm_gen_reserve(g.g, slots, max_len); }));
            },
            py::arg("slots"), py::arg("max_len"), "sizes the cache and empties every slot")
        .def(
            "prefill",
            [](Generator &g, ints tokens, ints lengths, ints rows) {
                check_1d(tokens, "tokens");
                check_1d(lengths, "lengths");
                check_1d(rows, "rows");
                if (lengths.shape(0) != rows.shape(0)) throw py::value_error("lengths and rows must have the same length");
                const int n = (int)rows.shape(0);
                long long total = 0;
                for (int i = 0; i < n; i++) total += lengths.data()[i];
                if (total != tokens.shape(0))
                    throw py::value_error("tokens must hold sum(lengths) = " + std::to_string(total) + " ids, got " +
                                          std::to_string(tokens.shape(0)));
                py::array_t<float> out({(py::ssize_t)n, (py::ssize_t)g.vocab_size});
                float *dst = out.mutable_data();
                const int32_t *t = tokens.data(), *l = lengths.data(), *r = rows.data();
                llmpy_check(llmpy_nogil([&] { return llm_gen_prefill(g.g, t, l, r, n, dst); }));
                return out;
            },
            py::arg("tokens"), py::arg("lengths"), py::arg("rows"),
            "runs prompts (concatenated) into slots; returns the (n, V) logits after each prompt")
        .def(
            "decode",
            [](Generator &g, ints tokens, ints rows) {
                check_1d(tokens, "tokens");
                check_1d(rows, "rows");
                if (tokens.shape(0) != rows.shape(0)) throw py::value_error("tokens and rows must have the same length");
                const int n = (int)rows.shape(0);
                py::array_t<float> out({(py::ssize_t)n, (py::ssize_t)g.vocab_size});
                float *dst = out.mutable_data();
                const int32_t *t = tokens.data(), *r = rows.data();
                llmpy_check(llmpy_nogil([&] { return llm_gen_decode(g.g, t, r, n, dst); }));
                return out;
            },
            py::arg("tokens"), py::arg("rows"), "appends a token to each slot; returns the (n, V) logits that follow")
        .def("length", [](const Generator &g, int slot) { return llm_gen_length(g.g, slot); }, py::arg("slot"))
        .def_property_readonly("info", &info);
    mod.def("cpu_bf16_path", [] { return std::string(llm_cpu_bf16_path()); },
            "how the CPU multiplies bf16 weights: 'avx512_bf16' (VDPBF16PS) or 'convert' (widened to fp32)");
}
