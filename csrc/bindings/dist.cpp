/*
 * bindings/dist.cpp — llmpy._C.dist: the process group, host collectives for metrics, and a
 * model across ranks (csrc/dist/dist.h: the collective plan, ZeRO-1). The step and the backward are
 * the model's own (bindings/model.cpp): a distributed model needs no second binding of them. Policy (who prints, when to abort) is in
 * python/llmpy/dist.py; this file only moves arguments and turns statuses into exceptions.
 */
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings/bindings.h"

extern "C" {
#include "dist/dist.h"
}

namespace py = pybind11;

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
    m.def(
        "barrier", [](double timeout_s) { llmpy_check(llmpy_nogil([&] { return llm_dist_barrier(timeout_s); })); },
        py::arg("timeout_s") = 0.0, "Waits for every rank (at most timeout_s; 0: LLMPY_DIST_TIMEOUT).");
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
        "attach",
        [](Model &model, int zero_stage, bool overlap) {
            llmpy_check(llmpy_nogil([&] { return llm_dist_attach(model.m, zero_stage, overlap ? 1 : 0); }));
        },
        py::arg("model"), py::arg("zero_stage") = 0, py::arg("overlap") = true,
        "Collective: makes the model one replica of a data-parallel model (same model and flags on every rank "
        "checked; rank 0's parameters copied to all; the collective plan and its transport set up).");
    m.def("zero_stage", [](Model &model) { return llm_dist_zero_stage(model.m); }, py::arg("model"),
          "-1 when the model is not distributed, else its zero_stage.");
    m.def(
        "save_state",
        [](Model &model, const std::string &path, const std::string &json, const std::string &model_path,
           int64_t step, const std::string &run_id) {
            llm_state_tag tag{model_path.empty() ? nullptr : model_path.c_str(), step, run_id.c_str()};
            llmpy_check(llmpy_nogil([&] { return llm_dist_save_state(model.m, path.c_str(), json.c_str(), &tag); }));
        },
        py::arg("model"), py::arg("path"), py::arg("json") = "", py::arg("model_path") = "",
        py::arg("step") = -1, py::arg("run_id") = "",
        "Collective: the full training state (ZeRO-1 shards gathered) written by rank 0; model_path, step and "
        "run_id tie it to its checkpoint (Model.save_state).");
    m.def(
        "shard",
        [](Model &model) {
            size_t n = llm_dist_shard(model.m, nullptr, nullptr, 0);
            std::vector<size_t> starts(n), lens(n);
            llm_dist_shard(model.m, starts.data(), lens.data(), n);
            py::list parts;
            for (size_t k = 0; k < n; k++) parts.append(py::make_tuple(starts[k], starts[k] + lens[k]));
            return parts;
        },
        py::arg("model"),
        "this rank's parts of the flat parameter buffer (wte with its padding rows): [(start, stop), ...]");
    m.def(
        "comm_seconds", [](Model &model) { return llm_dist_comm_seconds(model.m); }, py::arg("model"),
        "seconds this rank spent in the plan's communication since distribute() (not hidden by computation)");
    m.def("timeout", &llm_dist_timeout, "seconds a collective waits for the other ranks (LLMPY_DIST_TIMEOUT)");
}
