"""CPU benchmark: llmpy vs PyTorch on the same GPT-2, the same batch and the same threads.

One training step = forward + backward + gradient clipping at a global norm of 1.0 + AdamW
update (lr 1e-4, weight decay 0.1 on 2-D tensors): the step ``python -m llmpy.train`` takes by
default, and GPT-2's recipe. Both sides do the same work: the norm (llmpy's step computes it
in any case, to return it) and the clipping (torch: ``clip_grad_norm_``; llmpy folds the
scale into AdamW). ``--grad-clip 0`` times the step without clipping (torch then skips the
norm, which llmpy still computes). With ``--forward-only``, one forward with targets (loss included; torch under
``no_grad``). Each contender runs in its own subprocess, so that its peak resident memory
(``ru_maxrss``) is its own and no allocator state leaks from one to the other:

  - llmpy with ``--threads`` threads, once per instruction-set variant of its CPU kernels
    that this CPU can run (``--isa all``, the default: e.g. avx512, avx2 and generic on an
    AVX-512 machine, the same binary with ``llmpy.set_cpu_isa``), and the best variant again
    with 1 thread (the scaling line);
  - PyTorch eager (SDPA attention, fused AdamW where supported), as installed (MKL/oneDNN
    use the widest vectors the CPU has);
  - PyTorch with ``torch.compile`` (by default for the d6 training config, whose target is
    stated against it; ``--compile on`` adds it to any run);
  - optionally (``--torch-avx2``) PyTorch eager with MKL, oneDNN and ATen limited to AVX2
    (``MKL_ENABLE_INSTRUCTIONS=AVX2`` ...): what an AVX2-only CPU of the same clock would get,
    the fair reference for the avx2 variant on an AVX-512 machine; with torch.compile on, the
    compiled model again under the same limit (inductor's generated code follows
    ``ATEN_CPU_CAPABILITY``, its matrix products MKL's limit);
  - a 2048^3 fp32 matrix multiply by torch.mm and by llmpy's GEMM in each variant, in one
    process, interleaved: the machine's sgemm ceiling.

``--config all`` runs the three workloads the targets are stated on (124m training, d6
training against torch.compile, 124m forward) one after the other. Every run ends with one
table, a row per variant: sgemm GFLOP/s, 124M step ms, d6 step ms and forward tokens/s, each
with its ratio against PyTorch and the target (issue 21: sgemm >= 0.95 x torch.mm, 124M step
<= 0.75 x torch eager, d6 step <= 0.80 x torch.compile, forward >= 1.3 x torch tokens/s), and
the machine line (CPU model, its vector ISA flags, threads, load average before and after: on
a shared machine the figures mean little when the load exceeds the core count).

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

    python dev/bench/cpu_step.py                       # 124m training step, 2 threads, every variant
    python dev/bench/cpu_step.py --config d6           # 6 layers / 384 channels, B=8, T=256
    python dev/bench/cpu_step.py --forward-only        # inference (with targets), tokens/s
    python dev/bench/cpu_step.py --config d6 --rounds 3 --steps 10
    python dev/bench/cpu_step.py --config all --torch-avx2   # the whole table of issue 21
    python dev/bench/cpu_step.py --isa auto            # only the variant llmpy picks for this CPU
    python dev/bench/cpu_step.py --isa avx2,generic    # these variants only

Configs: 124m = L12 NH12 C768 V50257 maxT1024 with B=4, T=64;
         d6   = L6  NH6  C384 V50257 maxT1024 with B=8, T=256.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

LR = 1e-4
WEIGHT_DECAY = 0.1
SGEMM_N = 2048

# issue 7's targets (and issue 21's: the same for every variant, plus the sgemm one)
TARGET_TRAIN_124M = 0.75  # llmpy / torch eager (fused AdamW), step time
TARGET_TRAIN_D6 = 0.80  # llmpy / torch.compile, step time
TARGET_FORWARD_TOKS = 1.3  # llmpy tokens/s / torch eager no_grad tokens/s
TARGET_SCALING = 1.8  # llmpy step time with 1 thread / with --threads threads
TARGET_SGEMM = 0.95  # llmpy GEMM / torch.mm, GFLOP/s at SGEMM_N^3

# PyTorch limited to AVX2 (--torch-avx2): MKL's dispatch, oneDNN's and ATen's kernels
TORCH_AVX2_ENV = {
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
}

# the CPU flags worth naming in the machine line (x86 /proc/cpuinfo "flags", Arm "Features")
ISA_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512dq",
    "avx512bw",
    "avx512vl",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "asimd",
    "asimdhp",
    "fphp",
    "bf16",
    "i8mm",
    "sve",
    "sve2",
)


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
    if args.isa:
        llmpy.set_cpu_isa(args.isa)
    model = llmpy.GPT2(llmpy.GPT2Config(**cfg.model_kwargs()), device="cpu", seed=args.seed)
    x, y = _batch(cfg, args.seed)

    def train_step() -> float:
        loss = model.forward(x, y)
        model.zero_grad()
        model.backward()
        model.step(LR, weight_decay=WEIGHT_DECAY, grad_clip=args.grad_clip or None)
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
        if args.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        return loss.item()

    def forward() -> float:
        with torch.no_grad():
            _, loss = fwd(xt, yt)
        return loss.item()

    r = _time_steps(forward if args.forward_only else train_step, args.steps, args.warmup)
    mode = "torch.compile" if compiled else "eager"
    r["desc"] = f"torch {torch.__version__} {mode}" + ("" if args.forward_only else f", AdamW {fused}")
    r["desc"] += f", cpu capability {torch.backends.cpu.get_cpu_capability()}"
    return r


def run_sgemm(args: argparse.Namespace) -> dict:
    """GFLOP/s of a SGEMM_N^3 fp32 product: torch.mm, and llmpy's GEMM (matmul_forward) in each
    variant of ``args.isa`` (comma-separated), interleaved rep by rep; medians of the reps."""
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
    isas = [i for i in (args.isa or "").split(",") if i]

    def llmpy_mm(isa: str) -> Callable[[], object]:
        def f() -> object:
            llmpy.set_cpu_isa(isa)
            return _C.ops.matmul_forward(out, a, b, None, 1, n, n, n)

        return f

    contenders: dict[str, Callable[[], object]] = {"torch": lambda: torch.mm(ta, tb)}
    contenders.update({isa: llmpy_mm(isa) for isa in isas})
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for f in contenders.values():
        f()  # warm up: thread pools, scratch, page faults
    for _ in range(7):
        for name, f in contenders.items():
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    gflops = {name: 2.0 * n**3 / statistics.median(t) / 1e9 for name, t in times.items()}
    return {
        "torch": gflops.pop("torch"),
        "llmpy": gflops,
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
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


def _spawn(
    args: argparse.Namespace,
    child: str,
    threads: int,
    config: str,
    forward_only: bool,
    isa: str | None = None,
    env_extra: dict[str, str] | None = None,
) -> dict | None:
    """Run one contender in a subprocess; its result dict, or None (with the reason printed)."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        child,
        "--config",
        config,
        "--threads",
        str(threads),
        "--steps",
        str(args.steps),
        "--seed",
        str(args.seed),
        "--grad-clip",
        str(args.grad_clip),
        "--warmup",
        str(args.warmup + (args.compile_warmup if child == "torch-compile" else 0)),
    ]
    if forward_only:
        cmd.append("--forward-only")
    if isa:
        cmd += ["--isa", isa]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), **(env_extra or {}))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
    print(
        f"  {child} {isa or ''} ({threads} threads): failed (exit {p.returncode}): {' | '.join(tail)}",
        flush=True,
    )
    return None


def _cpuinfo() -> tuple[str, list[str]]:
    """The CPU's model name and the vector-ISA flags of ISA_FLAGS it reports (Linux)."""
    name, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model", "CPU part") and not name:
                name = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return name or platform.processor() or platform.machine(), [f for f in ISA_FLAGS if f in flags]


def _cpu_model() -> str:
    name, flags = _cpuinfo()
    isa = (
        "AVX-512"
        if "avx512f" in flags
        else ("AVX2" if "avx2" in flags else ("NEON" if "asimd" in flags else "-"))
    )
    return f"{name} ({os.cpu_count()} logical CPUs, {isa})"


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _machine_line(args: argparse.Namespace, load_before: str) -> str:
    name, flags = _cpuinfo()
    return (
        f"machine: {name}; {os.cpu_count()} logical CPUs; ISA flags: {' '.join(flags) or '-'}; "
        f"{args.threads} threads; load average (1/5/15 min) {load_before} before, {_load()} after"
    )


def runnable_isas(requested: str) -> list[str]:
    """The variants to time: ``all`` = every one in this build that this CPU can run (best
    first), ``auto`` = the one llmpy picks, or a comma-separated list (those this CPU runs).
    ``llmpy.set_cpu_isa`` raises NotImplementedError for a variant the CPU cannot run (skipped)
    and ValueError for a name the build lacks (an error)."""
    import llmpy

    info = llmpy.build_info()
    if requested == "auto":
        return [info["cpu_isa"]]
    names = info["cpu_isas"] if requested == "all" else [n for n in requested.split(",") if n]
    out = []
    try:
        for name in names:
            try:
                llmpy.set_cpu_isa(name)
            except NotImplementedError:
                print(f"variant {name}: built in, but this CPU cannot run it (skipped)")
                continue
            out.append(name)
    finally:
        llmpy.set_cpu_isa("auto")
    return out


def _merge(rounds: list[dict]) -> dict:
    """One result from several rounds: the median of the per-round medians, pooled extremes."""
    out = dict(rounds[0])
    out["median_ms"] = statistics.median(statistics.median(r["times_ms"]) for r in rounds)
    out["min_ms"] = min(min(r["times_ms"]) for r in rounds)
    out["max_ms"] = max(max(r["times_ms"]) for r in rounds)
    for k in ("user_s", "sys_s", "peak_rss_mib"):
        out[k] = statistics.median(r[k] for r in rounds)
    return out


def _line(label: str, r: dict, cfg: BenchConfig, forward_only: bool, ceiling: float | None) -> str:
    s = r["median_ms"] / 1e3
    gflops = cfg.flops_per_step(forward_only) / s / 1e9
    frac = f" ({gflops / ceiling:4.0%} of sgemm)" if ceiling else ""
    return (
        f"  {label:<24} median {r['median_ms']:8.1f} ms (min {r['min_ms']:.1f}, max {r['max_ms']:.1f}) | "
        f"{cfg.B * cfg.T / s:8.0f} tok/s | {gflops:6.1f} GFLOP/s{frac} | "
        f"cpu/step user {r['user_s']:.2f} s sys {r['sys_s']:.2f} s | peak RSS {r['peak_rss_mib']:6.0f} MiB | "
        f"first loss {r['first_loss']:.4f}"
    )


def _check(name: str, value: float, target: float, higher_is_better: bool, fmt: str = "{:.3f}") -> str:
    ok = value >= target if higher_is_better else value <= target
    sign = ">=" if higher_is_better else "<="
    return f"  {name} = {fmt.format(value)} (target {sign} {fmt.format(target)}) {'PASS' if ok else 'FAIL'}"


def run_sgemm_rounds(args: argparse.Namespace, isas: list[str]) -> dict | None:
    """torch.mm and llmpy's GEMM in every variant: medians over --rounds processes. With
    --torch-avx2, torch.mm again with MKL limited to AVX2 (its own processes: MKL reads the
    limit once)."""
    runs, runs_avx2 = [], []
    for _ in range(args.rounds):
        r = _spawn(args, "sgemm", args.threads, "124m", False, ",".join(isas))
        if r is not None:
            runs.append(r)
        if args.torch_avx2:
            r = _spawn(args, "sgemm", args.threads, "124m", False, None, TORCH_AVX2_ENV)
            if r is not None:
                runs_avx2.append(r)
    if not runs:
        return None
    out = {
        "torch": statistics.median(r["torch"] for r in runs),
        "llmpy": {isa: statistics.median(r["llmpy"][isa] for r in runs) for isa in isas},
        "torch_capability": runs[0]["torch_capability"],
    }
    if runs_avx2:
        out["torch_avx2"] = statistics.median(r["torch"] for r in runs_avx2)
    parts = ", ".join(f"llmpy {isa} {g:.1f}" for isa, g in out["llmpy"].items())
    extra = f", torch.mm limited to AVX2 {out['torch_avx2']:.1f}" if "torch_avx2" in out else ""
    print(
        f"sgemm {SGEMM_N}^3 fp32, {args.threads} threads, GFLOP/s (median of {args.rounds} x 7, interleaved): "
        f"torch.mm {out['torch']:.1f} (cpu capability {out['torch_capability']}){extra}; {parts}"
    )
    return out


def run_workload(
    args: argparse.Namespace, config: str, forward_only: bool, isas: list[str], sgemm: dict | None
) -> dict[str, dict]:
    """Time every contender on one workload (config, training or forward), print its block,
    and return the merged results by label."""
    cfg = CONFIGS[config]
    compile_on = args.compile == "on" or (args.compile == "auto" and config == "d6" and not forward_only)
    clip = f"gradients clipped to norm {args.grad_clip:g}" if args.grad_clip else "no gradient clipping"
    mode = "forward only (with targets; torch under no_grad)" if forward_only else f"training step, {clip}"
    print(f"\n== config {config}: {cfg}; {mode}")
    print(
        f"N (matmul params) = {cfg.matmul_params():,}; {cfg.flops_per_step(forward_only) / 1e9:.1f} GFLOP/step "
        f"= B*T*({'2N + 4' if forward_only else '6N + 12'}*L*T*C); {args.threads} threads; "
        f"{args.warmup} warmup + {args.steps} timed steps x {args.rounds} round(s); each contender in its own process"
    )

    # (label, child, threads, isa, extra environment)
    contenders: list[tuple[str, str, int, str | None, dict | None]] = [
        (f"llmpy {isa}", "llmpy", args.threads, isa, None) for isa in isas
    ]
    if args.threads > 1 and not args.no_scaling and isas:
        contenders.append((f"llmpy {isas[0]} 1 thread", "llmpy", 1, isas[0], None))
    contenders.append(("torch eager", "torch", args.threads, None, None))
    if args.torch_avx2:
        contenders.append(("torch eager AVX2-only", "torch", args.threads, None, TORCH_AVX2_ENV))
    if compile_on:
        contenders.append(("torch.compile", "torch-compile", args.threads, None, None))
        if args.torch_avx2:  # inductor's generated code follows ATEN_CPU_CAPABILITY, its GEMMs MKL's limit
            contenders.append(("torch.compile AVX2-only", "torch-compile", args.threads, None, TORCH_AVX2_ENV))

    runs: dict[str, list[dict]] = {c[0]: [] for c in contenders}
    for _ in range(args.rounds):
        for label, child, threads, isa, env in contenders:
            r = _spawn(args, child, threads, config, forward_only, isa, env)
            if r is not None:
                runs[label].append(r)

    ceiling = max([sgemm["torch"], *sgemm["llmpy"].values()]) if sgemm else None
    results = {label: _merge(rs) for label, rs in runs.items() if rs}
    for label, r in results.items():
        print(_line(label, r, cfg, forward_only, ceiling) + f" | {r['desc']}")

    print("targets (issue 7; issue 21 for every variant):")
    eager, comp = results.get("torch eager"), results.get("torch.compile")
    for isa in isas:
        llm = results.get(f"llmpy {isa}")
        if not llm:
            continue
        if eager:
            ratio = llm["median_ms"] / eager["median_ms"]
            if forward_only:
                print(
                    _check(
                        f"[{isa}] tokens/s llmpy / torch eager no_grad",
                        1.0 / ratio,
                        TARGET_FORWARD_TOKS,
                        True,
                    )
                )
            elif config == "124m":
                print(_check(f"[{isa}] step time llmpy / torch eager", ratio, TARGET_TRAIN_124M, False))
            else:
                print(f"  [{isa}] step time llmpy / torch eager = {ratio:.3f}")
            print(
                _check(
                    f"[{isa}] peak RSS llmpy / torch eager",
                    llm["peak_rss_mib"] / eager["peak_rss_mib"],
                    1.0,
                    False,
                )
                + f"  ({llm['peak_rss_mib']:.0f} MiB vs {eager['peak_rss_mib']:.0f} MiB)"
            )
        if comp:
            ratio = llm["median_ms"] / comp["median_ms"]
            if config == "d6" and not forward_only:
                print(_check(f"[{isa}] step time llmpy / torch.compile", ratio, TARGET_TRAIN_D6, False))
            else:
                print(f"  [{isa}] step time llmpy / torch.compile = {ratio:.3f}")
    one = results.get(f"llmpy {isas[0]} 1 thread") if isas else None
    llm = results.get(f"llmpy {isas[0]}") if isas else None
    if llm and one:
        speedup = one["median_ms"] / llm["median_ms"]
        print(
            _check(
                f"[{isas[0]}] llmpy speed-up 1 -> {args.threads} threads",
                speedup,
                TARGET_SCALING,
                True,
                "{:.2f}",
            )
            + f"  ({one['median_ms']:.1f} ms -> {llm['median_ms']:.1f} ms)"
        )
    return results


def _ratio_cell(
    value: float | None, ref: float | None, target: float, higher_is_better: bool, cpu: float | None = None
) -> str:
    """value / ref against the target (✓/✗); cpu: the same ratio by CPU seconds, shown after it."""
    if value is None or ref is None:
        return "–"
    r = value / ref
    ok = r >= target if higher_is_better else r <= target
    return f"{r:.2f}× {'✓' if ok else '✗'}" + (f" (cpu {cpu:.2f}×)" if cpu else "")


def print_table(
    args: argparse.Namespace,
    isas: list[str],
    sgemm: dict | None,
    workloads: dict[tuple[str, bool], dict[str, dict]],
    machine: str,
) -> None:
    """The one table of issue 21: a row per variant (and PyTorch's), markdown."""
    train124 = workloads.get(("124m", False), {})
    train_d6 = workloads.get(("d6", False), {})
    fwd_key = next((k for k in workloads if k[1]), ("124m", True))  # the forward-only run, if any
    fwd, fwd_cfg = workloads.get(fwd_key, {}), CONFIGS[fwd_key[0]]

    def ms(res: dict, label: str) -> float | None:
        r = res.get(label)
        return r["median_ms"] if r else None

    def toks(res: dict, label: str) -> float | None:
        m = ms(res, label)
        return fwd_cfg.B * fwd_cfg.T / (m / 1e3) if m else None

    def fmt(x: float | None, spec: str) -> str:
        return "–" if x is None else format(x, spec)

    def cpu_ratio(res: dict, label: str, ref: str, invert: bool = False) -> float | None:
        """CPU seconds per step (user + sys, all threads) of label / ref (ref / label: invert)."""
        a, b = res.get(label), res.get(ref)
        if not a or not b or a["user_s"] + a["sys_s"] <= 0 or b["user_s"] + b["sys_s"] <= 0:
            return None
        r = (a["user_s"] + a["sys_s"]) / (b["user_s"] + b["sys_s"])
        return 1.0 / r if invert else r

    print(f"\n{machine}")
    print(
        f"| variant | sgemm {SGEMM_N}³ GFLOP/s | vs torch.mm (≥ {TARGET_SGEMM}) | 124M step ms | "
        f"vs torch eager (≤ {TARGET_TRAIN_124M}) | d6 step ms | vs torch.compile (≤ {TARGET_TRAIN_D6}) | "
        f"{fwd_key[0]} forward tok/s | vs torch eager (≥ {TARGET_FORWARD_TOKS}) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    t_mm = sgemm["torch"] if sgemm else None
    t_124, t_d6c, t_fwd = ms(train124, "torch eager"), ms(train_d6, "torch.compile"), toks(fwd, "torch eager")
    for isa in isas:
        g = sgemm["llmpy"].get(isa) if sgemm else None
        m124, md6, tf = ms(train124, f"llmpy {isa}"), ms(train_d6, f"llmpy {isa}"), toks(fwd, f"llmpy {isa}")
        c124 = cpu_ratio(train124, f"llmpy {isa}", "torch eager")
        cd6 = cpu_ratio(train_d6, f"llmpy {isa}", "torch.compile")
        cfwd = cpu_ratio(fwd, f"llmpy {isa}", "torch eager", invert=True)
        print(
            f"| llmpy {isa} | {fmt(g, '.1f')} | {_ratio_cell(g, t_mm, TARGET_SGEMM, True)} | {fmt(m124, '.1f')} | "
            f"{_ratio_cell(m124, t_124, TARGET_TRAIN_124M, False, c124)} | {fmt(md6, '.1f')} | "
            f"{_ratio_cell(md6, t_d6c, TARGET_TRAIN_D6, False, cd6)} | {fmt(tf, '.0f')} | "
            f"{_ratio_cell(tf, t_fwd, TARGET_FORWARD_TOKS, True, cfwd)} |"
        )
    cap = f" (cpu capability {sgemm['torch_capability']})" if sgemm else ""
    print(
        f"| torch{cap} | {fmt(t_mm, '.1f')} | | {fmt(t_124, '.1f')} | | "
        f"{fmt(t_d6c, '.1f')} (compile; eager {fmt(ms(train_d6, 'torch eager'), '.1f')}) | | {fmt(t_fwd, '.0f')} | |"
    )
    if args.torch_avx2:
        t_mm2 = sgemm.get("torch_avx2") if sgemm else None
        t2_124, t2_fwd = ms(train124, "torch eager AVX2-only"), toks(fwd, "torch eager AVX2-only")
        print(
            f"| torch limited to AVX2 | {fmt(t_mm2, '.1f')} | | {fmt(t2_124, '.1f')} | | "
            f"{fmt(ms(train_d6, 'torch.compile AVX2-only'), '.1f')} (compile; eager "
            f"{fmt(ms(train_d6, 'torch eager AVX2-only'), '.1f')}) | | {fmt(t2_fwd, '.0f')} | |"
        )
        if "avx2" in isas:
            g = sgemm["llmpy"].get("avx2") if sgemm else None
            c124 = cpu_ratio(train124, "llmpy avx2", "torch eager AVX2-only")
            cd6 = cpu_ratio(train_d6, "llmpy avx2", "torch.compile AVX2-only")
            cfwd = cpu_ratio(fwd, "llmpy avx2", "torch eager AVX2-only", invert=True)
            d6 = _ratio_cell(ms(train_d6, "llmpy avx2"), ms(train_d6, "torch.compile AVX2-only"), TARGET_TRAIN_D6, False, cd6)
            print(
                "avx2 against torch limited to AVX2 (an AVX2-only CPU): "
                f"sgemm {_ratio_cell(g, t_mm2, TARGET_SGEMM, True)}, "
                f"124M step {_ratio_cell(ms(train124, 'llmpy avx2'), t2_124, TARGET_TRAIN_124M, False, c124)}, "
                f"d6 step vs torch.compile {d6}, "
                f"forward {_ratio_cell(toks(fwd, 'llmpy avx2'), t2_fwd, TARGET_FORWARD_TOKS, True, cfwd)}"
            )
    print(
        "Ratios by median wall time; in parentheses by CPU seconds per step (user + sys, all threads), which a "
        "loaded machine distorts less (run with OMP_WAIT_POLICY=passive, or spinning threads count too)."
    )


def parent_main(args: argparse.Namespace) -> int:
    load_before = _load()
    isas = runnable_isas(args.isa)
    workloads = (
        [("124m", False), ("d6", False), ("124m", True)]
        if args.config == "all"
        else [(args.config, args.forward_only)]
    )
    import llmpy

    info = llmpy.build_info()
    print(f"CPU: {_cpu_model()}; Python {platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M')}")
    print(
        f"llmpy {info['version']} ({info['compiler']}), variants built: {','.join(info['cpu_isas'])}, "
        f"timed: {','.join(isas) or 'none'} (llmpy picks {info['cpu_isa']})"
    )
    sgemm = None if args.no_sgemm else run_sgemm_rounds(args, isas)
    results = {}
    for config, forward_only in workloads:
        results[(config, forward_only)] = run_workload(args, config, forward_only, isas, sgemm)
    print_table(args, isas, sgemm, results, _machine_line(args, load_before))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Median time of one GPT-2 training step (forward+backward+AdamW) or forward on the CPU, "
        "llmpy vs PyTorch eager (and torch.compile), same model shape, batch and thread count, each in its "
        "own process (peak RSS per contender)."
    )
    p.add_argument(
        "--config",
        choices=[*sorted(CONFIGS), "all"],
        default="124m",
        help="model + batch shape (default 124m); all: 124m training, d6 training and 124m forward in turn",
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
    p.add_argument(
        "--grad-clip",
        type=float,
        default=1.0,
        help="clip gradients to this global norm in every training step, both sides (0: no clipping)",
    )
    p.add_argument(
        "--isa",
        default=None,
        help="llmpy kernel variants to time: all (default: every one this CPU runs), auto (the one llmpy "
        "picks), or a comma-separated list, e.g. avx2,generic",
    )
    p.add_argument(
        "--torch-avx2",
        action="store_true",
        help="also time PyTorch with MKL/oneDNN/ATen limited to AVX2 (the reference of an AVX2-only CPU)",
    )
    p.add_argument("--child", choices=("llmpy", "torch", "torch-compile", "sgemm"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.isa is None and not args.child:
        args.isa = "all"
    if args.config == "all" and args.forward_only:
        p.error("--config all already includes the forward; drop --forward-only")
    if args.steps < 1 or args.warmup < 0 or args.threads < 1 or args.rounds < 1:
        p.error("--steps, --threads and --rounds must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return child_main(args) if args.child else parent_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
