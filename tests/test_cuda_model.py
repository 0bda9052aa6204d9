"""The whole model on CUDA against the PyTorch oracle (float64, CPU) and against itself.

fp32 mode keeps the core issue's tolerances (logits 1e-4 abs, loss 1e-5 rel, gradients 1e-4
rel, 10 AdamW steps 1e-4); bf16 mixed precision: loss within 1e-2 (relative) and a 20-step
training curve within 2% of the oracle's. Flash attention (issue 12) against the reference
attention: bf16 losses within 1e-2 over 20 training steps. Issue 17: the classifier backward in
place of the logits at B*T = 8192 over the real padded vocabulary (50257 -> 50304): fp32
gradients equal the CPU backend's (1e-4), bf16 lnf/wte gradients within 2e-2 of fp32, where the
old bf16 accumulation by vocabulary slices was off by more than that.

Skipped with the reason "no CUDA device" on machines without a GPU (or without the backend).
"""

from __future__ import annotations

import llmpy
from llmpy import _C
import numpy as np
import pytest
import torch
from conftest import assert_close, rel_err
from test_parity import GPT2_124M, TINY, batch, reference_pass

pytestmark = pytest.mark.skipif(not llmpy.cuda_available(), reason="no CUDA device (or llmpy built without CUDA)")

SMALL = {"n_layer": 4, "n_head": 4, "n_embd": 256, "vocab_size": 1000, "block_size": 128}  # head size 64: flash


def oracle_file(oracle, tmp_path, cfg, seed=0):
    torch.manual_seed(seed)
    ref = oracle.GPT(oracle.GPT2Config(**cfg))
    path = tmp_path / "model.bin"
    oracle.write_model(ref, path)
    return ref, path


@pytest.mark.parametrize("cfg,B,T", [(TINY, 3, 17), (SMALL, 2, 64), (GPT2_124M, 2, 64)],
                         ids=["tiny", "small-hs64", "gpt2-124M"])
def test_fp32_forward_backward_matches_oracle(oracle, tmp_path, cfg, B, T):
    ref, path = oracle_file(oracle, tmp_path, cfg)
    m = llmpy.GPT2.from_checkpoint(path, device="cuda", precision="fp32")
    assert (m.device, m.precision) == ("cuda", "fp32")
    x, y = batch(cfg, B, T)
    ref_logits, ref_loss, ref_grads = reference_pass(ref, x, y)
    loss = m.forward(x, y)
    assert_close("logits", m.logits(), ref_logits, max_abs=1e-4)
    assert abs(loss - ref_loss) / ref_loss <= 1e-5, f"loss {loss} vs oracle {ref_loss}"
    assert_close("losses", m.losses().mean(), ref_loss, rel=1e-5)
    m.zero_grad()
    m.backward()
    for name, g in m.gradients().items():
        assert_close(f"grad {name}", g, ref_grads[name], rel=1e-4)


def test_fp32_adamw_ten_steps_match_cpu(oracle, tmp_path):
    """10 AdamW steps with weight decay and clipping: CUDA fp32 equals the CPU backend (itself
    checked against the oracle in test_parity.py) within 1e-4."""
    _, path = oracle_file(oracle, tmp_path, TINY, seed=3)
    cpu = llmpy.GPT2.from_checkpoint(path)
    gpu = llmpy.GPT2.from_checkpoint(path, device="cuda", precision="fp32")
    x, y = batch(TINY, 4, 16, seed=4)
    for step in range(10):
        losses = []
        for m in (cpu, gpu):
            losses.append(m.forward(x, y))
            m.zero_grad()
            m.backward()
            losses.append(m.step(1e-3, 0.9, 0.95, 1e-8, weight_decay=0.1, grad_clip=1.0))
        assert abs(losses[2] - losses[0]) <= 1e-4 * losses[0], f"step {step}: loss {losses[2]} vs {losses[0]}"
        assert abs(losses[3] - losses[1]) <= 1e-4 * losses[1], f"step {step}: norm {losses[3]} vs {losses[1]}"
    ref = cpu.parameters()
    for name, p in gpu.parameters().items():
        if name == "qkvb":  # the key bias only sees rounding noise (test_parity.py explains)
            p, q = np.delete(p, np.s_[48:96], axis=1), np.delete(ref[name], np.s_[48:96], axis=1)
            assert_close("param qkvb (q, v)", p, q, rel=1e-4)
            continue
        assert_close(f"param {name}", p, ref[name], rel=1e-4)


def train_curve(m, x, y, steps=20, lr=3e-4):
    curve = []
    for _ in range(steps):
        curve.append(m.forward(x, y))
        m.zero_grad()
        m.backward()
        m.step(lr, 0.9, 0.95, 1e-8, weight_decay=0.1, grad_clip=1.0)
    return np.array(curve)


def oracle_curve(oracle, ref, x, y, steps=20, lr=3e-4):
    ref = ref.double()
    opt = oracle.configure_adamw(ref, lr, (0.9, 0.95), 1e-8, 0.1, fused=False)
    xt, yt = torch.from_numpy(x).long(), torch.from_numpy(y).long()
    curve = []
    for _ in range(steps):
        opt.zero_grad()
        _, loss = ref(xt, yt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        opt.step()
        curve.append(float(loss.detach()))
    return np.array(curve)


@pytest.mark.parametrize("cfg", [SMALL, GPT2_124M], ids=["small-hs64", "gpt2-124M"])
def test_bf16_loss_and_training_curve(oracle, tmp_path, cfg):
    ref, path = oracle_file(oracle, tmp_path, cfg)
    m = llmpy.GPT2.from_checkpoint(path, device="cuda")  # bf16 by default on CUDA
    assert m.precision == "bf16"
    x, y = batch(cfg, 4, 64, seed=2)
    _, ref_loss, _ = reference_pass(ref, x, y)
    loss = m.forward(x, y)
    assert abs(loss - ref_loss) / ref_loss <= 1e-2, f"bf16 loss {loss} vs oracle {ref_loss}"
    ours = train_curve(m, x, y)
    theirs = oracle_curve(oracle, ref, x, y)
    worst = float(np.max(np.abs(ours - theirs) / theirs))
    assert worst <= 0.02, f"bf16 20-step curve differs by up to {worst:.2%}: {ours} vs {theirs}"
    assert ours[-1] < ours[0], "the loss must fall on a repeated batch"


def test_flash_attention_model_matches_reference_attention(oracle, tmp_path):
    """Issue 12: the model with flash attention against the model with the reference attention,
    bf16, 20 training steps, losses within 1e-2 (relative)."""
    from llmpy import cuda

    _, path = oracle_file(oracle, tmp_path, SMALL, seed=5)
    x, y = batch(SMALL, 4, 128, seed=6)
    curves = {}
    try:
        for attention in ("reference", "flash"):
            cuda.module().set_attention(attention)
            curves[attention] = train_curve(llmpy.GPT2.from_checkpoint(path, device="cuda"), x, y)
    finally:
        cuda.module().set_attention("flash")
    worst = float(np.max(np.abs(curves["flash"] - curves["reference"]) / curves["reference"]))
    assert worst <= 1e-2, f"flash vs reference attention: losses differ by up to {worst:.3%}"


def test_parameters_copy_in_and_out_and_save(oracle, tmp_path):
    _, path = oracle_file(oracle, tmp_path, TINY)
    cpu = llmpy.GPT2.from_checkpoint(path)
    for precision in ("fp32", "bf16"):
        m = llmpy.GPT2.from_checkpoint(path, device="cuda", precision=precision)
        params = m.parameters()
        for name, p in cpu.parameters().items():  # from the fp32 master copy: exact
            np.testing.assert_array_equal(params[name], p, err_msg=f"{precision} {name}")
        new = {"lnfw": np.linspace(0.5, 1.5, TINY["n_embd"], dtype=np.float32)}
        m.load_parameters(new)
        np.testing.assert_array_equal(m.parameters()["lnfw"], new["lnfw"])
        out = tmp_path / f"saved_{precision}.bin"
        m.save(out)
        back = llmpy.GPT2.from_checkpoint(out)
        np.testing.assert_array_equal(back.parameters()["lnfw"], new["lnfw"])
        np.testing.assert_array_equal(back.parameters()["wte"], cpu.parameters()["wte"])


def test_bad_precision_and_device_messages():
    with pytest.raises(ValueError, match="precision"):
        llmpy.GPT2(llmpy.GPT2Config(**TINY), device="cuda", precision="fp16")
    with pytest.raises(NotImplementedError, match="CPU backend computes in fp32"):
        llmpy.GPT2(llmpy.GPT2Config(**TINY), device="cpu", precision="bf16")


# Issue 17, items 1 and 7. A model small in everything but the vocabulary (GPT-2's, padded to
# 50304) and the batch: B*T = 8192 positions, so the CPU reference stays affordable.
LARGE_BATCH = {"n_layer": 2, "n_head": 2, "n_embd": 128, "vocab_size": 50257, "block_size": 512}
BF16_GRAD_RTOL = 2e-2


def test_lm_head_in_place_at_8192_positions(tmp_path):
    """fp32 CUDA against the CPU backend, all 16 gradients within 1e-4 (relative norm), then the
    bf16 gradients of lnfw, lnfb and wte against fp32 CUDA within 2e-2.

    Why 2e-2 for bf16: one bf16 rounding is at most 2^-9 = 0.2% relative; in the in-place path dln
    is rounded once (the GEMM accumulates the whole vocabulary in fp32), and each of these
    gradients sits behind a handful of such roundings of its inputs (logits, dlogits, dln, the
    LayerNorm input, the residual stream). An emulation of those roundings in PyTorch (bf16
    storage, fp32 arithmetic) at this shape gives 0.2-0.4% for lnfw and lnfb with 0.3% of
    forward noise added; 2e-2 is ten roundings' worth. The old path added dlogits_slice @ wte_slice
    into a bf16 dln slice by slice (393 slices of 128 columns here): hundreds of roundings of one
    running sum, and once it holds the target's -wte row, every later slice's softmax share lies
    below half an ulp and is lost. The same emulation puts it 20-40% off on lnfw and lnfb; the
    last check runs it (the backend with lm_head_in_place = 0) to show this test tells them apart.
    """
    from llmpy import cuda

    cfg = llmpy.GPT2Config(**LARGE_BATCH)
    path = tmp_path / "large_batch.bin"
    llmpy.GPT2(cfg, seed=17).save(path)
    x, y = batch(LARGE_BATCH, 16, 512, seed=8)

    def run(m):
        loss = m.forward(x, y)
        m.zero_grad()
        m.backward()
        return loss, {name: np.array(g, dtype=np.float32, copy=True) for name, g in m.gradients().items()}

    cpu_loss, cpu = run(llmpy.GPT2.from_checkpoint(path))
    f32_loss, f32 = run(llmpy.GPT2.from_checkpoint(path, device="cuda", precision="fp32"))
    assert abs(f32_loss - cpu_loss) <= 1e-5 * cpu_loss, f"fp32 loss {f32_loss} vs CPU {cpu_loss}"
    for name, g in cpu.items():
        assert_close(f"fp32 grad {name} (vs CPU)", f32[name], g, rel=1e-4)
    del cpu

    bf_loss, bf = run(llmpy.GPT2.from_checkpoint(path, device="cuda", precision="bf16"))
    assert abs(bf_loss - f32_loss) <= 1e-2 * f32_loss, f"bf16 loss {bf_loss} vs fp32 {f32_loss}"
    for name in ("lnfw", "lnfb", "wte"):
        assert_close(f"bf16 grad {name} (vs fp32)", bf[name], f32[name], rel=BF16_GRAD_RTOL)

    # the same bf16 backend with the old strategy (ops.h: lm_head_in_place = 0), the same forward
    mod = cuda.module()
    mod.ops_bf16.register_variant("cuda-sliced", False)
    # a test-only backend name: the model is made through the core, past llmpy.device's parser
    _, sliced = run(llmpy.GPT2(None, _handle=_C.Model.load(str(path), "cuda-sliced", "bf16")))
    errors = {name: (rel_err(sliced[name], f32[name]), rel_err(bf[name], f32[name])) for name in ("lnfw", "lnfb")}
    assert max(old for old, _ in errors.values()) > BF16_GRAD_RTOL, (
        f"the sliced bf16 lm_head backward should miss the tolerance, relative errors (sliced, in place): {errors}"
    )
