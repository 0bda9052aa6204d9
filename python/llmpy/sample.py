"""Sampling text from a GPT-2 checkpoint, streamed as it is produced.

    python -m llmpy.sample --checkpoint runs/x/model_000500.bin --prompt "ROMEO:" \\
        --max-new-tokens 100 --top-k 50 --temperature 1.0 --num-samples 3 --seed 42
    python -m llmpy.sample --checkpoint gpt2_124M.bin --interactive --weights bf16

Generation runs in the C core with a KV cache (``llmpy.generate``): all samples of a prompt are
one batch; the first is printed token by token as it is produced, the others when the batch is
done; a sample ends at ``<|endoftext|>`` (not printed) unless ``--no-stop-at-eot``.
``--interactive`` reads prompts from standard input, one per line, until an empty line or end of
input, with the weights (bf16 with ``--weights bf16``) prepared once. Sampling draws from
its own ``numpy.random.Generator`` seeded by ``--seed``, so the same flags give the same text
(and sampling during training never changes the training trajectory). ``GPT2.generate`` and
``GPT2.stream`` are the Python API.
"""

from __future__ import annotations

import argparse
import codecs
import json
import math
import os
import sys
from typing import Optional

import numpy as np

from .sampling import sample_next

__all__ = ["main", "sample_next"]


def _text_of(enc, tokens, drop=()) -> bytes:
    """The bytes of token ids; ids beyond the tokenizer's vocabulary (e.g. padding rows) and the
    ids in ``drop`` (the stop token that ended a sample) are left out."""
    return b"".join(enc.decode_single_token_bytes(int(t)) for t in tokens
                    if 0 <= t < enc.n_vocab and int(t) not in drop)


def _samples(gen, enc, prompt: list, args, rng: np.random.Generator, out) -> list:
    """Generates args.num_samples continuations of prompt as one batch, streaming the first to out
    (the others follow when the batch is done); returns the texts (prompt included)."""
    n = args.num_samples
    stop = [enc.eot_token] if args.stop_at_eot else []
    steps = gen.stream([prompt], args.max_new_tokens, temperature=args.temperature, top_k=args.top_k or None,
                       top_p=args.top_p, stop_tokens=stop, num_samples=n, rng=rng)
    head = _text_of(enc, prompt)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span tokens
    new: list = [[] for _ in range(n)]
    if n > 1:
        out.write(f"--- sample 1/{n}\n")
    out.write(decoder.decode(head))
    out.flush()
    for step in steps:
        for i, t in enumerate(step.tolist()):
            if t >= 0:
                new[i].append(t)
        if step[0] >= 0:
            out.write(decoder.decode(_text_of(enc, [int(step[0])], stop)))
            out.flush()
    out.write(decoder.decode(b"", final=True) + "\n")
    texts = [(head + _text_of(enc, toks, stop)).decode("utf-8", errors="replace") for toks in new]
    for i in range(1, n):
        out.write(f"--- sample {i + 1}/{n}\n{texts[i]}\n")
    out.flush()
    return texts


def build_parser() -> argparse.ArgumentParser:
    from . import device

    ap = argparse.ArgumentParser(prog="python -m llmpy.sample", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="llm.c model file (e.g. one written by llmpy.train)")
    ap.add_argument("--prompt", default="\n", help="text to continue (GPT-2 tokens; default: a newline)")
    ap.add_argument("--max-new-tokens", type=int, default=100,
                    help="tokens to generate per sample (default: 100)")
    ap.add_argument("--top-k", type=int, default=50,
                    help="keep the k most likely tokens, 0: all (default: 50)")
    ap.add_argument("--top-p", type=float, default=None,
                    help="keep the most likely tokens up to this probability mass, in (0, 1] (default: all)")
    ap.add_argument("--temperature", type=float, default=1.0,
                    help="softmax temperature, 0: greedy (default: 1.0)")
    ap.add_argument("--num-samples", type=int, default=3, help="number of samples (default: 3)")
    ap.add_argument("--seed", type=int, default=42, help="sampling seed (default: 42)")
    ap.add_argument("--stop-at-eot", action=argparse.BooleanOptionalAction, default=True,
                    help="end a sample at <|endoftext|> (default: on)")
    ap.add_argument("--weights", choices=["fp32", "bf16"], default=None,
                    help="weights for decoding: bf16 halves the bytes per token "
                         "(default: the model's precision)")
    ap.add_argument("--interactive", action="store_true",
                    help="read prompts from standard input, one per line, until an empty line")
    ap.add_argument("--device", default="auto", type=device.arg, help=device.HELP)
    ap.add_argument("--json", action="store_true", help="print the samples as a JSON list (no streaming)")
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
    if args.top_p is not None and not 0.0 < args.top_p <= 1.0:
        ap.error(f"--top-p must be in (0, 1], got {args.top_p}")
    if not math.isfinite(args.temperature) or args.temperature < 0:
        ap.error(f"--temperature must be a finite number >= 0 (0: greedy), got {args.temperature}")
    if args.seed < 0:
        ap.error(f"--seed must be >= 0, got {args.seed}")
    try:
        return _run(ap, args)
    except BrokenPipeError:  # the reader went away (python -m llmpy.sample ... | head): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C)", file=sys.stderr)
        return 1
    except (OSError, ValueError, TypeError, NotImplementedError, ImportError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _run(ap: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from .model import GPT2
    from .tokenizer import gpt2

    # the checkpoint first: a wrong path is reported before the tokenizer may be downloaded
    model = GPT2.from_checkpoint(args.checkpoint, device=args.device)
    enc = gpt2()
    gen = model.generator(args.weights)  # bf16 weights: converted once, here
    rng = np.random.default_rng(args.seed)

    def encode(text: str) -> list:
        prompt = enc.encode(text, allowed_special={"<|endoftext|>"})
        if not prompt:
            raise ValueError("encodes to no tokens")
        if max(prompt) >= model.config.vocab_size:
            V = model.config.vocab_size
            raise ValueError(f"uses token ids beyond the model's vocabulary ({V})")
        return prompt

    if args.interactive:
        print("llmpy: type a prompt and press Enter; an empty line or end of input quits.", file=sys.stderr)
        while True:
            sys.stdout.write("> ")
            sys.stdout.flush()
            line = sys.stdin.readline()
            text = line.rstrip("\n")
            if not text:
                sys.stdout.write("\n")
                return 0
            try:
                prompt = encode(text)
            except ValueError as e:
                print(f"error: the prompt {e}", file=sys.stderr)
                continue
            try:
                _samples(gen, enc, prompt, args, rng, sys.stdout)
            except ValueError as e:  # e.g. a prompt longer than the model's block
                print(f"error: {e}", file=sys.stderr)

    try:
        prompt = encode(args.prompt)
    except ValueError as e:
        ap.error(f"--prompt {e}")
    if args.json:
        stop = [enc.eot_token] if args.stop_at_eot else []
        out = gen.generate([prompt], args.max_new_tokens, temperature=args.temperature,
                           top_k=args.top_k or None, top_p=args.top_p, stop_tokens=stop,
                           num_samples=args.num_samples, rng=rng)
        head = _text_of(enc, prompt)
        texts = [head + _text_of(enc, row[len(prompt):], stop) for row in out]
        print(json.dumps([t.decode("utf-8", errors="replace") for t in texts]))
        return 0
    _samples(gen, enc, prompt, args, rng, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
