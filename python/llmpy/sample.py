"""Sampling text from a GPT-2 checkpoint.

    python -m llmpy.sample --checkpoint runs/x/model_000500.bin --prompt "ROMEO:" \\
        --max-new-tokens 100 --top-k 50 --temperature 1.0 --num-samples 3 --seed 42

Sampling draws from its own ``numpy.random.Generator``, so sampling during training never
changes the training trajectory. ``GPT2.generate`` is the Python API.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Optional

from .sampling import sample_next

__all__ = ["main", "sample_next"]


def build_parser() -> argparse.ArgumentParser:
    from . import device

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
    return ap


def main(argv: Optional[list] = None) -> int:
    """Exit codes: 0 done, 2 a usage error (argparse: bad flags, checked before any file is read),
    1 anything else (missing or damaged checkpoint, unusable device, Ctrl-C): one ``error:`` line
    on stderr, no traceback."""
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.max_new_tokens < 0:
        ap.error(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    if args.num_samples < 1:
        ap.error(f"--num-samples must be >= 1, got {args.num_samples}")
    if args.top_k < 0:
        ap.error(f"--top-k must be >= 0 (0: all tokens), got {args.top_k}")
    if not math.isfinite(args.temperature) or args.temperature < 0:
        ap.error(f"--temperature must be a finite number >= 0 (0: greedy), got {args.temperature}")
    if args.seed < 0:
        ap.error(f"--seed must be >= 0, got {args.seed}")
    try:
        return _run(ap, args)
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C)", file=sys.stderr)
        return 1
    except (OSError, ValueError, TypeError, NotImplementedError, ImportError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _run(ap: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from .model import GPT2
    from .tokenizer import gpt2

    enc = gpt2()
    prompt = enc.encode(args.prompt, allowed_special={"<|endoftext|>"})
    if not prompt:
        ap.error("--prompt encodes to no tokens")
    model = GPT2.from_checkpoint(args.checkpoint, device=args.device)
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
