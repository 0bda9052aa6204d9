/*
 * bindings.h — what every pybind11 file of llmpy._C shares: C status -> Python exception, and
 * running a C call without the GIL.
 *
 * Status -> exception: EINVAL/EFORMAT/ESTATE -> ValueError, EIO -> OSError, ENOENT -> FileNotFoundError,
 * ENOMEM -> MemoryError, EBUSY -> BlockingIOError, EUNSUPPORTED -> NotImplementedError, EBACKEND -> RuntimeError.
 */
#ifndef LLMPY_BINDINGS_H
#define LLMPY_BINDINGS_H

#include <pybind11/pybind11.h>

#include <string>

extern "C" {
#include "core/llmpy.h"
}

// A configuration as the dict Python sees (Model.config, ModelFile.config).
inline pybind11::dict llmpy_config_dict(const llm_config &c) {
    pybind11::dict d;
    d["n_layer"] = c.n_layer;
    d["n_head"] = c.n_head;
    d["n_embd"] = c.n_embd;
    d["vocab_size"] = c.vocab_size;
    d["block_size"] = c.block_size;
    d["padded_vocab_size"] = c.padded_vocab_size;
    return d;
}

// Raises the Python exception for a failing status, with llm_last_error() as its message.
inline void llmpy_check(llm_status s) {
    if (s == LLM_OK) return;
    std::string msg = llm_last_error();
    PyObject *type = PyExc_ValueError;
    switch (s) {
    case LLM_EIO: type = PyExc_OSError; break;
    case LLM_ENOENT: type = PyExc_FileNotFoundError; break;
    case LLM_ENOMEM: type = PyExc_MemoryError; break;
    case LLM_EBUSY: type = PyExc_BlockingIOError; break;
    case LLM_EUNSUPPORTED: type = PyExc_NotImplementedError; break;
    case LLM_EBACKEND: type = PyExc_RuntimeError; break;
    default: break;
    }
    PyErr_SetString(type, msg.c_str());
    throw pybind11::error_already_set();
}

// Runs a C call without the GIL (the error message is thread-local, read on the same thread).
template <typename F> llm_status llmpy_nogil(F &&f) {
    pybind11::gil_scoped_release release;
    return f();
}

// The Python handle of a model (llmpy._C.Model), shared by the binding files that take one.
struct Model {
    llm_model *m = nullptr;
    explicit Model(llm_model *p) : m(p) {}
    Model(const Model &) = delete;
    Model &operator=(const Model &) = delete;
    ~Model() { llm_model_free(m); }
};

#endif // LLMPY_BINDINGS_H
