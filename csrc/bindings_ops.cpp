/*
 * bindings_ops.cpp — llmpy._C.ops: the CPU backend's single ops, for tests and development.
 *
 * One function per llm_ops member, same name and argument order as csrc/ops.h: outputs first
 * (numpy arrays written in place), then inputs, then the sizes (B, T, C, ...). Arrays must be
 * C-contiguous float32 (token ids int32), writeable where they are outputs, and hold exactly
 * the element count their shape letters imply; otherwise ValueError is raised before any C
 * code runs, so a bad call can never read or write out of bounds. Token ids and targets are
 * range-checked for the same reason. The GIL is released around each op; a failing status
 * becomes a Python exception (bindings.h). No math lives here.
 *
 * Example (Python):
 *   out = np.empty((B, T, OC), np.float32)
 *   _C.ops.matmul_forward(out, inp, weight, None, B, T, C, OC)   # out = inp @ weight.T
 */
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "bindings.h"

extern "C" {
#include "ops.h"
}

namespace py = pybind11;

namespace {

const llm_ops &backend = llm_cpu_ops;

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

float *out_f32(const char *op, const char *name, py::array &a, int64_t n) {
    check_array<float>(op, name, a, n, true);
    return static_cast<float *>(a.mutable_data());
}

const float *in_f32(const char *op, const char *name, const py::array &a, int64_t n) {
    check_array<float>(op, name, a, n, false);
    return static_cast<const float *>(a.data());
}

// An optional array: None gives NULL.
float *opt_out_f32(const char *op, const char *name, py::object &o, int64_t n) {
    if (o.is_none()) return nullptr;
    if (!py::isinstance<py::array>(o)) throw py::value_error(std::string(op) + ": " + name + " must be an array or None");
    py::array a = o.cast<py::array>();
    return out_f32(op, name, a, n);
}

const float *opt_in_f32(const char *op, const char *name, const py::object &o, int64_t n) {
    if (o.is_none()) return nullptr;
    if (!py::isinstance<py::array>(o)) throw py::value_error(std::string(op) + ": " + name + " must be an array or None");
    return in_f32(op, name, o.cast<py::array>(), n);
}

// int32 ids, each in [0, limit).
const int32_t *in_ids(const char *op, const char *name, const py::array &a, int64_t n, int64_t limit) {
    check_array<int32_t>(op, name, a, n, false);
    const int32_t *p = static_cast<const int32_t *>(a.data());
    for (int64_t i = 0; i < n; i++)
        if (p[i] < 0 || p[i] >= limit)
            throw py::value_error(std::string(op) + ": " + name + "[" + std::to_string(i) + "] = " +
                                  std::to_string(p[i]) + " is outside [0, " + std::to_string(limit) + ")");
    return p;
}

// Rows of a (rows, C) table whose first dimension is not a size argument (wte, wpe).
int64_t table_rows(const char *op, const char *name, const py::array &a, int64_t C) {
    if (a.size() == 0 || a.size() % C != 0)
        throw py::value_error(std::string(op) + ": " + name + " has " + std::to_string(a.size()) +
                              " elements, expected a positive multiple of C = " + std::to_string(C));
    return static_cast<int64_t>(a.size()) / C;
}

// Runs an op without the GIL; a failing status becomes the exception bindings.h maps it to.
template <typename F> void run(F &&f) { llmpy_check(llmpy_nogil(f)); }

// ----------------------------------------------------------------------------
// encoder

void encoder_forward(py::array out, py::array inp, py::array wte, py::array wpe, int B, int T, int C) {
    const char *op = "encoder_forward";
    positive(op, {{"B", B}, {"T", T}, {"C", C}});
    const int64_t BTC = count(op, {B, T, C});
    int64_t Vp = table_rows(op, "wte", wte, C), maxT = table_rows(op, "wpe", wpe, C);
    if (maxT < T) throw py::value_error(std::string(op) + ": wpe has fewer than T rows");
    float *o = out_f32(op, "out", out, BTC);
    const int32_t *ids = in_ids(op, "inp", inp, count(op, {B, T}), Vp);
    const float *w = in_f32(op, "wte", wte, Vp * C), *p = in_f32(op, "wpe", wpe, maxT * C);
    run([&] { return backend.encoder_forward(o, ids, w, p, B, T, C); });
}

void encoder_backward(py::array dwte, py::array dwpe, py::array dout, py::array inp, int B, int T, int C) {
    const char *op = "encoder_backward";
    positive(op, {{"B", B}, {"T", T}, {"C", C}});
    int64_t Vp = table_rows(op, "dwte", dwte, C), maxT = table_rows(op, "dwpe", dwpe, C);
    if (maxT < T) throw py::value_error(std::string(op) + ": dwpe has fewer than T rows");
    float *gw = out_f32(op, "dwte", dwte, Vp * C), *gp = out_f32(op, "dwpe", dwpe, maxT * C);
    const float *d = in_f32(op, "dout", dout, count(op, {B, T, C}));
    const int32_t *ids = in_ids(op, "inp", inp, count(op, {B, T}), Vp);
    run([&] { return backend.encoder_backward(gw, gp, d, ids, B, T, C); });
}

// ----------------------------------------------------------------------------
// layernorm

void layernorm_forward(py::array out, py::array mean, py::array rstd, py::array inp, py::array weight,
                       py::array bias, int B, int T, int C) {
    const char *op = "layernorm_forward";
    positive(op, {{"B", B}, {"T", T}, {"C", C}});
    const int64_t BT = count(op, {B, T}), BTC = count(op, {B, T, C});
    float *o = out_f32(op, "out", out, BTC), *mu = out_f32(op, "mean", mean, BT), *rs = out_f32(op, "rstd", rstd, BT);
    const float *x = in_f32(op, "inp", inp, BTC), *w = in_f32(op, "weight", weight, C), *b = in_f32(op, "bias", bias, C);
    run([&] { return backend.layernorm_forward(o, mu, rs, x, w, b, B, T, C); });
}

void layernorm_backward(py::array dinp, py::array dweight, py::array dbias, py::array dout, py::array inp,
                        py::array weight, py::array mean, py::array rstd, int B, int T, int C) {
    const char *op = "layernorm_backward";
    positive(op, {{"B", B}, {"T", T}, {"C", C}});
    const int64_t BT = count(op, {B, T}), BTC = count(op, {B, T, C});
    float *dx = out_f32(op, "dinp", dinp, BTC), *dw = out_f32(op, "dweight", dweight, C),
          *db = out_f32(op, "dbias", dbias, C);
    const float *d = in_f32(op, "dout", dout, BTC), *x = in_f32(op, "inp", inp, BTC),
                *w = in_f32(op, "weight", weight, C), *mu = in_f32(op, "mean", mean, BT),
                *rs = in_f32(op, "rstd", rstd, BT);
    run([&] { return backend.layernorm_backward(dx, dw, db, d, x, w, mu, rs, B, T, C); });
}

// ----------------------------------------------------------------------------
// matmul

void matmul_forward(py::array out, py::array inp, py::array weight, py::object bias, int B, int T, int C, int OC) {
    const char *op = "matmul_forward";
    positive(op, {{"B", B}, {"T", T}, {"C", C}, {"OC", OC}});
    float *o = out_f32(op, "out", out, count(op, {B, T, OC}));
    const float *x = in_f32(op, "inp", inp, count(op, {B, T, C})), *w = in_f32(op, "weight", weight, count(op, {OC, C}));
    const float *b = opt_in_f32(op, "bias", bias, OC);
    run([&] { return backend.matmul_forward(o, x, w, b, B, T, C, OC); });
}

void matmul_backward(py::object dinp, py::array dweight, py::object dbias, py::array dout, py::array inp,
                     py::array weight, int B, int T, int C, int OC) {
    const char *op = "matmul_backward";
    positive(op, {{"B", B}, {"T", T}, {"C", C}, {"OC", OC}});
    float *dx = opt_out_f32(op, "dinp", dinp, count(op, {B, T, C}));
    float *dw = out_f32(op, "dweight", dweight, count(op, {OC, C}));
    float *db = opt_out_f32(op, "dbias", dbias, OC);
    const float *d = in_f32(op, "dout", dout, count(op, {B, T, OC})), *x = in_f32(op, "inp", inp, count(op, {B, T, C})),
                *w = in_f32(op, "weight", weight, count(op, {OC, C}));
    run([&] { return backend.matmul_backward(dx, dw, db, d, x, w, B, T, C, OC); });
}

// ----------------------------------------------------------------------------
// attention

void check_heads(const char *op, int B, int T, int C, int NH) {
    positive(op, {{"B", B}, {"T", T}, {"C", C}, {"NH", NH}});
    if (C % NH != 0)
        throw py::value_error(std::string(op) + ": C = " + std::to_string(C) + " is not divisible by NH = " +
                              std::to_string(NH));
}

void attention_forward(py::array out, py::array att, py::array qkv, int B, int T, int C, int NH) {
    const char *op = "attention_forward";
    check_heads(op, B, T, C, NH);
    float *o = out_f32(op, "out", out, count(op, {B, T, C})), *a = out_f32(op, "att", att, count(op, {B, NH, T, T}));
    const float *x = in_f32(op, "qkv", qkv, count(op, {B, T, 3, C}));
    run([&] { return backend.attention_forward(o, a, x, B, T, C, NH); });
}

void attention_backward(py::array dqkv, py::array dout, py::array qkv, py::array att, int B, int T, int C, int NH) {
    const char *op = "attention_backward";
    check_heads(op, B, T, C, NH);
    float *dx = out_f32(op, "dqkv", dqkv, count(op, {B, T, 3, C}));
    const float *d = in_f32(op, "dout", dout, count(op, {B, T, C})), *x = in_f32(op, "qkv", qkv, count(op, {B, T, 3, C})),
                *a = in_f32(op, "att", att, count(op, {B, NH, T, T}));
    run([&] { return backend.attention_backward(dx, d, x, a, B, T, C, NH); });
}

// ----------------------------------------------------------------------------
// elementwise: gelu, residual

int64_t check_n(const char *op, int64_t N) {
    if (N < 0) throw py::value_error(std::string(op) + ": N must be >= 0");
    return N;
}

void gelu_forward(py::array out, py::array inp, int64_t N) {
    const char *op = "gelu_forward";
    check_n(op, N);
    float *o = out_f32(op, "out", out, N);
    const float *x = in_f32(op, "inp", inp, N);
    run([&] { return backend.gelu_forward(o, x, (size_t)N); });
}

void gelu_backward(py::array dinp, py::array inp, py::array dout, int64_t N) {
    const char *op = "gelu_backward";
    check_n(op, N);
    float *dx = out_f32(op, "dinp", dinp, N);
    const float *x = in_f32(op, "inp", inp, N), *d = in_f32(op, "dout", dout, N);
    run([&] { return backend.gelu_backward(dx, x, d, (size_t)N); });
}

void residual_forward(py::array out, py::array inp1, py::array inp2, int64_t N) {
    const char *op = "residual_forward";
    check_n(op, N);
    float *o = out_f32(op, "out", out, N);
    const float *a = in_f32(op, "inp1", inp1, N), *b = in_f32(op, "inp2", inp2, N);
    run([&] { return backend.residual_forward(o, a, b, (size_t)N); });
}

void residual_backward(py::array dinp1, py::array dinp2, py::array dout, int64_t N) {
    const char *op = "residual_backward";
    check_n(op, N);
    float *d1 = out_f32(op, "dinp1", dinp1, N), *d2 = out_f32(op, "dinp2", dinp2, N);
    const float *d = in_f32(op, "dout", dout, N);
    run([&] { return backend.residual_backward(d1, d2, d, (size_t)N); });
}

// ----------------------------------------------------------------------------
// crossentropy

void check_vocab(const char *op, int B, int T, int V, int Vp) {
    positive(op, {{"B", B}, {"T", T}, {"V", V}});
    if (Vp < V)
        throw py::value_error(std::string(op) + ": Vp = " + std::to_string(Vp) + " is smaller than V = " +
                              std::to_string(V));
}

void crossentropy_forward(py::array losses, py::array logits, py::array targets, int B, int T, int V, int Vp) {
    const char *op = "crossentropy_forward";
    check_vocab(op, B, T, V, Vp);
    float *l = out_f32(op, "losses", losses, count(op, {B, T}));
    const float *x = in_f32(op, "logits", logits, count(op, {B, T, Vp}));
    const int32_t *y = in_ids(op, "targets", targets, count(op, {B, T}), V);
    run([&] { return backend.crossentropy_forward(l, x, y, B, T, V, Vp); });
}

void crossentropy_backward(py::array dlogits, py::array logits, py::array targets, float dloss, int B, int T, int V,
                           int Vp) {
    const char *op = "crossentropy_backward";
    check_vocab(op, B, T, V, Vp);
    float *dx = out_f32(op, "dlogits", dlogits, count(op, {B, T, Vp}));
    const float *x = in_f32(op, "logits", logits, count(op, {B, T, Vp}));
    const int32_t *y = in_ids(op, "targets", targets, count(op, {B, T}), V);
    run([&] { return backend.crossentropy_backward(dx, x, y, dloss, B, T, V, Vp); });
}

void crossentropy_backward_cols(py::array dlogits, py::array logits, py::array losses, py::array targets, float dloss,
                                int B, int T, int V, int Vp, int v0, int n) {
    const char *op = "crossentropy_backward_cols";
    check_vocab(op, B, T, V, Vp);
    positive(op, {{"n", n}});
    if (v0 < 0 || (int64_t)v0 + n > Vp)
        throw py::value_error(std::string(op) + ": columns [v0, v0 + n) = [" + std::to_string(v0) + ", " +
                              std::to_string((int64_t)v0 + n) + ") are not within [0, Vp = " + std::to_string(Vp) + ")");
    float *dx = out_f32(op, "dlogits", dlogits, count(op, {B, T, n}));
    const float *x = in_f32(op, "logits", logits, count(op, {B, T, Vp}));
    const float *l = in_f32(op, "losses", losses, count(op, {B, T}));
    const int32_t *y = in_ids(op, "targets", targets, count(op, {B, T}), V);
    run([&] { return backend.crossentropy_backward_cols(dx, x, l, y, dloss, B, T, V, Vp, v0, n); });
}

// ----------------------------------------------------------------------------
// optimizer and reductions

void adamw_update(py::array params, py::array grads, py::array m, py::array v, int64_t N, float lr, float beta1,
                  float beta2, float eps, float weight_decay, float grad_scale, int64_t t) {
    const char *op = "adamw_update";
    check_n(op, N);
    if (t < 1) throw py::value_error(std::string(op) + ": the step number t must be >= 1");
    float *p = out_f32(op, "params", params, N), *pm = out_f32(op, "m", m, N), *pv = out_f32(op, "v", v, N);
    const float *g = in_f32(op, "grads", grads, N);
    run([&] {
        return backend.adamw_update(p, g, pm, pv, (size_t)N, lr, beta1, beta2, eps, weight_decay, grad_scale, t);
    });
}

double norm_squared(py::array x, int64_t N) {
    const char *op = "norm_squared";
    check_n(op, N);
    const float *p = in_f32(op, "x", x, N);
    double out = 0.0;
    run([&] { return backend.norm_squared(&out, p, (size_t)N); });
    return out;
}

} // namespace

// ----------------------------------------------------------------------------
// registration (called by bindings.cpp for the submodule llmpy._C.ops)

void llmpy_register_ops(py::module_ &m) {
    m.attr("backend") = backend.name;
    m.def("encoder_forward", &encoder_forward, py::arg("out"), py::arg("inp"), py::arg("wte"), py::arg("wpe"),
          py::arg("B"), py::arg("T"), py::arg("C"), "out (B,T,C) = wte[inp] + wpe[:T]; inp (B,T) int32");
    m.def("encoder_backward", &encoder_backward, py::arg("dwte"), py::arg("dwpe"), py::arg("dout"), py::arg("inp"),
          py::arg("B"), py::arg("T"), py::arg("C"), "dwte, dwpe += scatter of dout (B,T,C)");
    m.def("layernorm_forward", &layernorm_forward, py::arg("out"), py::arg("mean"), py::arg("rstd"), py::arg("inp"),
          py::arg("weight"), py::arg("bias"), py::arg("B"), py::arg("T"), py::arg("C"),
          "out (B,T,C), mean/rstd (B,T) = layernorm(inp) with eps 1e-5");
    m.def("layernorm_backward", &layernorm_backward, py::arg("dinp"), py::arg("dweight"), py::arg("dbias"),
          py::arg("dout"), py::arg("inp"), py::arg("weight"), py::arg("mean"), py::arg("rstd"), py::arg("B"),
          py::arg("T"), py::arg("C"), "dinp, dweight, dbias += gradients of layernorm");
    m.def("matmul_forward", &matmul_forward, py::arg("out"), py::arg("inp"), py::arg("weight"), py::arg("bias").none(true),
          py::arg("B"), py::arg("T"), py::arg("C"), py::arg("OC"), "out (B,T,OC) = inp @ weight.T + bias (bias may be None)");
    m.def("matmul_backward", &matmul_backward, py::arg("dinp").none(true), py::arg("dweight"), py::arg("dbias").none(true),
          py::arg("dout"), py::arg("inp"), py::arg("weight"), py::arg("B"), py::arg("T"), py::arg("C"), py::arg("OC"),
          "dinp += dout @ weight, dweight += dout.T @ inp, dbias += dout.sum(rows); dinp/dbias may be None");
    m.def("attention_forward", &attention_forward, py::arg("out"), py::arg("att"), py::arg("qkv"), py::arg("B"),
          py::arg("T"), py::arg("C"), py::arg("NH"), "causal attention: out (B,T,C), att (B,NH,T,T) from qkv (B,T,3C)");
    m.def("attention_backward", &attention_backward, py::arg("dqkv"), py::arg("dout"), py::arg("qkv"), py::arg("att"),
          py::arg("B"), py::arg("T"), py::arg("C"), py::arg("NH"), "dqkv (B,T,3C) += gradient of causal attention");
    m.def("gelu_forward", &gelu_forward, py::arg("out"), py::arg("inp"), py::arg("N"), "out = gelu(inp), tanh approximation");
    m.def("gelu_backward", &gelu_backward, py::arg("dinp"), py::arg("inp"), py::arg("dout"), py::arg("N"),
          "dinp += gelu'(inp) * dout");
    m.def("residual_forward", &residual_forward, py::arg("out"), py::arg("inp1"), py::arg("inp2"), py::arg("N"),
          "out = inp1 + inp2 (out may be inp1 or inp2)");
    m.def("residual_backward", &residual_backward, py::arg("dinp1"), py::arg("dinp2"), py::arg("dout"), py::arg("N"),
          "dinp1 += dout, dinp2 += dout");
    m.def("crossentropy_forward", &crossentropy_forward, py::arg("losses"), py::arg("logits"), py::arg("targets"),
          py::arg("B"), py::arg("T"), py::arg("V"), py::arg("Vp"), "losses (B,T) from logits (B,T,Vp) over the first V columns");
    m.def("crossentropy_backward", &crossentropy_backward, py::arg("dlogits"), py::arg("logits"), py::arg("targets"),
          py::arg("dloss"), py::arg("B"), py::arg("T"), py::arg("V"), py::arg("Vp"),
          "dlogits (B,T,Vp) = (softmax - onehot) * dloss, written; padding columns 0");
    m.def("crossentropy_backward_cols", &crossentropy_backward_cols, py::arg("dlogits"), py::arg("logits"),
          py::arg("losses"), py::arg("targets"), py::arg("dloss"), py::arg("B"), py::arg("T"), py::arg("V"),
          py::arg("Vp"), py::arg("v0"), py::arg("n"),
          "dlogits (B,T,n) = columns v0..v0+n of crossentropy_backward's result, written; the softmax is "
          "rebuilt from the forward's losses (B,T)");
    m.def("adamw_update", &adamw_update, py::arg("params"), py::arg("grads"), py::arg("m"), py::arg("v"), py::arg("N"),
          py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
          py::arg("grad_scale"), py::arg("t"), "one torch.optim.AdamW step on grads * grad_scale; t >= 1");
    m.def("norm_squared", &norm_squared, py::arg("x"), py::arg("N"), "sum of x**2 in double precision");
}
