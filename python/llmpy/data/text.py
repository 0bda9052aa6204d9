"""The user's own corpora (txt, jsonl, parquet) -> GPT-2 token shards.

    python -m llmpy.data text books/*.txt --txt-split blank-lines --shard-size 10000000
    python -m llmpy.data text crawl.jsonl --jsonl-field content
    python -m llmpy.data text part-*.parquet --parquet-column text --out-dir shards/

Documents, in file order:
  * ``.txt`` / ``.md``: the whole file is one document (``--txt-split file``), or one
    document per blank-line-separated block (``blank-lines``, as tiny Shakespeare), or per line;
  * ``.jsonl`` / ``.json`` (one JSON object per line, optionally ``.gz``): the field
    ``--jsonl-field`` of each object;
  * ``.parquet``: the column ``--parquet-column`` of each row (needs ``pyarrow``); null values
    are skipped.

Text files must be UTF-8: a file that is not raises ``llmpy.textfile.NotUTF8Error`` naming it,
the byte offset and line of the first bad byte, and how to convert it.

Sharding is the same as FineWeb's: EOT before every document, the first shard is the val
split, then train shards of ``--shard-size`` tokens. By default the shards go next to the
first input file, named after it (``corpus.jsonl`` -> ``corpus_val_000000.bin``, ...).

>>> split_blank_lines("a\\n\\nb\\n\\n\\nc")
['a\\n\\n', 'b\\n\\n', '\\nc']
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Union

from ..textfile import not_utf8
from .sharding import ShardResult, ShardSpec, write_shards

__all__ = ["TXT_SPLITS", "iter_documents", "prepare", "split_blank_lines"]

PathLike = Union[str, "os.PathLike[str]"]
TXT_SPLITS = ("file", "blank-lines", "lines")


def split_blank_lines(text: str) -> list[str]:
    """Splits at each blank line (``"\\n\\n"``), keeping the separator at the end of every
    block but the last, so ``"".join(split_blank_lines(t)) == t`` (llm.c's tiny Shakespeare)."""
    blocks = text.split("\n\n")
    return [b + "\n\n" for b in blocks[:-1]] + [blocks[-1]]


def _kind(path: Path) -> str:
    name = path.name.lower()
    name = name.removesuffix(".gz")
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    return "txt"


def _open_text(path: Path):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _jsonl(path: Path, field: str) -> Iterator[str]:
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: not a JSON object ({e})") from e
            if not isinstance(obj, dict) or field not in obj:
                have = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
                raise ValueError(
                    f"{path}:{lineno}: no field {field!r} (found {have}); choose one with --jsonl-field"
                )
            value = obj[field]
            if value is None:
                continue
            if not isinstance(value, str):
                raise TypeError(f"{path}:{lineno}: field {field!r} holds {type(value).__name__}, not text")
            yield value


def _parquet(path: Path, column: str) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError("reading parquet needs pyarrow: pip install pyarrow (or llmpy[data])") from e
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    if column not in names:
        raise ValueError(f"{path}: no column {column!r} (columns: {names}); choose one with --parquet-column")
    for batch in pf.iter_batches(columns=[column], batch_size=4096):
        for value in batch.column(0).to_pylist():
            if value is not None:
                yield value


def _txt(path: Path, split: str) -> Iterator[str]:
    with _open_text(path) as f:
        if split == "lines":
            yield from f
            return
        text = f.read()
    if split == "file":
        yield text
    else:
        yield from split_blank_lines(text)


def iter_documents(
    paths: Sequence[PathLike],
    *,
    jsonl_field: str = "text",
    parquet_column: str = "text",
    txt_split: str = "file",
) -> Iterator[str]:
    """The documents of ``paths`` in order (see the module docstring for the rules per type).

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.jsonl")
    >>> _ = open(p, "w").write('{"text": "one"}\\n{"text": "two"}\\n')
    >>> list(iter_documents([p]))
    ['one', 'two']
    """
    if txt_split not in TXT_SPLITS:
        raise ValueError(f"txt_split must be one of {TXT_SPLITS}, got {txt_split!r}")
    return _documents([Path(p) for p in paths], jsonl_field, parquet_column, txt_split)


def _documents(paths: list[Path], jsonl_field: str, parquet_column: str, txt_split: str) -> Iterator[str]:
    for p in paths:
        kind = _kind(p)
        try:
            if kind == "jsonl":
                yield from _jsonl(p, jsonl_field)
            elif kind == "parquet":
                yield from _parquet(p, parquet_column)
            else:
                yield from _txt(p, txt_split)
        except UnicodeDecodeError:  # Python's names no file and a buffer's offset: ours names both
            raise not_utf8(p) from None


def prepare(
    paths: Sequence[PathLike],
    *,
    out_dir: PathLike | None = None,
    name: str | None = None,
    shard_size: int = 10**8,
    val_tokens: int | None = None,
    jsonl_field: str = "text",
    parquet_column: str = "text",
    txt_split: str = "file",
    workers: int | None = None,
    progress: bool | None = None,
    mp_context: str | None = None,
) -> ShardResult:
    """Shards the documents of ``paths``; returns the shards (val first).

    ``val_tokens`` defaults to ``shard_size`` (the first shard is the val split). A re-run
    with unchanged inputs skips the complete shards.

    Example::

        res = prepare(["corpus.jsonl"], shard_size=10_000_000, val_tokens=1_000_000)
        res.files  # [corpus_val_000000.bin, corpus_train_000001.bin, ...]
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no input files given")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"input file {p} does not exist")
    if name is None:
        stem = paths[0].name.split(".")[0]
        name = re.sub(r"[^A-Za-z0-9_.\-]", "_", stem) or "text"
    spec = ShardSpec(
        out_dir if out_dir is not None else paths[0].resolve().parent,
        name,
        val_tokens=shard_size if val_tokens is None else val_tokens,
        shard_size=shard_size,
    )
    source = {
        "kind": "text",
        "files": [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in paths],
        "jsonl_field": jsonl_field,
        "parquet_column": parquet_column,
        "txt_split": txt_split,
    }
    docs = iter_documents(paths, jsonl_field=jsonl_field, parquet_column=parquet_column, txt_split=txt_split)
    return write_shards(
        docs,
        spec,
        source=source,
        workers=workers,
        progress=progress,
        mp_context=mp_context,
        desc=f"tokenizing {name}",
    )
