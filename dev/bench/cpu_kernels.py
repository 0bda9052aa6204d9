"""CPU kernels one by one, per instruction-set variant: the ops of a GPT-2 step on its shapes.

Times each op of ``llmpy._C.ops`` (the CPU backend's table) with every variant this CPU runs
(``llmpy.set_cpu_isa``, the same binary), on the shapes of the 124M (B=4, T=64) and d6 (B=8,
T=256) benchmarks of cpu_step.py. Reported per op and variant: the median over ``--reps`` calls
of the process CPU time (all threads; robust on a shared machine, where wall time is not — run
with ``OMP_WAIT_POLICY=passive`` so that idle threads sleep instead of spinning) and, for the
matmuls, GFLOP/s per CPU-second. The reps of the variants are interleaved, so that a change of
load hits them alike. Nothing is checked here: tests/test_cpu_kernels.py does that.

Usage::

    OMP_WAIT_POLICY=passive python dev/bench/cpu_kernels.py              # 1 thread, every variant
    OMP_WAIT_POLICY=passive python dev/bench/cpu_kernels.py --threads 2 --isa avx2 --filter gelu
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np


def _randn(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _matmul_cases(rng: np.random.Generator, cfg: str, name: str, B: int, T: int, IC: int, OC: int) -> list:
    """matmul forward and backward (dinp written, dweight accumulated) of one layer shape."""
    from llmpy import _C

    ops = _C.ops
    x, w, dy = _randn(rng, B, T, IC), _randn(rng, OC, IC, scale=0.02), _randn(rng, B, T, OC)
    y, dx, dw = (
        np.empty((B, T, OC), np.float32),
        np.empty((B, T, IC), np.float32),
        np.zeros((OC, IC), np.float32),
    )
    flops = 2.0 * B * T * IC * OC
    return [
        (f"{cfg} matmul fwd {name}", flops, lambda: ops.matmul_forward(y, x, w, None, B, T, IC, OC)),
        (
            f"{cfg} matmul bwd {name}",
            2 * flops,
            lambda: ops.matmul_backward(dx, dw, None, dy, x, w, B, T, IC, OC, False),
        ),
    ]


def _config_cases(rng: np.random.Generator, cfg: str, B: int, T: int, C: int, NH: int) -> list:
    """Every op of one config's step (the matmuls of one layer and a vocabulary slice)."""
    from llmpy import _C

    ops = _C.ops
    out = []
    for name, IC, OC in (("qkv", C, 3 * C), ("fc", C, 4 * C), ("fcproj", 4 * C, C), ("lm slice", C, 8192)):
        out += _matmul_cases(rng, cfg, name, B, T, IC, OC)
    qkv, dout = _randn(rng, B, T, 3 * C), _randn(rng, B, T, C)
    att, state = np.empty((B, T, C), np.float32), np.empty(ops.attention_state_size(B, T, C, NH), np.float32)
    dqkv = np.empty((B, T, 3 * C), np.float32)
    out.append((f"{cfg} attention fwd", 0.0, lambda: ops.attention_forward(att, state, qkv, B, T, C, NH)))
    out.append(
        (
            f"{cfg} attention bwd",
            0.0,
            lambda: ops.attention_backward(dqkv, dout, qkv, att, state, B, T, C, NH),
        )
    )
    N = B * T * 4 * C
    g_in, g_out, g_d = _randn(rng, N), np.empty(N, np.float32), _randn(rng, N)
    out.append((f"{cfg} gelu fwd", 0.0, lambda: ops.gelu_forward(g_out, g_in, N)))
    out.append((f"{cfg} gelu bwd", 0.0, lambda: ops.gelu_backward(g_out, g_in, g_d, N)))
    x, w, b = _randn(rng, B, T, C), _randn(rng, C), _randn(rng, C)
    y, mean, rstd = (
        np.empty((B, T, C), np.float32),
        np.empty((B, T), np.float32),
        np.empty((B, T), np.float32),
    )
    out.append((f"{cfg} layernorm fwd", 0.0, lambda: ops.layernorm_forward(y, mean, rstd, x, w, b, B, T, C)))
    V, Vp, n = 50257, 50304, 8192
    logits, tgt = _randn(rng, B, T, Vp), rng.integers(0, V, size=(B, T), dtype=np.int32)
    losses, dlog = np.empty((B, T), np.float32), np.empty((B, T, n), np.float32)
    out.append(
        (f"{cfg} crossentropy fwd", 0.0, lambda: ops.crossentropy_forward(losses, logits, tgt, B, T, V, Vp))
    )
    out.append(
        (
            f"{cfg} crossentropy bwd slice",
            0.0,
            lambda: ops.crossentropy_backward_cols(
                dlog, logits, losses, tgt, 1.0 / (B * T), B, T, V, Vp, 0, n
            ),
        )
    )
    return out


def cases(rng: np.random.Generator) -> list[tuple[str, float, Callable[[], object]]]:
    """(name, flops or 0, call) for each op and shape."""
    from llmpy import _C

    ops = _C.ops
    out = _config_cases(rng, "124m", 4, 64, 768, 12) + _config_cases(rng, "d6", 8, 256, 384, 6)
    N = 16 * 2**20
    p, g, m, v = _randn(rng, N), _randn(rng, N, scale=0.01), np.zeros(N, np.float32), np.zeros(N, np.float32)
    out.append(
        ("adamw 16M params", 0.0, lambda: ops.adamw_update(p, g, m, v, N, 1e-4, 0.9, 0.95, 1e-8, 0.1, 1.0, 1))
    )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="CPU time of each llmpy CPU op per kernel variant (GPT-2 shapes)")
    p.add_argument("--threads", type=int, default=1, help="OpenMP threads (default 1)")
    p.add_argument("--reps", type=int, default=7, help="timed calls per op and variant (default 7)")
    p.add_argument("--isa", default="all", help="all (every variant this CPU runs) or a comma-separated list")
    p.add_argument("--filter", default="", help="only ops whose name contains this")
    args = p.parse_args(argv)

    import llmpy

    llmpy.set_num_threads(args.threads)
    names = llmpy.build_info()["cpu_isas"] if args.isa == "all" else args.isa.split(",")
    isas = []
    for name in names:
        try:
            llmpy.set_cpu_isa(name)
            isas.append(name)
        except NotImplementedError:
            pass
    print(
        f"llmpy {llmpy.build_info()['version']}, {args.threads} thread(s), variants {','.join(isas)}; "
        f"median CPU ms of {args.reps} calls (GFLOP/s per CPU-second for matmuls); load {os.getloadavg()[0]:.1f}"
    )
    print(f"{'op':<30}" + "".join(f"{isa:>20}" for isa in isas))
    for name, flops, call in cases(np.random.default_rng(0)):
        if args.filter not in name:
            continue
        times: dict[str, list[float]] = {isa: [] for isa in isas}
        for isa in isas:  # warm up: scratch, page faults
            llmpy.set_cpu_isa(isa)
            call()
        for _ in range(args.reps):
            for isa in isas:
                llmpy.set_cpu_isa(isa)
                c0 = time.process_time()
                call()
                times[isa].append(time.process_time() - c0)
        cells = []
        for isa in isas:
            t = statistics.median(times[isa])
            cells.append(f"{t * 1e3:9.2f} ms" + (f" {flops / t / 1e9:5.0f} GF" if flops else " " * 9))
        print(f"{name:<30}" + "".join(f"{c:>20}" for c in cells), flush=True)
    llmpy.set_cpu_isa("auto")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
