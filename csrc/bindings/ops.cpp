/*
 * bindings/ops.cpp — a backend's single ops, for tests and development: llmpy._C.ops (CPU),
 * llmpy._cuda.ops_fp32 / ops_bf16 (CUDA).
 *
 * One function per llm_ops member, same name and argument order as csrc/core/ops.h: outputs first
 * (numpy arrays written in place), then inputs, then the sizes (B, T, C, ...). On a device
 * backend the arrays are copied in (converted to its element type) and outputs copied back, so
 * the same Python test runs against every backend. Arrays must be
 * C-contiguous float32 (token ids int32), writeable where they are outputs, and hold exactly
 * the element count their shape letters imply; otherwise ValueError is raised before any C
 * code runs, so a bad call can never read or write out of bounds. Token ids and targets are
 * range-checked for the same reason. The GIL is released around each op; a failing status
 * becomes a Python exception (bindings.h). No math lives here.
 *
 * Example (Python):
 *   out = np.empty((B, T, OC), np.float32)
 *   _C.ops.matmul_forward(out, inp, weight, None, B, T, C, OC)   # out = inp @ weight.T
 *
 * One function is not an op: register_variant(device, lm_head_in_place) registers a copy of
 * this module's table with the other llm_backward strategy for the classifier (ops.h:
 * lm_head_in_place) under another device name, so that tests and benchmarks can run the model
 * both ways on the same backend (GPT2(cfg, device="cpu-inplace") after
 * _C.ops.register_variant("cpu-inplace", True)).
 */
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/bindings.h"

extern "C" {
#include "core/ops.h"
}

namespace py = pybind11;

namespace {

// ----------------------------------------------------------------------------
// argument checks

// Product of non-negative sizes; ValueError on overflow.
int64_t count(const char *op, std::initializer_list<int64_t> dims) {
    int64_t n = 1;
    for (int64_t d : dims) {
        if (d != 0 && n > INT64_MAX / d) throw py::value_error(std::string(op) + ": sizes overflow");
        n *= d;
    }
    return n;
}

struct Size {
    const char *name;
    int64_t value;
};

void positive(const char *op, std::initializer_list<Size> sizes) {
    for (const Size &s : sizes)
        if (s.value < 1)
            throw py::value_error(std::string(op) + ": " + s.name + " must be >= 1, got " + std::to_string(s.value));
}

// Checks dtype, contiguity, writeability and element count of one array argument.
template <typename T>
void check_array(const char *op, const char *name, const py::array &a, int64_t expected, bool writable) {
    std::string where = std::string(op) + ": " + name;
    if (!py::isinstance<py::array_t<T>>(a))
        throw py::value_error(where + " must have dtype " + std::string(py::str(py::dtype::of<T>())) +
                              ", got " + std::string(py::str(a.dtype())));
    if (!(a.flags() & py::array::c_style)) throw py::value_error(where + " must be C-contiguous");
    if (writable && !a.writeable()) throw py::value_error(where + " is read-only; it is written in place");
    if (static_cast<int64_t>(a.size()) != expected)
        throw py::value_error(where + " has " + std::to_string(a.size()) + " elements, expected " +
                              std::to_string(expected));
}

// ----------------------------------------------------------------------------
// arrays in backend memory

// One numpy argument as the backend sees it. On a host fp32 backend that is the array's own
// memory; otherwise a backend buffer filled from the array (converted to floatX for `x` kinds)
// and, for outputs, copied back into the array by finish() once the op has run (outputs are
// uploaded too: most ops accumulate into them).
class Arg {
  public:
    enum Kind { X, F32, IDS }; // floatX element, fp32 element, int32 token id

    Arg(const llm_ops &be, Kind kind, bool out, py::array a, int64_t n) : be_(be), kind_(kind), out_(out), a_(a), n_(n) {
        direct_ = be.host_memory && (kind != X || be.dtype == LLM_F32);
        if (direct_ || n == 0) {
            ptr_ = direct_ ? a.mutable_data() : nullptr;
            return;
        }
        size_t es = kind == X ? llm_dtype_size(be.dtype) : 4;
        llmpy_check(be.alloc(&ptr_, (size_t)n * es));
        llm_status s = kind == X ? be.upload_f32(ptr_, static_cast<const float *>(a.data()), (size_t)n)
                                 : be.to_device(ptr_, a.data(), (size_t)n * 4);
        if (s != LLM_OK) {
            be.free(ptr_);
            ptr_ = nullptr;
            llmpy_check(s);
        }
    }
    Arg(const Arg &) = delete;
    Arg &operator=(const Arg &) = delete;
    ~Arg() {
        if (!direct_ && ptr_) be_.free(ptr_);
    }
    void *ptr() const { return ptr_; }
    // Copies an output back into its array.
    void finish() {
        if (!out_ || direct_ || n_ == 0) return;
        float *dst = static_cast<float *>(a_.mutable_data());
        llmpy_check(kind_ == X ? be_.download_f32(dst, ptr_, (size_t)n_) : be_.to_host(dst, ptr_, (size_t)n_ * 4));
    }

  private:
    const llm_ops &be_;
    Kind kind_;
    bool out_, direct_ = false;
    py::array a_;
    int64_t n_;
    void *ptr_ = nullptr;
};

using ArgPtr = std::unique_ptr<Arg>;

// floatX / fp32 arrays, outputs (written in place) and inputs
ArgPtr out_x(const llm_ops &be, const char *op, const char *name, py::array a, int64_t n) {
    check_array<float>(op, name, a, n, true);
    return ArgPtr(new Arg(be, Arg::X, true, a, n));
}
ArgPtr in_x(const llm_ops &be, const char *op, const char *name, py::array a, int64_t n) {
    check_array<float>(op, name, a, n, false);
    return ArgPtr(new Arg(be, Arg::X, false, a, n));
}
ArgPtr out_f(const llm_ops &be, const char *op, const char *name, py::array a, int64_t n) {
    check_array<float>(op, name, a, n, true);
    return ArgPtr(new Arg(be, Arg::F32, true, a, n));
}
ArgPtr in_f(const llm_ops &be, const char *op, const char *name, py::array a, int64_t n) {
    check_array<float>(op, name, a, n, false);
    return ArgPtr(new Arg(be, Arg::F32, false, a, n));
}

// An optional floatX array: None gives no argument (a NULL pointer).
ArgPtr opt_x(const llm_ops &be, const char *op, const char *name, py::object o, int64_t n, bool out) {
    if (o.is_none()) return nullptr;
    if (!py::isinstance<py::array>(o)) throw py::value_error(std::string(op) + ": " + name + " must be an array or None");
    return out ? out_x(be, op, name, o.cast<py::array>(), n) : in_x(be, op, name, o.cast<py::array>(), n);
}
void *ptr(const ArgPtr &a) { return a ? a->ptr() : nullptr; }

// Checks n int32 ids, each in [0, limit).
void check_ids(const char *op, const char *name, const py::array &a, int64_t n, int64_t limit) {
    check_array<int32_t>(op, name, a, n, false);
    const int32_t *p = static_cast<const int32_t *>(a.data());
    for (int64_t i = 0; i < n; i++)
        if (p[i] < 0 || p[i] >= limit)
            throw py::value_error(std::string(op) + ": " + name + "[" + std::to_string(i) + "] = " +
                                  std::to_string(p[i]) + " is outside [0, " + std::to_string(limit) + ")");
}

// int32 ids, each in [0, limit), in backend memory.
ArgPtr in_ids(const llm_ops &be, const char *op, const char *name, py::array a, int64_t n, int64_t limit) {
    check_ids(op, name, a, n, limit);
    return ArgPtr(new Arg(be, Arg::IDS, false, a, n));
}

// Rows of a (rows, C) table whose first dimension is not a size argument (wte, wpe).
int64_t table_rows(const char *op, const char *name, const py::array &a, int64_t C) {
    if (a.size() == 0 || a.size() % C != 0)
        throw py::value_error(std::string(op) + ": " + name + " has " + std::to_string(a.size()) +
                              " elements, expected a positive multiple of C = " + std::to_string(C));
    return static_cast<int64_t>(a.size()) / C;
}

// Runs an op without the GIL (a failing status becomes the exception bindings.h maps it to),
// then copies the outputs back.
template <typename F> void run(F &&f, std::initializer_list<Arg *> outputs) {
    llmpy_check(llmpy_nogil(f));
    for (Arg *a : outputs)
        if (a) a->finish();
}

// ----------------------------------------------------------------------------
// encoder

void encoder_forward(const llm_ops &be, py::array out, py::array inp, py::array wte, py::array wpe, int B, int T,
                     int C) {
    const char *op = "encoder_forward";
    positive(op, {{"B", B}, {"T", T}, {"C", C}});
    int64_t Vp = table_rows(op, "wte", wte, C), maxT = table_rows(op, "wpe", wpe, C);
    if (maxT < T) throw py::value_error(std::string(op) + ": wpe has fewer than T rows");
    auto o = out_x(be, op, "out", out, count(op, {B, T, C}));
    auto ids = in_ids(be, op, "inp", inp, count(op, {B, T}), Vp);
    auto w = in_x(be, op, "wte", wte, Vp * C), p = in_x(be, op, "wpe", wpe, maxT * C);
    run([&] { return be.encoder_forward(o->ptr(), (const int32_t *)ids->ptr(), w->ptr(), p->ptr(), B, T, C); },
        {o.get()});
}

// inp is copied to the backend; inp_host (None or an int32 (B,T) array) is passed as the op's
// host copy of the ids as it is (host memory), so a test can hand the op ids on the host that
// differ from those on the device and see which it used.
void encoder_backward(const llm_ops &be, py::array dwte, py::array dwpe, py::array dout, py::array inp,
                      py::object inp_host, int B, int T, int C) {
    const char *op = "encoder_backward";
    positive(op, {{"B", B}, {"T", T}, {"C", C}});
    int64_t Vp = table_rows(op, "dwte", dwte, C), maxT = table_rows(op, "dwpe", dwpe, C);
    if (maxT < T) throw py::value_error(std::string(op) + ": dwpe has fewer than T rows");
    auto gw = out_x(be, op, "dwte", dwte, Vp * C), gp = out_x(be, op, "dwpe", dwpe, maxT * C);
    auto d = in_x(be, op, "dout", dout, count(op, {B, T, C}));
    auto ids = in_ids(be, op, "inp", inp, count(op, {B, T}), Vp);
    py::array host_ids;
    const int32_t *hp = nullptr;
    if (!inp_host.is_none()) {
        if (!py::isinstance<py::array>(inp_host)) throw py::value_error(std::string(op) + ": inp_host must be an array or None");
        host_ids = inp_host.cast<py::array>();
        check_ids(op, "inp_host", host_ids, count(op, {B, T}), Vp);
        hp = static_cast<const int32_t *>(host_ids.data());
    }
    run([&] {
        return be.encoder_backward(gw->ptr(), gp->ptr(), d->ptr(), (const int32_t *)ids->ptr(), hp, B, T, C);
    }, {gw.get(), gp.get()});
}

// ----------------------------------------------------------------------------
// layernorm

void layernorm_forward(const llm_ops &be, py::array out, py::array mean, py::array rstd, py::array inp,
                       py::array weight, py::array bias, int B, int T, int C) {
    const char *op = "layernorm_forward";
    positive(op, {{"B", B}, {"T", T}, {"C", C}});
    const int64_t BT = count(op, {B, T}), BTC = count(op, {B, T, C});
    auto o = out_x(be, op, "out", out, BTC);
    auto mu = out_f(be, op, "mean", mean, BT), rs = out_f(be, op, "rstd", rstd, BT);
    auto x = in_x(be, op, "inp", inp, BTC), w = in_x(be, op, "weight", weight, C), b = in_x(be, op, "bias", bias, C);
    run([&] {
        return be.layernorm_forward(o->ptr(), (float *)mu->ptr(), (float *)rs->ptr(), x->ptr(), w->ptr(), b->ptr(), B,
                                    T, C);
    }, {o.get(), mu.get(), rs.get()});
}

void layernorm_backward(const llm_ops &be, py::array dinp, py::array dweight, py::array dbias, py::array dout,
                        py::array inp, py::array weight, py::array mean, py::array rstd, int B, int T, int C) {
    const char *op = "layernorm_backward";
    positive(op, {{"B", B}, {"T", T}, {"C", C}});
    const int64_t BT = count(op, {B, T}), BTC = count(op, {B, T, C});
    auto dx = out_x(be, op, "dinp", dinp, BTC), dw = out_x(be, op, "dweight", dweight, C);
    auto db = out_x(be, op, "dbias", dbias, C);
    auto d = in_x(be, op, "dout", dout, BTC), x = in_x(be, op, "inp", inp, BTC), w = in_x(be, op, "weight", weight, C);
    auto mu = in_f(be, op, "mean", mean, BT), rs = in_f(be, op, "rstd", rstd, BT);
    run([&] {
        return be.layernorm_backward(dx->ptr(), dw->ptr(), db->ptr(), d->ptr(), x->ptr(), w->ptr(),
                                     (const float *)mu->ptr(), (const float *)rs->ptr(), B, T, C);
    }, {dx.get(), dw.get(), db.get()});
}

// The fused op where the backend has it, else the two ops it stands for (the same semantics).
void residual_layernorm_forward(const llm_ops &be, py::array residual, py::array out, py::array mean, py::array rstd,
                                py::array inp1, py::array inp2, py::array weight, py::array bias, int B, int T, int C) {
    const char *op = "residual_layernorm_forward";
    positive(op, {{"B", B}, {"T", T}, {"C", C}});
    const int64_t BT = count(op, {B, T}), BTC = count(op, {B, T, C});
    auto r = out_x(be, op, "residual", residual, BTC), o = out_x(be, op, "out", out, BTC);
    auto mu = out_f(be, op, "mean", mean, BT), rs = out_f(be, op, "rstd", rstd, BT);
    auto a = in_x(be, op, "inp1", inp1, BTC), b = in_x(be, op, "inp2", inp2, BTC);
    auto w = in_x(be, op, "weight", weight, C), bi = in_x(be, op, "bias", bias, C);
    run([&] {
        if (be.residual_layernorm_forward)
            return be.residual_layernorm_forward(r->ptr(), o->ptr(), (float *)mu->ptr(), (float *)rs->ptr(), a->ptr(),
                                                 b->ptr(), w->ptr(), bi->ptr(), B, T, C);
        llm_status s = be.residual_forward(r->ptr(), a->ptr(), b->ptr(), (size_t)BTC);
        if (s != LLM_OK) return s;
        return be.layernorm_forward(o->ptr(), (float *)mu->ptr(), (float *)rs->ptr(), r->ptr(), w->ptr(), bi->ptr(), B,
                                    T, C);
    }, {r.get(), o.get(), mu.get(), rs.get()});
}

// ----------------------------------------------------------------------------
// matmul

void matmul_forward(const llm_ops &be, py::array out, py::array inp, py::array weight, py::object bias, int B, int T,
                    int C, int OC) {
    const char *op = "matmul_forward";
    positive(op, {{"B", B}, {"T", T}, {"C", C}, {"OC", OC}});
    auto o = out_x(be, op, "out", out, count(op, {B, T, OC}));
    auto x = in_x(be, op, "inp", inp, count(op, {B, T, C})), w = in_x(be, op, "weight", weight, count(op, {OC, C}));
    auto b = opt_x(be, op, "bias", bias, OC, false);
    run([&] { return be.matmul_forward(o->ptr(), x->ptr(), w->ptr(), ptr(b), B, T, C, OC); }, {o.get()});
}

// matmul_backward, or with sq matmul_backward_sq (which the caller checked the backend has)
static void matmul_backward_into(const llm_ops &be, const char *op, py::object dinp, py::array dweight,
                                 py::object dbias, py::array dout, py::array inp, py::array weight, int B, int T,
                                 int C, int OC, bool accumulate, bool write_dweight, double *sq) {
    positive(op, {{"B", B}, {"T", T}, {"C", C}, {"OC", OC}});
    auto dx = opt_x(be, op, "dinp", dinp, count(op, {B, T, C}), true);
    auto dw = out_x(be, op, "dweight", dweight, count(op, {OC, C}));
    auto db = opt_x(be, op, "dbias", dbias, OC, true);
    auto d = in_x(be, op, "dout", dout, count(op, {B, T, OC})), x = in_x(be, op, "inp", inp, count(op, {B, T, C}));
    auto w = in_x(be, op, "weight", weight, count(op, {OC, C}));
    run([&] {
        const int flags = (accumulate ? LLM_MM_ACCUMULATE_DINP : 0) | (write_dweight ? LLM_MM_WRITE_DWEIGHT : 0);
        if (sq)
            return be.matmul_backward_sq(ptr(dx), dw->ptr(), ptr(db), d->ptr(), x->ptr(), w->ptr(), B, T, C, OC, flags,
                                         sq);
        return be.matmul_backward(ptr(dx), dw->ptr(), ptr(db), d->ptr(), x->ptr(), w->ptr(), B, T, C, OC, flags);
    }, {dx.get(), dw.get(), db.get()});
}

void matmul_backward(const llm_ops &be, py::object dinp, py::array dweight, py::object dbias, py::array dout,
                     py::array inp, py::array weight, int B, int T, int C, int OC, bool accumulate,
                     bool write_dweight) {
    matmul_backward_into(be, "matmul_backward", dinp, dweight, dbias, dout, inp, weight, B, T, C, OC, accumulate,
                         write_dweight, nullptr);
}

// matmul_backward that returns the sum of the squares of dweight after it (ops.h: optional;
// negative where the backend's variant does not compute it, None where the backend lacks the op).
py::object matmul_backward_sq(const llm_ops &be, py::object dinp, py::array dweight, py::object dbias, py::array dout,
                              py::array inp, py::array weight, int B, int T, int C, int OC, bool accumulate,
                              bool write_dweight) {
    if (!be.matmul_backward_sq) return py::none();
    double sq = 0.0;
    matmul_backward_into(be, "matmul_backward_sq", dinp, dweight, dbias, dout, inp, weight, B, T, C, OC, accumulate,
                         write_dweight, &sq);
    return py::float_(sq);
}

// The fused op where the backend has it, else matmul then GELU.
void matmul_gelu_forward(const llm_ops &be, py::array pre, py::array out, py::array inp, py::array weight,
                         py::object bias, int B, int T, int C, int OC) {
    const char *op = "matmul_gelu_forward";
    positive(op, {{"B", B}, {"T", T}, {"C", C}, {"OC", OC}});
    const int64_t BTOC = count(op, {B, T, OC});
    auto p = out_x(be, op, "pre", pre, BTOC), o = out_x(be, op, "out", out, BTOC);
    auto x = in_x(be, op, "inp", inp, count(op, {B, T, C})), w = in_x(be, op, "weight", weight, count(op, {OC, C}));
    auto b = opt_x(be, op, "bias", bias, OC, false);
    run([&] {
        if (be.matmul_gelu_forward) return be.matmul_gelu_forward(p->ptr(), o->ptr(), x->ptr(), w->ptr(), ptr(b), B, T, C, OC);
        llm_status s = be.matmul_forward(p->ptr(), x->ptr(), w->ptr(), ptr(b), B, T, C, OC);
        if (s != LLM_OK) return s;
        return be.gelu_forward(o->ptr(), p->ptr(), (size_t)BTOC);
    }, {p.get(), o.get()});
}

// ----------------------------------------------------------------------------
// attention: the saved state is an opaque float32 array of attention_state_size() elements
// (on the CPU: the (B,NH,T,T) probabilities); scratch is allocated here for the call.

void check_heads(const char *op, int B, int T, int C, int NH) {
    positive(op, {{"B", B}, {"T", T}, {"C", C}, {"NH", NH}});
    if (C % NH != 0)
        throw py::value_error(std::string(op) + ": C = " + std::to_string(C) + " is not divisible by NH = " +
                              std::to_string(NH));
}

int64_t attention_state_size(const llm_ops &be, int B, int T, int C, int NH) {
    check_heads("attention_state_size", B, T, C, NH);
    return (int64_t)((be.attention_state_bytes(B, T, C, NH) + 3) / 4);
}

struct Scratch { // backend scratch memory for one call
    const llm_ops &be;
    void *p = nullptr;
    Scratch(const llm_ops &b, size_t bytes) : be(b) { llmpy_check(be.alloc(&p, bytes ? bytes : 1)); }
    ~Scratch() { be.free(p); }
};

void attention_forward(const llm_ops &be, py::array out, py::array state, py::array qkv, int B, int T, int C, int NH) {
    const char *op = "attention_forward";
    check_heads(op, B, T, C, NH);
    auto o = out_x(be, op, "out", out, count(op, {B, T, C}));
    auto st = out_f(be, op, "state", state, attention_state_size(be, B, T, C, NH));
    auto x = in_x(be, op, "qkv", qkv, count(op, {B, T, 3, C}));
    Scratch scratch(be, be.attention_scratch_bytes(B, T, C, NH));
    run([&] { return be.attention_forward(o->ptr(), st->ptr(), scratch.p, x->ptr(), B, T, C, NH); },
        {o.get(), st.get()});
}

void attention_backward(const llm_ops &be, py::array dqkv, py::array dout, py::array qkv, py::array out,
                        py::array state, int B, int T, int C, int NH) {
    const char *op = "attention_backward";
    check_heads(op, B, T, C, NH);
    auto dx = out_x(be, op, "dqkv", dqkv, count(op, {B, T, 3, C}));
    auto d = in_x(be, op, "dout", dout, count(op, {B, T, C})), x = in_x(be, op, "qkv", qkv, count(op, {B, T, 3, C}));
    auto o = in_x(be, op, "out", out, count(op, {B, T, C}));
    auto st = in_f(be, op, "state", state, attention_state_size(be, B, T, C, NH));
    Scratch scratch(be, be.attention_scratch_bytes(B, T, C, NH));
    run([&] { return be.attention_backward(dx->ptr(), scratch.p, d->ptr(), x->ptr(), o->ptr(), st->ptr(), B, T, C, NH); },
        {dx.get()});
}

// ----------------------------------------------------------------------------
// elementwise: gelu, residual

int64_t check_n(const char *op, int64_t N) {
    if (N < 0) throw py::value_error(std::string(op) + ": N must be >= 0");
    return N;
}

void gelu_forward(const llm_ops &be, py::array out, py::array inp, int64_t N) {
    const char *op = "gelu_forward";
    check_n(op, N);
    auto o = out_x(be, op, "out", out, N);
    auto x = in_x(be, op, "inp", inp, N);
    run([&] { return be.gelu_forward(o->ptr(), x->ptr(), (size_t)N); }, {o.get()});
}

void gelu_backward(const llm_ops &be, py::array dinp, py::array inp, py::array dout, int64_t N) {
    const char *op = "gelu_backward";
    check_n(op, N);
    auto dx = out_x(be, op, "dinp", dinp, N);
    auto x = in_x(be, op, "inp", inp, N), d = in_x(be, op, "dout", dout, N);
    run([&] { return be.gelu_backward(dx->ptr(), x->ptr(), d->ptr(), (size_t)N); }, {dx.get()});
}

void residual_forward(const llm_ops &be, py::array out, py::array inp1, py::array inp2, int64_t N) {
    const char *op = "residual_forward";
    check_n(op, N);
    auto o = out_x(be, op, "out", out, N);
    auto a = in_x(be, op, "inp1", inp1, N), b = in_x(be, op, "inp2", inp2, N);
    run([&] { return be.residual_forward(o->ptr(), a->ptr(), b->ptr(), (size_t)N); }, {o.get()});
}

void residual_backward(const llm_ops &be, py::array dinp1, py::array dinp2, py::array dout, int64_t N) {
    const char *op = "residual_backward";
    check_n(op, N);
    auto d1 = out_x(be, op, "dinp1", dinp1, N), d2 = out_x(be, op, "dinp2", dinp2, N);
    auto d = in_x(be, op, "dout", dout, N);
    run([&] { return be.residual_backward(d1->ptr(), d2->ptr(), d->ptr(), (size_t)N); }, {d1.get(), d2.get()});
}

// ----------------------------------------------------------------------------
// crossentropy

void check_vocab(const char *op, int B, int T, int V, int Vp) {
    positive(op, {{"B", B}, {"T", T}, {"V", V}});
    if (Vp < V)
        throw py::value_error(std::string(op) + ": Vp = " + std::to_string(Vp) + " is smaller than V = " +
                              std::to_string(V));
}

void crossentropy_forward(const llm_ops &be, py::array losses, py::array logits, py::array targets, int B, int T,
                          int V, int Vp) {
    const char *op = "crossentropy_forward";
    check_vocab(op, B, T, V, Vp);
    auto l = out_f(be, op, "losses", losses, count(op, {B, T}));
    auto x = in_x(be, op, "logits", logits, count(op, {B, T, Vp}));
    auto y = in_ids(be, op, "targets", targets, count(op, {B, T}), V);
    run([&] { return be.crossentropy_forward((float *)l->ptr(), x->ptr(), (const int32_t *)y->ptr(), B, T, V, Vp); },
        {l.get()});
}

void crossentropy_backward(const llm_ops &be, py::array dlogits, py::array logits, py::array targets, float dloss,
                           int B, int T, int V, int Vp) {
    const char *op = "crossentropy_backward";
    check_vocab(op, B, T, V, Vp);
    auto dx = out_x(be, op, "dlogits", dlogits, count(op, {B, T, Vp}));
    auto x = in_x(be, op, "logits", logits, count(op, {B, T, Vp}));
    auto y = in_ids(be, op, "targets", targets, count(op, {B, T}), V);
    run([&] { return be.crossentropy_backward(dx->ptr(), x->ptr(), (const int32_t *)y->ptr(), dloss, B, T, V, Vp); },
        {dx.get()});
}

void crossentropy_backward_cols(const llm_ops &be, py::array dlogits, py::array logits, py::array losses,
                                py::array targets, float dloss, int B, int T, int V, int Vp, int v0, int n) {
    const char *op = "crossentropy_backward_cols";
    check_vocab(op, B, T, V, Vp);
    positive(op, {{"n", n}});
    if (v0 < 0 || (int64_t)v0 + n > Vp)
        throw py::value_error(std::string(op) + ": columns [v0, v0 + n) = [" + std::to_string(v0) + ", " +
                              std::to_string((int64_t)v0 + n) + ") are not within [0, Vp = " + std::to_string(Vp) + ")");
    auto dx = out_x(be, op, "dlogits", dlogits, count(op, {B, T, n}));
    auto x = in_x(be, op, "logits", logits, count(op, {B, T, Vp}));
    auto l = in_f(be, op, "losses", losses, count(op, {B, T}));
    auto y = in_ids(be, op, "targets", targets, count(op, {B, T}), V);
    run([&] {
        return be.crossentropy_backward_cols(dx->ptr(), x->ptr(), (const float *)l->ptr(), (const int32_t *)y->ptr(),
                                             dloss, B, T, V, Vp, v0, n);
    }, {dx.get()});
}

// ----------------------------------------------------------------------------
// optimizer and reductions

void adamw_update(const llm_ops &be, py::array params, py::array grads, py::array m, py::array v, int64_t N, float lr,
                  float beta1, float beta2, float eps, float weight_decay, float grad_scale, int64_t t,
                  py::object master, uint32_t seed, uint64_t index0) {
    const char *op = "adamw_update";
    check_n(op, N);
    if (t < 1) throw py::value_error(std::string(op) + ": the step number t must be >= 1");
    auto p = out_x(be, op, "params", params, N), pm = out_f(be, op, "m", m, N), pv = out_f(be, op, "v", v, N);
    ArgPtr ms;
    if (!master.is_none()) ms = out_f(be, op, "master", master.cast<py::array>(), N);
    auto g = in_x(be, op, "grads", grads, N);
    run([&] {
        return be.adamw_update(p->ptr(), ms ? (float *)ms->ptr() : nullptr, g->ptr(), (float *)pm->ptr(),
                               (float *)pv->ptr(), (size_t)N, lr, beta1, beta2, eps, weight_decay, grad_scale, t, seed,
                               index0);
    }, {p.get(), pm.get(), pv.get(), ms.get()});
}

double norm_squared(const llm_ops &be, py::array x, int64_t N) {
    const char *op = "norm_squared";
    check_n(op, N);
    auto p = in_x(be, op, "x", x, N);
    double out = 0.0;
    run([&] { return be.norm_squared(&out, p->ptr(), (size_t)N); }, {});
    return out;
}

double sum_f32(const llm_ops &be, py::array x, int64_t N) {
    const char *op = "sum_f32";
    check_n(op, N);
    auto p = in_f(be, op, "x", x, N);
    double out = -1.0;
    run([&] { return be.sum_f32(&out, (const float *)p->ptr(), (size_t)N); }, {});
    return out;
}

// ----------------------------------------------------------------------------
// variants of a table (tests and benchmarks)

// A registered table must outlive its registration: copies live here for the process. A few
// slots suffice (the core holds at most 8 backends in all); re-registering a device reuses its slot.
struct Variant {
    std::string device;
    llm_ops ops;
};
std::vector<std::unique_ptr<Variant>> variants;

void register_variant(const llm_ops &be, const std::string &device, bool lm_head_in_place) {
    if (device.empty() || device == "cpu" || device == "cuda")
        throw py::value_error("register_variant: pick a new device name (not '" + device + "'), e.g. '" +
                              std::string(be.name) + "-variant'");
    const char *precision = be.dtype == LLM_BF16 ? "bf16" : "fp32";
    Variant *v = nullptr;
    for (auto &p : variants)
        if (p->device == device && p->ops.dtype == be.dtype) v = p.get();
    if (!v) {
        if (variants.size() >= 4) throw py::value_error("register_variant: at most 4 variants per module");
        variants.emplace_back(new Variant{device, be});
        v = variants.back().get();
    }
    v->ops = be;
    v->ops.lm_head_in_place = lm_head_in_place ? 1 : 0;
    llmpy_check(llm_register_backend(device.c_str(), precision, &v->ops));
}

// Binds an op to one backend table: f(be, args...) becomes a Python function of args....
template <typename R, typename... A> auto on(R (*f)(const llm_ops &, A...), const llm_ops *be) {
    return [f, be](A... a) -> R { return f(*be, std::move(a)...); };
}

} // namespace

// ----------------------------------------------------------------------------
// registration (bindings/module.cpp: llmpy._C.ops; the CUDA module: one submodule per precision)

void llmpy_register_ops(py::module_ &m, const llm_ops *be) {
    m.attr("backend") = be->name;
    m.attr("dtype") = be->dtype == LLM_BF16 ? "bf16" : "fp32";
    m.def("encoder_forward", on(&encoder_forward, be), py::arg("out"), py::arg("inp"), py::arg("wte"), py::arg("wpe"),
          py::arg("B"), py::arg("T"), py::arg("C"), "out (B,T,C) = wte[inp] + wpe[:T]; inp (B,T) int32");
    m.def("encoder_backward", on(&encoder_backward, be), py::arg("dwte"), py::arg("dwpe"), py::arg("dout"),
          py::arg("inp"), py::arg("inp_host").none(true), py::arg("B"), py::arg("T"), py::arg("C"),
          "dwte, dwpe += scatter of dout (B,T,C); inp_host: the ids as a host array for the op to sort, or None "
          "(the op reads inp itself)");
    m.def("layernorm_forward", on(&layernorm_forward, be), py::arg("out"), py::arg("mean"), py::arg("rstd"),
          py::arg("inp"), py::arg("weight"), py::arg("bias"), py::arg("B"), py::arg("T"), py::arg("C"),
          "out (B,T,C), mean/rstd (B,T) = layernorm(inp) with eps 1e-5");
    m.def("layernorm_backward", on(&layernorm_backward, be), py::arg("dinp"), py::arg("dweight"), py::arg("dbias"),
          py::arg("dout"), py::arg("inp"), py::arg("weight"), py::arg("mean"), py::arg("rstd"), py::arg("B"),
          py::arg("T"), py::arg("C"), "dinp, dweight, dbias += gradients of layernorm");
    m.def("residual_layernorm_forward", on(&residual_layernorm_forward, be), py::arg("residual"), py::arg("out"),
          py::arg("mean"), py::arg("rstd"), py::arg("inp1"), py::arg("inp2"), py::arg("weight"), py::arg("bias"),
          py::arg("B"), py::arg("T"), py::arg("C"), "residual = inp1 + inp2; out = layernorm(residual) (fused where built)");
    m.def("matmul_forward", on(&matmul_forward, be), py::arg("out"), py::arg("inp"), py::arg("weight"),
          py::arg("bias").none(true), py::arg("B"), py::arg("T"), py::arg("C"), py::arg("OC"),
          "out (B,T,OC) = inp @ weight.T + bias (bias may be None)");
    m.def("matmul_backward", on(&matmul_backward, be), py::arg("dinp").none(true), py::arg("dweight"),
          py::arg("dbias").none(true), py::arg("dout"), py::arg("inp"), py::arg("weight"), py::arg("B"), py::arg("T"),
          py::arg("C"), py::arg("OC"), py::arg("accumulate") = true, py::arg("write_dweight") = false,
          "dinp (+)= dout @ weight (written when accumulate is False), dweight (+)= dout.T @ inp "
          "(written when write_dweight is True), dbias += dout.sum(rows); dinp/dbias may be None");
    m.def("matmul_backward_sq", on(&matmul_backward_sq, be), py::arg("dinp").none(true), py::arg("dweight"),
          py::arg("dbias").none(true), py::arg("dout"), py::arg("inp"), py::arg("weight"), py::arg("B"), py::arg("T"),
          py::arg("C"), py::arg("OC"), py::arg("accumulate") = true, py::arg("write_dweight") = false,
          "matmul_backward, returning the sum of the squares of dweight after it (< 0: not computed by this "
          "CPU variant; None: the backend lacks the op)");
    m.def("matmul_gelu_forward", on(&matmul_gelu_forward, be), py::arg("pre"), py::arg("out"), py::arg("inp"),
          py::arg("weight"), py::arg("bias").none(true), py::arg("B"), py::arg("T"), py::arg("C"), py::arg("OC"),
          "pre = inp @ weight.T + bias; out = gelu(pre) (fused where built)");
    m.def("attention_state_size", on(&attention_state_size, be), py::arg("B"), py::arg("T"), py::arg("C"),
          py::arg("NH"), "float32 elements of the state attention_forward saves (CPU: the (B,NH,T,T) probabilities)");
    m.def("attention_forward", on(&attention_forward, be), py::arg("out"), py::arg("state"), py::arg("qkv"),
          py::arg("B"), py::arg("T"), py::arg("C"), py::arg("NH"),
          "causal attention: out (B,T,C) and the saved state from qkv (B,T,3C)");
    m.def("attention_backward", on(&attention_backward, be), py::arg("dqkv"), py::arg("dout"), py::arg("qkv"),
          py::arg("out"), py::arg("state"), py::arg("B"), py::arg("T"), py::arg("C"), py::arg("NH"),
          "dqkv (B,T,3C) = gradient of causal attention, written (out and state from the forward)");
    m.def("gelu_forward", on(&gelu_forward, be), py::arg("out"), py::arg("inp"), py::arg("N"),
          "out = gelu(inp), tanh approximation");
    m.def("gelu_backward", on(&gelu_backward, be), py::arg("dinp"), py::arg("inp"), py::arg("dout"), py::arg("N"),
          "dinp = gelu'(inp) * dout, written");
    m.def("residual_forward", on(&residual_forward, be), py::arg("out"), py::arg("inp1"), py::arg("inp2"), py::arg("N"),
          "out = inp1 + inp2 (out may be inp1 or inp2)");
    m.def("residual_backward", on(&residual_backward, be), py::arg("dinp1"), py::arg("dinp2"), py::arg("dout"),
          py::arg("N"), "dinp1 += dout, dinp2 += dout");
    m.def("crossentropy_forward", on(&crossentropy_forward, be), py::arg("losses"), py::arg("logits"),
          py::arg("targets"), py::arg("B"), py::arg("T"), py::arg("V"), py::arg("Vp"),
          "losses (B,T) from logits (B,T,Vp) over the first V columns");
    m.def("crossentropy_backward", on(&crossentropy_backward, be), py::arg("dlogits"), py::arg("logits"),
          py::arg("targets"), py::arg("dloss"), py::arg("B"), py::arg("T"), py::arg("V"), py::arg("Vp"),
          "dlogits (B,T,Vp) = (softmax - onehot) * dloss, written; padding columns 0");
    m.def("crossentropy_backward_cols", on(&crossentropy_backward_cols, be), py::arg("dlogits"), py::arg("logits"),
          py::arg("losses"), py::arg("targets"), py::arg("dloss"), py::arg("B"), py::arg("T"), py::arg("V"),
          py::arg("Vp"), py::arg("v0"), py::arg("n"),
          "dlogits (B,T,n) = columns v0..v0+n of crossentropy_backward's result, written; the softmax is "
          "rebuilt from the forward's losses (B,T)");
    m.def("adamw_update", on(&adamw_update, be), py::arg("params"), py::arg("grads"), py::arg("m"), py::arg("v"),
          py::arg("N"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
          py::arg("grad_scale"), py::arg("t"), py::arg("master") = py::none(), py::arg("seed") = 0, py::arg("index0") = 0,
          "one torch.optim.AdamW step on grads * grad_scale; t >= 1; master: fp32 master weights (mixed precision)");
    m.def("norm_squared", on(&norm_squared, be), py::arg("x"), py::arg("N"), "sum of x**2 in double precision");
    m.def("sum_f32", on(&sum_f32, be), py::arg("x"), py::arg("N"),
          "sum of the float32 array x, accumulated in double on the backend (deterministic)");
    m.def("register_variant", on(&register_variant, be), py::arg("device"), py::arg("lm_head_in_place"),
          "registers this table with the given lm_head strategy under a new device name (tests, benchmarks)");
}
