/*
 * hellaswag.cpp — llmpy._C.hellaswag: thin bindings over csrc/data/hellaswag.h, the HellaSwag
 * scorer that python/llmpy/hellaswag.py calls (it renders, shows progress and reduces over ranks).
 *
 * Arrays in and out, statuses -> exceptions (bindings.h), the GIL released around every forward.
 *
 * Example (Python):
 *   s = _C.hellaswag.EvalSet(tokens, lengths, labels)   # int32: (N,), (n, 5), (n,)
 *   order, pack_end = s.plan(model._m, 2048, 0, 1)      # this rank's examples, cut into packs
 *   total, count = s.score(model._m, order[:pack_end[0]])  # (k, 4) float64 / int64
 */
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "bindings/bindings.h"

extern "C" {
#include "data/hellaswag.h"
}

namespace py = pybind11;

namespace {

struct EvalSet {
    llm_hellaswag *h = nullptr;
    explicit EvalSet(llm_hellaswag *p) : h(p) {}
    EvalSet(const EvalSet &) = delete;
    EvalSet &operator=(const EvalSet &) = delete;
    ~EvalSet() { llm_hellaswag_free(h); }
};

using I32 = py::array_t<int32_t, py::array::c_style>;
using I64 = py::array_t<int64_t, py::array::c_style>;

EvalSet *create(const I32 &tokens, const I32 &lengths, const I32 &labels) {
    if (tokens.ndim() != 1 || labels.ndim() != 1 || lengths.ndim() != 2 ||
        lengths.shape(1) != LLM_HELLASWAG_ENDINGS + 1 || lengths.shape(0) != labels.shape(0))
        throw py::value_error("EvalSet needs tokens (N,), lengths (n, 5) and labels (n,)");
    const int32_t *t = tokens.data(), *len = lengths.data(), *lab = labels.data();
    const int64_t num_tokens = tokens.size(), n = labels.size();
    llm_hellaswag *h = nullptr;
    llmpy_check(llmpy_nogil([&] { return llm_hellaswag_create(&h, t, num_tokens, len, lab, n); }));
    return new EvalSet(h);
}

py::tuple plan(const EvalSet &s, Model &m, int64_t max_tokens, int rank, int world_size) {
    std::vector<int64_t> order((size_t)llm_hellaswag_size(s.h)), pack_end(order.size());
    int64_t mine = 0, packs = 0;
    llmpy_check(llmpy_nogil([&] {
        return llm_hellaswag_plan(s.h, m.m, max_tokens, rank, world_size, order.data(), pack_end.data(), &mine,
                                  &packs);
    }));
    return py::make_tuple(I64(mine, order.data()), I64(packs, pack_end.data()));
}

py::tuple score(const EvalSet &s, Model &m, const I64 &examples) {
    if (examples.ndim() != 1) throw py::value_error("examples must be a 1-D array of example indices");
    const py::ssize_t k = examples.size();
    py::array_t<double> total({k, (py::ssize_t)LLM_HELLASWAG_ENDINGS});
    I64 count({k, (py::ssize_t)LLM_HELLASWAG_ENDINGS});
    const int64_t *e = examples.data();
    double *t = total.mutable_data();
    int64_t *c = count.mutable_data();
    llmpy_check(llmpy_nogil([&] { return llm_hellaswag_score(m.m, s.h, e, k, t, c); }));
    return py::make_tuple(total, count);
}

py::tuple evaluate(const EvalSet &s, Model &m, int max_tokens, int rank, int world_size) {
    const py::ssize_t n = llm_hellaswag_size(s.h);
    py::array_t<int32_t> pred(n);
    int32_t *p = pred.mutable_data();
    for (py::ssize_t i = 0; i < n; i++) p[i] = -1; // examples of other ranks
    llm_hellaswag_result r;
    llmpy_check(llmpy_nogil([&] { return llm_hellaswag_eval(m.m, s.h, max_tokens, rank, world_size, &r, p); }));
    return py::make_tuple(r.n, r.correct, r.correct_norm, pred);
}

} // namespace

void llmpy_register_hellaswag(py::module_ &mod) {
    mod.attr("ENDINGS") = LLM_HELLASWAG_ENDINGS;
    mod.attr("MAX_TOKENS") = LLM_HELLASWAG_MAX_TOKENS;
    py::class_<EvalSet>(mod, "EvalSet", "Rendered HellaSwag examples held by the C scorer (csrc/data/hellaswag.h)")
        .def(py::init(&create), py::arg("tokens"), py::arg("lengths"), py::arg("labels"),
             "tokens (N,): per example the context, then endings 0..3; lengths (n, 5): the context length, then "
             "the ending lengths; labels (n,). All int32.")
        .def_static(
            "load",
            [](const std::string &path) {
                llm_hellaswag *h = nullptr;
                llmpy_check(llmpy_nogil([&] { return llm_hellaswag_load(&h, path.c_str()); }));
                return new EvalSet(h);
            },
            py::arg("path"), "reads llm.c's eval file (python -m llmpy.hellaswag --write-eval-file)")
        .def("__len__", [](const EvalSet &s) { return llm_hellaswag_size(s.h); })
        .def(
            "labels",
            [](const EvalSet &s) {
                py::array_t<int32_t> out(llm_hellaswag_size(s.h));
                int32_t *p = out.mutable_data();
                for (py::ssize_t i = 0; i < out.size(); i++) p[i] = llm_hellaswag_label(s.h, i);
                return out;
            },
            "(n,) int32 label of every example")
        .def("plan", &plan, py::arg("model"), py::arg("max_tokens"), py::arg("rank") = 0, py::arg("world_size") = 1,
             "(order, pack_end) int64: this rank's example indices sorted by width, and where each pack of at "
             "most max_tokens tokens per forward ends in order")
        .def("score", &score, py::arg("model"), py::arg("examples"),
             "(total, count) (k, 4): summed ending losses (float64) and ending lengths of examples, one forward")
        .def("evaluate", &evaluate, py::arg("model"), py::arg("max_tokens") = LLM_HELLASWAG_MAX_TOKENS,
             py::arg("rank") = 0, py::arg("world_size") = 1,
             "(n, correct, correct_norm, pred_norm) of this rank's share, as train_gpt2 scores it; pred_norm (n,) "
             "int32 is -1 for the examples of other ranks");
}
