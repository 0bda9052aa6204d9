/*
 * bindings/tokenizer.cpp — llmpy._C.tokenizer: pybind11 functions over csrc/data/tokenizer.c.
 *
 *   train(data, offsets, counts, vocab_size) -> int64 array (M, 4): left, right, id, count
 *   Vocab(tokens)                 tokens[i]: bytes of id i, or None for an id without a token
 *     .encode(pieces) -> int32 array     pieces: list of str (UTF-8 encoded here) or bytes
 *     .recover_merges() -> int32 array (num_ids, 2): the two parts of each token, -1 for none
 *     .num_ids, .num_tokens
 *   TokenizerFile(path)           an llm.c tokenizer file, as the train_gpt2 binary reads it
 *     .decode(id) -> bytes, .decode_many(ids) -> bytes, .vocab_size, .eot_token
 *
 * Policy (pre-splitting, special tokens, file formats of the Python tokenizers) is in
 * python/llmpy/tokenizer/. C status codes become exceptions as in bindings/module.cpp; the GIL is
 * released around training, encoding and recovery.
 */
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bindings/bindings.h"

extern "C" {
#include "data/tokenizer.h"
}

namespace py = pybind11;

namespace {



// ----------------------------------------------------------------------------
// training

py::array_t<int64_t> train(py::bytes data, py::array_t<uint64_t, py::array::c_style | py::array::forcecast> offsets,
                           py::array_t<int64_t, py::array::c_style | py::array::forcecast> counts,
                           int64_t vocab_size) {
    std::string_view bytes = data;
    if (offsets.ndim() != 1 || counts.ndim() != 1 || offsets.size() != counts.size() + 1)
        throw py::value_error("train: offsets must have one more entry than counts (1-D arrays)");
    if (vocab_size < 256) throw py::value_error("vocab_size must be >= 256, got " + std::to_string(vocab_size));
    size_t n = static_cast<size_t>(counts.size());
    const uint64_t *off = offsets.data();
    if (off[0] > bytes.size() || off[n] > bytes.size() || off[n] < off[0])
        throw py::value_error("train: offsets point outside data");
    std::vector<size_t> offs(off, off + n + 1);
    const uint8_t *p = reinterpret_cast<const uint8_t *>(bytes.data());
    const int64_t *c = counts.data();
    llm_bpe_merge *merges = nullptr;
    size_t m = 0;
    llmpy_check(llmpy_nogil([&] { return llm_bpe_train(p, offs.data(), c, n, (size_t)vocab_size, &merges, &m); }));
    py::array_t<int64_t> out({static_cast<py::ssize_t>(m), static_cast<py::ssize_t>(4)});
    auto o = out.mutable_unchecked<2>();
    for (size_t i = 0; i < m; i++) {
        o(i, 0) = merges[i].left;
        o(i, 1) = merges[i].right;
        o(i, 2) = merges[i].id;
        o(i, 3) = merges[i].count;
    }
    llm_bpe_merges_free(merges);
    return out;
}

// ----------------------------------------------------------------------------
// vocabulary and encoding

struct Vocab {
    llm_bpe_vocab *v = nullptr;
    explicit Vocab(const py::list &tokens) {
        std::vector<std::string> store;
        store.reserve(tokens.size());
        for (py::handle h : tokens) {
            if (h.is_none()) store.emplace_back();
            else if (PyBytes_Check(h.ptr())) store.emplace_back(h.cast<std::string>());
            else throw py::type_error("Vocab: tokens must be bytes or None");
        }
        std::vector<const uint8_t *> ptrs(store.size());
        std::vector<size_t> lens(store.size());
        for (size_t i = 0; i < store.size(); i++) {
            ptrs[i] = reinterpret_cast<const uint8_t *>(store[i].data());
            lens[i] = store[i].size();
        }
        llmpy_check(llm_bpe_vocab_create(&v, ptrs.data(), lens.data(), store.size()));
    }
    Vocab(const Vocab &) = delete;
    Vocab &operator=(const Vocab &) = delete;
    ~Vocab() { llm_bpe_vocab_free(v); }

    py::array_t<int32_t> encode(const py::list &pieces) const {
        std::string data;
        std::vector<size_t> offsets;
        offsets.reserve(pieces.size() + 1);
        offsets.push_back(0);
        for (py::handle h : pieces) {
            if (PyUnicode_Check(h.ptr())) {
                Py_ssize_t len = 0;
                const char *s = PyUnicode_AsUTF8AndSize(h.ptr(), &len); // cached by CPython
                if (!s) throw py::error_already_set();
                data.append(s, static_cast<size_t>(len));
            } else if (PyBytes_Check(h.ptr())) {
                data.append(PyBytes_AS_STRING(h.ptr()), static_cast<size_t>(PyBytes_GET_SIZE(h.ptr())));
            } else {
                throw py::type_error("encode: pieces must be str or bytes");
            }
            offsets.push_back(data.size());
        }
        std::vector<int32_t> ids(data.size());
        size_t n = 0;
        const uint8_t *p = reinterpret_cast<const uint8_t *>(data.data());
        llmpy_check(llmpy_nogil([&] { return llm_bpe_encode(v, p, offsets.data(), pieces.size(), ids.data(), &n); }));
        py::array_t<int32_t> out(static_cast<py::ssize_t>(n));
        std::copy(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(n), out.mutable_data());
        return out;
    }

    py::array_t<int32_t> recover_merges() const {
        size_t n = llm_bpe_vocab_num_ids(v);
        std::vector<int32_t> left(n), right(n);
        llmpy_check(llmpy_nogil([&] { return llm_bpe_recover_merges(v, left.data(), right.data()); }));
        py::array_t<int32_t> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(2)});
        auto o = out.mutable_unchecked<2>();
        for (size_t i = 0; i < n; i++) {
            o(i, 0) = left[i];
            o(i, 1) = right[i];
        }
        return out;
    }
};

// ----------------------------------------------------------------------------
// the llm.c tokenizer file

struct TokenizerFile {
    llm_tokenizer *t = nullptr;
    explicit TokenizerFile(const std::string &path) {
        llmpy_check(llmpy_nogil([&] { return llm_tokenizer_load(&t, path.c_str()); }));
    }
    TokenizerFile(const TokenizerFile &) = delete;
    TokenizerFile &operator=(const TokenizerFile &) = delete;
    ~TokenizerFile() { llm_tokenizer_free(t); }

    void append(std::string &out, int64_t id) const {
        if (id < INT32_MIN || id > INT32_MAX) id = -1; // reported as out of range
        const char *b = nullptr;
        size_t len = 0;
        llmpy_check(llm_tokenizer_decode(t, static_cast<int32_t>(id), &b, &len));
        out.append(b, len);
    }
};

} // namespace

void llmpy_register_tokenizer(py::module_ &m) {
    m.def("train", &train, py::arg("data"), py::arg("offsets"), py::arg("counts"), py::arg("vocab_size"),
          "Trains byte-level BPE on words data[offsets[i]:offsets[i+1]] seen counts[i] times.\n"
          "Returns an int64 array (M, 4) of merges: left id, right id, new id, count.");

    py::class_<Vocab>(m, "Vocab", "Token bytes by id (None: no token); the rank of a token is its id.")
        .def(py::init<const py::list &>(), py::arg("tokens"))
        .def("encode", &Vocab::encode, py::arg("pieces"),
             "Encodes pre-split pieces (str or bytes) with tiktoken's rule; int32 array of ids.")
        .def("recover_merges", &Vocab::recover_merges,
             "int32 array (num_ids, 2): the two lower-ranked tokens each token merges from (-1: none).")
        .def_property_readonly("num_ids", [](const Vocab &s) { return llm_bpe_vocab_num_ids(s.v); })
        .def_property_readonly("num_tokens", [](const Vocab &s) { return llm_bpe_vocab_num_tokens(s.v); });

    py::class_<TokenizerFile>(m, "TokenizerFile", "An llm.c tokenizer file (token id -> bytes), read by C.")
        .def(py::init<const std::string &>(), py::arg("path"))
        .def(
            "decode",
            [](const TokenizerFile &f, int64_t id) {
                std::string out;
                f.append(out, id);
                return py::bytes(out);
            },
            py::arg("id"))
        .def(
            "decode_many",
            [](const TokenizerFile &f, const py::iterable &ids) {
                std::string out;
                for (py::handle h : ids) f.append(out, h.cast<int64_t>());
                return py::bytes(out);
            },
            py::arg("ids"))
        .def_property_readonly("vocab_size", [](const TokenizerFile &f) { return llm_tokenizer_vocab_size(f.t); })
        .def_property_readonly("eot_token", [](const TokenizerFile &f) { return llm_tokenizer_eot(f.t); });
}
