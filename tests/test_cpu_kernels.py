"""The CPU backend's instruction-set variants and blocked GEMM, against PyTorch in float64.

The core is built with one variant of the CPU kernels per instruction set (``avx512``, ``avx2``,
``generic`` on x86-64; see csrc/cpu/cpu_ops.h) and picks one at run time. test_ops.py and the
parity tests exercise the variant picked for this CPU; here every variant this CPU can run is
selected in turn (``llmpy.set_cpu_isa``) and checked on shapes chosen to reach each path of
the GEMM (csrc/cpu/matmul.c): partial micro-tiles, a reduction longer than one packed block
(K > 1024), more rows than one packed block of a, transposed and contiguous packing, and the
thread split. Tolerances as in test_ops.py: max |got - ref| <= rtol * max |ref|.
"""

from __future__ import annotations

import math
import zlib

from dataclasses import asdict

import numpy as np
import pytest

import torch  # a test dependency: a missing torch must fail, not skip
import llmpy
from llmpy import _C
from test_ops import assert_close, randn, t64, zeros

ops = _C.ops


def runnable_isas() -> list[str]:
    """The variants in this build that this CPU can run, best first."""
    saved = llmpy.build_info()["cpu_isa"]
    out = []
    try:
        for isa in llmpy.build_info()["cpu_isas"]:
            try:
                llmpy.set_cpu_isa(isa)
            except NotImplementedError:
                continue
            out.append(isa)
    finally:
        llmpy.set_cpu_isa(saved)
    return out


ISAS = runnable_isas()


@pytest.fixture(params=ISAS)
def isa(request):
    """Selects one variant for the test, and restores the automatic choice afterwards."""
    assert llmpy.set_cpu_isa(request.param) == request.param
    yield request.param
    llmpy.set_cpu_isa("auto")


@pytest.fixture
def rng(request) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


def test_build_reports_its_variants():
    info = llmpy.build_info()
    assert info["cpu_isa"] in info["cpu_isas"]
    assert info["cpu_isas"][-1] in ("generic", "native"), "the last variant must run on any CPU"
    assert llmpy.set_cpu_isa() == info["cpu_isas"][0] or info["cpu_isa"] == llmpy.set_cpu_isa()
    with pytest.raises(ValueError, match="not in this build"):
        llmpy.set_cpu_isa("no-such-isa")


# B, T, C, OC: M = B*T rows, K = C (forward) or OC (dinp) reduction, N = OC or C columns
GEMM_SHAPES = [
    (1, 1, 7, 5),  # a single partial micro-tile
    (3, 37, 1030, 45),  # K > 1024: c is swept in two passes; odd edges everywhere
    (1, 700, 1100, 33),  # more rows than one packed block of a (512 at this depth)
    (2, 64, 256, 96),  # whole micro-tiles, 16-deep transposes of weight^T
    (1, 300, 96, 2500),  # wide output: several column blocks, split across threads
    # tile remainders of each variant's register tile (AVX2 4 x 24, AVX-512 6 x 64, generic 4 x 8):
    # one row / column past a whole tile and one short of it, and a reduction one past a KC slice
    (1, 5, 257, 25),  # M = 4+1 = 6-1, N = 24+1, K = 256+1
    (1, 7, 33, 65),  # M = 6+1, N = 64+1
    (2, 3, 64, 481),  # M = 6, N = 480+1: AVX2 takes 192-column blocks for so few rows (NC_SHORT)
    (1, 1040, 40, 481),  # > 512 rows per thread however split: AVX2's full NC block, N = 480+1
    (1, 23, 40, 513),  # N = 512+1: one column past the generic NC block
    (1, 9, 40, 257),  # N = 256+1: one column past the AVX-512 NC block
    (1, 5, 40, 193),  # N = 192+1: one column past AVX2's narrower block for few rows (NC_SHORT)
    (4, 1, 24, 63),  # N = 64-1, M = 4: a whole AVX2 row of tiles, K = one AVX2 panel width
    # x86 reduces up to 384 (KC_ONE) in one slice: K = 384 exactly (forward), one past it (dinp
    # K = OC = 385, dweight K = B*T = 386)
    (2, 193, 384, 385),
]


@pytest.mark.parametrize("B,T,C,OC", GEMM_SHAPES)
def test_matmul_each_isa(isa, rng, B, T, C, OC):
    inp, weight, bias = randn(rng, B, T, C), randn(rng, OC, C, scale=0.1), randn(rng, OC)
    out = np.full((B, T, OC), np.nan, dtype=np.float32)
    ops.matmul_forward(out, inp, weight, bias, B, T, C, OC)
    x, w, b = t64(inp, True), t64(weight, True), t64(bias, True)
    ref = torch.nn.functional.linear(x, w, b)
    assert_close(f"[{isa}] matmul out", out, ref)

    dout = randn(rng, B, T, OC)
    ref.backward(t64(dout))
    dinp, dweight, dbias = zeros(B, T, C), zeros(OC, C), zeros(OC)
    ops.matmul_backward(dinp, dweight, dbias, dout, inp, weight, B, T, C, OC)
    assert_close(f"[{isa}] matmul dinp", dinp, x.grad)
    assert_close(f"[{isa}] matmul dweight", dweight, w.grad)
    assert_close(f"[{isa}] matmul dbias", dbias, b.grad)

    # written, not accumulated (the first backward after zero_grad): the old contents are not read
    dweight = np.full((OC, C), np.nan, dtype=np.float32)
    ops.matmul_backward(None, dweight, None, dout, inp, weight, B, T, C, OC, write_dweight=True)
    assert_close(f"[{isa}] matmul dweight written over NaN", dweight, w.grad)


@pytest.mark.parametrize("B,T,C,OC", GEMM_SHAPES)
def test_matmul_backward_sq_each_isa(isa, rng, B, T, C, OC):
    """The sum of the squares of dweight that the x86 variants add up as they store its tiles (the
    model's gradient norm without a pass over the gradients): that of dweight as it ends, written
    or accumulated into. The other variants report that they do not compute it (< 0)."""
    inp, weight, dout = randn(rng, B, T, C), randn(rng, OC, C, scale=0.1), randn(rng, B, T, OC)
    for write in (True, False):
        dweight = np.full((OC, C), np.nan, dtype=np.float32) if write else randn(rng, OC, C)
        sq = ops.matmul_backward_sq(None, dweight, None, dout, inp, weight, B, T, C, OC, write_dweight=write)
        if isa in ("avx2", "avx512"):
            want = float(np.sum(dweight.astype(np.float64) ** 2))
            assert abs(sq - want) <= 1e-6 * want, f"[{isa}] write={write}: sum of squares {sq} vs {want}"
        else:
            assert sq < 0, f"[{isa}] this variant should not compute the sum of squares, got {sq}"


def test_gradient_norm_each_isa(isa):
    """The norm step() returns (lr 0: the gradients' norm, nothing moves) against the float64 norm of the gradients it describes: after one backward (the
    x86 variants sum the weight matrices' and wte's squares as the backward writes them, and correct
    wte's rows the encoder adds to: repeated tokens here), after gradient accumulation, and after
    writes through gradients() views (which the backward's sum cannot see)."""
    cfg = llmpy.GPT2Config(n_layer=2, n_head=3, n_embd=48, vocab_size=101, block_size=32)
    rng = np.random.default_rng(5)
    x = rng.integers(0, 12, size=(4, 16)).astype(np.int32)  # 64 positions, 12 distinct ids
    y = rng.integers(0, cfg.vocab_size, size=(4, 16)).astype(np.int32)

    def norm64(m) -> float:
        return math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in m.gradients().values()))

    m = llmpy.GPT2(cfg, seed=7)
    m.forward(x, y)
    m.zero_grad()
    m.backward()
    once = m.step(0.0)
    assert abs(once - norm64(m)) <= 1e-6 * once, f"[{isa}] one backward: {once} vs {norm64(m)}"

    acc = llmpy.GPT2(cfg, seed=7)
    acc.forward(x, y)
    acc.zero_grad()
    acc.backward()
    acc.backward()  # accumulated: twice the gradients
    twice = acc.step(0.0)
    assert abs(twice - norm64(acc)) <= 1e-6 * twice, f"[{isa}] accumulated: {twice} vs {norm64(acc)}"
    assert abs(twice - 2 * once) <= 1e-5 * twice

    views = m.gradients()  # taken before the next backward, written after it
    m.zero_grad()
    m.forward(x, y)
    m.backward()
    views["fcw"] *= 3.0
    scaled = m.step(0.0)
    assert abs(scaled - norm64(m)) <= 1e-6 * scaled, f"[{isa}] after writes into gradients(): {scaled} vs {norm64(m)}"
    assert scaled > 1.001 * once, "tripling fcw's gradient must raise the norm"


def test_attention_each_isa(isa, rng):
    B, T, C, NH = 2, 70, 96, 3
    qkv = randn(rng, B, T, 3 * C)
    out, att = zeros(B, T, C), zeros(B, NH, T, T)
    ops.attention_forward(out, att, qkv, B, T, C, NH)
    x = t64(qkv, True)
    q, k, v = x.view(B, T, 3, NH, C // NH).permute(2, 0, 3, 1, 4)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    ref = ref.transpose(1, 2).reshape(B, T, C)
    assert_close(f"[{isa}] attention out", out, ref)
    dout = randn(rng, B, T, C)
    ref.backward(t64(dout))
    dqkv = zeros(B, T, 3 * C)
    ops.attention_backward(dqkv, dout, qkv, out, att, B, T, C, NH)
    assert_close(f"[{isa}] attention dqkv", dqkv, x.grad)


@pytest.mark.parametrize("B,T,V,Vp", [(1, 1, 7, 8), (2, 5, 101, 128), (2, 3, 1000, 1024)])
def test_crossentropy_backward_cols_each_isa(isa, rng, B, T, V, Vp):
    logits = randn(rng, B, T, Vp, scale=3.0)
    logits[..., V:] = 1e30  # padding columns are never read
    targets = rng.integers(0, V, size=(B, T), dtype=np.int32)
    losses = zeros(B, T)
    ops.crossentropy_forward(losses, logits, targets, B, T, V, Vp)
    dloss = 1.0 / (B * T)
    x = t64(logits[..., :V], True)
    ref = torch.nn.functional.cross_entropy(
        x.reshape(-1, V), torch.from_numpy(targets).long().reshape(-1), reduction="sum"
    )
    (ref * dloss).backward()
    full = np.concatenate([x.grad.numpy(), np.zeros((B, T, Vp - V))], axis=-1)
    # slices that start and end anywhere, including ones that reach into the padding
    for v0, n in [(0, Vp), (0, 1), (V // 3, V // 2), (V - 2, Vp - V + 2), (V, Vp - V)]:
        if n < 1:
            continue
        d = np.full((B, T, n), 7.0, dtype=np.float32)  # written, not accumulated
        ops.crossentropy_backward_cols(d, logits, losses, targets, dloss, B, T, V, Vp, v0, n)
        assert_close(f"[{isa}] dlogits[{v0}:{v0 + n}]", d, full[..., v0 : v0 + n], rtol=1e-5, atol=1e-12)
    with pytest.raises(ValueError, match="within"):
        ops.crossentropy_backward_cols(zeros(B, T, 2), logits, losses, targets, dloss, B, T, V, Vp, Vp - 1, 2)


@pytest.mark.parametrize("N", [1, 17, 4 * 257 * 33])
def test_elementwise_each_isa(isa, rng, N):
    inp = randn(rng, N, scale=3.0)
    out = zeros(N)
    ops.gelu_forward(out, inp, N)
    x = t64(inp, True)
    ref = torch.nn.functional.gelu(x, approximate="tanh")
    assert_close(f"[{isa}] gelu out", out, ref)
    dout = randn(rng, N)
    ref.backward(t64(dout))
    dinp = zeros(N)
    ops.gelu_backward(dinp, inp, dout, N)
    assert_close(f"[{isa}] gelu dinp", dinp, x.grad)


def test_adamw_each_isa(isa, rng):
    N, lr, beta1, beta2, eps, wd, scale = 1003, 1e-2, 0.9, 0.95, 1e-8, 0.1, 0.5
    lr, beta1, beta2, eps, wd, scale = (float(np.float32(h)) for h in (lr, beta1, beta2, eps, wd, scale))
    params, m, v = randn(rng, N), zeros(N), zeros(N)
    p64 = torch.nn.Parameter(t64(params))
    opt = torch.optim.AdamW([p64], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=wd)
    for t in range(1, 4):
        grads = randn(rng, N, scale=0.01)
        ops.adamw_update(params, grads, m, v, N, lr, beta1, beta2, eps, wd, scale, t)
        p64.grad = t64(grads) * scale
        opt.step()
        assert_close(f"[{isa}] adamw params (step {t})", params, p64, rtol=1e-6)
        assert_close(f"[{isa}] adamw v (step {t})", v, opt.state[p64]["exp_avg_sq"], rtol=1e-5)


def test_model_each_isa_agrees_with_the_portable_kernels(isa, rng):
    """Forward and backward of a small model per variant: the same loss and gradients up to rounding."""
    cfg = llmpy.GPT2Config(n_layer=2, n_head=3, n_embd=48, vocab_size=101, block_size=32)
    x = rng.integers(0, 101, size=(3, 17), dtype=np.int32)
    y = rng.integers(0, 101, size=(3, 17), dtype=np.int32)

    def run(variant: str):
        llmpy.set_cpu_isa(variant)
        m = llmpy.GPT2(cfg, seed=7)
        loss = m.forward(x, y)
        m.zero_grad()
        m.backward()
        return loss, {k: v.copy() for k, v in m.gradients().items()}

    ref_loss, ref_grads = run(ISAS[-1])
    loss, grads = run(isa)
    assert abs(loss - ref_loss) <= 1e-6 * abs(ref_loss), f"[{isa}] loss {loss} vs {ISAS[-1]} {ref_loss}"
    for name in ref_grads:
        assert_close(f"[{isa}] grad {name}", grads[name], ref_grads[name], rtol=1e-4)


def test_gemm_split_does_not_depend_on_thread_count(rng):
    """Large enough to be split across threads: every element is still reduced in one order."""
    B, T, C, OC = 2, 160, 320, 1500
    inp, weight, dout = randn(rng, B, T, C), randn(rng, OC, C), randn(rng, B, T, OC)

    def run():
        out, dinp, dweight = zeros(B, T, OC), zeros(B, T, C), zeros(OC, C)
        ops.matmul_forward(out, inp, weight, None, B, T, C, OC)
        ops.matmul_backward(dinp, dweight, None, dout, inp, weight, B, T, C, OC)
        return out, dinp, dweight

    saved = _C.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            _C.set_num_threads(n)
            results.append(run())
    finally:
        _C.set_num_threads(saved)
    for n, res in zip((2, 3), results[1:]):
        for name, a, b in zip(("out", "dinp", "dweight"), results[0], res):
            assert np.array_equal(a, b), (
                f"{name}: 1 thread and {n} threads differ (max {np.abs(a - b).max():.3e})"
            )


# ----------------------------------------------------------------------------
# the model on the CPU backend: the two strategies of the classifier backward (csrc/core/ops.h:
# lm_head_in_place; the CPU table uses slices), and the mean loss reduced by sum_f32 (issue 17)

# GPT-2's vocabulary, everything else tiny: at B*T = 256 the sliced backward runs 13 slices
WIDE_VOCAB = llmpy.GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=50257, block_size=64)


def in_place_device() -> str:
    """A device name for the CPU table with lm_head_in_place = 1 (registered once per process)."""
    _C.ops.register_variant("cpu-inplace", True)
    return "cpu-inplace"


def test_cpu_backend_runs_the_lm_head_by_slices_and_keeps_its_logits(rng):
    m = llmpy.GPT2(WIDE_VOCAB, seed=2)
    x, y = (rng.integers(0, 50257, size=(4, 64), dtype=np.int32) for _ in range(2))
    m.forward(x, y)
    view, before = m.logits(), m.logits().copy()
    m.zero_grad()
    m.backward()
    assert np.array_equal(m.logits(), before), "the CPU backend's logits must survive backward()"
    assert np.array_equal(view, before), "a view of the logits must survive backward() on the CPU"
    m.backward()  # a second backward of the same forward is allowed here: the logits are intact


def test_lm_head_in_place_and_by_slices_give_the_same_gradients(rng):
    x, y = (rng.integers(0, 50257, size=(4, 64), dtype=np.int32) for _ in range(2))
    runs = {}
    for device in ("cpu", in_place_device()):
        # a test-only backend name: the model is made through the core, past llmpy.device's parser
        m = llmpy.GPT2(None, _handle=_C.Model.create(**asdict(WIDE_VOCAB), device=device, seed=2))
        loss = m.forward(x, y)
        losses = m.losses().copy()
        m.zero_grad()
        m.backward()
        runs[device] = (m, loss, losses, {k: v.copy() for k, v in m.gradients().items()})
    (_, ref_loss, ref_losses, ref), (m, loss, losses, grads) = runs["cpu"], runs["cpu-inplace"]
    assert loss == ref_loss and np.array_equal(losses, ref_losses), "the forward does not depend on the strategy"
    # one GEMM over all Vp columns against 13 slices accumulated in fp32: rounding only
    for name in ref:
        assert_close(f"grad {name} (in place vs slices)", grads[name], ref[name], rtol=1e-5, atol=1e-12)

    # in place, the logits buffer now holds their gradient: refused until the next forward
    with pytest.raises(ValueError, match=r"overwrote the logits with their gradient; run forward\(\) again"):
        m.logits()
    np.testing.assert_array_equal(m.losses(), losses, err_msg="the losses must survive an in-place backward")
    with pytest.raises(ValueError, match=r"needs a new forward\(\)"):
        m.backward()
    assert m.forward(x, y) == loss
    assert m.logits().shape == (4, 64, 50257)


def test_register_variant_keeps_the_real_backends():
    with pytest.raises(ValueError, match="new device name"):
        _C.ops.register_variant("cpu", True)


@pytest.mark.parametrize("B,T", [(1, 1), (3, 17), (5, 300)])  # 1500 positions: beyond the old 1024-float chunks
def test_loss_is_the_mean_of_the_losses(rng, B, T):
    cfg = llmpy.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=97, block_size=300)
    m = llmpy.GPT2(cfg, seed=4)
    loss = m.forward(*(rng.integers(0, 97, size=(B, T), dtype=np.int32) for _ in range(2)))
    losses = m.losses()
    mean = math.fsum(losses.astype(np.float64).ravel()) / losses.size
    # loss is float32(double sum / B*T): within one float32 rounding of the exact mean
    assert abs(loss - mean) <= 2.0**-23 * abs(mean), f"loss {loss!r} vs mean(losses) {mean!r}"
