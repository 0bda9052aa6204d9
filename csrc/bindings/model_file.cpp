/*
 * bindings/model_file.cpp — llmpy._C.ModelFile and llmpy._C.to_bf16_bits: thin bindings over the
 * model-file reader/writer of llmpy.h (csrc/core/model_file.c), which python/llmpy/hf.py uses to
 * read and write llm.c model files one tensor slice at a time.
 *
 * Tensors are named ("wte", "qkvw", ...: _C.TENSOR_NAMES); layer -1 is the whole tensor. Arrays in
 * and out are float32; the GIL is released around every read and write, and a mutex keeps a
 * handle's calls (and close) from overlapping. Statuses become exceptions (bindings.h).
 *
 * Also the checkpoint functions of the core (llmpy.h: checkpoints): _C.crc32c, _C.checkpoint_verify,
 * _C.checkpoint_find_latest and _C.checkpoint_clean_temp, which python/llmpy/checkpoint.py wraps.
 *
 * Example (Python):
 *   with _C.ModelFile.create("m.bin", n_layer=2, n_head=3, n_embd=48, vocab_size=101,
 *                            block_size=32, bf16=True) as f:
 *       for name, layer, values in chunks:   # in file order
 *           f.write(name, values, layer)
 *       f.commit()                           # leaving the block without it removes the temp file
 *   f = _C.ModelFile.open("m.bin"); f.config; f.read("qkvw", 1)  # (3C, C) float32
 */
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <mutex>
#include <string>
#include <vector>

#include "bindings/bindings.h"

namespace py = pybind11;

namespace {

struct ModelFile {
    llm_model_file *f = nullptr;
    std::string path;
    std::mutex mu;
    ModelFile(llm_model_file *p, std::string where) : f(p), path(std::move(where)) {}
    ModelFile(const ModelFile &) = delete;
    ModelFile &operator=(const ModelFile &) = delete;
    ~ModelFile() { llm_model_file_close(f); }
};

int tensor_index(const std::string &name) {
    std::string names;
    for (int i = 0; i < LLM_NUM_TENSORS; i++) {
        if (name == llm_tensor_name(i)) return i;
        names += (i ? ", " : "") + std::string(llm_tensor_name(i));
    }
    throw py::key_error("unknown tensor '" + name + "'; expected one of " + names);
}

// Runs call(f) on the open handle without the GIL; ValueError once it is closed.
template <typename F> void run(ModelFile &h, F &&call) {
    bool closed = false;
    llm_status s = LLM_OK;
    {
        py::gil_scoped_release release;
        std::lock_guard<std::mutex> lock(h.mu);
        if (h.f) s = call(h.f);
        else closed = true;
    }
    if (closed) throw py::value_error("model file " + h.path + " is closed");
    llmpy_check(s);
}

std::vector<py::ssize_t> slice_shape(ModelFile &h, int i, int layer) {
    int64_t shape[3];
    int nd = 0;
    {
        std::lock_guard<std::mutex> lock(h.mu);
        if (!h.f) throw py::value_error("model file " + h.path + " is closed");
        nd = llm_model_file_shape(h.f, i, layer, shape);
    }
    if (!nd)
        throw py::value_error(h.path + ": " + llm_tensor_name(i) + " has no layer " + std::to_string(layer) +
                              " (layer -1 is the whole tensor; per-layer tensors also take 0 .. n_layer - 1)");
    return std::vector<py::ssize_t>(shape, shape + nd);
}

void close_file(ModelFile &h) {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(h.mu);
    llm_model_file_close(h.f);
    h.f = nullptr;
}

} // namespace

void llmpy_register_model_file(py::module_ &mod) {
    py::class_<ModelFile>(mod, "ModelFile",
                          "an llm.c model file read or written one tensor slice at a time (csrc/core/model_file.c)")
        .def_static(
            "open",
            [](const std::string &path) {
                llm_model_file *p = nullptr;
                llmpy_check(llmpy_nogil([&] { return llm_model_file_open(&p, path.c_str()); }));
                return new ModelFile(p, path);
            },
            py::arg("path"), "opens a model file for reading (its header and size checked)")
        .def_static(
            "create",
            [](const std::string &path, int n_layer, int n_head, int n_embd, int vocab_size, int block_size,
               int padded_vocab_size, bool bf16) {
                llm_config c{n_layer, n_head, n_embd, vocab_size, block_size, padded_vocab_size};
                llm_model_file *p = nullptr;
                llmpy_check(llmpy_nogil([&] { return llm_model_file_create(&p, path.c_str(), &c, bf16 ? 1 : 0); }));
                return new ModelFile(p, path);
            },
            py::arg("path"), py::arg("n_layer"), py::arg("n_head"), py::arg("n_embd"), py::arg("vocab_size"),
            py::arg("block_size"), py::arg("padded_vocab_size") = 0, py::arg("bf16") = false,
            "starts writing a model file (fp32 version 3, or bf16 version 5) into a temp file beside path")
        .def_property_readonly("config",
                               [](ModelFile &h) {
                                   std::lock_guard<std::mutex> lock(h.mu);
                                   if (!h.f) throw py::value_error("model file " + h.path + " is closed");
                                   return llmpy_config_dict(llm_model_file_config(h.f));
                               })
        .def_property_readonly("bf16",
                               [](ModelFile &h) {
                                   std::lock_guard<std::mutex> lock(h.mu);
                                   if (!h.f) throw py::value_error("model file " + h.path + " is closed");
                                   return (bool)llm_model_file_bf16(h.f);
                               })
        .def_readonly("path", &ModelFile::path)
        .def(
            "shape",
            [](ModelFile &h, const std::string &name, int layer) {
                return py::tuple(py::cast(slice_shape(h, tensor_index(name), layer)));
            },
            py::arg("tensor"), py::arg("layer") = -1, "shape of a slice as read() returns it (wte: V rows)")
        .def(
            "read",
            [](ModelFile &h, const std::string &name, int layer) {
                int i = tensor_index(name);
                py::array_t<float> out(slice_shape(h, i, layer));
                float *dst = out.mutable_data();
                run(h, [&](llm_model_file *f) { return llm_model_file_read(f, i, layer, dst); });
                return out;
            },
            py::arg("tensor"), py::arg("layer") = -1,
            "float32 values of one layer of a per-layer tensor, or of a whole tensor (layer -1)")
        .def(
            "write",
            [](ModelFile &h, const std::string &name, py::array_t<float, py::array::c_style | py::array::forcecast> values,
               int layer) {
                int i = tensor_index(name);
                std::vector<py::ssize_t> want = slice_shape(h, i, layer);
                std::vector<py::ssize_t> got(values.shape(), values.shape() + values.ndim());
                if (got != want)
                    throw py::value_error(h.path + ": " + name + (layer >= 0 ? " layer " + std::to_string(layer) : "") +
                                          " has shape " + py::str(py::tuple(py::cast(want))).cast<std::string>() +
                                          ", got " + py::str(py::tuple(py::cast(got))).cast<std::string>());
                const float *src = values.data();
                run(h, [&](llm_model_file *f) { return llm_model_file_write(f, i, layer, src); });
            },
            py::arg("tensor"), py::arg("values"), py::arg("layer") = -1,
            "writes the next slice (file order); wte's padding rows follow as zeros")
        .def(
            "commit", [](ModelFile &h) { run(h, [](llm_model_file *f) { return llm_model_file_commit(f); }); },
            "checks every slice was written, then renames the temp file over the path")
        .def("close", &close_file, "closes; an uncommitted write is abandoned (its temp file removed)")
        .def("__enter__", [](py::object self) { return self; })
        .def("__exit__", [](ModelFile &h, py::object, py::object, py::object) { close_file(h); });

    mod.def(
        "to_bf16_bits",
        [](py::array_t<float, py::array::c_style | py::array::forcecast> a) {
            std::vector<py::ssize_t> shape(a.shape(), a.shape() + a.ndim());
            py::array_t<uint16_t> out(shape);
            const float *src = a.data();
            uint16_t *dst = out.mutable_data();
            size_t n = (size_t)a.size();
            {
                py::gil_scoped_release release;
                llm_f32_to_bf16(dst, src, n);
            }
            return out;
        },
        py::arg("a"), "float32 -> bfloat16 bit patterns (uint16) as model files store them: round to nearest even, "
                      "NaN stays a quiet NaN");

    // -- checkpoints ----------------------------------------------------------------------
    mod.def(
        "crc32c",
        [](py::buffer data, uint32_t crc, bool portable) {
            py::buffer_info b = data.request();
            py::ssize_t stride = b.itemsize;
            for (int d = (int)b.ndim - 1; d >= 0; d--) {
                if (b.shape[d] > 1 && b.strides[d] != stride) throw py::value_error("crc32c: the buffer is not contiguous");
                stride *= b.shape[d];
            }
            const size_t n = (size_t)b.size * (size_t)b.itemsize;
            const void *p = b.ptr;
            py::gil_scoped_release release;
            return portable ? llm_crc32c_portable(crc, p, n) : llm_crc32c(crc, p, n);
        },
        py::arg("data"), py::arg("crc") = 0, py::arg("portable") = false,
        "CRC32C of a contiguous buffer's bytes, continuing crc (the checksum of model and state files); "
        "portable=True takes the table path even where the CPU has CRC instructions");
    mod.def("crc32c_impl", [] { return std::string(llm_crc32c_impl()); },
            "which CRC32C implementation this CPU runs: 'sse4.2', 'armv8-crc' or 'table'");
    mod.def(
        "checkpoint_verify",
        [](const std::string &path) {
            llm_checkpoint_info i;
            llmpy_check(llmpy_nogil([&] { return llm_checkpoint_verify(path.c_str(), &i); }));
            py::dict d;
            d["kind"] = i.is_state ? "state" : "model";
            d["version"] = i.version;
            d["has_checksum"] = (bool)i.has_checksum;
            d["checksum"] = i.checksum;
            d["header_checksum"] = i.header_checksum;
            d["config"] = llmpy_config_dict(i.cfg);
            if (i.is_state) {
                d["step"] = i.step;
                d["adam_steps"] = i.adam_steps;
                d["run_id"] = std::string(i.run_id);
                d["model_checksum"] = i.has_model ? py::object(py::int_(i.model_checksum)) : py::object(py::none());
                d["model_header_checksum"] =
                    i.has_model ? py::object(py::int_(i.model_header_checksum)) : py::object(py::none());
            }
            return d;
        },
        py::arg("path"),
        "reads a model or training-state file whole and checks it as loading would (header, size, checksums); "
        "returns what it holds (kind, version, has_checksum, checksum, header_checksum, config; for a state: "
        "step, adam_steps, run_id, model_checksum, model_header_checksum)");
    mod.def(
        "checkpoint_find_latest",
        [](const std::string &dir, py::object log) -> py::object {
            std::vector<std::string> lines;
            int64_t step = -1;
            auto collect = [](void *ctx, const char *msg) { static_cast<std::vector<std::string> *>(ctx)->push_back(msg); };
            llm_status s = llmpy_nogil([&] { return llm_checkpoint_find_latest(dir.c_str(), &step, collect, &lines); });
            for (const std::string &line : lines) { // in order, newest first, also when the search failed
                if (log.is_none()) py::print(("warning: " + line).c_str(), py::arg("file") = py::module_::import("sys").attr("stderr"));
                else log(line);
            }
            llmpy_check(s);
            return step < 0 ? py::object(py::none()) : py::object(py::int_(step));
        },
        py::arg("dir"), py::arg("log") = py::none(),
        "the newest step whose ckpt_NNNNNN.bin/.state pair in dir verifies and matches (None when none does); "
        "every newer step skipped is passed to log (default: stderr) with the reason");
    mod.def(
        "checkpoint_clean_temp",
        [](const std::string &dir) {
            int removed = 0;
            llmpy_check(llmpy_nogil([&] { return llm_checkpoint_clean_temp(dir.c_str(), &removed); }));
            return removed;
        },
        py::arg("dir"),
        "removes the temp files ('<name>.tmp.<pid>.<n>') that killed writers left in dir (writers still alive "
        "keep theirs); returns how many were removed");
}
