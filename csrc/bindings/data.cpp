/*
 * data.cpp — llmpy._C.data: thin bindings over csrc/data/dataloader.h (token shards, permutations
 * and the data loader). python/llmpy/data/loader.py (llmpy.data.DataLoader) and shards.py wrap them.
 *
 * Status -> exception as in bindings.h, except that shard problems raise the package's own types
 * (python/llmpy/data/shards.py): LLM_ENOENT -> MissingShardError (a FileNotFoundError),
 * LLM_EFORMAT -> ShardError (a ValueError).
 *
 * The GIL is released around the C calls that read files or sort; calls on one loader are
 * serialised by its mutex (the C loader is used by one thread at a time).
 *
 * Example (Python):
 *   dl = _C.data.DataLoader(["shards/train_*.bin"], 4, 64, rank=0, world_size=1, shuffle=True, seed=1)
 *   x, y = dl.next_batch()          # int32 (B, T)
 *   pos = dl.position               # (epoch, shard, batch); dl.position = pos resumes
 */
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "bindings/bindings.h"

extern "C" {
#include "data/dataloader.h"
}

namespace py = pybind11;

namespace {

// llmpy_check, with the shard exception types of llmpy.data.shards for shard problems.
void check_shard(llm_status s) {
    if (s != LLM_ENOENT && s != LLM_EFORMAT) return llmpy_check(s);
    std::string msg = llm_last_error();
    py::object type = py::module_::import("llmpy.data.shards").attr(s == LLM_ENOENT ? "MissingShardError" : "ShardError");
    PyErr_SetString(type.ptr(), msg.c_str());
    throw py::error_already_set();
}

struct Loader {
    llm_dataloader *dl = nullptr;
    int B = 0, T = 0;
    std::mutex mu;
    Loader() = default;
    Loader(const Loader &) = delete;
    Loader &operator=(const Loader &) = delete;
    ~Loader() { llm_dataloader_free(dl); }

    // Runs f(dl) under the mutex; without the GIL when nogil (the mutex is released first).
    template <typename F> auto locked(bool nogil, F &&f) {
        if (!nogil) {
            std::lock_guard<std::mutex> lock(mu);
            return f(dl);
        }
        py::gil_scoped_release release;
        std::lock_guard<std::mutex> lock(mu);
        return f(dl);
    }
};

using Position = std::tuple<int64_t, int64_t, int64_t>;

} // namespace

void llmpy_register_data(py::module_ &m) {
    py::class_<Loader>(m, "DataLoader", "The data loader (csrc/data/dataloader.h); llmpy.data.DataLoader wraps it")
        .def(py::init([](const std::vector<std::string> &patterns, int B, int T, int rank, int world_size,
                         bool shuffle, uint64_t seed, int vocab_size) {
                 std::vector<const char *> pats;
                 for (const auto &p : patterns) pats.push_back(p.c_str());
                 auto *l = new Loader();
                 l->B = B;
                 l->T = T;
                 llm_status s = llmpy_nogil([&] {
                     return llm_dataloader_open(&l->dl, pats.data(), (int)pats.size(), B, T, rank, world_size,
                                                shuffle ? 1 : 0, seed);
                 });
                 if (s == LLM_OK) s = llm_dataloader_set_vocab(l->dl, vocab_size);
                 if (s != LLM_OK) {
                     delete l;
                     check_shard(s);
                 }
                 return l;
             }),
             py::arg("patterns"), py::arg("batch_size"), py::arg("seq_len"), py::arg("rank") = 0,
             py::arg("world_size") = 1, py::arg("shuffle") = false, py::arg("seed") = 0, py::arg("vocab_size") = 0)
        .def(
            "next_batch",
            [](Loader &l) {
                py::array_t<int32_t> x({l.B, l.T}), y({l.B, l.T});
                int32_t *xp = x.mutable_data(), *yp = y.mutable_data();
                check_shard(l.locked(true, [&](llm_dataloader *dl) { return llm_dataloader_next(dl, xp, yp); }));
                return py::make_tuple(x, y);
            },
            "the next (x, y): int32 arrays of shape (B, T)")
        .def(
            "reset",
            [](Loader &l, int64_t epoch) {
                llmpy_check(l.locked(false, [&](llm_dataloader *dl) { return llm_dataloader_reset(dl, epoch); }));
            },
            py::arg("epoch") = 0, "to the first batch of epoch")
        .def(
            "release_shard",
            [](Loader &l) {
                l.locked(false, [](llm_dataloader *dl) {
                    llm_dataloader_release_shard(dl);
                    return 0;
                });
            },
            "closes the open shard; the next batch reopens it")
        .def_property(
            "position",
            [](Loader &l) {
                llm_data_position p = l.locked(false, [](llm_dataloader *dl) { return llm_dataloader_tell(dl); });
                return Position(p.epoch, p.shard, p.batch);
            },
            [](Loader &l, const Position &p) {
                llm_data_position q{std::get<0>(p), std::get<1>(p), std::get<2>(p)};
                llmpy_check(l.locked(false, [&](llm_dataloader *dl) { return llm_dataloader_seek(dl, q); }));
            },
            "(epoch, shard, batch) of the next batch; assigning seeks there")
        .def_property(
            "vocab_size",
            [](Loader &l) { return l.locked(false, [](llm_dataloader *dl) { return llm_dataloader_vocab(dl); }); },
            [](Loader &l, int v) {
                llmpy_check(l.locked(false, [&](llm_dataloader *dl) { return llm_dataloader_set_vocab(dl, v); }));
            },
            "token ids handed out must be below it (0: no check); a shard token at or above it raises "
            "ShardError naming the shard and the token offset")
        .def_property_readonly("batches_per_epoch", [](Loader &l) { return llm_dataloader_batches_per_epoch(l.dl); })
        .def_property_readonly("num_tokens", [](Loader &l) { return llm_dataloader_num_tokens(l.dl); })
        .def_property_readonly("files",
                               [](Loader &l) {
                                   std::vector<std::string> out;
                                   for (int i = 0; i < llm_dataloader_num_files(l.dl); i++)
                                       out.emplace_back(llm_dataloader_file(l.dl, i));
                                   return out;
                               })
        .def_property_readonly("file_tokens", [](Loader &l) {
            std::vector<int64_t> out;
            for (int i = 0; i < llm_dataloader_num_files(l.dl); i++) out.push_back(llm_dataloader_file_tokens(l.dl, i));
            return out;
        });

    m.def(
        "read_header",
        [](const std::string &path) {
            int64_t n = 0;
            check_shard(llmpy_nogil([&] { return llm_shard_read_header(path.c_str(), &n); }));
            return n;
        },
        py::arg("path"), "validates a token shard's header against its size; returns its token count");
    m.def("stream_seed", &llm_data_stream_seed, py::arg("seed"), py::arg("epoch"), py::arg("which"),
          "64-bit seed of one random stream (0: shard order of epoch, 1 + i: sequence order of shard i)");
    m.def(
        "permutation",
        [](int64_t n, uint64_t seed) {
            py::array_t<int64_t> out(n > 0 ? n : 0);
            int64_t *p = out.mutable_data();
            llmpy_check(llmpy_nogil([&] { return llm_data_permutation(p, n, seed); }));
            return out;
        },
        py::arg("n"), py::arg("seed"), "range(n) sorted by the splitmix64 outputs of seed (stable)");
}
