"""Command line: train a tokenizer, encode and decode with it, write the llm.c tokenizer file.

Usage::

    python -m llmpy.tokenizer train --vocab-size 4096 --pattern gpt4 input.txt --out shakespeare
    python -m llmpy.tokenizer encode --model shakespeare.model < text.txt > ids.txt
    python -m llmpy.tokenizer decode --model shakespeare.model < ids.txt
    python -m llmpy.tokenizer llmc --out gpt2_tokenizer.bin      # for the train_gpt2 binary
"""

from __future__ import annotations

import argparse
import sys
import time

SPECIAL_CHOICES = ("none_raise", "none", "all")


def _train(args: argparse.Namespace) -> int:
    from .bpe import BasicTokenizer, RegexTokenizer, resolve_pattern

    try:
        pattern = resolve_pattern(args.pattern)
    except ValueError as e:
        print(
            f"error: --pattern is neither gpt2, gpt4, none nor a valid regular expression: {e}",
            file=sys.stderr,
        )
        return 2
    from ..textfile import NotUTF8Error, read_text

    try:
        text = read_text(args.input)
    except NotUTF8Error as e:  # names the file, the byte offset and the fix
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: cannot read {args.input}: {e}", file=sys.stderr)
        return 1
    tok = BasicTokenizer() if pattern is None else RegexTokenizer(pattern)
    t0 = time.perf_counter()
    tok.train(text, args.vocab_size, verbose=args.verbose)
    seconds = time.perf_counter() - t0
    if args.special:
        tok.register_special_tokens({s: tok.n_vocab + k for k, s in enumerate(args.special)})
    tok.save(args.out)
    print(
        f"trained {len(tok.merges)} merges on {len(text.encode('utf-8')):,} bytes in {seconds:.2f} s; "
        f"wrote {args.out}.model and {args.out}.vocab",
        file=sys.stderr,
    )
    return 0


def _encode(args: argparse.Namespace) -> int:
    from ..textfile import decode
    from .bpe import load

    tok = load(args.model)
    raw = getattr(sys.stdin, "buffer", None)  # bytes, decoded by us: a bad byte is named with its offset
    text = decode(raw.read(), "<stdin>") if raw is not None else sys.stdin.read()
    ids = tok.encode(text, allowed_special=args.allowed_special)
    print(" ".join(map(str, ids)))
    return 0


def _decode(args: argparse.Namespace) -> int:
    from .bpe import load

    tok = load(args.model)
    try:
        ids = [int(x) for x in sys.stdin.read().split()]
    except ValueError as e:
        print(f"error: decode reads whitespace-separated integer ids from stdin ({e})", file=sys.stderr)
        return 2
    sys.stdout.write(tok.decode(ids))
    return 0


def _llmc(args: argparse.Namespace) -> int:
    from .gpt2 import get_tiktoken_encoding
    from .llmc import write_llmc_tokenizer

    path = write_llmc_tokenizer(args.out, get_tiktoken_encoding(args.encoding))
    print(f"wrote {path} ({args.encoding})", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m llmpy.tokenizer",
        description=__doc__.split("\n")[0],
        epilog="Usage:" + __doc__.split("Usage::")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a byte-level BPE tokenizer on a UTF-8 text file")
    t.add_argument("input", help="training text (UTF-8)")
    t.add_argument("--vocab-size", type=int, required=True, help="tokens in the vocabulary (>= 256)")
    t.add_argument(
        "--pattern",
        default="gpt4",
        help="split pattern: gpt2, gpt4 (default), none (BasicTokenizer: no splitting) or a regular expression",
    )
    t.add_argument("--out", required=True, help="output prefix: writes PREFIX.model and PREFIX.vocab")
    t.add_argument("--special", nargs="*", default=[], help="special tokens to add after the vocabulary")
    t.add_argument("--verbose", action="store_true", help="print every merge")
    t.set_defaults(run=_train)

    e = sub.add_parser("encode", help="encode stdin; prints token ids separated by spaces")
    e.add_argument("--model", required=True, help="a PREFIX.model file written by train")
    e.add_argument(
        "--allowed-special", choices=SPECIAL_CHOICES, default="none_raise", help="special token handling"
    )
    e.set_defaults(run=_encode)

    d = sub.add_parser("decode", help="decode whitespace-separated token ids from stdin")
    d.add_argument("--model", required=True, help="a PREFIX.model file written by train")
    d.set_defaults(run=_decode)

    c = sub.add_parser("llmc", help="write the llm.c tokenizer file for the compiled train_gpt2 binary")
    c.add_argument("--out", required=True, help="output file, e.g. gpt2_tokenizer.bin")
    c.add_argument("--encoding", default="gpt2", help="tiktoken encoding (default gpt2)")
    c.set_defaults(run=_llmc)

    args = p.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, OSError, ImportError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
