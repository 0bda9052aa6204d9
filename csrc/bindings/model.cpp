/*
 * bindings/model.cpp — the Model class of llmpy._C, for every backend (the CUDA backend registers
 * itself into the same core): a thin layer over the model functions of llmpy.h.
 *
 * Arrays in and out without copies where the backend's memory is host fp32 (the CPU): tensor(),
 * grad(), logits() and losses() are numpy views kept alive by the model or by a reference on the
 * activation block. On a device or a bf16 backend the same methods return fp32 host copies
 * (parameters from the fp32 master copy), and write_tensor() is how values go in. The GIL is
 * released around every long call; statuses become exceptions (bindings.h).
 */
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings/bindings.h"

extern "C" {
#include "dist/dist.h"
}

namespace py = pybind11;

namespace {

// struct Model (the handle): bindings.h, shared with bindings/dist.cpp

void check_tokens(const py::array &a, const char *what) {
    if (a.ndim() != 2) throw py::value_error(std::string(what) + " must be a 2-D (B, T) array");
    if (!a.dtype().is(py::dtype::of<int32_t>())) throw py::value_error(std::string(what) + " must have dtype int32");
    if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(what) + " must be C-contiguous");
}

const char *opt_str(const py::object &o, std::string &keep) {
    if (o.is_none()) return nullptr;
    keep = o.cast<std::string>();
    return keep.c_str();
}

std::vector<py::ssize_t> c_strides(const std::vector<py::ssize_t> &shape) {
    std::vector<py::ssize_t> st(shape.size());
    py::ssize_t s = sizeof(float);
    for (int d = (int)shape.size() - 1; d >= 0; d--) { st[d] = s; s *= shape[d]; }
    return st;
}

// A float32 view of backend memory kept alive by `base`.
py::array view(float *data, std::vector<py::ssize_t> shape, std::vector<py::ssize_t> strides, py::handle base) {
    return py::array(py::dtype::of<float>(), shape, strides, data, base);
}

py::array block_view(float *data, llm_block *block, std::vector<py::ssize_t> shape, std::vector<py::ssize_t> strides) {
    py::capsule owner(block, [](void *p) { llm_block_release(static_cast<llm_block *>(p)); });
    return view(data, std::move(shape), std::move(strides), owner);
}

// True when the backend's memory is host fp32: arrays can then be views instead of copies.
bool host_views(llm_model *m) { return llm_model_host_fp32(m) != 0; }

// Parameter (or gradient) tensor i: a view on host fp32 backends, else an fp32 copy.
py::array tensor_array(py::object self, int i, bool want_grad) {
    Model &m = self.cast<Model &>();
    llm_tensor t;
    llmpy_check(want_grad ? llm_model_tensor(m.m, i, &t) : llm_model_tensor_info(m.m, i, &t));
    std::vector<py::ssize_t> shape(t.shape, t.shape + t.ndim);
    if (t.host && t.dtype == LLM_F32)
        return view(static_cast<float *>(want_grad ? t.grad : t.data), shape, c_strides(shape), self);
    py::array_t<float> out(shape);
    float *dst = out.mutable_data();
    llmpy_check(llmpy_nogil([&] { return llm_model_read_tensor(m.m, i, want_grad, dst); }));
    return out;
}

void write_tensor(Model &m, int i, py::array_t<float, py::array::c_style | py::array::forcecast> src) {
    llm_tensor t;
    llmpy_check(llm_model_tensor_info(m.m, i, &t));
    py::ssize_t n = 1;
    for (int d = 0; d < t.ndim; d++) n *= t.shape[d];
    if (src.size() != n)
        throw py::value_error(std::string("write_tensor: ") + t.name + " has " + std::to_string(n) + " elements, got " +
                              std::to_string(src.size()));
    const float *p = src.data();
    llmpy_check(llmpy_nogil([&] { return llm_model_write_tensor(m.m, i, p); }));
}

py::array logits(Model &m) {
    int B, T, has_targets;
    llm_model_last_shape(m.m, &B, &T, &has_targets);
    if (host_views(m.m)) {
        float *p;
        int V, Vp;
        llm_block *b;
        llmpy_check(llm_model_logits(m.m, &p, &B, &T, &V, &Vp, &b));
        py::ssize_t f = sizeof(float);
        return block_view(p, b, {B, T, V}, {(py::ssize_t)T * Vp * f, (py::ssize_t)Vp * f, f});
    }
    if (!B) llmpy_check(llm_model_copy_logits(m.m, nullptr)); // raises the "no forward yet" error
    py::array_t<float> out({(py::ssize_t)B, (py::ssize_t)T, (py::ssize_t)llm_model_config(m.m).vocab_size});
    float *dst = out.mutable_data();
    llmpy_check(llmpy_nogil([&] { return llm_model_copy_logits(m.m, dst); }));
    return out;
}

py::array losses(Model &m) {
    int B, T, has_targets;
    llm_model_last_shape(m.m, &B, &T, &has_targets);
    if (host_views(m.m)) {
        float *p;
        llm_block *b;
        llmpy_check(llm_model_losses(m.m, &p, &B, &T, &b));
        py::ssize_t f = sizeof(float);
        return block_view(p, b, {B, T}, {(py::ssize_t)T * f, f});
    }
    if (!B || !has_targets) llmpy_check(llm_model_copy_losses(m.m, nullptr)); // raises the state error
    py::array_t<float> out({(py::ssize_t)B, (py::ssize_t)T});
    float *dst = out.mutable_data();
    llmpy_check(llmpy_nogil([&] { return llm_model_copy_losses(m.m, dst); }));
    return out;
}

} // namespace

void llmpy_register_model(py::module_ &mod) {
    py::class_<Model>(mod, "Model")
        .def_static(
            "create",
            [](int n_layer, int n_head, int n_embd, int vocab_size, int block_size, int padded_vocab_size,
               const std::string &device, uint64_t seed, py::object precision) {
                llm_config c{n_layer, n_head, n_embd, vocab_size, block_size, padded_vocab_size};
                std::string keep;
                const char *prec = opt_str(precision, keep);
                llm_model *p = nullptr;
                llmpy_check(llmpy_nogil([&] { return llm_model_create(&p, &c, device.c_str(), prec, seed); }));
                return new Model(p);
            },
            py::arg("n_layer"), py::arg("n_head"), py::arg("n_embd"), py::arg("vocab_size"), py::arg("block_size"),
            py::arg("padded_vocab_size") = 0, py::arg("device") = "cpu", py::arg("seed") = 0,
            py::arg("precision") = py::none())
        .def_static(
            "load",
            [](const std::string &path, const std::string &device, py::object precision) {
                std::string keep;
                const char *prec = opt_str(precision, keep);
                llm_model *p = nullptr;
                llmpy_check(llmpy_nogil([&] { return llm_model_load(&p, path.c_str(), device.c_str(), prec); }));
                return new Model(p);
            },
            py::arg("path"), py::arg("device") = "cpu", py::arg("precision") = py::none())
        .def("save",
             [](Model &m, const std::string &path) { llmpy_check(llmpy_nogil([&] { return llm_model_save(m.m, path.c_str()); })); })
        .def(
            "save_state",
            [](Model &m, const std::string &path, const std::string &json, const std::string &model_path, int64_t step,
               const std::string &run_id) {
                llm_state_tag tag{model_path.empty() ? nullptr : model_path.c_str(), step, run_id.c_str()};
                llmpy_check(llmpy_nogil([&] { return llm_model_save_state(m.m, path.c_str(), json.c_str(), &tag); }));
            },
            py::arg("path"), py::arg("json") = "", py::arg("model_path") = "", py::arg("step") = -1,
            py::arg("run_id") = "",
            "writes the training state; model_path (the model file saved with it, already written), step and run_id "
            "tie it to its checkpoint: \"\" and -1 for none")
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
            "backward",
            [](Model &m, float s, bool sync) {
                llmpy_check(llmpy_nogil([&] { return llm_dist_backward(m.m, s, sync ? 1 : 0); }));
            },
            py::arg("loss_scale") = 1.0f, py::arg("sync") = false,
            "adds the gradient of loss_scale * loss; sync (distributed models): the last micro-step, whose "
            "gradients are averaged across the ranks as the backward produces them")
        .def(
            "step",
            [](Model &m, float lr, float b1, float b2, float eps, float wd, float clip) {
                float norm = 0.0f;
                llmpy_check(llmpy_nogil([&] { return llm_step(m.m, lr, b1, b2, eps, wd, clip, &norm); }));
                return norm;
            },
            py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
            py::arg("grad_clip"))
        .def(
            "grad_norm",
            [](Model &m) {
                float norm = 0.0f;
                llmpy_check(llmpy_nogil([&] { return llm_grad_norm(m.m, &norm); }));
                return norm;
            },
            "the global gradient norm the next step() sees (llm_grad_norm: collective with several ranks); "
            "step() after it is step() alone, bit for bit")
        .def("tensor", [](py::object self, int i) { return tensor_array(self, i, false); },
             "parameter tensor i: a view on the CPU, an fp32 copy (of the master weights) elsewhere")
        .def("grad", [](py::object self, int i) { return tensor_array(self, i, true); },
             "gradient of tensor i: a view on the CPU, an fp32 copy elsewhere")
        .def("write_tensor", &write_tensor, py::arg("i"), py::arg("values"),
             "sets parameter tensor i from fp32 values (any backend)")
        .def("logits", &logits)
        .def("losses", &losses)
        .def("shape", [](Model &m, int i) {
            llm_tensor t;
            llmpy_check(llm_model_tensor_info(m.m, i, &t));
            return py::tuple(py::cast(std::vector<int64_t>(t.shape, t.shape + t.ndim)));
        }, "shape of tensor i as tensor() shows it (wte: its visible rows)")
        .def_property_readonly("config", [](Model &m) { return llmpy_config_dict(llm_model_config(m.m)); })
        .def_property_readonly("num_parameters", [](Model &m) { return llm_model_num_parameters(m.m); })
        .def_property_readonly("steps", [](Model &m) { return llm_model_steps(m.m); })
        .def_property_readonly("device", [](Model &m) { return std::string(llm_model_device(m.m)); })
        .def_property_readonly("precision", [](Model &m) { return std::string(llm_model_precision(m.m)); });
}
