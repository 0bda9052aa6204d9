/*
 * bindings_data.cpp — llmpy._C.data: thin bindings over csrc/data/dataloader.h (token shards and the
 * data loader of the compiled binary). The Python package has its own loader
 * (python/llmpy/data/loader.py); these exist so tests can check that both give the same batches.
 *
 * Status -> exception as in bindings.cpp: EIO -> OSError, ENOMEM -> MemoryError, others -> ValueError.
 *
 * Example (Python):
 *   dl = _C.data.DataLoader(["shards/train_*.bin"], 4, 64, rank=0, world_size=1, shuffle=True, seed=1)
 *   x, y = dl.next_batch()          # int32 (B, T)
 *   pos = dl.position               # (epoch, shard, batch); dl.position = pos resumes
 */
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <tuple>
#include <vector>

#include "bindings/bindings.h"

extern "C" {
#include "data/dataloader.h"
}

namespace py = pybind11;

namespace {


struct Loader {
    llm_dataloader *dl = nullptr;
    int B = 0, T = 0;
    Loader() = default;
    Loader(const Loader &) = delete;
    Loader &operator=(const Loader &) = delete;
    ~Loader() { llm_dataloader_free(dl); }
};

using Position = std::tuple<int64_t, int64_t, int64_t>;

} // namespace

void llmpy_register_data(py::module_ &m) {
    py::class_<Loader>(m, "DataLoader", "The C data loader (csrc/data/dataloader.c); same batches as llmpy.data.DataLoader")
        .def(py::init([](const std::vector<std::string> &patterns, int B, int T, int rank, int world_size,
                         bool shuffle, uint64_t seed) {
                 std::vector<const char *> pats;
                 for (const auto &p : patterns) pats.push_back(p.c_str());
                 auto *l = new Loader();
                 l->B = B;
                 l->T = T;
                 llm_status s;
                 {
                     py::gil_scoped_release release;
                     s = llm_dataloader_open(&l->dl, pats.data(), (int)pats.size(), B, T, rank, world_size,
                                             shuffle ? 1 : 0, seed);
                 }
                 if (s != LLM_OK) {
                     delete l;
                     llmpy_check(s);
                 }
                 return l;
             }),
             py::arg("patterns"), py::arg("batch_size"), py::arg("seq_len"), py::arg("rank") = 0,
             py::arg("world_size") = 1, py::arg("shuffle") = false, py::arg("seed") = 0)
        .def(
            "next_batch",
            [](Loader &l) {
                py::array_t<int32_t> x({l.B, l.T}), y({l.B, l.T});
                int32_t *xp = x.mutable_data(), *yp = y.mutable_data();
                llm_status s;
                {
                    py::gil_scoped_release release;
                    s = llm_dataloader_next(l.dl, xp, yp);
                }
                llmpy_check(s);
                return py::make_tuple(x, y);
            },
            "the next (x, y): int32 arrays of shape (B, T)")
        .def(
            "reset", [](Loader &l, int64_t epoch) { llmpy_check(llm_dataloader_reset(l.dl, epoch)); }, py::arg("epoch") = 0)
        .def_property(
            "position",
            [](Loader &l) {
                llm_data_position p = llm_dataloader_tell(l.dl);
                return Position(p.epoch, p.shard, p.batch);
            },
            [](Loader &l, const Position &p) {
                llm_data_position q{std::get<0>(p), std::get<1>(p), std::get<2>(p)};
                llmpy_check(llm_dataloader_seek(l.dl, q));
            },
            "(epoch, shard, batch) of the next batch; assigning seeks there")
        .def_property_readonly("batches_per_epoch", [](Loader &l) { return llm_dataloader_batches_per_epoch(l.dl); })
        .def_property_readonly("files", [](Loader &l) {
            std::vector<std::string> out;
            for (int i = 0; i < llm_dataloader_num_files(l.dl); i++) out.emplace_back(llm_dataloader_file(l.dl, i));
            return out;
        });

    m.def(
        "read_header",
        [](const std::string &path) {
            int64_t n = 0;
            llmpy_check(llm_shard_read_header(path.c_str(), &n));
            return n;
        },
        py::arg("path"), "validates a token shard's header against its size; returns its token count");
    m.def("stream_seed", &llm_data_stream_seed, py::arg("seed"), py::arg("epoch"), py::arg("which"));
    m.def(
        "permutation",
        [](int64_t n, uint64_t seed) {
            if (n < 0) throw py::value_error("n must be >= 0");
            py::array_t<int64_t> out(n);
            int64_t *p = out.mutable_data();
            llm_status s;
            {
                py::gil_scoped_release release;
                s = llm_data_permutation(p, n, seed);
            }
            llmpy_check(s);
            return out;
        },
        py::arg("n"), py::arg("seed"));
}
