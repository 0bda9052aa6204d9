"""CPU data parallelism: 1 rank x 2 threads vs 2 ranks x 1 thread, and the exposed communication.

For one global batch of ``B x T`` tokens per step (forward + backward + gradient averaging +
AdamW), it times

  - 1 rank with ``--threads`` OpenMP threads on the whole batch (no MPI),
  - ``--ranks`` ranks under ``mpirun`` with 1 thread each, every rank on ``B / ranks`` sequences:
    the collective plan with overlap (each layer's gradients reduced while the backward goes on,
    ``backward(sync=True)``), without overlap (every reduction in ``step()``), and ZeRO-1;

and, for every multi-rank setup, the exposed communication per step: the time the training
thread spent in the plan's collectives (``llmpy._C.dist.comm_seconds``) — what did not hide
behind computation. 124M fp32 gradients are 498 MB per rank for ``--config 124m``. Each
configuration runs in its own processes; medians over
``--steps`` timed steps after ``--warmup``, every rank timing between barriers and reporting
rank 0's figure; ``--rounds R`` repeats the set R times, interleaved, and reports the median of
the rounds' medians and the overall minimum (on a busy machine the minimum is the quiet figure).

Usage::

    python dev/bench/dist_cpu.py                  # 124M, B=4 T=64, 2 ranks
    python dev/bench/dist_cpu.py --config d6 --markdown

Needs an MPI build of llmpy and ``mpirun`` (as root it adds ``--allow-run-as-root``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

CONFIGS = {  # name: (model shape, B, T)
    "124m": (dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, block_size=1024), 4, 64),
    "d6": (dict(n_layer=6, n_head=6, n_embd=384, vocab_size=50257, block_size=1024), 8, 256),
}


# ----------------------------------------------------------------------------
# one rank


def rank_main(a) -> None:
    import numpy as np

    import llmpy
    from llmpy import GPT2, GPT2Config, _C, dist

    llmpy.set_num_threads(a.threads)
    shape, B, T = CONFIGS[a.config]
    r, W = dist.rank, dist.world_size
    model = GPT2(GPT2Config(**shape), seed=0).distribute(zero_stage=a.zero, overlap=not a.no_overlap)
    b = B // W
    data = np.random.default_rng(0).integers(0, shape["vocab_size"], size=(B, T + 1))
    x, y = data[r * b:(r + 1) * b, :-1].copy(), data[r * b:(r + 1) * b, 1:].copy()
    step_ms, comm_ms = [], []
    for i in range(a.warmup + a.steps):
        dist.barrier()
        t0, c0 = time.perf_counter(), _C.dist.comm_seconds(model._m)
        model.zero_grad()
        loss = model.forward(x, y)
        model.backward(sync=True)
        dist.all_reduce_mean(loss)
        model.step(1e-4, weight_decay=0.1, grad_clip=1.0)
        t1, c1 = time.perf_counter(), _C.dist.comm_seconds(model._m)
        dist.barrier()
        if i >= a.warmup:
            step_ms.append((t1 - t0) * 1e3)
            comm_ms.append((c1 - c0) * 1e3)
    if dist.is_main:
        print("RESULT " + json.dumps({"step_ms": statistics.median(step_ms), "step_min": min(step_ms),
                                      "comm_ms": statistics.median(comm_ms) if W > 1 else None,
                                      "grad_bytes": _grad_bytes(model),
                                      "tokens": B * T}), flush=True)
    dist.barrier()
    dist.finalize()


def _grad_bytes(model) -> int:
    """Bytes the all-reduce moves per rank: every gradient, wte with its padding rows."""
    c = model._m.config
    padding = (c["padded_vocab_size"] - c["vocab_size"]) * c["n_embd"]
    return 4 * (sum(g.size for g in model.gradients().values()) + padding)


# ----------------------------------------------------------------------------
# driver


def launch(a, ranks: int, threads: int, zero: int, overlap: bool) -> dict:
    cmd = [sys.executable, __file__, "--rank-mode", "--config", a.config, "--threads", str(threads),
           "--steps", str(a.steps), "--warmup", str(a.warmup), "--zero", str(zero)]
    if not overlap:
        cmd.append("--no-overlap")
    if ranks > 1:
        mpi = ["mpirun", "-np", str(ranks), "--oversubscribe", "--bind-to", "none"]
        if os.geteuid() == 0:
            mpi.insert(1, "--allow-run-as-root")
        cmd = mpi + cmd
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}")
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", choices=sorted(CONFIGS), default="124m")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="threads of the single-rank run")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1, help="repeat the set, interleaved; medians of the rounds' medians")
    p.add_argument("--zero", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--no-overlap", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--rank-mode", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--markdown", action="store_true", help="print a RESULTS.md table row block")
    a = p.parse_args()
    if a.rank_mode:
        return rank_main(a)
    import llmpy

    if not llmpy.build_info()["mpi"] or shutil.which("mpirun") is None:
        sys.exit("needs an MPI build of llmpy and mpirun (apt-get install openmpi-bin libopenmpi-dev)")
    shape, B, T = CONFIGS[a.config]
    load = os.getloadavg()[0]
    setups = [
        (f"1 rank x {a.threads} threads, B={B}", 1, a.threads, 0, True),
        (f"{a.ranks} ranks x 1 thread, B={B // a.ranks} each, overlap", a.ranks, 1, 0, True),
        (f"{a.ranks} ranks x 1 thread, B={B // a.ranks} each, no overlap", a.ranks, 1, 0, False),
        (f"{a.ranks} ranks x 1 thread, B={B // a.ranks} each, ZeRO-1, overlap", a.ranks, 1, 1, True),
    ]
    rounds = [[launch(a, n, t, z, o) for _, n, t, z, o in setups] for _ in range(a.rounds)]  # interleaved
    runs = []
    for i, (name, *_) in enumerate(setups):
        rs = [rnd[i] for rnd in rounds]
        comm_ms = [r["comm_ms"] for r in rs if r["comm_ms"] is not None]
        runs.append((name, {"step_ms": statistics.median(r["step_ms"] for r in rs),
                            "step_min": min(r["step_min"] for r in rs), "tokens": rs[0]["tokens"],
                            "grad_bytes": rs[0]["grad_bytes"],
                            "comm_ms": statistics.median(comm_ms) if comm_ms else None}))
    base = runs[0][1]["step_ms"]
    print(f"config {a.config}: {shape}, global batch {B} x {T} = {B * T} tokens/step; {a.rounds} round(s); "
          f"load average at start {load:.2f}, at the end {os.getloadavg()[0]:.2f}")
    if a.markdown:
        print("| configuration | ms/step (median) | min | tokens/s | vs 1 rank | exposed comm ms/step |")
        print("|---|---:|---:|---:|---:|---:|")
    for name, r in runs:
        tps = r["tokens"] / (r["step_ms"] / 1e3)
        comm = "-" if r["comm_ms"] is None else f"{r['comm_ms']:.1f}"
        if a.markdown:
            print(f"| {name} | {r['step_ms']:.1f} | {r['step_min']:.1f} | {tps:.0f} "
                  f"| {base / r['step_ms']:.2f}x "
                  f"| {comm} |")
        else:
            print(f"{name:52s} {r['step_ms']:9.1f} ms/step (min {r['step_min']:.1f})  {tps:8.0f} tok/s  "
                  f"{base / r['step_ms']:.2f}x  exposed comm {comm} ms/step")
    mb = runs[1][1]["grad_bytes"] / 1e6
    print(f"gradients: {mb:.0f} MB of fp32 per rank; target: {a.ranks} ranks x 1 thread >= 0.90x of 1 rank x "
          f"{a.threads} threads (overlap: {base / runs[1][1]['step_ms']:.2f}x)")


if __name__ == "__main__":
    main()
