"""CPU training-step benchmark: llmpy vs PyTorch eager on the same GPT-2 and the same batch.

One training step = forward + backward + AdamW update (lr 1e-4, weight decay 0.1 on 2-D
tensors). Both frameworks run in this process, one after the other, with the same number of
threads; the script prints the median milliseconds per step of each, their ratio
(llmpy / torch, below 1 means llmpy is faster), tokens per second and achieved GFLOP/s.

FLOPs per step (the usual "model FLOPs" estimate, PaLM appendix B / nanoGPT MFU):

    flops = B*T * (6*N + 12*L*T*C)

  - N: parameters that take part in matmuls = all parameters except wpe (wte counts once, as
    the lm_head matmul; layernorm and bias parameters are included, a <1% overcount).
    6 = 2 (multiply-add) x 3 (forward, backward w.r.t. inputs, backward w.r.t. weights).
  - 12*L*T*C: attention scores QK^T and the weighted sum AV, 2*T*C flops each per token and
    layer in the forward, times 3 for forward+backward. The full T x T matrix is counted (as in
    MFU reporting), although causal attention needs only half of it.
  - Not counted: AdamW, layernorm, GELU, softmax, cross-entropy and other elementwise work.

Usage::

    python dev/bench/cpu_step.py --config d6 --threads 2 --steps 10 --warmup 2
    python dev/bench/cpu_step.py --config 124m --only torch

Configs: 124m = L12 NH12 C768 V50257 maxT1024 with B=4, T=64;
         d6   = L6  NH6  C384 V50257 maxT1024 with B=8, T=256.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

LR = 1e-4
WEIGHT_DECAY = 0.1


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

    def flops_per_step(self) -> float:
        """Model FLOPs of one forward+backward: B*T*(6*N + 12*L*T*C).

        Example: ``CONFIGS["124m"].flops_per_step() / 1e9`` is about 190 GFLOP.
        """
        per_token = 6 * self.matmul_params() + 12 * self.n_layer * self.T * self.n_embd
        return float(self.B * self.T * per_token)


CONFIGS = {
    "124m": BenchConfig(12, 12, 768, 50257, 1024, B=4, T=64),
    "d6": BenchConfig(6, 6, 384, 50257, 1024, B=8, T=256),
}


@dataclass
class Result:
    """Per-step wall times (ms) of one framework, warmup excluded, and its first loss."""

    name: str
    times_ms: list[float]
    first_loss: float
    user_s: float = math.nan  # process CPU time per timed step, user and kernel: a high kernel
    sys_s: float = math.nan  # share means page faults (allocator returning memory to the OS)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)


# ----------------------------------------------------------------------------
# the two contenders


def _time_steps(name: str, step: Callable[[], float], steps: int, warmup: int) -> Result:
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
    return Result(
        name, times, first_loss, (cpu1.user - cpu0.user) / steps, (cpu1.system - cpu0.system) / steps
    )


def bench_llmpy(
    llmpy: ModuleType, cfg: BenchConfig, x: np.ndarray, y: np.ndarray, args: argparse.Namespace
) -> Result:
    """Time llmpy.GPT2 training steps (forward, zero_grad, backward, AdamW step)."""
    llmpy.set_num_threads(args.threads)
    model = llmpy.GPT2(llmpy.GPT2Config(**cfg.model_kwargs()), device="cpu", seed=args.seed)

    def step() -> float:
        loss = model.forward(x, y)
        model.zero_grad()
        model.backward()
        model.step(LR, weight_decay=WEIGHT_DECAY)
        return float(loss)

    return _time_steps("llmpy", step, args.steps, args.warmup)


def bench_torch(
    oracle: ModuleType, cfg: BenchConfig, x: np.ndarray, y: np.ndarray, args: argparse.Namespace
) -> tuple[Result, str]:
    """Time PyTorch eager training steps of the oracle GPT-2 (SDPA attention, AdamW)."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = oracle.GPT(oracle.GPT2Config(**cfg.model_kwargs()), attn="sdpa")
    opt = oracle.configure_adamw(model, LR, weight_decay=WEIGHT_DECAY)  # fused where supported
    fused = "fused" if opt.defaults.get("fused") else "foreach/default"
    xt = torch.from_numpy(x).long()
    yt = torch.from_numpy(y).long()

    def step() -> float:
        _, loss = model(xt, yt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    result = _time_steps("torch", step, args.steps, args.warmup)
    return result, f"torch {torch.__version__}, AdamW {fused}"


# ----------------------------------------------------------------------------
# driver


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


def _summary(r: Result, cfg: BenchConfig) -> str:
    s = r.median_ms / 1e3
    tok = cfg.B * cfg.T / s
    gflops = cfg.flops_per_step() / s / 1e9
    return (
        f"{r.name:>6}: median {r.median_ms:9.1f} ms/step (min {min(r.times_ms):.1f}, "
        f"max {max(r.times_ms):.1f}) | {tok:9.0f} tok/s | {gflops:7.1f} GFLOP/s | "
        f"cpu/step user {r.user_s:.2f} s sys {r.sys_s:.2f} s | first loss {r.first_loss:.4f}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Median time of one GPT-2 training step (forward+backward+AdamW) on the CPU, "
        "llmpy vs PyTorch eager, same model shape, batch and thread count."
    )
    p.add_argument("--config", choices=sorted(CONFIGS), default="d6", help="model + batch shape")
    p.add_argument("--threads", type=int, default=2, help="threads for both frameworks (default 2)")
    p.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the model init and batch")
    p.add_argument("--only", choices=("both", "llmpy", "torch"), default="both", help="run one side only")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.threads < 1:
        p.error("--steps and --threads must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = CONFIGS[args.config]
    rng = np.random.default_rng(args.seed)
    x = rng.integers(0, cfg.vocab_size, size=(cfg.B, cfg.T), dtype=np.int32)
    y = rng.integers(0, cfg.vocab_size, size=(cfg.B, cfg.T), dtype=np.int32)

    print(f"config {args.config}: {cfg}")
    print(
        f"N (matmul params) = {cfg.matmul_params():,}; "
        f"{cfg.flops_per_step() / 1e9:.1f} GFLOP/step = B*T*(6N + 12*L*T*C); "
        f"{args.threads} threads, {args.warmup} warmup + {args.steps} timed steps; "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    print(f"expected first loss ~ ln(V) = {math.log(cfg.vocab_size):.4f}")

    results: dict[str, Result] = {}
    if args.only in ("both", "llmpy"):
        try:
            import llmpy
        except ImportError as e:
            print(f" llmpy: skipped, cannot import llmpy ({e}); build it with pip install -e .")
        else:
            results["llmpy"] = bench_llmpy(llmpy, cfg, x, y, args)
            print(_summary(results["llmpy"], cfg), flush=True)
            gc.collect()  # free llmpy's buffers before torch allocates its own
    if args.only in ("both", "torch"):
        r, desc = bench_torch(_load_oracle(), cfg, x, y, args)
        results["torch"] = r
        print(_summary(r, cfg) + f" | {desc}")

    if "llmpy" in results and "torch" in results:
        ratio = results["llmpy"].median_ms / results["torch"].median_ms
        faster = "llmpy faster" if ratio < 1 else "torch faster"
        print(f"ratio llmpy/torch = {ratio:.3f} ({faster})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
