/*
 * bindings_raw.cpp — a CUDA op table's attention ops on raw device pointers, for benchmarks:
 * llmpy._cuda.raw_fp32 / raw_bf16 (registered by bindings_cuda.cpp with llm_cuda_ops_fp32 /
 * llm_cuda_ops_bf16).
 *
 * ops_fp32 / ops_bf16 (csrc/bindings/ops.cpp) copy numpy arrays to the device and back around
 * every call, which is right for tests and useless for timing. These functions take DEVICE
 * POINTERS as Python ints instead (e.g. torch's tensor.data_ptr(), or any cudaMalloc'd address
 * in this process's context) and call the table's op directly: no copy, no allocation, no
 * synchronisation. Arguments are in the order of csrc/core/ops.h (outputs, inputs, sizes):
 *
 *   attention_state_bytes(B, T, C, NH)    bytes of the per-layer state the forward saves
 *   attention_scratch_bytes(B, T, C, NH)  bytes of the scratch both passes need
 *   attention_forward(out, state, scratch, qkv, B, T, C, NH)
 *       out (B,T,C) written; state written; qkv (B,T,3C) = [q | k | v], each (NH, hs)
 *   attention_backward(dqkv, scratch, dout, qkv, out, state, B, T, C, NH)
 *       dqkv (B,T,3C) receives the gradient by ops.h's convention for it (accumulated or
 *       written: zero dqkv first and the result is the gradient either way)
 *   stream()   llmpy's cudaStream_t as an int (e.g. for torch.cuda.ExternalStream)
 *   dtype      "fp32" or "bf16": the element type of every floatX buffer (state and scratch
 *              are opaque bytes; flash's state is the (B,NH,T) fp32 logsumexp)
 *
 * Which attention runs is llmpy._cuda.set_attention('flash'|'reference'); the state and
 * scratch sizes follow the same choice, so query them after choosing. Buffers must hold the
 * byte counts above and the element counts their shapes imply in the table's dtype, and bf16
 * buffers must be 16-byte aligned (the flash kernels check alignment and raise ValueError).
 * Nothing else about the memory can be checked here: a wrong pointer or a too-small buffer is
 * an out-of-bounds access on the device, as with any raw CUDA call.
 *
 * Ordering with other libraries: the ops run asynchronously on llmpy's one stream, which is a
 * BLOCKING stream (cudaStreamCreate, cuda/context.cu). Blocking streams are ordered with the
 * legacy default stream: work issued there waits for earlier work on llmpy's stream and the
 * other way round. PyTorch issues to the legacy default stream unless told otherwise, so torch
 * tensors can be written by torch, passed here and read back by torch with no explicit
 * synchronisation, CUDA events recorded by torch on its default stream bracket these ops, and
 * memory torch frees and reuses is not overwritten while an op here still uses it. This does
 * NOT hold when torch works on a stream of its own (torch.cuda.stream(...)) or was built with
 * per-thread default streams: then call llmpy._cuda.synchronize() / torch.cuda.synchronize().
 *
 * The CUDA backend must be initialised first (llmpy.cuda.module("cuda")); the GIL is released
 * around each op and a failing status raises the exception bindings.h maps it to.
 */
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "bindings/bindings.h"

extern "C" {
#include "core/ops.h"
#include "ops_cuda.h"
}

namespace py = pybind11;

namespace {

// ----------------------------------------------------------------------------
// argument checks

void need_init(const char *op) {
    if (llm_cuda_get_stream() == nullptr)
        throw py::value_error(std::string(op) +
                              ": the CUDA backend is not initialised; call llmpy.cuda.module('cuda') first");
}

void check_heads(const char *op, int B, int T, int C, int NH) {
    if (B < 1 || T < 1 || C < 1 || NH < 1)
        throw py::value_error(std::string(op) + ": sizes must be >= 1 (B=" + std::to_string(B) + ", T=" +
                              std::to_string(T) + ", C=" + std::to_string(C) + ", NH=" + std::to_string(NH) + ")");
    if (C % NH != 0)
        throw py::value_error(std::string(op) + ": C = " + std::to_string(C) + " is not divisible by NH = " +
                              std::to_string(NH));
}

// A device address from Python (an int, e.g. tensor.data_ptr()); 0 is refused.
void *dev(const char *op, const char *name, std::uintptr_t p) {
    if (p == 0) throw py::value_error(std::string(op) + ": " + name + " is a null pointer");
    return reinterpret_cast<void *>(p);
}

// ----------------------------------------------------------------------------
// the ops

size_t state_bytes(const llm_ops *ops, int B, int T, int C, int NH) {
    check_heads("attention_state_bytes", B, T, C, NH);
    return ops->attention_state_bytes(B, T, C, NH);
}

size_t scratch_bytes(const llm_ops *ops, int B, int T, int C, int NH) {
    check_heads("attention_scratch_bytes", B, T, C, NH);
    return ops->attention_scratch_bytes(B, T, C, NH);
}

void forward(const llm_ops *ops, std::uintptr_t out, std::uintptr_t state, std::uintptr_t scratch,
             std::uintptr_t qkv, int B, int T, int C, int NH) {
    const char *op = "attention_forward";
    need_init(op);
    check_heads(op, B, T, C, NH);
    void *o = dev(op, "out", out), *st = dev(op, "state", state), *sc = dev(op, "scratch", scratch);
    const void *x = dev(op, "qkv", qkv);
    llmpy_check(llmpy_nogil([&] { return ops->attention_forward(o, st, sc, x, B, T, C, NH); }));
}

void backward(const llm_ops *ops, std::uintptr_t dqkv, std::uintptr_t scratch, std::uintptr_t dout,
              std::uintptr_t qkv, std::uintptr_t out, std::uintptr_t state, int B, int T, int C, int NH) {
    const char *op = "attention_backward";
    need_init(op);
    check_heads(op, B, T, C, NH);
    void *dx = dev(op, "dqkv", dqkv), *sc = dev(op, "scratch", scratch);
    const void *d = dev(op, "dout", dout), *x = dev(op, "qkv", qkv), *o = dev(op, "out", out),
               *st = dev(op, "state", state);
    llmpy_check(llmpy_nogil([&] { return ops->attention_backward(dx, sc, d, x, o, st, B, T, C, NH); }));
}

} // namespace

// ----------------------------------------------------------------------------
// registration

void llmpy_register_raw(py::module_ &m, const llm_ops *ops) {
    m.attr("dtype") = ops->dtype == LLM_BF16 ? "bf16" : "fp32";
    m.def(
        "attention_state_bytes", [ops](int B, int T, int C, int NH) { return state_bytes(ops, B, T, C, NH); },
        py::arg("B"), py::arg("T"), py::arg("C"), py::arg("NH"),
        "bytes of the state attention_forward saves for the backward (flash: the (B,NH,T) fp32 logsumexp)");
    m.def(
        "attention_scratch_bytes", [ops](int B, int T, int C, int NH) { return scratch_bytes(ops, B, T, C, NH); },
        py::arg("B"), py::arg("T"), py::arg("C"), py::arg("NH"),
        "bytes of scratch the attention ops need (contents not preserved between calls)");
    m.def(
        "attention_forward",
        [ops](std::uintptr_t out, std::uintptr_t state, std::uintptr_t scratch, std::uintptr_t qkv, int B, int T,
              int C, int NH) { forward(ops, out, state, scratch, qkv, B, T, C, NH); },
        py::arg("out"), py::arg("state"), py::arg("scratch"), py::arg("qkv"), py::arg("B"), py::arg("T"),
        py::arg("C"), py::arg("NH"),
        "causal attention on device pointers: out (B,T,C) and state written from qkv (B,T,3C); asynchronous, "
        "on llmpy's blocking stream");
    m.def(
        "attention_backward",
        [ops](std::uintptr_t dqkv, std::uintptr_t scratch, std::uintptr_t dout, std::uintptr_t qkv,
              std::uintptr_t out, std::uintptr_t state, int B, int T, int C, int NH) {
            backward(ops, dqkv, scratch, dout, qkv, out, state, B, T, C, NH);
        },
        py::arg("dqkv"), py::arg("scratch"), py::arg("dout"), py::arg("qkv"), py::arg("out"), py::arg("state"),
        py::arg("B"), py::arg("T"), py::arg("C"), py::arg("NH"),
        "dqkv (B,T,3C) gets the gradient of causal attention (ops.h's convention), on device pointers (out and "
        "state from the forward); asynchronous, on llmpy's blocking stream");
    m.def(
        "stream", [] { return reinterpret_cast<std::uintptr_t>(llm_cuda_get_stream()); },
        "llmpy's cudaStream_t as an int (0 before llmpy.cuda.module() initialised the backend)");
}
