"""HellaSwag, completion style: which of 4 endings does the model find most likely?

Each example is a context and 4 endings; the model reads ``context + " " + ending`` for every
ending and the ending with the lowest loss wins. Two predictions per example:

* ``acc``: lowest *total* loss of the ending tokens (favours short endings);
* ``acc_norm``: lowest *mean* loss per ending token — the number people quote
  (GPT-2 124M scores 0.2955, GPT-3 125M 0.337; a random model 0.25).

Scoring is the C core's (``csrc/data/hellaswag.c`` through ``llmpy._C.hellaswag``), the one
scorer, which ``train_gpt2 --hellaswag`` runs too; it works through the model's public API, so
on every backend. The 4 candidates of an example are rows of one batch (padded, the padding
kept out of the sums) and several examples share a forward: examples are sorted by length and
packed while ``B * T`` stays within ``max_tokens``; ``T`` never exceeds the model's
``block_size`` (a context too long for it loses its first tokens, the same for all 4
candidates). The losses of each candidate's ending tokens are summed in float64. Ranks split
the examples (``i % world_size == rank``). This module keeps what is Python's: the data (download,
validation, rendering with the tokenizer, llm.c's eval file), the progress bar, the sum of the
counts over ranks through a ``reduce`` function (an all-reduce) the caller passes, and the CLI.

Data: the official validation set (10,042 examples, jsonl) is downloaded into the data cache
(``$LLMPY_DATA_DIR/hellaswag/hellaswag_val.jsonl``). :func:`write_eval_file` writes llm.c's
binary eval file for ``train_gpt2 --hellaswag FILE``.

Command line::

    python -m llmpy.hellaswag --checkpoint gpt2_124M.bin [--limit N] [--data FILE.jsonl] [--json]
    python -m llmpy.hellaswag --write-eval-file hellaswag_val.bin [--data FILE.jsonl]

>>> from llmpy.tokenizer import gpt2
>>> r = render({"ctx": "A man sits down.", "endings": ["He eats.", "b", "c", "d"], "label": 0}, gpt2())
>>> r.tokens.shape, int(r.mask[0].sum()), r.label   # 4 rows; " He eats." is 3 tokens
((4, 8), 3, 0)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Union

import numpy as np

from . import _C, device
from .checks import integer

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "HELLASWAG_URL",
    "HellaSwagFormatError",
    "Rendered",
    "Result",
    "Scores",
    "download",
    "evaluate",
    "load_examples",
    "main",
    "render",
    "render_all",
    "score",
    "write_eval_file",
]

HELLASWAG_URL = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl"
# The SHA-256 of the official file is not recorded here (it was not available when this was
# written); the download helper checks it once a value is filled in.
HELLASWAG_SHA256: str | None = None
NUM_ENDINGS = _C.hellaswag.ENDINGS  # 4
# Tokens per forward (B * T) when packing examples: large enough to keep the GEMMs busy, small
# enough that a 124M model's activations stay under ~2 GB. The C core's default (2048), which
# train_gpt2 uses.
DEFAULT_MAX_TOKENS = _C.hellaswag.MAX_TOKENS
_START_EXAMPLE = 65535  # uint16 delimiter of an example in llm.c's eval file

PathArg = Union[str, "PathLike[str]"]
Reduce = Callable[[np.ndarray], np.ndarray]


class HellaSwagFormatError(ValueError):
    """A HellaSwag jsonl line is not a valid example; the message names the file and line."""


# ----------------------------------------------------------------------------
# data


def default_path() -> Path:
    """Where the validation set lives in the data cache (``hellaswag/hellaswag_val.jsonl``)."""
    from .data import dataset_dir

    return dataset_dir("hellaswag") / "hellaswag_val.jsonl"


def download(progress: bool | None = None) -> Path:
    """Downloads the official validation jsonl into the data cache (once) and returns its path.

    Offline, raises :class:`llmpy.data.DownloadError` saying where to put the file by hand
    (or use ``--data FILE.jsonl`` / ``load_examples(path)`` with a copy you have).
    """
    from .data import download as fetch

    return fetch(HELLASWAG_URL, default_path(), sha256=HELLASWAG_SHA256, progress=progress,
                 hint="Or pass the jsonl explicitly: python -m llmpy.hellaswag --data FILE.jsonl.")


def _check_example(ex, where: str) -> dict:
    if not isinstance(ex, dict):
        raise HellaSwagFormatError(f"{where}: expected a JSON object, got {type(ex).__name__}")
    ctx = ex.get("ctx")
    if not isinstance(ctx, str) or not ctx:
        raise HellaSwagFormatError(f"{where}: 'ctx' must be a non-empty string, got {ctx!r:.60}")
    endings = ex.get("endings")
    if not isinstance(endings, list) or len(endings) != NUM_ENDINGS:
        n = len(endings) if isinstance(endings, list) else type(endings).__name__
        raise HellaSwagFormatError(f"{where}: 'endings' must be a list of {NUM_ENDINGS} strings, got {n}")
    for j, e in enumerate(endings):
        if not isinstance(e, str) or not e.strip():
            raise HellaSwagFormatError(f"{where}: endings[{j}] must be a non-empty string, got {e!r:.60}")
    label = ex.get("label")
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < NUM_ENDINGS:
        raise HellaSwagFormatError(
            f"{where}: 'label' must be an integer in [0, {NUM_ENDINGS}), got {label!r}")
    return ex


def load_examples(path: PathArg | None = None, limit: int | None = None) -> list:
    """Reads and validates HellaSwag examples (dicts in the official schema) from a jsonl file.

    ``path=None`` means the validation set in the data cache, downloaded on first use.
    ``limit`` keeps the first N examples. Raises :class:`HellaSwagFormatError` naming
    ``file:line`` for a malformed line, a label outside [0, 4) or a wrong number of endings.

    >>> # load_examples("hellaswag_val.jsonl", limit=100)[0]["endings"]
    """
    path = Path(path) if path is not None else download()
    if not path.is_file():
        raise FileNotFoundError(f"HellaSwag data {path} does not exist; give a jsonl in the official schema, "
                                "or leave the path out to download the validation set into the data cache")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if limit is not None and len(out) >= limit:
                break
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                ex = json.loads(line)
            except json.JSONDecodeError as e:
                raise HellaSwagFormatError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            out.append(_check_example(ex, where))
    if not out:
        raise HellaSwagFormatError(f"{path}: holds no examples")
    return out


# ----------------------------------------------------------------------------
# rendering


@dataclass(frozen=True)
class Rendered:
    """One example as token rows.

    ctx: (c,) int32 context tokens. tokens: (4, c + e_max) int32, row j = ctx + ending j, then
    zero padding. mask: (4, c + e_max) uint8, 1 over the ending tokens of each row. label: the
    correct ending.
    """

    ctx: np.ndarray
    tokens: np.ndarray
    mask: np.ndarray
    label: int

    @property
    def ending_lengths(self) -> np.ndarray:
        return self.mask.sum(axis=1, dtype=np.int64)


def _encoder(tokenizer) -> Callable[[str], list]:
    # tiktoken's encode() refuses special-token text; HellaSwag is plain text, read as such
    return getattr(tokenizer, "encode_ordinary", None) or tokenizer.encode


def render(example: dict, tokenizer) -> Rendered:
    """Tokenizes an example: the context, then each ending with a leading space (as GPT-2 sees
    ``context + " " + ending``), padded to a (4, L) batch with a mask over the ending tokens.

    ``tokenizer`` has ``encode(str) -> list[int]`` (e.g. ``llmpy.tokenizer.gpt2()``).
    """
    enc = _encoder(tokenizer)
    ctx = np.asarray(enc(example["ctx"]), dtype=np.int32)
    ends = [np.asarray(enc(" " + e), dtype=np.int32) for e in example["endings"]]
    if ctx.size == 0 or any(e.size == 0 for e in ends):
        raise ValueError("an example tokenized to an empty context or ending")
    c, L = ctx.size, ctx.size + max(e.size for e in ends)
    tokens = np.zeros((len(ends), L), dtype=np.int32)
    mask = np.zeros((len(ends), L), dtype=np.uint8)
    for j, e in enumerate(ends):
        tokens[j, :c] = ctx
        tokens[j, c:c + e.size] = e
        mask[j, c:c + e.size] = 1
    return Rendered(ctx, tokens, mask, int(example["label"]))


def render_all(examples: Iterable[dict], tokenizer) -> list:
    """``[render(ex, tokenizer) for ex in examples]``."""
    return [render(ex, tokenizer) for ex in examples]


# ----------------------------------------------------------------------------
# scoring


@dataclass
class Scores:
    """Per-candidate sums of the ending tokens' losses (N, 4, float64) and token counts (N, 4)."""

    total: np.ndarray
    count: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        return self.total / self.count

    @property
    def pred(self) -> np.ndarray:
        """acc prediction: the ending with the lowest total loss (first one on a tie)."""
        return np.argmin(self.total, axis=1)

    @property
    def pred_norm(self) -> np.ndarray:
        """acc_norm prediction: the ending with the lowest mean loss per token."""
        return np.argmin(self.mean, axis=1)


def _pieces(r: Rendered) -> list:
    """The context tokens, then the tokens of each ending: the layout of the C scorer and the eval file."""
    c = r.ctx.size
    return [r.ctx] + [r.tokens[j, c:c + int(e)] for j, e in enumerate(r.ending_lengths)]


def _eval_set(rendered: Sequence[Rendered]):
    """The C scorer's copy of rendered examples (``_C.hellaswag.EvalSet``)."""
    n = len(rendered)
    lengths = np.zeros((n, 1 + NUM_ENDINGS), dtype=np.int32)
    labels = np.zeros(n, dtype=np.int32)
    parts = []
    for i, r in enumerate(rendered):
        if r.tokens.shape[0] != NUM_ENDINGS:
            raise ValueError(f"example {i} has {r.tokens.shape[0]} candidate rows, expected {NUM_ENDINGS}; "
                             "build it with render()")
        pieces = _pieces(r)
        lengths[i] = [p.size for p in pieces]
        labels[i] = r.label
        parts += pieces
    tokens = np.concatenate(parts).astype(np.int32, copy=False) if parts else np.zeros(0, dtype=np.int32)
    return _C.hellaswag.EvalSet(tokens, lengths, labels)


def _score_packs(model, examples, order: np.ndarray, pack_end: np.ndarray,
                 on_pack: Callable[[np.ndarray, Scores], None] | None) -> Scores:
    """Scores the packs of a plan (``EvalSet.plan``) one forward at a time, the GIL released
    during each; rows of examples outside ``order`` stay zero."""
    n = len(examples)
    out = Scores(np.zeros((n, NUM_ENDINGS), dtype=np.float64), np.zeros((n, NUM_ENDINGS), dtype=np.int64))
    start = 0
    for end in pack_end:
        idx = order[start:end]
        out.total[idx], out.count[idx] = examples.score(model._m, idx)  # _m: the core model of a GPT2
        if on_pack is not None:
            on_pack(idx, out)
        start = end
    return out


def score(model, rendered: Sequence[Rendered], max_tokens: int = DEFAULT_MAX_TOKENS,
          on_pack: Callable[[np.ndarray, Scores], None] | None = None) -> Scores:
    """Per-candidate losses of the ending tokens, for every example in ``rendered``.

    Examples are packed several to a forward (``B * T <= max_tokens``, or one example when it
    alone is larger); the packing does not change the scores. ``on_pack(indices, scores)`` is
    called after each forward (for progress). An example with a token outside the model's
    vocabulary, or an ending longer than its ``block_size``, is a ValueError naming it.

    >>> # s = score(model, render_all(load_examples(limit=10), gpt2())); s.pred_norm
    """
    examples = _eval_set(rendered)
    order, pack_end = examples.plan(model._m, max_tokens)
    return _score_packs(model, examples, order, pack_end, on_pack)


@dataclass
class Result:
    """Counts over all ranks: n examples, acc and acc_norm, and the acc_norm prediction per example."""

    n: int
    correct: int
    correct_norm: int
    predictions: list

    @property
    def acc(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def acc_norm(self) -> float:
        return self.correct_norm / self.n if self.n else 0.0

    def to_dict(self) -> dict:
        return {"n": self.n, "acc": self.acc, "acc_norm": self.acc_norm, "predictions": self.predictions}


def evaluate(model, rendered: Sequence[Rendered], *, rank: int = 0, world_size: int = 1,
             reduce: Reduce | None = None, max_tokens: int = DEFAULT_MAX_TOKENS,
             progress: bool | None = False) -> Result:
    """HellaSwag accuracy of ``model`` on ``rendered`` (all of it, split across ranks).

    This rank scores examples ``i`` with ``i % world_size == rank``; the counts and predictions
    are then summed over ranks by ``reduce`` — an all-reduce (sum) of an int64 array, e.g.
    ``llmpy.dist``'s — which every rank must call (``None`` is fine with one rank).
    ``progress``: a bar with the running accuracy (None: on a terminal).

    >>> # res = evaluate(model, render_all(load_examples(limit=500), gpt2())); res.acc_norm
    """
    from .progress import Progress

    max_tokens = integer(max_tokens, "max_tokens", min=1)
    rank, world_size = integer(rank, "rank", min=0), integer(world_size, "world_size", min=1)
    if world_size > 1 and reduce is None:
        raise ValueError("evaluate() over several ranks needs a reduce function (an all-reduce sum)")
    n = len(rendered)
    examples = _eval_set(rendered)
    # this rank's examples (the C scorer splits them and checks rank and world_size)
    mine, pack_end = examples.plan(model._m, max_tokens, rank, world_size)
    labels = np.array([r.label for r in rendered], dtype=np.int64)
    done = {"n": 0, "cn": 0}

    with Progress(total=len(mine), unit="ex", desc="hellaswag", enabled=progress) as bar:
        def on_pack(idx, s: Scores) -> None:
            done["n"] += len(idx)
            done["cn"] += int((Scores(s.total[idx], s.count[idx]).pred_norm == labels[idx]).sum())
            bar.set_description(f"hellaswag acc_norm {done['cn'] / done['n']:.4f}")
            bar.update(len(idx))

        every = _score_packs(model, examples, mine, pack_end, on_pack)
    s, labels = Scores(every.total[mine], every.count[mine]), labels[mine]

    # [n, correct, correct_norm, prediction of every example] summed over ranks: each example's
    # slot is written by exactly one rank, the others leave 0 there
    buf = np.zeros(3 + n, dtype=np.int64)
    buf[:3] = (len(mine), int((s.pred == labels).sum()), int((s.pred_norm == labels).sum()))
    buf[3 + mine] = s.pred_norm
    if reduce is not None:
        buf = np.asarray(reduce(buf), dtype=np.int64)
    if int(buf[0]) != n:
        raise RuntimeError(f"ranks scored {int(buf[0])} examples in total, expected {n}: is every rank "
                           "evaluating the same data with the same world_size?")
    return Result(n, int(buf[1]), int(buf[2]), [int(p) for p in buf[3:]])


# ----------------------------------------------------------------------------
# llm.c's eval file (for train_gpt2 --hellaswag)
#
# header: 256 int32 — [0] magic 20240522, [1] version 1, [2] number of examples,
# [3] size in bytes of the longest example. Then per example a stream of uint16:
# 65535 (start), size of this example in bytes (header fields included), example index,
# label, number of endings (4), context length, context tokens, then per ending its length
# and tokens.


def write_eval_file(path: PathArg, rendered: Sequence[Rendered]) -> Path:
    """Writes llm.c's HellaSwag eval file (magic 20240522) atomically; returns its path.

    >>> # write_eval_file("hellaswag_val.bin", render_all(load_examples(), gpt2()))
    """
    import os

    from . import formats

    path = Path(path)
    if len(rendered) >= 1 << 16:
        raise ValueError(f"the eval file holds at most 65535 examples, got {len(rendered)}")
    parts, longest = [], 0
    for i, r in enumerate(rendered):
        if r.tokens.size and (r.tokens.max() >= _START_EXAMPLE or r.tokens.min() < 0):
            raise ValueError(f"example {i}: token ids must be in [0, 65535) for the eval file")
        ctx, *ends = _pieces(r)
        fields = [np.array([_START_EXAMPLE, 0, i, r.label, len(ends), ctx.size], dtype=np.uint16),
                  ctx.astype(np.uint16)]
        for e in ends:
            fields += [np.array([e.size], dtype=np.uint16), e.astype(np.uint16)]
        ex = np.concatenate(fields)
        if ex.nbytes >= 1 << 16:
            raise ValueError(f"example {i} is {ex.nbytes} bytes, more than the eval file's 65535")
        ex[1] = ex.nbytes
        longest = max(longest, ex.nbytes)
        parts.append(ex)
    header = np.zeros(formats["HEADER_INTS"], dtype="<i4")
    header[:4] = (formats["HELLASWAG_MAGIC"], formats["HELLASWAG_VERSION"], len(rendered), longest)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        for ex in parts:
            f.write(ex.astype("<u2").tobytes())
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m llmpy.hellaswag",
        description="HellaSwag accuracy (completion style) of a GPT-2 checkpoint, or llm.c's eval file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", help="llm.c model file to evaluate (e.g. runs/<run>/ckpt_000300.bin)")
    p.add_argument("--data", default=None, help="HellaSwag jsonl (default: the validation set in the data "
                   "cache, downloaded on first use)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N examples")
    p.add_argument("--device", default="auto", type=device.arg, help=device.HELP)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    p.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS,
                   help="tokens per forward (B*T) when packing examples")
    p.add_argument("--json", action="store_true",
                   help='print {"n", "acc", "acc_norm", "predictions"} on stdout (predictions: the acc_norm '
                        "choice per example, in file order)")
    p.add_argument("--write-eval-file", metavar="OUT.bin", default=None,
                   help="write llm.c's eval file for train_gpt2 --hellaswag instead of evaluating")
    return p


def main(argv: list | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .data import DownloadError
    from .tokenizer import gpt2

    if args.checkpoint is None and args.write_eval_file is None:
        print("error: give --checkpoint MODEL.bin (or --write-eval-file OUT.bin)", file=sys.stderr)
        return 2
    flags = (("--limit", args.limit, 0), ("--threads", args.threads, 0), ("--max-tokens", args.max_tokens, 1))
    for flag, value, low in flags:
        if value is not None and value < low:
            print(f"error: {flag} must be >= {low}, got {value}", file=sys.stderr)
            return 2
    try:
        model = None
        if args.checkpoint is not None:  # a missing or damaged checkpoint fails before any download
            import llmpy

            from .model import GPT2

            if args.threads:
                llmpy.set_num_threads(args.threads)
            model = GPT2.from_checkpoint(args.checkpoint, device=args.device)
        examples = load_examples(args.data, limit=args.limit)
        rendered = render_all(examples, gpt2())
        if args.write_eval_file:
            out = write_eval_file(args.write_eval_file, rendered)
            print(f"wrote {len(rendered)} examples to {out}", file=sys.stderr)
            if model is None:
                return 0
        res = evaluate(model, rendered, max_tokens=args.max_tokens, progress=None)
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C)", file=sys.stderr)
        return 1
    except (DownloadError, OSError, ValueError, TypeError, NotImplementedError, ImportError,
            RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(res.to_dict()))
    else:
        print(f"hellaswag: {res.n} examples | acc {res.acc:.4f} ({res.correct}/{res.n}) | "
              f"acc_norm {res.acc_norm:.4f} ({res.correct_norm}/{res.n})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
