/*
 * bindings_dist.cpp — llmpy._C.dist: the process group, host collectives for metrics, the
 * model's gradient averaging and ZeRO-1 (csrc/dist.h). Policy (who prints, when to abort) is in
 * python/llmpy/dist.py; this file only moves arguments and turns statuses into exceptions.
 */
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings.h"

extern "C" {
#include "dist.h"
}

namespace py = pybind11;

// ZeRO-1 state of one model; keeps the model handle alive.
struct Zero {
    llm_zero *z = nullptr;
    py::object model;
    Zero(const Zero &) = delete;
    Zero &operator=(const Zero &) = delete;
    explicit Zero(py::object m) : model(std::move(m)) {
        Model &h = model.cast<Model &>();
        llmpy_check(llm_zero_create(&z, h.m));
    }
    ~Zero() { llm_zero_free(z); }
};

static py::dict info_dict(const llm_dist_info &i) {
    py::dict d;
    d["rank"] = i.rank;
    d["world_size"] = i.world_size;
    d["local_rank"] = i.local_rank;
    d["local_size"] = i.local_size;
    d["mpi"] = (bool)i.mpi;
    return d;
}

void llmpy_register_dist(py::module_ &m) {
    m.def(
        "init",
        [] {
            llm_dist_info i;
            llmpy_check(llmpy_nogil([&] { return llm_dist_init(&i); }));
            return info_dict(i);
        },
        "Joins the process group the MPI launcher started (idempotent); returns rank, world_size, ...");
    m.def("info", [] { return info_dict(llm_dist_get()); }, "The current process group (rank 0 of 1 before init).");
    m.def(
        "launched_ranks",
        [] {
            const char *var = nullptr;
            int n = llm_dist_launched_ranks(&var);
            return py::make_tuple(n, var ? py::object(py::str(var)) : py::object(py::none()));
        },
        "(ranks the launcher announced in the environment (-1: several, number unknown), the variable or None)");
    m.def("local_rank", &llm_dist_local_rank,
          "This process's rank on its machine (the group's after init, else the launcher's environment, else 0).");
    m.def(
        "finalize", [](double timeout_s) { llmpy_check(llmpy_nogil([&] { return llm_dist_finalize(timeout_s); })); },
        py::arg("timeout_s") = 30.0);
    m.def(
        "abort",
        [](int code) {
            py::gil_scoped_release release;
            llm_dist_abort(code);
        },
        py::arg("code") = 1, "Ends every rank of the job with exit code `code` (MPI_Abort). Does not return.");
    m.def("barrier", [] { llmpy_check(llmpy_nogil([] { return llm_dist_barrier(); })); });
    m.def(
        "all_reduce_sum",
        [](std::vector<double> x) {
            llmpy_check(llmpy_nogil([&] { return llm_dist_all_reduce_sum_f64(x.data(), x.size()); }));
            return x;
        },
        py::arg("values"), "Element-wise float64 sum over the ranks of a list of floats (same length everywhere).");
    m.def(
        "broadcast_bytes",
        [](py::bytes data, int root) {
            std::string buf = data;
            uint64_t n = buf.size();
            llmpy_check(llmpy_nogil([&] { return llm_dist_broadcast(&n, sizeof n, root); }));
            buf.resize(n);
            llmpy_check(llmpy_nogil([&] { return llm_dist_broadcast(&buf[0], n, root); }));
            return py::bytes(buf);
        },
        py::arg("data"), py::arg("root") = 0, "Rank `root`'s bytes, on every rank.");
    m.def(
        "setup_model",
        [](Model &model, int zero_stage) {
            llmpy_check(llmpy_nogil([&] { return llm_dist_setup_model(model.m, zero_stage); }));
        },
        py::arg("model"), py::arg("zero_stage") = 0,
        "Checks that every rank has the same model and zero_stage, then copies rank 0's parameters to all.");
    m.def(
        "all_reduce_grads",
        [](Model &model) { llmpy_check(llmpy_nogil([&] { return llm_dist_all_reduce_grads(model.m); })); },
        py::arg("model"), "Gradients <- their mean over the ranks.");

    py::class_<Zero>(m, "Zero", "ZeRO-1: the model's AdamW moments sharded across the ranks")
        .def(py::init([](py::object model) { return new Zero(std::move(model)); }), py::arg("model"))
        .def(
            "step",
            [](Zero &z, float lr, float b1, float b2, float eps, float wd, float clip) {
                float norm = 0.0f;
                llmpy_check(llmpy_nogil([&] { return llm_zero_step(z.z, lr, b1, b2, eps, wd, clip, &norm); }));
                return norm;
            },
            py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
            py::arg("grad_clip"))
        .def(
            "save_state",
            [](Zero &z, const std::string &path, const std::string &json) {
                llmpy_check(llmpy_nogil([&] { return llm_zero_save_state(z.z, path.c_str(), json.c_str()); }));
            },
            py::arg("path"), py::arg("json") = "")
        .def_property_readonly(
            "shard",
            [](Zero &z) {
                size_t n = llm_zero_parts(z.z, nullptr, nullptr, 0);
                std::vector<size_t> starts(n), lens(n);
                llm_zero_parts(z.z, starts.data(), lens.data(), n);
                py::list parts;
                for (size_t k = 0; k < n; k++) parts.append(py::make_tuple(starts[k], starts[k] + lens[k]));
                return parts;
            },
            "this rank's parts of the flat parameter buffer (wte with its padding rows): [(start, stop), ...]");
}
