"""Flash attention (cuda/flash_attention.cu) against PyTorch autograd in float64.

Through the backend's attention op with the flash kernels selected (``set_attention("flash")``,
the default): ``_cuda.ops_fp32`` / ``_cuda.ops_bf16`` (csrc/bindings/ops.cpp) take

    attention_forward(out, state, qkv, B, T, C, NH)
        out (B,T,C) written; state = the saved logsumexp, lse (B,NH,T) fp32; qkv (B,T,3C)
    attention_backward(dqkv, dout, qkv, out, state, B, T, C, NH)
        dqkv (B,T,3C) written (=); dout, out (B,T,C); state as the forward wrote it

with C-contiguous float32 numpy arrays copied to the device (rounded to bf16 by ops_bf16; lse
is always fp32) and outputs copied back. Head sizes other than 64/128 fall back to the
reference attention (whose saved state is larger).

Every case poisons out, lse and dqkv with NaN (every element must be written, and the previous
contents of dqkv never read: csrc/core/ops.h's gradient convention). Inputs are random
normals, q scaled by 2 so the running softmax maximum moves between key tiles. The bf16
reference is computed from the bf16-rounded inputs. Error: max |got - ref| / max |ref| per
quantity; fp32 <= 1e-5, bf16 <= 1e-2.
"""

from __future__ import annotations

import math
import zlib

import llmpy
import numpy as np
import pytest
import torch

if not llmpy.cuda_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from llmpy import cuda

_cuda = cuda.module("cuda")
OPS = {"fp32": _cuda.ops_fp32, "bf16": _cuda.ops_bf16}


@pytest.fixture(autouse=True)
def flash():
    _cuda.set_attention("flash")
    yield
    _cuda.set_attention("flash")
RTOL = {"fp32": 1e-5, "bf16": 1e-2}
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # where the float64 oracle runs

# (T, B, NH): T not a multiple of any tile (1, 7, 1000), exact tiles (64, 1024, 2048), several B*NH
CASES = [(1, 3, 2), (7, 2, 3), (64, 4, 2), (64, 8, 12), (1000, 1, 5), (1024, 2, 2), (2048, 1, 3)]


def assert_close(name: str, got: np.ndarray, ref: np.ndarray, rtol: float) -> None:
    """max |got - ref| <= rtol * max |ref|, NaN counting as a failure; reports the figures."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != reference {ref.shape}"
    diff = np.abs(got - ref)
    if np.isnan(diff).any():
        where = tuple(int(i) for i in np.argwhere(np.isnan(diff))[0])
        raise AssertionError(
            f"{name}: NaN at {where} ({int(np.isnan(diff).sum())} elements not written or invalid)"
        )
    scale = float(np.abs(ref).max())
    mad = float(diff.max())
    where = tuple(int(i) for i in np.unravel_index(int(diff.argmax()), diff.shape))
    assert mad <= rtol * scale, (
        f"{name}: max abs diff {mad:.3e} at {where}, relative error {mad / scale:.3e} (rtol {rtol}, max |ref| {scale:.3e})"
    )


def as_stored(x: np.ndarray, dtype: str) -> np.ndarray:
    """The float32 values the kernel sees: x itself, or x rounded to bf16 (nearest even)."""
    if dtype == "fp32":
        return x.astype(np.float32)
    return torch.from_numpy(x).to(torch.bfloat16).to(torch.float32).numpy()


def reference(qkv: np.ndarray, dout: np.ndarray, B: int, T: int, C: int, NH: int):
    """out (B,T,C), lse (B,NH,T), dqkv (B,T,3C) of causal attention in float64."""
    hs = C // NH
    x = torch.tensor(qkv, dtype=torch.float64, device=DEVICE, requires_grad=True)
    q, k, v = x.view(B, T, 3, NH, hs).permute(2, 0, 3, 1, 4)  # each (B, NH, T, hs)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
    mask = torch.ones(T, T, dtype=torch.bool, device=DEVICE).tril()
    scores = scores.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    out = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, T, C)
    out.backward(torch.tensor(dout, dtype=torch.float64, device=DEVICE))
    return (t.detach().cpu().numpy() for t in (out, lse, x.grad))


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("hs", [64, 128])
@pytest.mark.parametrize("T,B,NH", CASES)
def test_flash_attention(dtype, hs, T, B, NH):
    ops, rtol, C = OPS[dtype], RTOL[dtype], NH * hs
    rng = np.random.default_rng(zlib.crc32(f"{dtype}-{hs}-{T}-{B}-{NH}".encode()))
    qkv = rng.standard_normal((B, T, 3 * C)).astype(np.float32)
    qkv[:, :, :C] *= 2.0
    qkv, dout = as_stored(qkv, dtype), as_stored(rng.standard_normal((B, T, C)).astype(np.float32), dtype)
    ref_out, ref_lse, ref_dqkv = reference(qkv, dout, B, T, C, NH)

    out = np.full((B, T, C), np.nan, np.float32)
    lse = np.full((B, NH, T), np.nan, np.float32)
    assert ops.attention_state_size(B, T, C, NH) == lse.size, "the flash kernels save exactly the logsumexp"
    ops.attention_forward(out, lse, qkv, B, T, C, NH)
    assert_close(f"{dtype} out", out, ref_out, rtol)
    assert_close(f"{dtype} lse", lse, ref_lse, rtol)

    dqkv = np.full((B, T, 3 * C), np.nan, np.float32)
    ops.attention_backward(dqkv, dout, qkv, out, lse, B, T, C, NH)
    # written over NaN; one quantity, as in test_ops (at T=1, dq and dk are 0 up to rounding, so
    # they cannot be held to a tolerance relative to themselves)
    assert_close(f"{dtype} dqkv", dqkv, ref_dqkv, rtol)

    # no atomics: the backward is deterministic, bit for bit (and still ignores what dqkv held)
    again = np.full((B, T, 3 * C), 7.0, np.float32)
    ops.attention_backward(again, dout, qkv, out, lse, B, T, C, NH)
    assert np.array_equal(again, dqkv), f"{dtype} dqkv differs between two identical backward calls"


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_other_head_sizes_fall_back_to_the_reference_attention(dtype):
    B, T, C, NH = 2, 37, 96, 3  # hs = 32: no flash kernel
    ops, rtol = OPS[dtype], RTOL[dtype]
    assert ops.attention_state_size(B, T, C, NH) > B * NH * T, "hs 32 must use the reference attention"
    rng = np.random.default_rng(7)
    qkv = as_stored(rng.standard_normal((B, T, 3 * C)).astype(np.float32), dtype)
    dout = as_stored(rng.standard_normal((B, T, C)).astype(np.float32), dtype)
    ref_out, _, ref_dqkv = reference(qkv, dout, B, T, C, NH)
    out = np.full((B, T, C), np.nan, np.float32)
    state = np.zeros(ops.attention_state_size(B, T, C, NH), np.float32)
    ops.attention_forward(out, state, qkv, B, T, C, NH)
    assert_close(f"{dtype} out (hs 32)", out, ref_out, rtol)
    dqkv = np.full((B, T, 3 * C), np.nan, np.float32)  # written
    ops.attention_backward(dqkv, dout, qkv, out, state, B, T, C, NH)
    assert_close(f"{dtype} dqkv (hs 32)", dqkv, ref_dqkv, rtol)
