"""Command line: ``python -m llmpy.data {tinyshakespeare,fineweb,text} ...``.

    python -m llmpy.data tinyshakespeare
    python -m llmpy.data fineweb --edu --sample 10BT --shard-size 100000000
    python -m llmpy.data text corpus.jsonl --jsonl-field text --shard-size 10000000

Shards land next to their source in the data cache (``$LLMPY_DATA_DIR``, default
``~/.cache/llmpy``) unless ``--out-dir`` says otherwise. Re-running skips complete shards.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .sharding import ShardResult


def _common(p: argparse.ArgumentParser, workers_default: int | None) -> None:
    p.add_argument("--out-dir", help="folder for the shards (default: next to the source)")
    shown = "one per core" if workers_default is None else str(workers_default)
    p.add_argument(
        "--workers",
        type=int,
        default=workers_default,
        help=f"tokenizer processes, 0 = in this process (default: {shown})",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (also off when stderr is not a TTY)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llmpy.data",
        description="Download and tokenize datasets into GPT-2 token shards (llm.c format).",
    )
    sub = parser.add_subparsers(dest="dataset", metavar="DATASET")

    p = sub.add_parser("tinyshakespeare", help="tiny Shakespeare: 32,768 val and 305,260 train tokens")
    p.add_argument("--input", help="input.txt to use (default: the cache's, downloaded when missing)")
    _common(p, 0)

    p = sub.add_parser(
        "fineweb", help='FineWeb / FineWeb-Edu sample from Hugging Face (needs the data extra: pip install ".[data]")'
    )
    p.add_argument("--edu", action="store_true", help="FineWeb-Edu instead of FineWeb")
    p.add_argument("--sample", default="10BT", help="sample config: 10BT, 100BT or 350BT (default 10BT)")
    p.add_argument("--shard-size", type=int, default=10**8, help="tokens per shard (default 100000000)")
    _common(p, None)

    p = sub.add_parser("text", help="your own corpora: .txt/.md, .jsonl/.json(.gz), .parquet")
    p.add_argument("files", nargs="+", help="input files, read in the order given")
    p.add_argument("--jsonl-field", default="text", help="JSON field holding the text (default 'text')")
    p.add_argument(
        "--parquet-column", default="text", help="parquet column holding the text (default 'text')"
    )
    p.add_argument(
        "--txt-split",
        default="file",
        choices=("file", "blank-lines", "lines"),
        help="documents of a text file: the whole file, blank-line blocks, or lines (default file)",
    )
    p.add_argument("--name", help="shard-name prefix (default: the first file's name)")
    p.add_argument("--shard-size", type=int, default=10**8, help="tokens per shard (default 100000000)")
    p.add_argument("--val-tokens", type=int, help="tokens of the first (val) shard (default: a tenth of the corpus, "
                   "estimated at 4 bytes per token, at most --shard-size)")
    _common(p, None)
    return parser


def _report(res: ShardResult) -> None:
    for path, n in zip(res.files, res.tokens):
        note = " (kept)" if path in res.skipped else ""
        print(f"{path}: {n:,} tokens{note}")
    print(
        f"{len(res.files)} shard(s), {res.total_tokens:,} tokens; wrote {res.tokens_written:,} tokens "
        f"in {res.seconds:.1f} s, kept {len(res.skipped)} complete shard(s)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dataset is None:
        parser.print_help()
        return 2
    # the flags' files and numbers before anything is downloaded
    if args.workers is not None and args.workers < 0:
        parser.error(f"--workers must be >= 0, got {args.workers}")
    for flag in ("shard_size", "val_tokens"):
        if getattr(args, flag, None) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.out_dir is not None and Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():
        parser.error(f"--out-dir {args.out_dir} is a file, not a folder")
    if args.dataset == "tinyshakespeare" and args.input is not None and not Path(args.input).is_file():
        parser.error(f"--input {args.input}: no such file (leave it out to download tiny Shakespeare)")
    progress = False if args.no_progress else None
    try:
        if args.dataset == "tinyshakespeare":
            from . import tinyshakespeare

            res = tinyshakespeare.prepare(
                args.out_dir, input=args.input, workers=args.workers, progress=progress
            )
        elif args.dataset == "fineweb":
            from . import fineweb

            res = fineweb.prepare(
                edu=args.edu,
                sample=args.sample,
                shard_size=args.shard_size,
                out_dir=args.out_dir,
                workers=args.workers,
                progress=progress,
            )
        else:
            from . import text

            res = text.prepare(
                args.files,
                out_dir=args.out_dir,
                name=args.name,
                shard_size=args.shard_size,
                val_tokens=args.val_tokens,
                jsonl_field=args.jsonl_field,
                parquet_column=args.parquet_column,
                txt_split=args.txt_split,
                workers=args.workers,
                progress=progress,
            )
    except (OSError, ValueError, TypeError, ImportError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    _report(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
