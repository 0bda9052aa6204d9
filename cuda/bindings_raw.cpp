// placeholder until the gpu-session branch lands (not committed)
#include <pybind11/pybind11.h>
extern "C" {
#include "../csrc/ops.h"
}
void llmpy_register_raw(pybind11::module_ &, const llm_ops *) {}
