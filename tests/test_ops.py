"""Each CPU op (llmpy._C.ops) against PyTorch autograd in float64.

The inputs are float32 (what the C code sees); the oracle runs on the same values promoted to
float64. Tolerances are per quantity and relative to the largest reference magnitude
(max |got - ref| <= rtol * max |ref|): fp32 storage alone costs ~6e-8, fp32 reductions a few
times 1e-7 for the sizes here, so 1e-5 leaves room without hiding real bugs. Shapes include
awkward ones: T=1, odd C, NH=3, V=101 padded to Vp=128, B*T = 4*257.

Gradient convention (csrc/core/ops.h): parameter gradients accumulate (+=), so the backwards that
have them start from random values (or run twice) and must add the gradient; activation
gradients are written (=) where the model writes a buffer once (gelu_backward,
attention_backward, crossentropy_backward, matmul_backward with accumulate=False): those outputs
start as NaN, so a result equal to the reference proves that every element was written and none
was read; the accumulating ones (layernorm's dinp, matmul's dinp with accumulate=True) start from
random values or are run twice.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from llmpy import _C

ops = _C.ops


# ----------------------------------------------------------------------------
# helpers


def assert_close(name: str, got, ref, rtol: float = 1e-5, atol: float = 0.0) -> None:
    """Checks max |got - ref| <= atol + rtol * max |ref|; reports the figures when it fails.

    >>> assert_close("x", np.float32([1, 2]), np.float64([1, 2]))
    """
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref.detach().numpy() if isinstance(ref, torch.Tensor) else ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != reference {ref.shape}"
    if got.size == 0:
        return
    diff = np.abs(got - ref)
    bad = np.isnan(diff)
    if bad.any():  # NaN where the reference has a number (or the other way round)
        mad, where = math.inf, np.argwhere(bad)[0]
    else:
        mad, where = float(diff.max()), np.unravel_index(int(diff.argmax()), diff.shape)
    scale = float(np.max(np.abs(ref)))
    rel = mad / scale if scale > 0 else mad
    assert mad <= atol + rtol * scale, (
        f"{name}: max abs diff {mad:.3e} at {tuple(int(i) for i in where)}, relative error {rel:.3e} "
        f"(rtol {rtol}, atol {atol}, max |ref| {scale:.3e})"
    )


def randn(rng: np.random.Generator, *shape: int, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale + shift).astype(np.float32)


def t64(x: np.ndarray, grad: bool = False) -> torch.Tensor:
    """float64 copy of a float32 array, optionally a leaf that records gradients."""
    return torch.from_numpy(np.asarray(x, dtype=np.float64)).requires_grad_(grad)


def zeros(*shape: int) -> np.ndarray:
    return np.zeros(shape, dtype=np.float32)


@pytest.fixture
def rng(request) -> np.random.Generator:
    # a different but reproducible stream per test case (crc32: str hashes are salted per process)
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


# ----------------------------------------------------------------------------
# encoder

ENCODER_SHAPES = [(1, 1, 15, 7, 4), (2, 5, 33, 11, 8), (4, 257, 16, 128, 300)]  # B, T, C, Vp, maxT


@pytest.mark.parametrize("B,T,C,Vp,maxT", ENCODER_SHAPES)
def test_encoder(rng, B, T, C, Vp, maxT):
    inp = rng.integers(0, Vp, size=(B, T), dtype=np.int32)  # small Vp: repeated tokens
    wte, wpe = randn(rng, Vp, C), randn(rng, maxT, C)
    out = zeros(B, T, C)
    ops.encoder_forward(out, inp, wte, wpe, B, T, C)

    wte64, wpe64 = t64(wte, True), t64(wpe, True)
    ref = wte64[torch.from_numpy(inp).long()] + wpe64[:T]
    assert_close("encoder out", out, ref, rtol=1e-7)

    dout = randn(rng, B, T, C)
    ref.backward(t64(dout))
    dwte, dwpe = zeros(Vp, C), zeros(maxT, C)
    # accumulates; with the ids also on the host (inp_host, as the model passes them) or not
    for k, inp_host in ((1, None), (2, inp.copy())):
        ops.encoder_backward(dwte, dwpe, dout, inp, inp_host, B, T, C)
        assert_close(f"encoder dwte (call {k})", dwte, k * wte64.grad, rtol=1e-6)
        assert_close(f"encoder dwpe (call {k})", dwpe, k * wpe64.grad, rtol=1e-6)


# ----------------------------------------------------------------------------
# layernorm

LN_SHAPES = [(1, 1, 15), (2, 3, 33), (4, 257, 64), (2, 5, 768)]  # B, T, C


@pytest.mark.parametrize("B,T,C", LN_SHAPES)
def test_layernorm(rng, B, T, C):
    inp = randn(rng, B, T, C, scale=2.0, shift=0.7)
    weight, bias = randn(rng, C, shift=1.0), randn(rng, C)
    out, mean, rstd = zeros(B, T, C), zeros(B, T), zeros(B, T)
    ops.layernorm_forward(out, mean, rstd, inp, weight, bias, B, T, C)

    x, w, b = t64(inp, True), t64(weight, True), t64(bias, True)
    ref = torch.nn.functional.layer_norm(x, (C,), w, b, eps=1e-5)
    var = x.detach().var(-1, unbiased=False)
    assert_close("layernorm out", out, ref)
    assert_close("layernorm mean", mean, x.detach().mean(-1), rtol=1e-6)
    assert_close("layernorm rstd", rstd, 1.0 / torch.sqrt(var + 1e-5), rtol=1e-6)

    dout = randn(rng, B, T, C)
    ref.backward(t64(dout))
    dinp, dweight, dbias = zeros(B, T, C), zeros(C), zeros(C)
    for k in (1, 2):
        ops.layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, B, T, C)
        assert_close(f"layernorm dinp (call {k})", dinp, k * x.grad)
        assert_close(f"layernorm dweight (call {k})", dweight, k * w.grad)
        assert_close(f"layernorm dbias (call {k})", dbias, k * b.grad)


# ----------------------------------------------------------------------------
# matmul

MM_SHAPES = [(1, 1, 15, 7), (2, 3, 33, 101), (4, 257, 48, 72), (1, 256, 768, 2304)]  # B, T, C, OC


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("B,T,C,OC", MM_SHAPES)
def test_matmul(rng, B, T, C, OC, with_bias):
    inp, weight = randn(rng, B, T, C), randn(rng, OC, C, scale=0.1)
    bias = randn(rng, OC) if with_bias else None
    out = np.full((B, T, OC), np.nan, dtype=np.float32)  # forward must overwrite everything
    ops.matmul_forward(out, inp, weight, bias, B, T, C, OC)

    x, w = t64(inp, True), t64(weight, True)
    b = t64(bias, True) if with_bias else None
    ref = torch.nn.functional.linear(x, w, b)
    assert_close("matmul out", out, ref)

    dout = randn(rng, B, T, OC)
    ref.backward(t64(dout))
    dinp0, dweight0 = randn(rng, B, T, C), randn(rng, OC, C)
    dbias0 = randn(rng, OC) if with_bias else None
    dinp, dweight = dinp0.copy(), dweight0.copy()
    dbias = dbias0.copy() if with_bias else None
    # accumulate=True: dinp += (onto random values)
    ops.matmul_backward(dinp, dweight, dbias, dout, inp, weight, B, T, C, OC, True)
    assert_close("matmul dinp (accumulated)", dinp, t64(dinp0) + x.grad)
    assert_close("matmul dweight (call 1)", dweight, t64(dweight0) + w.grad)
    if with_bias:
        assert_close("matmul dbias (call 1)", dbias, t64(dbias0) + b.grad)
    # accumulate=False: dinp = (over NaN: every element written, none read); the parameters still +=
    dinp = np.full((B, T, C), np.nan, dtype=np.float32)
    ops.matmul_backward(dinp, dweight, dbias, dout, inp, weight, B, T, C, OC, False)
    assert_close("matmul dinp (written)", dinp, x.grad)
    assert_close("matmul dweight (call 2)", dweight, t64(dweight0) + 2 * w.grad)
    if with_bias:
        assert_close("matmul dbias (call 2)", dbias, t64(dbias0) + 2 * b.grad)


def test_matmul_backward_optional_outputs(rng):
    B, T, C, OC = 2, 5, 33, 40
    inp, weight, dout = randn(rng, B, T, C), randn(rng, OC, C), randn(rng, B, T, OC)
    dweight = zeros(OC, C)
    ops.matmul_backward(None, dweight, None, dout, inp, weight, B, T, C, OC)
    ref = t64(dout).reshape(-1, OC).T @ t64(inp).reshape(-1, C)
    assert_close("matmul dweight (dinp, dbias None)", dweight, ref)


# ----------------------------------------------------------------------------
# attention

ATT_SHAPES = [(1, 1, 6, 3), (2, 5, 15, 3), (2, 7, 33, 3), (2, 64, 64, 4), (1, 33, 768, 12), (4, 257, 48, 3)]


def attention_reference(qkv: torch.Tensor, B: int, T: int, C: int, NH: int):
    hs = C // NH
    q, k, v = qkv.view(B, T, 3, NH, hs).permute(2, 0, 3, 1, 4)  # each (B, NH, T, hs)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    att = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    out = (att @ v).transpose(1, 2).reshape(B, T, C)
    return out, att


@pytest.mark.parametrize("B,T,C,NH", ATT_SHAPES)
def test_attention(rng, B, T, C, NH):
    qkv = randn(rng, B, T, 3 * C)
    # both written over NaN: nothing of their previous contents is read
    out, att = np.full((B, T, C), np.nan, np.float32), np.full((B, NH, T, T), np.nan, dtype=np.float32)
    ops.attention_forward(out, att, qkv, B, T, C, NH)

    x = t64(qkv, True)
    ref_out, ref_att = attention_reference(x, B, T, C, NH)
    assert_close("attention att", att, ref_att)
    assert np.all(np.triu(att, k=1) == 0), "attention att: entries above the diagonal must be 0"
    assert_close("attention out", out, ref_out)

    dout = randn(rng, B, T, C)
    ref_out.backward(t64(dout))
    # written: over NaN (nothing read), and over random values (the same result)
    for start in ("NaN", "random values"):
        dqkv = np.full((B, T, 3 * C), np.nan, np.float32) if start == "NaN" else randn(rng, B, T, 3 * C)
        ops.attention_backward(dqkv, dout, qkv, out, att, B, T, C, NH)
        assert_close(f"attention dqkv (written over {start})", dqkv, x.grad)


# ----------------------------------------------------------------------------
# gelu, residual


@pytest.mark.parametrize("N", [1, 15, 4 * 257 * 33])
def test_gelu(rng, N):
    inp = randn(rng, N, scale=3.0)
    inp[0] = 0.0
    out = zeros(N)
    ops.gelu_forward(out, inp, N)
    x = t64(inp, True)
    ref = torch.nn.functional.gelu(x, approximate="tanh")
    assert_close("gelu out", out, ref)

    dout = randn(rng, N)
    ref.backward(t64(dout))
    dinp = np.full(N, np.nan, dtype=np.float32)  # written: nothing read
    ops.gelu_backward(dinp, inp, dout, N)
    assert_close("gelu dinp (written)", dinp, x.grad)
    inplace = dout.copy()  # dinp may alias dout
    ops.gelu_backward(inplace, inp, inplace, N)
    assert_close("gelu dinp (dinp is dout)", inplace, x.grad)


# The step and the bound of gelu_fd_tolerance(): gelu''' of the tanh approximation peaks at
# |x| ~ 0.79 with |gelu'''| = 0.777 (float64 finite differences on a 1e-5 grid over [-8, 8]).
GELU_FD_H = 2.0**-7
GELU_MAX_D3 = 0.78


def gelu_fd_tolerance(f_plus, f_minus, grad, h: float = GELU_FD_H) -> np.ndarray:
    """Per-element bound on |central difference of an fp32 GELU forward - the fp32 backward|.

    Truncation of the central difference: h^2/6 * max|f'''| (7.9e-6 at h = 2^-7). Rounding: each
    fp32 forward value within 8 ulp of the formula (the exponential within 2, a few roundings
    after it), an error divided by 2h in the difference; the backward within 8 ulp of itself.
    A larger difference means the backward is not the derivative of the forward (for instance a
    forward through another tanh than the one the backward differentiates).
    """
    u = 2.0**-24
    f_plus, f_minus, grad = (np.abs(np.asarray(a, np.float64)) for a in (f_plus, f_minus, grad))
    return h * h / 6 * GELU_MAX_D3 + (8 * u * (f_plus + f_minus) + 2.0**-40) / (2 * h) + 8 * u * grad


def test_gelu_backward_is_the_derivative_of_gelu_forward():
    """gelu_backward against a central finite difference of gelu_forward, both fp32 (issue 17, item 5)."""
    h = GELU_FD_H
    x = (np.arange(-5 * 256, 5 * 256 + 1) / 256.0).astype(np.float32)  # multiples of 2^-8: x +- h exact
    N = x.size
    fp, fm, g = zeros(N), zeros(N), zeros(N)
    ops.gelu_forward(fp, x + np.float32(h), N)
    ops.gelu_forward(fm, x - np.float32(h), N)
    ops.gelu_backward(g, x, np.ones(N, np.float32), N)
    fd = (fp.astype(np.float64) - fm) / (2 * h)
    err, tol = np.abs(fd - g), gelu_fd_tolerance(fp, fm, g)
    i = int(np.argmax(err / tol))
    assert np.all(err <= tol), (
        f"gelu_backward vs finite difference of gelu_forward: |diff| {err[i]:.3e} > bound {tol[i]:.3e} at "
        f"x = {x[i]} (max abs diff {err.max():.3e})"
    )


@pytest.mark.parametrize("N", [1, 33, 100_003])
def test_residual(rng, N):
    a, b = randn(rng, N), randn(rng, N)
    out = zeros(N)
    ops.residual_forward(out, a, b, N)
    ref = t64(a) + t64(b)
    assert_close("residual out", out, ref, rtol=1e-7)

    inplace = a.copy()  # out aliases inp1, as the model does for the residual stream
    ops.residual_forward(inplace, inplace, b, N)
    assert_close("residual out (out is inp1)", inplace, ref, rtol=1e-7)

    dout = randn(rng, N)
    d1, d2 = zeros(N), zeros(N)
    for k in (1, 2):
        ops.residual_backward(d1, d2, dout, N)
        assert_close(f"residual dinp1 (call {k})", d1, k * dout.astype(np.float64), rtol=1e-7)
        assert_close(f"residual dinp2 (call {k})", d2, k * dout.astype(np.float64), rtol=1e-7)


# ----------------------------------------------------------------------------
# crossentropy

CE_SHAPES = [(1, 1, 7, 7), (2, 3, 101, 128), (4, 257, 101, 128), (2, 3, 50257, 50304)]  # B, T, V, Vp


@pytest.mark.parametrize("B,T,V,Vp", CE_SHAPES)
def test_crossentropy(rng, B, T, V, Vp):
    logits = randn(rng, B, T, Vp, scale=3.0)
    logits[..., V:] = np.nan  # padding columns must never be read
    targets = rng.integers(0, V, size=(B, T), dtype=np.int32)
    losses = zeros(B, T)
    ops.crossentropy_forward(losses, logits, targets, B, T, V, Vp)

    x = t64(logits[..., :V], True)
    ref = torch.nn.functional.cross_entropy(
        x.reshape(-1, V), torch.from_numpy(targets).long().reshape(-1), reduction="none"
    ).reshape(B, T)
    assert_close("crossentropy losses", losses, ref, rtol=1e-6)

    dloss = 1.0 / (B * T)
    (ref.sum() * dloss).backward()
    dlogits = np.full((B, T, Vp), np.nan, dtype=np.float32)  # written, not accumulated
    for k in (1, 2):
        ops.crossentropy_backward(dlogits, logits, targets, dloss, B, T, V, Vp)
        assert_close(f"crossentropy dlogits (call {k})", dlogits[..., :V], x.grad)
        assert np.all(dlogits[..., V:] == 0), "crossentropy dlogits: padding columns must be 0"
    # in place of the logits over the whole padded row (the model's lm_head_in_place path): the
    # same gradient, rebuilt from the forward's losses, the padding columns (NaN here) set to 0
    inplace = logits.copy()
    ops.crossentropy_backward_cols(inplace, inplace, losses, targets, dloss, B, T, V, Vp, 0, Vp)
    assert_close("crossentropy_backward_cols in place", inplace[..., :V], x.grad)
    assert np.all(inplace[..., V:] == 0), "crossentropy_backward_cols in place: padding columns must be 0"


# ----------------------------------------------------------------------------
# adamw, norm_squared


@pytest.mark.parametrize(
    "lr,beta1,beta2,eps,weight_decay,grad_scale",
    [
        (1e-3, 0.9, 0.95, 1e-8, 0.1, 0.5),
        (3e-2, 0.8, 0.999, 1e-6, 0.0, 1.0),
        (1e-2, 0.9, 0.95, 1e-8, 0.3, 4.0),
    ],
)
def test_adamw(rng, lr, beta1, beta2, eps, weight_decay, grad_scale):
    N, steps = 1003, 6
    # the C API takes float32 hyperparameters: give the oracle the same rounded values
    # (1 - float32(0.999) differs from 0.001 by 1.3e-5 relative)
    lr, beta1, beta2, eps, weight_decay, grad_scale = (
        float(np.float32(h)) for h in (lr, beta1, beta2, eps, weight_decay, grad_scale)
    )
    params = randn(rng, N)
    m, v = zeros(N), zeros(N)
    p64 = torch.nn.Parameter(t64(params))
    opt = torch.optim.AdamW([p64], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)
    for t in range(1, steps + 1):
        grads = randn(rng, N, scale=0.01)
        grads[:5] = 0.0  # v == 0 on the first step: the eps path
        ops.adamw_update(params, grads, m, v, N, lr, beta1, beta2, eps, weight_decay, grad_scale, t)
        p64.grad = t64(grads) * grad_scale
        opt.step()
        state = opt.state[p64]
        assert_close(f"adamw params (step {t})", params, p64, rtol=1e-6)
        assert_close(f"adamw m (step {t})", m, state["exp_avg"], rtol=1e-5)
        assert_close(f"adamw v (step {t})", v, state["exp_avg_sq"], rtol=1e-5)


@pytest.mark.parametrize("N", [0, 1, 17, 65_536, 1_000_003])
def test_sum_f32(rng, N):
    x = randn(rng, N, scale=3.0, shift=2.0)
    got = ops.sum_f32(x, N)
    assert isinstance(got, float)
    ref = math.fsum(x.astype(np.float64))  # the exact sum of the float32 values
    # accumulated in double: within N * 2^-53 * sum |x| of the exact sum
    bound = max(N, 1) * 2.0**-53 * float(np.abs(x.astype(np.float64)).sum())
    assert abs(got - ref) <= bound, f"sum_f32: got {got!r}, exact {ref!r}, |diff| {abs(got - ref):.3e} > {bound:.3e}"
    assert ops.sum_f32(x, N) == got, "sum_f32 must give the same bits on a second call"


@pytest.mark.parametrize("N", [0, 1, 17, 1_000_003])
def test_norm_squared(rng, N):
    x = randn(rng, N, scale=5.0)
    got = ops.norm_squared(x, N)
    assert isinstance(got, float)
    ref = float(np.sum(x.astype(np.float64) ** 2))
    assert abs(got - ref) <= 1e-12 * max(ref, 1.0), f"norm_squared: got {got!r}, numpy float64 {ref!r}"


# ----------------------------------------------------------------------------
# results do not depend on the thread count (each output is reduced by one thread, in order)


def test_thread_count_does_not_change_results(rng):
    B, T, C, OC, NH = 2, 67, 48, 3 * 48, 3
    inp, weight, bias = randn(rng, B, T, C), randn(rng, OC, C), randn(rng, OC)
    dqkv_in = randn(rng, B, T, C)

    def run_all():
        qkv = zeros(B, T, OC)
        ops.matmul_forward(qkv, inp, weight, bias, B, T, C, OC)
        out, att = zeros(B, T, C), zeros(B, NH, T, T)
        ops.attention_forward(out, att, qkv, B, T, C, NH)
        dqkv = zeros(B, T, OC)
        ops.attention_backward(dqkv, dqkv_in, qkv, out, att, B, T, C, NH)
        dinp, dweight, dbias = zeros(B, T, C), zeros(OC, C), zeros(OC)
        ops.matmul_backward(dinp, dweight, dbias, dqkv, inp, weight, B, T, C, OC, False)
        total = np.float64(ops.sum_f32(dinp, dinp.size))
        return qkv, out, att, dqkv, dinp, dweight, dbias, total

    saved = _C.get_num_threads()
    try:
        _C.set_num_threads(1)
        one = run_all()
        _C.set_num_threads(3)
        many = run_all()
    finally:
        _C.set_num_threads(saved)
    names = ("qkv", "out", "att", "dqkv", "dinp", "dweight", "dbias", "sum_f32(dinp)")
    for name, a, b in zip(names, one, many):
        assert np.array_equal(a, b), (
            f"{name}: 1 thread and 3 threads differ (max abs diff {np.abs(a - b).max():.3e})"
        )


# ----------------------------------------------------------------------------
# the bindings reject bad arguments instead of crashing


def test_bindings_validate_arguments(rng):
    B, T, C, OC = 2, 3, 4, 5
    inp, weight, out = randn(rng, B, T, C), randn(rng, OC, C), zeros(B, T, OC)
    with pytest.raises(ValueError, match="elements"):
        ops.matmul_forward(zeros(B, T, OC + 1), inp, weight, None, B, T, C, OC)
    with pytest.raises(ValueError, match="elements"):
        ops.matmul_forward(out, inp, weight, zeros(OC - 1), B, T, C, OC)
    with pytest.raises(ValueError, match="dtype"):
        ops.matmul_forward(out, inp.astype(np.float64), weight, None, B, T, C, OC)
    with pytest.raises(ValueError, match="contiguous"):
        ops.matmul_forward(out, np.asfortranarray(inp), weight, None, B, T, C, OC)
    readonly = zeros(B, T, OC)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        ops.matmul_forward(readonly, inp, weight, None, B, T, C, OC)
    with pytest.raises(ValueError):
        ops.matmul_forward(out, inp, weight, None, 0, T, C, OC)
    with pytest.raises(ValueError, match="divisible"):
        ops.attention_forward(zeros(1, 2, 5), zeros(1, 2, 2, 2), zeros(1, 2, 15), 1, 2, 5, 2)
    wte, wpe = randn(rng, 8, C), randn(rng, 4, C)
    bad_ids = np.array([[0, 8, 1]], dtype=np.int32)
    with pytest.raises(ValueError, match="outside"):
        ops.encoder_forward(zeros(1, 3, C), bad_ids, wte, wpe, 1, 3, C)
    with pytest.raises(ValueError, match="outside"):
        ops.crossentropy_forward(zeros(1, 1), zeros(1, 1, 8), np.array([[7]], np.int32), 1, 1, 7, 8)
