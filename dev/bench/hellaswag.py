"""HellaSwag scoring speed: llmpy.hellaswag vs a straightforward PyTorch loop, same model, same run.

Both score the same examples with the same GPT-2 (random weights, written by the PyTorch oracle
dev/train_gpt2.py and loaded by llmpy, so the predictions must agree):

  - llmpy: ``llmpy.hellaswag.score`` (the C core's scorer) — examples sorted by length and packed
    into forwards of ``B * T <= --max-tokens`` tokens, the ending losses summed in C;
  - llmpy, one example per forward (``max_tokens=1``): what the packing is worth;
  - PyTorch: one example per forward — its 4 candidates padded into a (4, L) batch, eager mode,
    ``no_grad``, float32, cross-entropy with ``reduction="none"`` masked to the ending tokens.

The examples are synthetic token sequences with HellaSwag-like lengths (no network here):
context 20–100 tokens, endings 8–40 tokens, uniform. Timings are wall clock after --warmup
examples, the best of --rounds rounds (the rounds interleave the contenders).

Usage::

    python dev/bench/hellaswag.py                      # 124M, 48 examples, 2 threads
    python dev/bench/hellaswag.py --examples 16 --rounds 1 --model tiny
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # dev/ for the oracle

SHAPES = {
    "124m": dict(n_layer=12, n_head=12, n_embd=768),
    "tiny": dict(n_layer=2, n_head=2, n_embd=64),
}


def synthetic(n: int, vocab: int, seed: int = 0) -> list:
    from llmpy.hellaswag import Rendered

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        c = int(rng.integers(20, 101))
        lens = rng.integers(8, 41, size=4)
        L = c + int(lens.max())
        ctx = rng.integers(0, vocab, size=c).astype(np.int32)
        tokens = np.zeros((4, L), dtype=np.int32)
        mask = np.zeros((4, L), dtype=np.uint8)
        for j, e in enumerate(lens):
            tokens[j, :c] = ctx
            tokens[j, c:c + e] = rng.integers(0, vocab, size=e)
            mask[j, c:c + e] = 1
        out.append(Rendered(ctx, tokens, mask, int(rng.integers(4))))
    return out


def torch_scores(model, rendered) -> np.ndarray:
    """Total ending loss (N, 4): one example (4 padded rows) per forward."""
    import torch
    import torch.nn.functional as F

    out = np.zeros((len(rendered), 4))
    with torch.no_grad():
        for i, r in enumerate(rendered):
            tok = torch.from_numpy(r.tokens.astype(np.int64))
            mask = torch.from_numpy(r.mask[:, 1:].astype(np.float32))
            logits, _ = model(tok[:, :-1])
            nll = F.cross_entropy(logits.flatten(0, 1), tok[:, 1:].flatten(), reduction="none").view(4, -1)
            out[i] = (nll * mask).sum(dim=1).double().numpy()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=sorted(SHAPES), default="124m")
    ap.add_argument("--examples", type=int, default=48)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=None, help="llmpy tokens per forward (default: its default)")
    args = ap.parse_args()

    import torch

    import llmpy
    import train_gpt2 as oracle
    from llmpy import hellaswag as hs

    torch.set_num_threads(args.threads)
    llmpy.set_num_threads(args.threads)
    max_tokens = args.max_tokens or hs.DEFAULT_MAX_TOKENS
    torch.manual_seed(0)
    ref = oracle.GPT(oracle.GPT2Config(vocab_size=50257, block_size=1024, **SHAPES[args.model])).eval()
    with tempfile.TemporaryDirectory() as d:
        oracle.write_model(ref, Path(d) / "m.bin")
        m = llmpy.GPT2.from_checkpoint(Path(d) / "m.bin")
    warm = synthetic(args.warmup, 50257, seed=1)
    data = synthetic(args.examples, 50257, seed=2)
    tokens = sum(int(r.tokens.shape[0] * (r.tokens.shape[1] - 1)) for r in data)

    contenders = {
        f"llmpy packed (max_tokens {max_tokens})": lambda rs: hs.score(m, rs, max_tokens=max_tokens).total,
        "llmpy, 1 example per forward": lambda rs: hs.score(m, rs, max_tokens=1).total,
        "PyTorch eager, 1 example per forward": lambda rs: torch_scores(ref, rs),
    }
    best = {k: float("inf") for k in contenders}
    totals = {}
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            fn(warm)
            t0 = time.perf_counter()
            totals[name] = fn(data)
            best[name] = min(best[name], time.perf_counter() - t0)

    print(f"HellaSwag scoring, {args.model} random model, {args.examples} synthetic examples "
          f"({tokens:,} input tokens unpadded), {args.threads} threads, best of {args.rounds} rounds")
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, llmpy {llmpy.__version__} "
          f"({llmpy.build_info().get('cpu_isa', '?')})")
    base = best["PyTorch eager, 1 example per forward"]
    ref_total = totals["PyTorch eager, 1 example per forward"]
    for name, t in best.items():
        rel = float(np.max(np.abs(totals[name] - ref_total) / np.abs(ref_total)))
        agree = np.array_equal(np.argmin(totals[name], 1), np.argmin(ref_total, 1))
        print(f"  {name:42s} {t:8.2f} s  {args.examples / t:7.2f} examples/s  {base / t:5.2f}x torch  "
              f"(max rel diff {rel:.1e}, acc predictions {'agree' if agree else 'DIFFER'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
