"""Flash attention benchmark: our kernels (cuda/flash_attention.cu) vs PyTorch SDPA, bf16, causal.

Issue 12's target: our forward and forward+backward each reach >= 0.9x the TFLOP/s of
``torch.nn.functional.scaled_dot_product_attention`` (PyTorch's default backend choice) on the
same GPU, at B=8, 12 heads, T = 1024 and 2048, head size 64 and 128.

What runs
    ours   llmpy._cuda.raw_bf16.attention_forward / attention_backward (cuda/bindings_raw.cpp):
           the backend's attention op on device pointers of torch tensors, no host copies. It
           reads the model's layout, qkv (B,T,3C) = [q | k | v] each (NH, hs), writes out (B,T,C)
           and the (B,NH,T) fp32 logsumexp; the backward puts the gradient into dqkv (B,T,3C)
           by ops.h's convention (accumulated or written: dqkv is zeroed before the error check,
           so either gives the gradient; it is not zeroed inside the timed loop).
    SDPA   F.scaled_dot_product_attention(q, k, v, is_causal=True) on contiguous (B,NH,T,hs)
           leaf tensors with requires_grad (its preferred layout; the conversion from qkv is done
           once, outside the timing), forward in grad mode (it saves what its backward needs, as
           ours does), backward by torch.autograd.grad(out, (q, k, v), dout). The ratio uses the
           backend PyTorch picks by default; the flash, cuDNN and memory-efficient backends are
           also timed one by one where they accept the shape (--no-backends skips them).

FLOPs (the FlashAttention papers' convention, the same count for both contenders): forward
4*B*NH*T*T*hs / 2 (QK^T and PV, 2 FLOPs per multiply-add, halved for the causal mask),
backward 2.5x the forward (five products instead of two), forward+backward 3.5x. Recomputation
is not counted (ours recomputes S and dP in both backward passes).

Timing: CUDA events around --inner back-to-back calls, after --warmup calls; median (and min,
max) over --reps such groups, per call. Before each group a torch.cuda._sleep on the stream
holds the GPU while the host queues the group, so host launch overhead is not timed; a group
whose queueing outlasted the sleep is flagged 'launch-bound'. Ordering: our ops run on llmpy's
stream, a BLOCKING stream (cudaStreamCreate), which is ordered with the legacy default stream
that torch uses here (checked at start-up): events recorded by torch on its default stream
bracket our ops, and tensors written by torch are complete before our ops read them.

Errors (one untimed call per shape, fresh random normal inputs, out and lse poisoned with NaN
first): max |a - b| of out and dqkv between ours, SDPA and an fp32 reference (the same bf16
inputs upcast, full-precision fp32 products, autograd for the gradient, one batch row at a
time), and our logsumexp against the reference's. 'ok' means every element finite and our
error against fp32 at most 2x SDPA's + 2e-3 * max|ref| (tests/test_cuda_flash.py is the real
correctness gate).

Exit codes: 0 measured (the targets may still fail: see the last line and --json); 3 no CUDA
device (nothing measured; the message says so); 1 anything else (llmpy without the CUDA backend
or without raw_bf16, an error in a case: the other cases still run and are reported).

Usage::

    python dev/bench/flash_attention.py
    python dev/bench/flash_attention.py --seq 2048 --head-size 128 --reps 20 --json flash.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

EXIT_NO_DEVICE = 3
TARGET = 0.9


def flops_forward(B: int, NH: int, T: int, hs: int) -> float:
    """Causal attention forward FLOPs: QK^T and PV, halved for the mask."""
    return 4.0 * B * NH * T * T * hs / 2


PASSES = {"fwd": 1.0, "fwd+bwd": 3.5}  # multiples of the forward's FLOPs


# ----------------------------------------------------------------------------
# timing

class Timer:
    """Times a callable with CUDA events, the GPU held by a sleep while the host queues."""

    def __init__(self, torch, warmup: int, reps: int, inner: int):
        self.torch, self.warmup, self.reps, self.inner = torch, warmup, reps, inner
        self.cycles_per_ms = self._calibrate_sleep()

    def _calibrate_sleep(self):
        torch = self.torch
        if not hasattr(torch.cuda, "_sleep"):
            return None
        # the fastest clock seen (clocks ramp up under load): a sleep is then never shorter than planned
        rates = []
        for _ in range(3):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            torch.cuda._sleep(2_000_000)
            e.record()
            torch.cuda.synchronize()
            ms = s.elapsed_time(e)
            if ms > 0:
                rates.append(2_000_000 / ms)
        return max(rates) if rates else None

    def __call__(self, fn) -> dict:
        torch = self.torch
        for _ in range(self.warmup):
            fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(self.inner):
            fn()
        queue_ms = (time.perf_counter() - t0) * 1e3
        torch.cuda.synchronize()
        sleep_ms = 2.0 * queue_ms + 0.3
        events, launch_bound = [], False
        for _ in range(self.reps):
            if self.cycles_per_ms:
                torch.cuda._sleep(int(sleep_ms * self.cycles_per_ms))
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            t0 = time.perf_counter()
            s.record()
            for _ in range(self.inner):
                fn()
            e.record()
            if not self.cycles_per_ms or (time.perf_counter() - t0) * 1e3 > sleep_ms:
                launch_bound = True
            events.append((s, e))
        torch.cuda.synchronize()
        ms = sorted(s.elapsed_time(e) / self.inner for s, e in events)
        return {"median_ms": statistics.median(ms), "min_ms": ms[0], "max_ms": ms[-1], "launch_bound": launch_bound}


# ----------------------------------------------------------------------------
# one shape

def to_heads(x, B, T, NH, hs):
    """(B,T,NH*hs) view -> (B,NH,T,hs) view (no copy)."""
    return x.view(B, T, NH, hs).transpose(1, 2)


def split_qkv(qkv, B, T, NH, hs):
    """(B,T,3C) -> three (B,NH,T,hs) views."""
    return qkv.view(B, T, 3, NH, hs).permute(2, 0, 3, 1, 4)


def join_qkv(dq, dk, dv, B, T, NH, hs):
    """Three (B,NH,T,hs) -> (B,T,3C)."""
    import torch

    return torch.stack([g.transpose(1, 2) for g in (dq, dk, dv)], dim=2).reshape(B, T, 3 * NH * hs)


def reference_fp32(torch, qkv, dout, B, T, NH, hs):
    """out (B,T,C), lse (B,NH,T), dqkv (B,T,3C) in fp32 from the bf16 inputs, one row of B at a time."""
    C = NH * hs
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        mask = torch.ones(T, T, dtype=torch.bool, device=qkv.device).tril()
        outs, lses, grads = [], [], []
        for b in range(B):
            x = qkv[b:b + 1].float().requires_grad_()
            q, k, v = split_qkv(x, 1, T, NH, hs)
            s = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
            s = s.masked_fill(~mask, float("-inf"))
            lses.append(torch.logsumexp(s, dim=-1).detach())
            o = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(1, T, C)
            (g,) = torch.autograd.grad(o, x, dout[b:b + 1].float())
            outs.append(o.detach())
            grads.append(g)
        return torch.cat(outs), torch.cat(lses), torch.cat(grads)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32


def max_abs(a, b) -> float:
    return float((a.float() - b.float()).abs().max())


def run_shape(torch, raw, timer, B, NH, T, hs, seed, backends, dev="cuda"):
    """Errors and timings of one (T, hs); dev="cpu" only for dry runs of this code with a stand-in raw."""
    import torch.nn.functional as F

    C = NH * hs
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    g = torch.Generator(device=dev).manual_seed(seed)
    qkv = torch.randn(B, T, 3 * C, device=dev, dtype=torch.bfloat16, generator=g)
    dout = torch.randn(B, T, C, device=dev, dtype=torch.bfloat16, generator=g)
    state_bytes = raw.attention_state_bytes(B, T, C, NH)
    flash = state_bytes == B * NH * T * 4  # the flash kernels save exactly the fp32 logsumexp
    out = torch.full((B, T, C), float("nan"), device=dev, dtype=torch.bfloat16)
    state = torch.empty(state_bytes, device=dev, dtype=torch.uint8)
    if flash:
        state.view(torch.float32).fill_(float("nan"))
    scratch = torch.empty(max(1, raw.attention_scratch_bytes(B, T, C, NH)), device=dev, dtype=torch.uint8)
    dqkv = torch.zeros_like(qkv)
    tensors = {"out": out, "state": state, "scratch": scratch, "qkv": qkv, "dout": dout, "dqkv": dqkv}
    p = {name: t.data_ptr() for name, t in tensors.items()}

    def ours_fwd():
        raw.attention_forward(p["out"], p["state"], p["scratch"], p["qkv"], B, T, C, NH)

    def ours_fwd_bwd():
        ours_fwd()
        raw.attention_backward(p["dqkv"], p["scratch"], p["dout"], p["qkv"], p["out"], p["state"], B, T, C, NH)

    # SDPA on its preferred layout: contiguous (B,NH,T,hs) leaves, converted once, untimed
    q, k, v = (t.contiguous().requires_grad_() for t in split_qkv(qkv, B, T, NH, hs))
    dout_h = to_heads(dout, B, T, NH, hs).contiguous()

    def sdpa_fwd():
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def sdpa_fwd_bwd():
        return torch.autograd.grad(sdpa_fwd(), (q, k, v), dout_h)

    # --- errors (untimed): ours, SDPA, fp32 -----------------------------------------
    ours_fwd_bwd()
    sync()
    o_s = sdpa_fwd()
    dq, dk, dv = torch.autograd.grad(o_s, (q, k, v), dout_h)
    o_s = o_s.detach().transpose(1, 2).reshape(B, T, C)
    d_s = join_qkv(dq, dk, dv, B, T, NH, hs)
    ref_o, ref_lse, ref_d = reference_fp32(torch, qkv, dout, B, T, NH, hs)
    finite = bool(torch.isfinite(out).all()) and bool(torch.isfinite(dqkv).all())
    err = {
        "out_ours_sdpa": max_abs(out, o_s), "out_ours_fp32": max_abs(out, ref_o), "out_sdpa_fp32": max_abs(o_s, ref_o),
        "dqkv_ours_sdpa": max_abs(dqkv, d_s), "dqkv_ours_fp32": max_abs(dqkv, ref_d),
        "dqkv_sdpa_fp32": max_abs(d_s, ref_d),
        "out_max_ref": float(ref_o.abs().max()), "dqkv_max_ref": float(ref_d.abs().max()),
    }
    if flash:
        lse = state.view(torch.float32).view(B, NH, T)
        finite = finite and bool(torch.isfinite(lse).all())
        err["lse_ours_fp32"] = max_abs(lse, ref_lse)
    ok = finite and all(
        err[f"{x}_ours_fp32"] <= 2 * err[f"{x}_sdpa_fp32"] + 2e-3 * err[f"{x}_max_ref"] for x in ("out", "dqkv"))
    err.update(finite=finite, ok=ok)
    del ref_o, ref_lse, ref_d, o_s, d_s, dq, dk, dv

    # --- timing ----------------------------------------------------------------------
    f1 = flops_forward(B, NH, T, hs)
    rows = []
    for name, ours_fn, sdpa_fn in (("fwd", ours_fwd, sdpa_fwd), ("fwd+bwd", ours_fwd_bwd, sdpa_fwd_bwd)):
        flops = f1 * PASSES[name]
        ours_t, sdpa_t = timer(ours_fn), timer(sdpa_fn)
        row = {"T": T, "hs": hs, "pass": name, "flops": flops, "ours": ours_t, "sdpa": sdpa_t,
               "ours_tflops": flops / ours_t["median_ms"] / 1e9, "sdpa_tflops": flops / sdpa_t["median_ms"] / 1e9,
               "backends": {}}
        row["ratio"] = row["ours_tflops"] / row["sdpa_tflops"]
        for bname, backend in backends:
            try:
                with sdpa_kernel(backend):
                    row["backends"][bname] = timer(sdpa_fn)["median_ms"]
            except RuntimeError as e:  # that backend does not take this shape/device
                row["backends"][bname] = None
                row.setdefault("backend_errors", {})[bname] = str(e).splitlines()[0][:200]
        rows.append(row)
    return {"T": T, "hs": hs, "flash": flash, "errors": err, "rows": rows}


def print_shape(r: dict, backend_names: list) -> None:
    """The table rows of one run_shape() result, then its errors."""
    T, hs = r["T"], r["hs"]
    for row in r["rows"]:
        bk = "/".join("-" if row["backends"].get(n) is None else f"{row['backends'][n]:.3f}"
                      for n in backend_names) or "-"
        flag = " launch-bound" if row["ours"]["launch_bound"] or row["sdpa"]["launch_bound"] else ""
        print(f"{T:>5} {hs:>4} {row['pass']:<8}{row['ours']['median_ms']:>9.3f}{row['ours_tflops']:>9.1f}"
              f"{row['sdpa']['median_ms']:>9.3f}{row['sdpa_tflops']:>9.1f}{row['ratio']:>10.3f}  "
              f"{'PASS' if row['ratio'] >= TARGET else 'FAIL':<6}{bk:>24}{flag}", flush=True)
    e = r["errors"]
    print(f"{'':>11}max abs error: out ours-SDPA {e['out_ours_sdpa']:.2e}, ours-fp32 {e['out_ours_fp32']:.2e}, "
          f"SDPA-fp32 {e['out_sdpa_fp32']:.2e}; dqkv ours-SDPA {e['dqkv_ours_sdpa']:.2e}, "
          f"ours-fp32 {e['dqkv_ours_fp32']:.2e}, SDPA-fp32 {e['dqkv_sdpa_fp32']:.2e}"
          + (f"; lse ours-fp32 {e['lse_ours_fp32']:.2e}" if "lse_ours_fp32" in e else "; (not flash: reference)")
          + ("" if e["ok"] else "  CHECK: error above 2x SDPA's or not finite"), flush=True)


def sdpa_kernel(backend):
    from torch.nn.attention import sdpa_kernel as ctx

    return ctx(backend)


# ----------------------------------------------------------------------------
# main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8, help="B (default 8)")
    p.add_argument("--heads", type=int, default=12, help="NH (default 12)")
    p.add_argument("--seq", type=int, nargs="+", default=[1024, 2048], help="T values (default 1024 2048)")
    p.add_argument("--head-size", type=int, nargs="+", default=[64, 128], help="hs values (default 64 128)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls before each timing (default 3)")
    p.add_argument("--reps", type=int, default=10, help="timed groups; the median is reported (default 10)")
    p.add_argument("--inner", type=int, default=5, help="back-to-back calls per timed group (default 5)")
    p.add_argument("--no-backends", action="store_true", help="time only SDPA's default backend choice")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    t_start = time.perf_counter()

    if os.environ.pop("LLMPY_CUDA_SYNC", None) not in (None, "", "0"):
        print("note: LLMPY_CUDA_SYNC removed from the environment (synchronised ops would distort the timings)")
    try:
        import torch
    except ImportError as e:
        print(f"error: PyTorch is needed for the SDPA reference ({e})")
        return 1
    if not torch.cuda.is_available():
        print("no CUDA device: nothing measured (torch.cuda.is_available() is False)")
        return EXIT_NO_DEVICE
    try:
        import llmpy  # noqa: F401
        from llmpy import cuda

        mod = cuda.module("cuda")
    except Exception as e:  # noqa: BLE001 -- ImportError, no backend: reported, nothing to time
        print(f"error: llmpy's CUDA backend is not usable: {type(e).__name__}: {e}")
        return 1
    raw = getattr(mod, "raw_bf16", None)
    if raw is None:
        print("error: llmpy._cuda has no raw_bf16 submodule (cuda/bindings_raw.cpp is not registered in "
              "bindings_cuda.cpp / CMakeLists.txt); rebuild llmpy with it")
        return 1
    mod.set_attention("flash")
    if torch.cuda.current_stream().cuda_stream != 0:
        print("error: torch's current stream is not the legacy default stream; the event timing of our ops "
              "relies on it (see the docstring)")
        return 1

    from torch.nn.attention import SDPBackend

    backends = [] if args.no_backends else [(n, getattr(SDPBackend, a)) for n, a in (
        ("flash", "FLASH_ATTENTION"), ("cudnn", "CUDNN_ATTENTION"), ("efficient", "EFFICIENT_ATTENTION"))
        if hasattr(SDPBackend, a)]
    timer = Timer(torch, args.warmup, args.reps, args.inner)
    device = torch.cuda.get_device_name()
    B, NH = args.batch, args.heads
    print(f"flash attention vs SDPA: bf16, causal, B={B}, NH={NH}; {device}, torch {torch.__version__}; "
          f"median of {args.reps} x {args.inner} calls after {args.warmup}"
          + ("" if timer.cycles_per_ms else " (no torch.cuda._sleep: host launch time may be included)"), flush=True)
    print("FLOPs: forward 4*B*NH*T*T*hs/2 (causal), backward 2.5x forward; TFLOP/s = FLOPs / median time", flush=True)
    hdr = (f"{'T':>5} {'hs':>4} {'pass':<8}{'ours ms':>9}{'TFLOP/s':>9}{'SDPA ms':>9}{'TFLOP/s':>9}"
           f"{'ours/SDPA':>10}  {'>=0.9':<6}{'flash/cudnn/eff ms':>24}")
    print(hdr, flush=True)

    results, failures = [], []
    for T in args.seq:
        for hs in args.head_size:
            try:
                r = run_shape(torch, raw, timer, B, NH, T, hs, args.seed + T + hs, backends)
            except Exception as e:  # noqa: BLE001 -- one shape failing must not hide the others
                msg = f"T={T} hs={hs}: {type(e).__name__}: {e}"
                print(f"{T:>5} {hs:>4} ERROR {msg}", flush=True)
                failures.append(msg)
                results.append({"T": T, "hs": hs, "error": msg})
                try:
                    torch.cuda.synchronize()
                except Exception as sync_error:  # noqa: BLE001 -- a sticky CUDA error fails the later cases too
                    print(f"{'':>11}synchronize after the error: {sync_error}", flush=True)
                continue
            results.append(r)
            print_shape(r, [n for n, _ in backends])
            e = r["errors"]
            if not r["flash"]:
                failures.append(f"T={T} hs={hs}: the reference attention ran, not the flash kernels")
            if not e["ok"]:
                failures.append(f"T={T} hs={hs}: error check failed")

    ratios = [row["ratio"] for r in results for row in r.get("rows", [])]
    min_ratio = min(ratios) if ratios else float("nan")
    ok = bool(ratios) and not failures and min_ratio >= TARGET
    elapsed = time.perf_counter() - t_start
    print(f"flash attention / SDPA TFLOP/s: min {min_ratio:.3f} over {len(ratios)} cases (target >= {TARGET}: "
          f"{'PASS' if ok else 'FAIL'}){'; problems: ' + '; '.join(failures) if failures else ''} [{elapsed:.0f} s]",
          flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "device": device, "torch": torch.__version__, "B": B, "NH": NH, "dtype": "bf16", "causal": True,
            "flops": "forward 4*B*NH*T*T*hs/2, backward 2.5x forward", "target": TARGET, "min_ratio": min_ratio,
            "pass": ok, "failures": failures, "results": results, "seconds": elapsed}, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
