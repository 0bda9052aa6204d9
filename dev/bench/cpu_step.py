"""CPU benchmark: llmpy vs PyTorch on the same GPT-2, the same batch and the same threads.

One training step = forward + backward + AdamW update (lr 1e-4, weight decay 0.1 on 2-D
tensors); with ``--forward-only``, one forward with targets (loss included; torch under
``no_grad``). Each contender runs in its own subprocess, so that its peak resident memory
(``ru_maxrss``) is its own and no allocator state leaks from one to the other:

  - llmpy with ``--threads`` threads, and again with 1 thread (the scaling line);
  - PyTorch eager (SDPA attention, fused AdamW where supported);
  - PyTorch with ``torch.compile`` (by default for the d6 training config, whose target is
    stated against it; ``--compile on`` adds it to any run);
  - a 2048^3 fp32 matrix multiply by torch and by llmpy's GEMM: the machine's sgemm ceiling.

Printed per contender: median / min / max ms per step over ``--steps`` timed steps after
``--warmup``, tokens/s, achieved GFLOP/s and the fraction of the sgemm ceiling, CPU seconds
per step (user and kernel: a large kernel share means page faults, e.g. an allocator
returning memory to the OS), peak RSS, and the first loss. Then the ratios against the
targets of issue 7, each marked PASS or FAIL. ``--rounds R`` repeats the whole set R times,
interleaved, and reports the median of the per-round medians (useful on a busy machine).

FLOPs per step (the usual "model FLOPs" estimate, PaLM appendix B / nanoGPT MFU):

    train:   flops = B*T * (6*N + 12*L*T*C)      forward only: flops = B*T * (2*N + 4*L*T*C)

  - N: parameters that take part in matmuls = all parameters except wpe (wte counts once, as
    the lm_head matmul; layernorm and bias parameters are included, a <1% overcount).
    6 = 2 (multiply-add) x 3 (forward, backward w.r.t. inputs, backward w.r.t. weights).
  - 12*L*T*C: attention scores QK^T and the weighted sum AV, 2*T*C flops each per token and
    layer in the forward, times 3 for forward+backward. The full T x T matrix is counted (as in
    MFU reporting), although causal attention needs only half of it.
  - Not counted: AdamW, layernorm, GELU, softmax, cross-entropy and other elementwise work.

Usage::

    python dev/bench/cpu_step.py                       # 124m training step, 2 threads
    python dev/bench/cpu_step.py --config d6           # 6 layers / 384 channels, B=8, T=256
    python dev/bench/cpu_step.py --forward-only        # inference (with targets), tokens/s
    python dev/bench/cpu_step.py --config d6 --rounds 3 --steps 10

Configs: 124m = L12 NH12 C768 V50257 maxT1024 with B=4, T=64;
         d6   = L6  NH6  C384 V50257 maxT1024 with B=8, T=256.
"""

from __future__ import annotations

import sys


import argparse
import importlib.util
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

LR = 1e-4
WEIGHT_DECAY = 0.1
SGEMM_N = 2048

# issue 7's targets
TARGET_TRAIN_124M = 0.75  # llmpy / torch eager (fused AdamW), step time
TARGET_TRAIN_D6 = 0.80  # llmpy / torch.compile, step time
TARGET_FORWARD_TOKS = 1.3  # llmpy tokens/s / torch eager no_grad tokens/s
TARGET_SCALING = 1.8  # llmpy step time with 1 thread / with --threads threads


@dataclass(frozen=True)
class BenchConfig:
    """A model shape plus the batch it is timed on."""

    n_layer: int
    n_head: int
    n_embd: int
    vocab_size: int
    block_size: int
    B: int
    T: int

    def model_kwargs(self) -> dict[str, int]:
        """Keyword arguments for GPT2Config (llmpy's and the oracle's)."""
        return {
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_embd": self.n_embd,
            "vocab_size": self.vocab_size,
            "block_size": self.block_size,
        }

    def matmul_params(self) -> int:
        """N of the FLOP formula: every parameter except wpe (wte counted once, unpadded)."""
        C, L, V = self.n_embd, self.n_layer, self.vocab_size
        per_layer = 2 * C + (3 * C * C + 3 * C) + (C * C + C) + 2 * C + (4 * C * C + 4 * C)
        per_layer += 4 * C * C + C
        return V * C + L * per_layer + 2 * C

    def flops_per_step(self, forward_only: bool = False) -> float:
        """Model FLOPs of one step: B*T*(6*N + 12*L*T*C), a third of it for a forward only.

        Example: ``CONFIGS["124m"].flops_per_step() / 1e9`` is about 191.7 GFLOP.
        """
        per_token = 6 * self.matmul_params() + 12 * self.n_layer * self.T * self.n_embd
        return float(self.B * self.T * per_token) / (3.0 if forward_only else 1.0)


CONFIGS = {
    "124m": BenchConfig(12, 12, 768, 50257, 1024, B=4, T=64),
    "d6": BenchConfig(6, 6, 384, 50257, 1024, B=8, T=256),
}


# ----------------------------------------------------------------------------
# child side: one contender per process


def _time_steps(step: Callable[[], float], steps: int, warmup: int) -> dict:
    """Run warmup + steps calls of ``step``; time the last ``steps`` of them."""
    first_loss = math.nan
    times = []
    cpu0 = os.times()
    for i in range(warmup + steps):
        if i == warmup:
            cpu0 = os.times()
        t0 = time.perf_counter()
        loss = step()
        dt = (time.perf_counter() - t0) * 1e3
        if i == 0:
            first_loss = loss
        if i >= warmup:
            times.append(dt)
    cpu1 = os.times()
    return {
        "times_ms": times,
        "first_loss": first_loss,
        "user_s": (cpu1.user - cpu0.user) / steps,
        "sys_s": (cpu1.system - cpu0.system) / steps,
    }


def _batch(cfg: BenchConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, cfg.vocab_size, size=(cfg.B, cfg.T), dtype=np.int32)
    y = rng.integers(0, cfg.vocab_size, size=(cfg.B, cfg.T), dtype=np.int32)
    return x, y


def run_llmpy(cfg: BenchConfig, args: argparse.Namespace) -> dict:
    """Time llmpy.GPT2 steps (forward, zero_grad, backward, AdamW) or forwards."""
    import llmpy

    llmpy.set_num_threads(args.threads)
    model = llmpy.GPT2(llmpy.GPT2Config(**cfg.model_kwargs()), device="cpu", seed=args.seed)
    x, y = _batch(cfg, args.seed)

    def train_step() -> float:
        loss = model.forward(x, y)
        model.zero_grad()
        model.backward()
        model.step(LR, weight_decay=WEIGHT_DECAY)
        return float(loss)

    def forward() -> float:
        return float(model.forward(x, y))

    r = _time_steps(forward if args.forward_only else train_step, args.steps, args.warmup)
    info = llmpy.build_info()
    r["desc"] = f"llmpy {info['version']}, cpu_isa {info['cpu_isa']} of {','.join(info['cpu_isas'])}"
    return r


def _load_oracle() -> ModuleType:
    """Import dev/train_gpt2.py by path (it is not part of the installed package)."""
    path = Path(__file__).resolve().parents[1] / "train_gpt2.py"
    spec = importlib.util.spec_from_file_location("llmpy_oracle_train_gpt2", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the PyTorch oracle from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is built
    spec.loader.exec_module(module)
    return module


def run_torch(cfg: BenchConfig, args: argparse.Namespace, compiled: bool) -> dict:
    """Time PyTorch training steps (or no_grad forwards) of the oracle GPT-2 (SDPA attention)."""
    import torch

    oracle = _load_oracle()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = oracle.GPT(oracle.GPT2Config(**cfg.model_kwargs()), attn="sdpa")
    opt = oracle.configure_adamw(model, LR, weight_decay=WEIGHT_DECAY)  # fused where supported
    fused = "fused" if opt.defaults.get("fused") else "foreach/default"
    fwd = torch.compile(model) if compiled else model
    x, y = _batch(cfg, args.seed)
    xt, yt = torch.from_numpy(x).long(), torch.from_numpy(y).long()

    def train_step() -> float:
        _, loss = fwd(xt, yt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    def forward() -> float:
        with torch.no_grad():
            _, loss = fwd(xt, yt)
        return loss.item()

    r = _time_steps(forward if args.forward_only else train_step, args.steps, args.warmup)
    mode = "torch.compile" if compiled else "eager"
    r["desc"] = f"torch {torch.__version__} {mode}" + ("" if args.forward_only else f", AdamW {fused}")
    return r


def run_sgemm(args: argparse.Namespace) -> dict:
    """GFLOP/s of a SGEMM_N^3 fp32 product: torch.mm and llmpy's GEMM (matmul_forward)."""
    import llmpy
    import torch
    from llmpy import _C

    n = SGEMM_N
    torch.set_num_threads(args.threads)
    llmpy.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)

    def best_gflops(f: Callable[[], object], reps: int = 7) -> float:
        f()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        return 2.0 * n**3 / statistics.median(times) / 1e9

    return {
        "torch": best_gflops(lambda: torch.mm(ta, tb)),
        "llmpy": best_gflops(lambda: _C.ops.matmul_forward(out, a, b, None, 1, n, n, n)),
    }


def child_main(args: argparse.Namespace) -> int:
    cfg = CONFIGS[args.config]
    if args.child == "llmpy":
        r = run_llmpy(cfg, args)
    elif args.child in ("torch", "torch-compile"):
        r = run_torch(cfg, args, compiled=args.child == "torch-compile")
    else:
        r = run_sgemm(args)
    # ru_maxrss is in KiB on Linux (bytes on macOS)
    scale = 1 if sys.platform == "darwin" else 1024
    r["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
    print("RESULT " + json.dumps(r))
    return 0


# ----------------------------------------------------------------------------
# parent side: run the children, print the table


def _spawn(args: argparse.Namespace, child: str, threads: int) -> dict | None:
    """Run one contender in a subprocess; its result dict, or None (with the reason printed)."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        child,
        "--config",
        args.config,
        "--threads",
        str(threads),
        "--steps",
        str(args.steps),
        "--seed",
        str(args.seed),
        "--warmup",
        str(args.warmup + (args.compile_warmup if child == "torch-compile" else 0)),
    ]
    if args.forward_only:
        cmd.append("--forward-only")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
    print(f"  {child} ({threads} threads): failed (exit {p.returncode}): {' | '.join(tail)}", flush=True)
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                flags = Path("/proc/cpuinfo").read_text()
                isa = "AVX-512" if " avx512f" in flags else ("AVX2" if " avx2" in flags else "no AVX2")
                return f"{name} ({os.cpu_count()} logical CPUs, {isa})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _merge(rounds: list[dict]) -> dict:
    """One result from several rounds: the median of the per-round medians, pooled extremes."""
    out = dict(rounds[0])
    out["median_ms"] = statistics.median(statistics.median(r["times_ms"]) for r in rounds)
    out["min_ms"] = min(min(r["times_ms"]) for r in rounds)
    out["max_ms"] = max(max(r["times_ms"]) for r in rounds)
    for k in ("user_s", "sys_s", "peak_rss_mib"):
        out[k] = statistics.median(r[k] for r in rounds)
    return out


def _line(label: str, r: dict, cfg: BenchConfig, args: argparse.Namespace, ceiling: float | None) -> str:
    s = r["median_ms"] / 1e3
    gflops = cfg.flops_per_step(args.forward_only) / s / 1e9
    frac = f" ({gflops / ceiling:4.0%} of sgemm)" if ceiling else ""
    return (
        f"  {label:<22} median {r['median_ms']:8.1f} ms (min {r['min_ms']:.1f}, max {r['max_ms']:.1f}) | "
        f"{cfg.B * cfg.T / s:8.0f} tok/s | {gflops:6.1f} GFLOP/s{frac} | "
        f"cpu/step user {r['user_s']:.2f} s sys {r['sys_s']:.2f} s | peak RSS {r['peak_rss_mib']:6.0f} MiB | "
        f"first loss {r['first_loss']:.4f}"
    )


def _check(name: str, value: float, target: float, higher_is_better: bool, fmt: str = "{:.3f}") -> str:
    ok = value >= target if higher_is_better else value <= target
    sign = ">=" if higher_is_better else "<="
    return f"  {name} = {fmt.format(value)} (target {sign} {fmt.format(target)}) {'PASS' if ok else 'FAIL'}"


def parent_main(args: argparse.Namespace) -> int:
    cfg = CONFIGS[args.config]
    compile_on = args.compile == "on" or (
        args.compile == "auto" and args.config == "d6" and not args.forward_only
    )
    mode = "forward only (with targets; torch under no_grad)" if args.forward_only else "training step"
    print(f"config {args.config}: {cfg}; {mode}")
    print(
        f"N (matmul params) = {cfg.matmul_params():,}; {cfg.flops_per_step(args.forward_only) / 1e9:.1f} GFLOP/step "
        f"= B*T*({'2N + 4' if args.forward_only else '6N + 12'}*L*T*C); {args.threads} threads; "
        f"{args.warmup} warmup + {args.steps} timed steps x {args.rounds} round(s); each contender in its own process"
    )
    print(f"CPU: {_cpu_model()}; Python {platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M')}")

    contenders = [("llmpy", "llmpy", args.threads)]
    if args.threads > 1 and not args.no_scaling:
        contenders.append(("llmpy 1 thread", "llmpy", 1))
    contenders.append(("torch eager", "torch", args.threads))
    if compile_on:
        contenders.append(("torch.compile", "torch-compile", args.threads))

    runs: dict[str, list[dict]] = {label: [] for label, _, _ in contenders}
    sgemm: list[dict] = []
    for _ in range(args.rounds):
        for label, child, threads in contenders:
            r = _spawn(args, child, threads)
            if r is not None:
                runs[label].append(r)
        if not args.no_sgemm:
            r = _spawn(args, "sgemm", args.threads)
            if r is not None:
                sgemm.append(r)

    ceiling = None
    if sgemm:
        t = statistics.median(r["torch"] for r in sgemm)
        m = statistics.median(r["llmpy"] for r in sgemm)
        ceiling = max(t, m)
        print(
            f"sgemm {SGEMM_N}^3 fp32, {args.threads} threads: torch.mm {t:.1f} GFLOP/s, llmpy GEMM {m:.1f} GFLOP/s "
            f"-> ceiling {ceiling:.1f} GFLOP/s (the faster of the two)"
        )
    results = {label: _merge(rs) for label, rs in runs.items() if rs}
    for label, r in results.items():
        print(_line(label, r, cfg, args, ceiling) + f" | {r['desc']}")

    print("targets (issue 7):")
    llm, eager = results.get("llmpy"), results.get("torch eager")
    comp, one = results.get("torch.compile"), results.get("llmpy 1 thread")
    if llm and eager:
        ratio = llm["median_ms"] / eager["median_ms"]
        if args.forward_only:
            print(_check("tokens/s llmpy / torch eager no_grad", 1.0 / ratio, TARGET_FORWARD_TOKS, True))
        else:
            target = TARGET_TRAIN_124M if args.config == "124m" else None
            if target:
                print(_check("step time llmpy / torch eager", ratio, target, False))
            else:
                print(f"  step time llmpy / torch eager = {ratio:.3f}")
        print(
            _check("peak RSS llmpy / torch eager", llm["peak_rss_mib"] / eager["peak_rss_mib"], 1.0, False)
            + f"  ({llm['peak_rss_mib']:.0f} MiB vs {eager['peak_rss_mib']:.0f} MiB)"
        )
    if llm and comp:
        ratio = llm["median_ms"] / comp["median_ms"]
        target = TARGET_TRAIN_D6 if args.config == "d6" and not args.forward_only else None
        if target:
            print(_check("step time llmpy / torch.compile", ratio, target, False))
        else:
            print(f"  step time llmpy / torch.compile = {ratio:.3f}")
    if llm and one:
        speedup = one["median_ms"] / llm["median_ms"]
        print(
            _check(f"llmpy speed-up 1 -> {args.threads} threads", speedup, TARGET_SCALING, True, "{:.2f}")
            + f"  ({one['median_ms']:.1f} ms -> {llm['median_ms']:.1f} ms)"
        )
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Median time of one GPT-2 training step (forward+backward+AdamW) or forward on the CPU, "
        "llmpy vs PyTorch eager (and torch.compile), same model shape, batch and thread count, each in its "
        "own process (peak RSS per contender)."
    )
    p.add_argument(
        "--config", choices=sorted(CONFIGS), default="124m", help="model + batch shape (default 124m)"
    )
    p.add_argument("--forward-only", action="store_true", help="time forwards with targets (torch: no_grad)")
    p.add_argument("--threads", type=int, default=2, help="threads for every contender (default 2)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per contender and round (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--rounds", type=int, default=1, help="repeat all contenders, interleaved (default 1)")
    p.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="also time torch.compile (auto: for the d6 training step)",
    )
    p.add_argument("--compile-warmup", type=int, default=2, help="extra warmup steps for torch.compile")
    p.add_argument("--no-scaling", action="store_true", help="skip the 1-thread llmpy run")
    p.add_argument("--no-sgemm", action="store_true", help="skip the sgemm ceiling")
    p.add_argument("--seed", type=int, default=0, help="seed of the model init and batch")
    p.add_argument("--child", choices=("llmpy", "torch", "torch-compile", "sgemm"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.threads < 1 or args.rounds < 1:
        p.error("--steps, --threads and --rounds must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return child_main(args) if args.child else parent_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
