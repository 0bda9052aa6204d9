"""GPU benchmark: GPT-2 124M training steps, llmpy (CUDA, bf16) vs PyTorch on the same GPU.

Issue 6's target: llmpy >= 1.0x PyTorch tokens/s with peak GPU memory <= PyTorch's; issue 12
(flash attention) raises it to 1.2x. PyTorch runs the oracle's model (dev/train_gpt2.py) with
``F.scaled_dot_product_attention``, bf16 autocast, fused AdamW and ``torch.compile``.

One step = forward + backward + AdamW (lr 6e-4, weight decay 0.1, clip 1.0) on a B x T batch
of random tokens (T = 1024). The micro-batch is the largest of 16/32/64 that fits both
contenders (``--batch`` fixes it). Each contender runs in its own process, so its peak memory
(torch.cuda.max_memory_allocated for PyTorch, llmpy's own allocation peak) is its own.

Printed: median / min / max ms per step over --steps timed steps after --warmup, tokens/s,
MFU against the device's bf16 matmul rate measured in the same run (an 8192^3 bf16 torch.mm),
peak memory, and the ratios with PASS/FAIL against the targets.

FLOPs per step (PaLM appendix B / nanoGPT MFU): B*T * (6*N + 12*L*T*C), N = matmul parameters
(all but wpe). Attention counted for the full T x T matrix, as MFU reports do.

Usage::

    python dev/bench/gpu_step.py                 # all contenders, batch auto
    python dev/bench/gpu_step.py --batch 16 --steps 20 --attention reference
    python dev/bench/gpu_step.py --json results.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
L, NH, C, V, MAXT = 12, 12, 768, 50257, 1024


def flops_per_step(B: int, T: int) -> float:
    Vp = (V + 127) // 128 * 128
    n_matmul = Vp * C + L * (12 * C * C + 13 * C) + 2 * C  # everything but wpe (a <1% overcount)
    return B * T * (6 * n_matmul + 12 * L * T * C)


def summarise(times_ms):
    times = sorted(times_ms)
    return {"median_ms": times[len(times) // 2], "min_ms": times[0], "max_ms": times[-1]}


# ----------------------------------------------------------------------------
# contenders (each in a child process)

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
    times, loss = [], None
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss = m.forward(x, y)  # returns after the loss is on the host: a full synchronisation
        m.zero_grad()
        m.backward()
        m.step(6e-4, 0.9, 0.95, 1e-8, weight_decay=0.1, grad_clip=1.0)  # the norm comes back: synchronised
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    peak, total = mod.memory()
    return {"times_ms": times, "loss": loss, "peak_bytes": peak, "device_bytes": total, "device": mod.device_name()}


def run_torch(B, T, steps, warmup, compile_):
    import torch

    sys.path.insert(0, str(ROOT / "dev"))
    import train_gpt2 as oracle

    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    model = oracle.GPT(oracle.GPT2Config(block_size=MAXT, vocab_size=V, n_layer=L, n_head=NH, n_embd=C)).cuda()
    opt = oracle.configure_adamw(model, 6e-4, (0.9, 0.95), 1e-8, 0.1, fused=True)
    step_model = torch.compile(model) if compile_ else model
    x = torch.randint(0, V, (B, T), device="cuda")
    y = torch.randint(0, V, (B, T), device="cuda")
    times, loss = [], None
    for i in range(warmup + steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = step_model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss = float(loss)  # synchronises
        torch.cuda.synchronize()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return {"times_ms": times, "loss": loss, "peak_bytes": torch.cuda.max_memory_allocated(),
            "device": torch.cuda.get_device_name()}


def run_matmul_ceiling():
    import torch

    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        a @ b
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return {"tflops": 2 * n ** 3 / sorted(times)[len(times) // 2] / 1e12}


def child(args):
    try:
        if args.child == "llmpy":
            out = run_llmpy(args.batch, args.seq, args.steps, args.warmup, args.attention, args.precision)
        elif args.child in ("torch", "torch-compile"):
            out = run_torch(args.batch, args.seq, args.steps, args.warmup, args.child == "torch-compile")
        else:
            out = run_matmul_ceiling()
    except Exception as e:  # noqa: BLE001 -- out of memory and friends: the parent reports them
        out = {"error": f"{type(e).__name__}: {e}"}
    print("RESULT " + json.dumps(out))


def spawn(args, who, batch=None):
    cmd = [sys.executable, __file__, "--child", who, "--seq", str(args.seq), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--attention", args.attention, "--precision", args.precision,
           "--batch", str(batch or 0)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, check=False)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": f"exit {p.returncode}: {p.stderr.strip()[-2000:]}"}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=0, help="micro-batch (default: largest of 64/32/16 that fits both)")
    p.add_argument("--seq", type=int, default=1024, help="sequence length T (default 1024)")
    p.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    p.add_argument("--attention", default="flash", choices=("flash", "reference"), help="llmpy attention kernels")
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp32"), help="llmpy precision (default bf16)")
    p.add_argument("--no-eager", action="store_true", help="skip PyTorch eager (compile only)")
    p.add_argument("--timeout", type=int, default=600, help="seconds per contender")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--child", choices=("llmpy", "torch", "torch-compile", "ceiling"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)

    ceiling = spawn(args, "ceiling")
    print(f"bf16 matmul ceiling (8192^3 torch.mm): {ceiling.get('tflops', float('nan')):.1f} TFLOP/s", flush=True)
    contenders = ["llmpy", "torch-compile"] + ([] if args.no_eager else ["torch"])
    results = {}
    for B in ([args.batch] if args.batch else [64, 32, 16]):
        results = {who: spawn(args, who, B) for who in contenders}
        if all("error" not in r for r in results.values()):
            break
        print(f"B={B}: " + "; ".join(f"{w}: {r['error'][:200]}" for w, r in results.items() if "error" in r), flush=True)
    T = args.seq
    flops = flops_per_step(B, T)
    print(f"GPT-2 124M, B={B}, T={T}, {flops / 1e12:.2f} TFLOP/step; llmpy attention={args.attention}, "
          f"precision={args.precision}")
    print(f"{'contender':<15}{'median ms':>10}{'min':>9}{'max':>9}{'tok/s':>11}{'MFU':>7}{'peak GiB':>10}  loss")
    rows = {}
    for who, r in results.items():
        if "error" in r:
            print(f"{who:<15} ERROR {r['error'][:300]}")
            continue
        s = summarise(r["times_ms"])
        tok_s = B * T / (s["median_ms"] / 1e3)
        mfu = flops / (s["median_ms"] / 1e3) / (ceiling.get("tflops", float("nan")) * 1e12)
        rows[who] = dict(s, tokens_per_s=tok_s, mfu=mfu, peak_gib=r["peak_bytes"] / 2 ** 30, loss=r["loss"],
                         device=r.get("device"))
        print(f"{who:<15}{s['median_ms']:>10.1f}{s['min_ms']:>9.1f}{s['max_ms']:>9.1f}{tok_s:>11,.0f}{mfu:>7.1%}"
              f"{r['peak_bytes'] / 2 ** 30:>10.2f}  {r['loss']:.4f}")
    if "llmpy" in rows and "torch-compile" in rows:
        ratio = rows["llmpy"]["tokens_per_s"] / rows["torch-compile"]["tokens_per_s"]
        mem = rows["llmpy"]["peak_gib"] / rows["torch-compile"]["peak_gib"]
        print(f"llmpy / torch.compile tokens/s: {ratio:.3f}  (issue 6 target >= 1.0: {'PASS' if ratio >= 1.0 else 'FAIL'};"
              f" issue 12 target >= 1.2: {'PASS' if ratio >= 1.2 else 'FAIL'})")
        print(f"llmpy / torch.compile peak memory: {mem:.3f}  (target <= 1.0: {'PASS' if mem <= 1.0 else 'FAIL'})")
    if args.json:
        Path(args.json).write_text(json.dumps({"B": B, "T": T, "ceiling": ceiling, "rows": rows}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
