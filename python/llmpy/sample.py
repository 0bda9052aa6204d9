"""Sampling text from a GPT-2 checkpoint.

    python -m llmpy.sample --checkpoint runs/x/model_000500.bin --prompt "ROMEO:" \\
        --max-new-tokens 100 --top-k 50 --temperature 1.0 --num-samples 3 --seed 42

Sampling draws from its own ``numpy.random.Generator``, so sampling during training never
changes the training trajectory. ``GPT2.generate`` is the Python API.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

import numpy as np


def sample_next(logits: np.ndarray, rng: np.random.Generator, top_k: Optional[int] = None,
                temperature: float = 1.0) -> np.ndarray:
    """Picks one token per row of ``logits`` (N, V).

    ``temperature`` 0 or ``top_k`` 1 is greedy (argmax). Otherwise the logits are divided by the
    temperature, all but the ``top_k`` largest are dropped, and a token is drawn from the softmax.

    >>> sample_next(np.array([[0.0, 3.0, 1.0]]), np.random.default_rng(0), top_k=1)
    array([1])
    """
    logits = np.asarray(logits, dtype=np.float64)
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
    if temperature == 0 or top_k == 1:
        return np.argmax(logits, axis=-1)
    z = logits / temperature
    if top_k is not None and top_k < z.shape[-1]:
        kth = np.partition(z, -top_k, axis=-1)[:, -top_k][:, None]
        z = np.where(z < kth, -np.inf, z)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    u = rng.random((z.shape[0], 1))
    # inverse CDF per row; the clip guards against rounding in the last cumulative sum
    return np.minimum((np.cumsum(p, axis=-1) < u).sum(axis=-1), z.shape[-1] - 1)


def main(argv: Optional[list] = None) -> int:
    from . import device
    from .model import GPT2
    from .tokenizer import gpt2

    ap = argparse.ArgumentParser(prog="python -m llmpy.sample", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="llm.c model file (e.g. one written by llmpy.train)")
    ap.add_argument("--prompt", default="\n", help="text to continue (GPT-2 tokens; default: a newline)")
    ap.add_argument("--max-new-tokens", type=int, default=100, help="tokens to generate per sample")
    ap.add_argument("--top-k", type=int, default=50, help="keep the k most likely tokens (0: all)")
    ap.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (0: greedy)")
    ap.add_argument("--num-samples", type=int, default=3, help="number of samples")
    ap.add_argument("--seed", type=int, default=42, help="sampling seed")
    ap.add_argument("--device", default="auto", type=device.arg, help=device.HELP)
    ap.add_argument("--json", action="store_true", help="print the samples as a JSON list")
    args = ap.parse_args(argv)

    enc = gpt2()
    model = GPT2.from_checkpoint(args.checkpoint, device=args.device)
    prompt = enc.encode(args.prompt, allowed_special={"<|endoftext|>"})
    if not prompt:
        ap.error("--prompt encodes to no tokens")
    if max(prompt) >= model.config.vocab_size:
        ap.error(f"the prompt uses token ids beyond the model's vocabulary ({model.config.vocab_size})")
    out = model.generate(prompt, args.max_new_tokens, top_k=args.top_k or None, temperature=args.temperature,
                         num_samples=args.num_samples, seed=args.seed)
    texts = [enc.decode([t for t in row if t < enc.n_vocab]) for row in out]
    if args.json:
        print(json.dumps(texts))
    else:
        for i, text in enumerate(texts):
            print(f"--- sample {i + 1}/{len(texts)}\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
