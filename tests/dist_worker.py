"""One rank of the data-parallel tests (tests/test_dist.py starts it under mpirun, or alone).

Trains a tiny GPT-2 for a few steps on a fixed random global batch per step and writes what the
test compares into ``--out``: per rank ``rank<r>.npz`` (parameters, gradients, this rank's ZeRO
shard, logged losses and gradient norms). Global batch of a step: ``accum * world_size * B``
rows; micro-step k of rank r takes rows ``[(k * world_size + r) * B, ... + B)`` — the order of
the rank-aware DataLoader — so 1 rank accumulating 2 micro-batches sees what 2 ranks see.

The last micro-step's backward has ``sync=True`` (its reductions overlap the backward);
``--no-overlap`` distributes with ``overlap=False`` instead (every reduction in ``step()``), which
must give the same bits.

Modes (``--fail``): ``raise`` makes rank 1 raise at step 2; ``kill`` makes rank 1 SIGKILL itself
at step 2; ``stop`` makes rank 1 SIGSTOP itself at step 2 (it never runs again); ``exit`` makes
rank 1 exit with status 0 at step 2; ``config`` gives rank 1 another model width. Used to check
that the job then ends.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import numpy as np

import llmpy
from llmpy import GPT2, GPT2Config, _C, dist

CFG = dict(n_layer=2, n_head=2, n_embd=32, vocab_size=97, block_size=16)


def flat(d: dict) -> np.ndarray:
    return np.concatenate([np.asarray(v, dtype=np.float32).ravel() for v in d.values()])


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--first-step", type=int, default=0, help="start at this step (with --resume)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=16)
    p.add_argument("--accum", type=int, default=1)
    p.add_argument("--zero", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--n-embd", type=int, default=CFG["n_embd"])
    p.add_argument("--vocab", type=int, default=CFG["vocab_size"], help="> 4M parameters: several ZeRO chunks")
    p.add_argument("--save-at", type=int, default=0, help="write ckpt.bin/.state after this step")
    p.add_argument("--resume", default=None, help="checkpoint stem to start from")
    p.add_argument("--no-overlap", action="store_true", help="distribute(overlap=False)")
    p.add_argument("--fail", choices=["raise", "kill", "stop", "config", "exit"], default=None)
    a = p.parse_args()

    llmpy.set_num_threads(1)
    r, W = dist.rank, dist.world_size
    cfg = dict(CFG, n_embd=a.n_embd, vocab_size=a.vocab)
    if a.fail == "config" and r == 1:
        cfg["n_embd"] += 16
    if a.resume:
        model = GPT2.from_checkpoint(a.resume + ".bin")
        model.load_state(a.resume + ".state")
    else:
        model = GPT2(GPT2Config(**cfg), seed=1 + r)  # distribute() must replace rank 1's init by rank 0's
    model.distribute(zero_stage=a.zero, overlap=not a.no_overlap)

    B, T, A = a.batch, a.seq, a.accum
    losses, norms = [], []
    for step in range(a.first_step, a.first_step + a.steps):
        if a.fail and step == 2 and r == 1:
            if a.fail == "raise":
                raise RuntimeError("rank 1 fails on purpose")
            if a.fail == "exit":  # a clean exit while rank 0 waits in a collective
                sys.exit(0)
            os.kill(os.getpid(), signal.SIGSTOP if a.fail == "stop" else signal.SIGKILL)
        rows = np.random.default_rng([7, step]).integers(0, a.vocab, size=(A * W * B, T + 1))
        model.zero_grad()
        loss = 0.0
        for k in range(A):
            chunk = rows[(k * W + r) * B:(k * W + r + 1) * B]
            loss += model.forward(chunk[:, :-1].copy(), chunk[:, 1:].copy()) / A
            model.backward(loss_scale=1.0 / A, sync=k == A - 1)
        losses.append(dist.all_reduce_mean(loss))
        norms.append(model.step(lr=a.lr, weight_decay=0.1, grad_clip=1.0))
        if a.save_at and step + 1 == a.save_at:
            stem = os.path.join(a.out, "ckpt")
            model.save(stem + ".bin")
            model.save_state(stem + ".state", {"step": step + 1})
    # which gradients hold the mean: all of them, or with ZeRO-1 this rank's shard of the internal
    # buffer (where wte has Vp >= V rows; the views show V)
    n = model.num_parameters
    V, C, Vp = cfg["vocab_size"], cfg["n_embd"], model._m.config["padded_vocab_size"]
    internal = np.arange(n) + np.where(np.arange(n) < V * C, 0, (Vp - V) * C)
    parts = _C.dist.shard(model._m)
    mine = np.logical_or.reduce([(internal >= lo) & (internal < hi) for lo, hi in parts])
    np.savez(os.path.join(a.out, f"rank{r}.npz"), params=flat(model.parameters()), grads=flat(model.gradients()),
             mean_grads=mine, losses=np.array(losses), norms=np.array(norms), world=W)
    dist.barrier()
    dist.finalize()
    return 0


if __name__ == "__main__":
    sys.exit(main())
