"""GPU benchmark: GPT-2 124M training steps, llmpy (CUDA, bf16) vs PyTorch on the same GPU.

Issue 6's target: llmpy >= 1.0x PyTorch tokens/s with peak GPU memory <= PyTorch's; issue 12
(flash attention) raises it to 1.2x. PyTorch runs the oracle's model (dev/train_gpt2.py) with
``F.scaled_dot_product_attention``, bf16 autocast, fused AdamW and ``torch.compile``, with the
vocabulary padded to 50304 as nanoGPT does (llmpy pads it internally the same way), so that
neither side pays for the odd 50257 in its largest matmul; tokens are drawn from the 50257.

One step = forward + backward + AdamW (lr 6e-4, weight decay 0.1, clip 1.0) on a B x T batch
of random tokens (T = 1024, B = 32 by default: fits both on an 80 GB H100 and fills it; a
contender that runs out of memory is retried once at B/2, and its row says so). Each contender
runs in its own process, so its peak memory (torch.cuda.max_memory_allocated for PyTorch,
llmpy's own allocation peak) is its own.

Order and time budget (--budget seconds for the whole run, default 600): llmpy first, and its
numbers are written to --json at once; then torch.compile, whose compile time (the first step)
counts against the budget; if it fails or does not finish in the time left (less a reserve
for eager), PyTorch eager is measured instead and the report says so. --eager always also
measures eager after a successful compile; --eager never skips it. The bf16 matmul rate used
for MFU (an 8192^3 torch.mm, median of 10) is measured inside the llmpy process after its
steps (and inside the PyTorch process as a cross-check).

Printed: median / min / max ms per step over --steps timed steps after --warmup, tokens/s,
MFU, peak memory, and the ratios with PASS/FAIL against the targets. The JSON holds the same
(rows keyed by contender), rewritten after each contender so a killed run keeps what it had.

FLOPs per step (PaLM appendix B / nanoGPT MFU): B*T * (6*N + 12*L*T*C), N = matmul parameters
(all but wpe). Attention counted for the full T x T matrix, as MFU reports do.

Usage::

    python dev/bench/gpu_step.py                             # B=32, T=1024, eager too
    python dev/bench/gpu_step.py --budget 110 --eager fallback --json results.json
    python dev/bench/gpu_step.py --batch 16 --steps 20 --attention reference
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
L, NH, C, V, MAXT = 12, 12, 768, 50257, 1024
EAGER_RESERVE_S = 25  # what an eager PyTorch run needs: start-up, model, warmup + steps


def flops_per_step(B: int, T: int) -> float:
    Vp = (V + 127) // 128 * 128
    n_matmul = Vp * C + L * (12 * C * C + 13 * C) + 2 * C  # everything but wpe (a <1% overcount)
    return B * T * (6 * n_matmul + 12 * L * T * C)


def summarise(times_ms):
    times = sorted(times_ms)
    return {"median_ms": times[len(times) // 2], "min_ms": times[0], "max_ms": times[-1]}


def log(msg: str) -> None:
    """Progress lines of the children go to stderr (stdout carries the RESULT line)."""
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------
# contenders (each in a child process)

def matmul_ceiling():
    """bf16 8192^3 torch.mm rate in TFLOP/s (median of 10 after 3 warm-ups)."""
    import torch

    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    times = []
    for _ in range(10):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        a @ b
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    return 2 * n ** 3 / sorted(times)[len(times) // 2] / 1e12


def run_llmpy(B, T, steps, warmup, attention, precision):
    import llmpy
    import numpy as np
    from llmpy import cuda

    mod = cuda.module("cuda")
    mod.set_attention(attention)
    m = llmpy.GPT2(llmpy.GPT2Config(L, NH, C, V, MAXT), device="cuda", precision=precision, seed=0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, V, (B, T), dtype=np.int32)
    y = rng.integers(0, V, (B, T), dtype=np.int32)
    times, loss, first_s = [], None, None
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss = m.forward(x, y)  # returns after the loss is on the host: a full synchronisation
        m.zero_grad()
        m.backward()
        m.step(6e-4, 0.9, 0.95, 1e-8, weight_decay=0.1, grad_clip=1.0)  # the norm comes back: synchronised
        dt = time.perf_counter() - t0
        if i == 0:
            first_s = dt
        if i >= warmup:
            times.append(dt * 1e3)
        log(f"llmpy step {i}: {dt * 1e3:.1f} ms, loss {loss:.4f}")
    peak, total = mod.memory()
    out = {"times_ms": times, "loss": loss, "peak_bytes": peak, "device_bytes": total, "device": mod.device_name(),
           "first_step_s": first_s}
    del m
    try:
        out["ceiling_tflops"] = matmul_ceiling()
    except Exception as e:  # noqa: BLE001 -- no torch here: MFU comes from the PyTorch process
        out["ceiling_error"] = f"{type(e).__name__}: {e}"
    return out


def run_torch(B, T, steps, warmup, compile_):
    import torch

    sys.path.insert(0, str(ROOT / "dev"))
    import train_gpt2 as oracle

    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    # the padded vocabulary (as nanoGPT does, and as llmpy pads internally): aligned lm_head products
    Vp = (V + 127) // 128 * 128
    model = oracle.GPT(oracle.GPT2Config(block_size=MAXT, vocab_size=Vp, n_layer=L, n_head=NH, n_embd=C)).cuda()
    opt = oracle.configure_adamw(model, 6e-4, (0.9, 0.95), 1e-8, 0.1, fused=True)
    step_model = torch.compile(model) if compile_ else model
    x = torch.randint(0, V, (B, T), device="cuda")
    y = torch.randint(0, V, (B, T), device="cuda")
    times, loss, first_s = [], None, None
    for i in range(warmup + steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = step_model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss = loss.item()  # synchronises
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if i == 0:
            first_s = dt
        if i >= warmup:
            times.append(dt * 1e3)
        log(f"torch{' compile' if compile_ else ' eager'} step {i}: {dt * 1e3:.1f} ms, loss {loss:.4f}")
    out = {"times_ms": times, "loss": loss, "peak_bytes": torch.cuda.max_memory_allocated(),
           "device": torch.cuda.get_device_name(), "first_step_s": first_s}
    del model, opt, step_model
    torch.cuda.empty_cache()
    try:
        out["ceiling_tflops"] = matmul_ceiling()
    except Exception as e:  # noqa: BLE001 -- the step times stand without it
        out["ceiling_error"] = f"{type(e).__name__}: {e}"
    return out


def child(args):
    try:
        if args.child == "llmpy":
            out = run_llmpy(args.batch, args.seq, args.steps, args.warmup, args.attention, args.precision)
        else:
            out = run_torch(args.batch, args.seq, args.steps, args.warmup, args.child == "torch-compile")
    except Exception as e:  # noqa: BLE001 -- out of memory and friends: the parent reports them
        out = {"error": f"{type(e).__name__}: {e}"}
    print("RESULT " + json.dumps(out), flush=True)


def spawn(args, who, batch, timeout):
    """Runs one contender in a child process; its progress goes to our stderr."""
    if timeout < 5:
        return {"error": f"not run: {timeout:.0f} s of the budget left"}
    cmd = [sys.executable, __file__, "--child", who, "--seq", str(args.seq), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--attention", args.attention, "--precision", args.precision,
           "--batch", str(batch)]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout: killed after {timeout:.0f} s", "timeout": True}
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[7:])
            r["wall_s"] = time.perf_counter() - t0
            return r
    return {"error": f"exit {p.returncode} without a result (see the log above)"}


def out_of_memory(r: dict) -> bool:
    e = r.get("error", "")
    return "out of memory" in e.lower() or "OutOfMemory" in e or e.startswith("MemoryError")


# ----------------------------------------------------------------------------
# report

def row_of(r: dict, B: int, T: int, ceiling: float) -> dict:
    s = summarise(r["times_ms"])
    flops = flops_per_step(B, T)
    tok_s = B * T / (s["median_ms"] / 1e3)
    mfu = float("nan") if math.isnan(ceiling) else flops / (s["median_ms"] / 1e3) / (ceiling * 1e12)
    return dict(s, B=B, T=T, tokens_per_s=tok_s, tflops=flops / (s["median_ms"] / 1e3) / 1e12, mfu=mfu,
                peak_gib=r["peak_bytes"] / 2 ** 30, loss=r["loss"], device=r.get("device"),
                first_step_s=r.get("first_step_s"), wall_s=r.get("wall_s"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32, help="micro-batch B (default 32; halved once on out of memory)")
    p.add_argument("--seq", type=int, default=1024, help="sequence length T (default 1024)")
    p.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3; the first compiles)")
    p.add_argument("--attention", default="flash", choices=("flash", "reference"), help="llmpy attention kernels")
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp32"), help="llmpy precision (default bf16)")
    p.add_argument("--eager", default="always", choices=("always", "fallback", "never"),
                   help="PyTorch eager too: always, only when torch.compile fails or runs out of time, or never")
    p.add_argument("--budget", type=float, default=600, help="seconds for the whole run (default 600)")
    p.add_argument("--json", help="write the results to this file (rewritten after each contender)")
    p.add_argument("--child", choices=("llmpy", "torch-eager", "torch-compile"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)

    t_start = time.perf_counter()

    def left() -> float:
        return args.budget - (time.perf_counter() - t_start)

    T = args.seq
    results, notes = {}, []
    print(f"GPT-2 124M training step, T={T}, B={args.batch}; llmpy attention={args.attention}, "
          f"precision={args.precision}; budget {args.budget:.0f} s", flush=True)

    def save():
        ceil = next((r["ceiling_tflops"] for r in results.values() if "ceiling_tflops" in r), float("nan"))
        rows = {w: row_of(r, r["B"], T, ceil) for w, r in results.items() if "error" not in r}
        errors = {w: r["error"] for w, r in results.items() if "error" in r}
        out = {"T": T, "batch": args.batch, "attention": args.attention, "precision": args.precision,
               "ceiling_tflops": ceil, "rows": rows, "errors": errors, "notes": notes,
               "targets": {"tokens_per_s_vs_torch": [1.0, 1.2], "peak_memory_vs_torch": 1.0}}
        if "llmpy" in rows and ref_name(rows):
            ref = rows[ref_name(rows)]
            out["ratio_tokens_per_s"] = rows["llmpy"]["tokens_per_s"] / ref["tokens_per_s"]
            out["ratio_peak_memory"] = rows["llmpy"]["peak_gib"] / ref["peak_gib"]
            out["reference"] = ref_name(rows)
        if args.json:
            tmp = Path(str(args.json) + ".tmp")
            tmp.write_text(json.dumps(out, indent=1))
            os.replace(tmp, args.json)
        return out

    def run(who, timeout):
        B = args.batch
        r = spawn(args, who, B, timeout)
        if out_of_memory(r) and B > 1:
            notes.append(f"{who}: out of memory at B={B}, retried at B={B // 2}")
            print(notes[-1], flush=True)
            B //= 2
            r = spawn(args, who, B, min(timeout, left() - 2))
        r["B"] = B
        results[who] = r
        if "error" in r:
            print(f"{who}: ERROR {r['error'][:500]}", flush=True)
        else:
            row = row_of(r, B, T, r.get("ceiling_tflops", float("nan")))
            print(f"{who}: B={B} {row['median_ms']:.1f} ms/step, {row['tokens_per_s']:,.0f} tok/s, "
                  f"peak {row['peak_gib']:.2f} GiB, loss {row['loss']:.4f}"
                  + (f", first step {row['first_step_s']:.1f} s" if row.get("first_step_s") else ""), flush=True)
        save()
        return r

    # 1. llmpy, written at once
    run("llmpy", left() - 5)
    # 2. torch.compile within what is left, keeping a reserve for eager
    reserve = EAGER_RESERVE_S if args.eager != "never" else 0
    rc = run("torch-compile", left() - reserve - 2)
    compiled = "error" not in rc
    if not compiled:
        notes.append("torch.compile " + ("did not finish in the time left" if rc.get("timeout") else "failed")
                     + ": PyTorch eager is the reference" + ("" if args.eager != "never" else " (but --eager never)"))
        print(notes[-1], flush=True)
    # 3. eager: instead of a failed compile, or as well
    if args.eager == "always" or (args.eager == "fallback" and not compiled):
        run("torch-eager", left() - 2)

    out = save()
    rows = out["rows"]
    print(f"GPT-2 124M, T={T}, {flops_per_step(args.batch, T) / 1e12:.2f} TFLOP/step at B={args.batch}; "
          f"bf16 matmul ceiling (8192^3 torch.mm) {out['ceiling_tflops']:.1f} TFLOP/s")
    print(f"{'contender':<15}{'B':>4}{'median ms':>10}{'min':>9}{'max':>9}{'tok/s':>11}{'MFU':>7}{'peak GiB':>10}  loss")
    for who, r in results.items():
        if who not in rows:
            print(f"{who:<15} ERROR {r['error'][:300]}")
            continue
        w = rows[who]
        print(f"{who:<15}{w['B']:>4}{w['median_ms']:>10.1f}{w['min_ms']:>9.1f}{w['max_ms']:>9.1f}"
              f"{w['tokens_per_s']:>11,.0f}{w['mfu']:>7.1%}{w['peak_gib']:>10.2f}  {w['loss']:.4f}")
    if "ratio_tokens_per_s" in out:
        ratio, mem, ref = out["ratio_tokens_per_s"], out["ratio_peak_memory"], out["reference"]
        print(f"llmpy / {ref} tokens/s: {ratio:.3f}  (issue 6 target >= 1.0: {'PASS' if ratio >= 1.0 else 'FAIL'};"
              f" issue 12 target >= 1.2: {'PASS' if ratio >= 1.2 else 'FAIL'})")
        print(f"llmpy / {ref} peak memory: {mem:.3f}  (target <= 1.0: {'PASS' if mem <= 1.0 else 'FAIL'})")
    for n in notes:
        print(f"note: {n}")
    print(f"[{time.perf_counter() - t_start:.0f} s]")
    return 0 if "llmpy" in rows and "ratio_tokens_per_s" in out else 1


def ref_name(rows: dict):
    """The PyTorch row the ratios use: torch.compile, else eager."""
    return next((w for w in ("torch-compile", "torch-eager") if w in rows), None)


if __name__ == "__main__":
    sys.exit(main())
