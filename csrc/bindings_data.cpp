/*
 * bindings_data.cpp — pybind11 functions of llmpy._C.data, over csrc/dataloader.c (token shards for the binary).
 */
#include <pybind11/pybind11.h>

namespace py = pybind11;

void llmpy_register_data(py::module_ &m) { (void)m; }
