/*
 * bindings_tokenizer.cpp — pybind11 functions of llmpy._C.tokenizer, over csrc/tokenizer.c (token decoding, BPE training hot loop).
 */
#include <pybind11/pybind11.h>

namespace py = pybind11;

void llmpy_register_tokenizer(py::module_ &m) { (void)m; }
