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


from .sampling import sample_next

__all__ = ["main", "sample_next"]


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
