"""The CUDA backend after the review of cuda/ and csrc/core/gpt2.c (issue 17, item 3), on a GPU.

1. lm_head backward in place of the logits: afterwards the logits are refused (until the next
   forward), the losses stay readable, a second backward is refused. (The gradients of the
   in-place path at the real padded vocabulary: test_cuda_model.py, B*T = 8192.)
3. LLMPY_CUDA_SYNC=1 names the op whose kernel faulted; without it the (asynchronous) error
   says how to find it. A fault is injected with LLMPY_CUDA_FAULT_OP in a child process: a
   trapped kernel kills the process's CUDA context.
4. The mean loss is reduced on the device: loss equals the mean of losses() to float32 rounding.
   (sum_f32 and the encoder backward with host ids as single ops: test_cuda_ops.py.)
5. One GELU: matmul_gelu_forward's out is gelu_forward(pre) bit for bit (fp32 and bf16), and
   gelu_backward is the derivative of matmul_gelu_forward's GELU (central difference, fp32).
The same properties on the CPU backend: test_cpu_kernels.py and test_ops.py.

Skipped with the reason "no CUDA device" on machines without a GPU (or without the backend).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import zlib

import llmpy
import numpy as np
import pytest
from conftest import assert_close
from test_ops import gelu_fd_tolerance

pytestmark = pytest.mark.skipif(not llmpy.cuda_available(), reason="no CUDA device (or llmpy built without CUDA)")

SMALL = llmpy.GPT2Config(n_layer=2, n_head=2, n_embd=128, vocab_size=1000, block_size=64)  # head size 64: flash


def cuda_module():
    from llmpy import cuda

    return cuda.module("cuda")


def tokens(B: int, T: int, V: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, size=(B, T), dtype=np.int32)


# ----------------------------------------------------------------------------
# 1. the logits after an in-place backward


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_logits_are_refused_after_an_in_place_backward(precision):
    m = llmpy.GPT2(SMALL, device="cuda", precision=precision, seed=3)
    x, y = tokens(3, 40, SMALL.vocab_size, 1), tokens(3, 40, SMALL.vocab_size, 2)
    loss = m.forward(x, y)
    logits, losses = m.logits(), m.losses()
    m.zero_grad()
    m.backward()
    with pytest.raises(ValueError, match=r"overwrote the logits with their gradient; run forward\(\) again"):
        m.logits()
    np.testing.assert_array_equal(m.losses(), losses, err_msg="the losses must survive the backward")
    with pytest.raises(ValueError, match=r"needs a new forward\(\)"):
        m.backward()
    again = m.forward(x, y)  # a forward brings the logits back (the same ones, up to a bf16 ulp
    # should cuBLAS pick a non-deterministic reduction)
    rel, ulp = (1e-6, 1e-5) if precision == "fp32" else (1e-3, 2.0**-6)
    assert abs(again - loss) <= rel * abs(loss), f"second forward: loss {again} vs {loss}"
    assert_close("logits after a new forward", m.logits(), logits, max_abs=ulp)


# ----------------------------------------------------------------------------
# 3. sync mode and the fault hook

# Creates a small model, runs a forward and prints how it ended; os._exit skips the interpreter's
# teardown, which would only report the dead context again.
CHILD = r"""
import os, sys
import numpy as np
import llmpy
cfg = llmpy.GPT2Config(n_layer=1, n_head=2, n_embd=128, vocab_size=256, block_size=32)
try:
    m = llmpy.GPT2(cfg, device="cuda", precision=sys.argv[1])
    x = (np.arange(2 * 16, dtype=np.int32) % 256).reshape(2, 16)
    m.forward(x, x)
    result = "no error"
except Exception as e:
    result = type(e).__name__ + ": " + str(e)
print("RESULT " + result.replace("\n", " "), flush=True)
os._exit(0)
"""


def run_child(precision: str, **env_extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("LLMPY_CUDA_SYNC", "LLMPY_CUDA_FAULT_OP")}
    env.update(env_extra)
    r = subprocess.run([sys.executable, "-c", CHILD, precision], env=env, capture_output=True, text=True,
                       timeout=300)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"the child printed no result (exit {r.returncode}); stdout {r.stdout[-2000:]!r} " \
                  f"stderr {r.stderr[-2000:]!r}"
    return lines[-1][len("RESULT "):]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_sync_mode_names_the_op_that_faulted(precision):
    got = run_child(precision, LLMPY_CUDA_SYNC="1", LLMPY_CUDA_FAULT_OP="layernorm_forward")
    assert got.startswith("RuntimeError: "), f"expected a RuntimeError from forward(), got: {got}"
    assert "CUDA error in op layernorm_forward: " in got, f"the message must name the op: {got}"


def test_without_sync_mode_the_error_says_how_to_find_the_op():
    got = run_child("fp32", LLMPY_CUDA_FAULT_OP="layernorm_forward")
    assert got.startswith("RuntimeError: "), f"expected a RuntimeError from forward(), got: {got}"
    assert "set LLMPY_CUDA_SYNC=1 to find the op that failed" in got, f"the message must hint at sync mode: {got}"


def test_no_fault_no_error_in_sync_mode():
    """Sync mode alone changes nothing but the timing: the forward succeeds."""
    assert run_child("bf16", LLMPY_CUDA_SYNC="1") == "no error"


# ----------------------------------------------------------------------------
# 4. the mean loss


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_loss_is_the_mean_of_the_losses(precision):
    m = llmpy.GPT2(SMALL, device="cuda", precision=precision, seed=5)
    B, T = 4, 60  # 240 positions; the sum runs on the device whatever B*T is
    loss = m.forward(tokens(B, T, SMALL.vocab_size, 3), tokens(B, T, SMALL.vocab_size, 4))
    losses = m.losses()
    mean = math.fsum(losses.astype(np.float64).ravel()) / losses.size
    # loss is float32(double sum / B*T): within one float32 rounding of the exact mean
    assert abs(loss - mean) <= 2.0**-23 * abs(mean), f"loss {loss!r} vs mean(losses) {mean!r}"


# ----------------------------------------------------------------------------
# 5. one GELU for forward and backward


@pytest.mark.parametrize("prec", ["fp32", "bf16"])
@pytest.mark.parametrize("B,T,C,OC", [(2, 35, 72, 288), (4, 64, 768, 3072)])
def test_matmul_gelu_out_is_gelu_forward_of_pre(prec, B, T, C, OC):
    """Tolerance 0: matmul_gelu_forward computes out by gelu.cu's kernel from the stored pre (not by
    a cuBLASLt epilogue), so gelu_forward on the same pre gives the same bits, in both precisions."""
    ops = getattr(cuda_module(), f"ops_{prec}")
    rng = np.random.default_rng(zlib.crc32(f"{prec}{B}{T}{C}{OC}".encode()))
    x = rng.standard_normal((B, T, C)).astype(np.float32)
    w = (rng.standard_normal((OC, C)) * 2 / math.sqrt(C)).astype(np.float32)  # pre ~ N(0, 4): both tails
    bias = rng.standard_normal(OC).astype(np.float32)
    pre, out = np.full((B, T, OC), np.nan, np.float32), np.full((B, T, OC), np.nan, np.float32)
    ops.matmul_gelu_forward(pre, out, x, w, bias, B, T, C, OC)
    again = np.full((B, T, OC), np.nan, np.float32)
    ops.gelu_forward(again, pre, B * T * OC)  # pre holds bf16 values in bf16: uploaded unchanged
    assert np.all(np.isfinite(out)), f"[{prec}] matmul_gelu_forward left non-finite values"
    diff = np.abs(out.astype(np.float64) - again)
    assert np.array_equal(out, again), (
        f"[{prec}] matmul_gelu_forward out != gelu_forward(pre) in {int((diff > 0).sum())} elements, "
        f"max abs diff {diff.max():.3e}"
    )


def test_gelu_backward_is_the_derivative_of_matmul_gelu_forward():
    """gelu_backward (gelu.cu) against a central difference of the GELU that matmul_gelu_forward
    applies, fp32. The matmul multiplies by the identity (exact in fp32 without TF32), so pre is
    the abscissa itself; the difference is still taken over the pre values the op returns. The
    bound per element is test_ops.gelu_fd_tolerance (truncation h^2/6 max|f'''| plus fp32
    rounding): a forward through another tanh than the one the backward differentiates (e.g. a
    hardware tanh.approx, 2^-11 relative) exceeds it."""
    ops = cuda_module().ops_fp32
    h, C = 2.0**-7, 8
    xs = (np.arange(-5 * 256, 5 * 256 + 1) / 256.0).astype(np.float32)  # multiples of 2^-8: x +- h exact
    N = xs.size
    eye = np.eye(C, dtype=np.float32)

    def forward(x: np.ndarray):
        inp = np.repeat(x[:, None], C, axis=1).reshape(1, N, C)
        pre, out = np.empty((1, N, C), np.float32), np.empty((1, N, C), np.float32)
        ops.matmul_gelu_forward(pre, out, inp, eye, None, 1, N, C, C)
        return pre[0, :, 0].astype(np.float64), out[0, :, 0].astype(np.float64)

    p_plus, f_plus = forward(xs + np.float32(h))
    p_minus, f_minus = forward(xs - np.float32(h))
    p0, _ = forward(xs)
    g = np.empty(N, np.float32)
    ops.gelu_backward(g, p0.astype(np.float32), np.ones(N, np.float32), N)
    half_step = (p_plus - p_minus) / 2
    assert np.all(half_step > 0), "matmul_gelu_forward's pre must follow its input"
    fd = (f_plus - f_minus) / (2 * half_step)
    err = np.abs(fd - g)
    tol = gelu_fd_tolerance(f_plus, f_minus, g, h=half_step)
    i = int(np.argmax(err / tol))
    assert np.all(err <= tol), (
        f"gelu_backward vs finite difference of matmul_gelu_forward: |diff| {err[i]:.3e} > bound {tol[i]:.3e} "
        f"at x = {xs[i]} (max abs diff {err.max():.3e})"
    )
