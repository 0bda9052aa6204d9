"""Each CUDA op (llmpy._cuda.ops_fp32 / ops_bf16) against the CPU backend (llmpy._C.ops).

The CPU ops are themselves checked against PyTorch in float64 (test_ops.py), so they are the
oracle here. Inputs are random (never zeros) with awkward sizes (not multiples of any block or
vector width). Gradient convention (csrc/core/ops.h): outputs that ops accumulate into start random,
so += is checked; outputs that ops write (gelu_backward, attention_backward, matmul_backward's
dinp with accumulate=False, crossentropy_backward) start as NaN on the GPU, so a finite result
equal to the CPU's proves every element was written and none was read. Tolerances (issue 6):
fp32 relative error <= 1e-5, bf16 <= 1e-2 (the bf16 path rounds its inputs to bf16 first, about
4e-3 relative per value). Relative error is ‖got − ref‖/‖ref‖.

Skipped with the reason "no CUDA device" on machines without a GPU (or without the backend).
"""

from __future__ import annotations

import math

import llmpy
import numpy as np
import pytest
from llmpy import _C

pytestmark = pytest.mark.skipif(not llmpy.cuda_available(), reason="no CUDA device (or llmpy built without CUDA)")

TOL = {"fp32": 1e-5, "bf16": 1e-2}


@pytest.fixture(params=["fp32", "bf16"])
def prec(request):
    return request.param


@pytest.fixture
def gpu(prec):
    from llmpy import cuda

    mod = cuda.module("cuda")
    return getattr(mod, f"ops_{prec}")


@pytest.fixture
def rng(request):
    return np.random.default_rng(abs(hash(request.node.name)) % (1 << 32))


def randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def rel_err(got, ref):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    denom = np.linalg.norm(ref)
    return float(np.linalg.norm(got - ref) / (denom if denom > 0 else 1.0))


def check(name, got, ref, prec):
    r = rel_err(got, ref)
    assert np.all(np.isfinite(got)), f"{name} [{prec}]: non-finite values"
    assert r <= TOL[prec], f"{name} [{prec}]: relative error {r:.3e} > {TOL[prec]:.0e} (max abs diff " \
                           f"{float(np.max(np.abs(np.asarray(got, np.float64) - ref))):.3e})"


def both(*arrays):
    """Separate copies of every array for the CPU and the GPU run."""
    cpu = [a.copy() for a in arrays]
    gpu = [a.copy() for a in arrays]
    return cpu, gpu


@pytest.mark.parametrize("B,T,C,V", [(1, 1, 8, 5), (3, 37, 72, 101), (4, 64, 768, 1000)])
def test_encoder(gpu, prec, rng, B, T, C, V):
    Vp, maxT = (V + 127) // 128 * 128, T + 3
    inp = rng.integers(0, V, (B, T)).astype(np.int32)
    inp[0, :2] = 0  # repeated ids: the backward must sum them
    wte, wpe = randn(rng, Vp, C), randn(rng, maxT, C)
    outs = {}
    for name, ops in (("cpu", _C.ops), ("gpu", gpu)):
        out = randn(rng, B, T, C)
        ops.encoder_forward(out, inp, wte, wpe, B, T, C)
        outs[name] = out
    check("encoder out", outs["gpu"], outs["cpu"], prec)
    dout, dwte0, dwpe0 = randn(rng, B, T, C), randn(rng, Vp, C), randn(rng, maxT, C)
    (cw, cp), (gw, gp) = both(dwte0, dwpe0)
    _C.ops.encoder_backward(cw, cp, dout, inp, None, B, T, C)
    gpu.encoder_backward(gw, gp, dout, inp, None, B, T, C)  # ids read back from the device
    check("encoder dwte", gw - dwte0, cw - dwte0, prec)
    check("encoder dwpe", gp - dwpe0, cp - dwpe0, prec)
    # the ids from the host (what the model passes): the device copy holds other ids (reversed), so
    # the result matches only if the op sorted the host ones and never read the device ones
    gw, gp = dwte0.copy(), dwpe0.copy()
    gpu.encoder_backward(gw, gp, dout, np.ascontiguousarray(inp[:, ::-1][::-1]), inp, B, T, C)
    check("encoder dwte (host ids)", gw - dwte0, cw - dwte0, prec)
    check("encoder dwpe (host ids)", gp - dwpe0, cp - dwpe0, prec)


@pytest.mark.parametrize("B,T,C", [(1, 1, 8), (2, 67, 200), (4, 64, 768), (1, 5, 1600)])
def test_layernorm(gpu, prec, rng, B, T, C):
    x, w, b = randn(rng, B, T, C, scale=2.0) + 0.5, randn(rng, C), randn(rng, C)
    res = {}
    for name, ops in (("cpu", _C.ops), ("gpu", gpu)):
        out, mean, rstd = randn(rng, B, T, C), np.zeros((B, T), np.float32), np.zeros((B, T), np.float32)
        ops.layernorm_forward(out, mean, rstd, x, w, b, B, T, C)
        res[name] = (out, mean, rstd)
    for i, what in enumerate(("out", "mean", "rstd")):
        check(f"layernorm {what}", res["gpu"][i], res["cpu"][i], prec)
    _, mean, rstd = res["cpu"]
    dout, dx0, dw0, db0 = randn(rng, B, T, C), randn(rng, B, T, C), randn(rng, C), randn(rng, C)
    (cx, cw, cb), (gx, gw, gb) = both(dx0, dw0, db0)
    _C.ops.layernorm_backward(cx, cw, cb, dout, x, w, mean, rstd, B, T, C)
    gpu.layernorm_backward(gx, gw, gb, dout, x, w, mean, rstd, B, T, C)
    for what, g, c, z in (("dinp", gx, cx, dx0), ("dweight", gw, cw, dw0), ("dbias", gb, cb, db0)):
        check(f"layernorm {what}", g - z, c - z, prec)


@pytest.mark.parametrize("B,T,C", [(2, 67, 200), (4, 64, 768)])
def test_residual_layernorm(gpu, prec, rng, B, T, C):
    a, b2, w, b = randn(rng, B, T, C), randn(rng, B, T, C), randn(rng, C), randn(rng, C)
    res = {}
    for name, ops in (("cpu", _C.ops), ("gpu", gpu)):
        r, out = randn(rng, B, T, C), randn(rng, B, T, C)
        mean, rstd = np.zeros((B, T), np.float32), np.zeros((B, T), np.float32)
        ops.residual_layernorm_forward(r, out, mean, rstd, a, b2, w, b, B, T, C)
        res[name] = (r, out, mean, rstd)
    for i, what in enumerate(("residual", "out", "mean", "rstd")):
        check(f"residual_layernorm {what}", res["gpu"][i], res["cpu"][i], prec)


@pytest.mark.parametrize("B,T,C,OC", [(1, 1, 8, 8), (2, 35, 72, 200), (4, 64, 768, 2304), (2, 33, 3072, 768)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_matmul(gpu, prec, rng, B, T, C, OC, with_bias):
    x, w = randn(rng, B, T, C), randn(rng, OC, C, scale=C ** -0.5)
    bias = randn(rng, OC) if with_bias else None
    res = {}
    for name, ops in (("cpu", _C.ops), ("gpu", gpu)):
        out = randn(rng, B, T, OC)
        ops.matmul_forward(out, x, w, bias, B, T, C, OC)
        res[name] = out
    check("matmul out", res["gpu"], res["cpu"], prec)
    dout, dx0, dw0 = randn(rng, B, T, OC), randn(rng, B, T, C), randn(rng, OC, C)
    db0 = randn(rng, OC) if with_bias else None
    cx, cw = dx0.copy(), dw0.copy()
    gx, gw = dx0.copy(), dw0.copy()
    cb = db0.copy() if with_bias else None
    gb = db0.copy() if with_bias else None
    _C.ops.matmul_backward(cx, cw, cb, dout, x, w, B, T, C, OC, True)
    gpu.matmul_backward(gx, gw, gb, dout, x, w, B, T, C, OC, True)  # dinp += (beta 1)
    check("matmul dinp (accumulate)", gx - dx0, cx - dx0, prec)
    check("matmul dweight", gw - dw0, cw - dw0, prec)
    if with_bias:
        check("matmul dbias", gb - db0, cb - db0, prec)
    # dinp written (beta 0) over NaN; dweight and dbias accumulate a second time
    cx, gx = np.zeros((B, T, C), np.float32), np.full((B, T, C), np.nan, np.float32)
    _C.ops.matmul_backward(cx, cw, cb, dout, x, w, B, T, C, OC, False)
    gpu.matmul_backward(gx, gw, gb, dout, x, w, B, T, C, OC, False)
    check("matmul dinp (written over NaN)", gx, cx, prec)
    check("matmul dweight (second call)", gw - dw0, cw - dw0, prec)
    if with_bias:
        check("matmul dbias (second call)", gb - db0, cb - db0, prec)


def test_matmul_backward_without_dinp(gpu, prec, rng):
    B, T, C, OC = 2, 19, 40, 130
    x, w, dout = randn(rng, B, T, C), randn(rng, OC, C), randn(rng, B, T, OC)
    cw, gw = np.zeros((OC, C), np.float32), np.zeros((OC, C), np.float32)
    _C.ops.matmul_backward(None, cw, None, dout, x, w, B, T, C, OC, False)
    gpu.matmul_backward(None, gw, None, dout, x, w, B, T, C, OC, False)
    check("matmul dweight (no dinp, no dbias)", gw, cw, prec)


@pytest.mark.parametrize("B,T,C,OC", [(2, 35, 72, 288), (4, 64, 768, 3072)])
def test_matmul_gelu(gpu, prec, rng, B, T, C, OC):
    x, w, bias = randn(rng, B, T, C), randn(rng, OC, C, scale=C ** -0.5), randn(rng, OC)
    res = {}
    for name, ops in (("cpu", _C.ops), ("gpu", gpu)):
        pre, out = randn(rng, B, T, OC), randn(rng, B, T, OC)
        ops.matmul_gelu_forward(pre, out, x, w, bias, B, T, C, OC)
        res[name] = (pre, out)
    check("matmul_gelu pre", res["gpu"][0], res["cpu"][0], prec)
    check("matmul_gelu out", res["gpu"][1], res["cpu"][1], prec)


@pytest.mark.parametrize("attention", ["reference", "flash"])
@pytest.mark.parametrize("B,T,C,NH", [(1, 1, 64, 1), (2, 7, 128, 2), (2, 100, 768, 12), (1, 257, 256, 2),
                                       (2, 33, 72, 3)])  # the last: head size 24 (flash falls back)
def test_attention(gpu, prec, rng, attention, B, T, C, NH):
    from llmpy import cuda

    cuda.module().set_attention(attention)
    try:
        qkv = randn(rng, B, T, 3 * C)
        out_c = np.zeros((B, T, C), np.float32)
        state_c = np.zeros(_C.ops.attention_state_size(B, T, C, NH), np.float32)
        _C.ops.attention_forward(out_c, state_c, qkv, B, T, C, NH)
        out_g = np.full((B, T, C), np.nan, np.float32)  # poisoned: every element must be written
        state_g = np.zeros(gpu.attention_state_size(B, T, C, NH), np.float32)
        gpu.attention_forward(out_g, state_g, qkv, B, T, C, NH)
        check(f"attention[{attention}] out", out_g, out_c, prec)
        dout = randn(rng, B, T, C)
        dc, dg = np.zeros((B, T, 3 * C), np.float32), np.full((B, T, 3 * C), np.nan, np.float32)  # written
        _C.ops.attention_backward(dc, dout, qkv, out_c, state_c, B, T, C, NH)
        gpu.attention_backward(dg, dout, qkv, out_g, state_g, B, T, C, NH)
        check(f"attention[{attention}] dqkv (written over NaN)", dg, dc, prec)
    finally:
        cuda.module().set_attention("flash")


@pytest.mark.parametrize("N", [1, 1001, 1 << 20])
def test_gelu_residual(gpu, prec, rng, N):
    x, y, d = randn(rng, N, scale=3.0), randn(rng, N), randn(rng, N)
    for op, args in (("gelu_forward", (x,)), ("residual_forward", (x, y))):
        oc, og = randn(rng, N), randn(rng, N)
        getattr(_C.ops, op)(oc, *args, N)
        getattr(gpu, op)(og, *args, N)
        check(op, og, oc, prec)
    dc, dg = np.zeros(N, np.float32), np.full(N, np.nan, np.float32)  # written
    _C.ops.gelu_backward(dc, x, d, N)
    gpu.gelu_backward(dg, x, d, N)
    check("gelu_backward (written over NaN)", dg, dc, prec)
    a0, b0 = randn(rng, N), randn(rng, N)
    (ca, cb), (ga, gb) = both(a0, b0)
    _C.ops.residual_backward(ca, cb, d, N)
    gpu.residual_backward(ga, gb, d, N)
    check("residual_backward dinp1", ga - a0, ca - a0, prec)
    check("residual_backward dinp2", gb - b0, cb - b0, prec)


@pytest.mark.parametrize("B,T,V,Vp", [(1, 1, 5, 128), (3, 17, 1000, 1024), (2, 9, 50257, 50304)])
def test_crossentropy(gpu, prec, rng, B, T, V, Vp):
    logits = randn(rng, B, T, Vp, scale=3.0)
    targets = rng.integers(0, V, (B, T)).astype(np.int32)
    lc, lg = np.zeros((B, T), np.float32), np.zeros((B, T), np.float32)
    _C.ops.crossentropy_forward(lc, logits, targets, B, T, V, Vp)
    gpu.crossentropy_forward(lg, logits, targets, B, T, V, Vp)
    check("crossentropy losses", lg, lc, prec)
    dc, dg = randn(rng, B, T, Vp), np.full((B, T, Vp), np.nan, np.float32)  # written, not accumulated
    _C.ops.crossentropy_backward(dc, logits, targets, 0.37, B, T, V, Vp)
    gpu.crossentropy_backward(dg, logits, targets, 0.37, B, T, V, Vp)
    check("crossentropy dlogits", dg, dc, prec)
    assert np.all(dg[..., V:] == 0), "padding columns of dlogits must be 0"
    for v0, n in ((0, min(V, 128)), (V // 3, min(Vp - V // 3, 257)), (max(V - 7, 0), Vp - max(V - 7, 0))):
        cc, cg = randn(rng, B, T, n), np.full((B, T, n), np.nan, np.float32)
        _C.ops.crossentropy_backward_cols(cc, logits, lc, targets, 0.37, B, T, V, Vp, v0, n)
        gpu.crossentropy_backward_cols(cg, logits, lc, targets, 0.37, B, T, V, Vp, v0, n)
        check(f"crossentropy_backward_cols v0={v0} n={n}", cg, cc, prec)


@pytest.mark.parametrize("N", [1, 1001, 3 << 18])
def test_adamw_and_norm(gpu, prec, rng, N):
    params, grads = randn(rng, N), randn(rng, N)
    m0, v0 = randn(rng, N, scale=0.1), np.abs(randn(rng, N, scale=0.01))
    pc, mc, vc = params.copy(), m0.copy(), v0.copy()
    _C.ops.adamw_update(pc, grads, mc, vc, N, 1e-3, 0.9, 0.95, 1e-8, 0.1, 0.7, 3)
    pg, mg, vg = params.copy(), m0.copy(), v0.copy()
    master = params.copy() if prec == "bf16" else None
    gpu.adamw_update(pg, grads, mg, vg, N, 1e-3, 0.9, 0.95, 1e-8, 0.1, 0.7, 3, master=master, seed=5)
    check("adamw m", mg, mc, prec)
    check("adamw v", vg, vc, prec)
    # the update itself (params move by ~lr): compare the change, the strictest view
    exact = master if master is not None else pg
    check("adamw update (master/params)", exact - params, pc - params, prec if prec == "fp32" else "bf16")
    if master is not None:  # bf16 params: the master value rounded (stochastically) to bf16
        assert np.max(np.abs(pg - master) / np.maximum(np.abs(master), 1e-30)) <= 2 ** -7
    nc, ng = _C.ops.norm_squared(grads, N), gpu.norm_squared(grads, N)
    assert abs(ng - nc) <= TOL[prec] * nc, f"norm_squared [{prec}]: {ng} vs {nc}"


@pytest.mark.parametrize("N", [1, 1000, 65536, 3 << 20])
def test_sum_f32(gpu, prec, rng, N):
    """The mean loss's reduction on the device (issue 17, item 4): fp32 values in both tables,
    accumulated in double, so within N * 2^-53 * sum|x| of the exact sum; the same bits twice."""
    x = randn(rng, N, scale=3.0) + 2.0
    exact = math.fsum(x.astype(np.float64))
    got = gpu.sum_f32(x, N)
    bound = N * 2.0**-53 * float(np.abs(x.astype(np.float64)).sum())
    assert abs(got - exact) <= bound, f"sum_f32 [{prec}] N={N}: {got!r} vs exact {exact!r} (|diff| {abs(got - exact):.3e})"
    assert gpu.sum_f32(x, N) == got, f"sum_f32 [{prec}]: a second call gave other bits"
