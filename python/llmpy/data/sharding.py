"""Documents -> GPT-2 tokens -> shards: the pipeline shared by every dataset.

Each document becomes ``[EOT] + encode_ordinary(text)`` (so special-token strings inside a
document stay ordinary text). Documents are tokenized in batches by a process pool (default:
one worker per core; ``workers=0`` tokenizes in this process), at most a few batches ahead
of the writer, so a streamed dataset is never pulled into memory. The token stream is cut
into shards: the first holds ``val_tokens`` tokens (the val split), the next ones
``shard_size`` tokens each (the train split); documents may straddle shard boundaries, as
in llm.c.

Resumable: after each shard, ``<prefix>.manifest.json`` records the shard and the position
in the document stream where the next shard starts. A re-run with the same source and sizes
skips every complete shard (header and size checked) and restarts at the first missing or
damaged one, without tokenizing the documents before it. Shards are written atomically
(temp file + rename), so an interrupted run never leaves a half-written shard.

>>> import tempfile
>>> spec = ShardSpec(tempfile.mkdtemp(), "demo", val_tokens=4, shard_size=8)
>>> res = write_shards(["Hello world", "Goodbye world"] * 3, spec, workers=0, progress=False)
>>> [p.name for p in res.files]
['demo_val_000000.bin', 'demo_train_000001.bin', 'demo_train_000002.bin', 'demo_train_000003.bin']
>>> res.tokens  # 6 documents of 3 and 4 tokens (EOT included): 21 tokens
[4, 8, 8, 1]
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import re
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

import numpy as np

from ..progress import Progress
from .shards import MAX_TOKEN, MAX_TOKENS, TOKEN_DTYPE, atomic_write_bytes, is_complete, write_shard

__all__ = ["ShardResult", "ShardSpec", "default_workers", "encode_documents", "write_shards"]

MANIFEST_FORMAT = 1

#: Documents: an iterable of strings, or a function ``f(start)`` returning the documents from
#: index ``start`` on (lets a source skip cheaply when a run resumes).
Documents = Union[Iterable[str], Callable[[int], Iterable[str]]]


# ----------------------------------------------------------------------------
# what to write


@dataclass
class ShardSpec:
    """Where the shards go and how big they are.

    Args:
        out_dir: folder of the shards (created).
        prefix: file-name prefix, e.g. ``fineweb`` -> ``fineweb_val_000000.bin``,
            ``fineweb_train_000001.bin``, ...
        val_tokens: tokens in the first shard (the val split).
        shard_size: tokens in each train shard; None puts the whole train split in one shard.
        numbered: False names the two shards ``<prefix>_val.bin`` / ``<prefix>_train.bin``
            (llm.c's tiny Shakespeare names; needs ``shard_size=None``).
    """

    out_dir: str | Path
    prefix: str
    val_tokens: int
    shard_size: int | None = None
    numbered: bool = True

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.prefix):
            raise ValueError(f"shard prefix must be a plain file-name part, got {self.prefix!r}")
        for what, n in (("val_tokens", self.val_tokens), ("shard_size", self.shard_size)):
            if n is not None and not 1 <= int(n) <= MAX_TOKENS:
                raise ValueError(f"{what} must be in [1, {MAX_TOKENS}] (an int32 header field), got {n}")
        if not self.numbered and self.shard_size is not None:
            raise ValueError("unnumbered shard names need shard_size=None (one val and one train shard)")

    def name(self, index: int) -> str:
        """File name of shard ``index`` (0 is the val shard)."""
        split = "val" if index == 0 else "train"
        return f"{self.prefix}_{split}_{index:06d}.bin" if self.numbered else f"{self.prefix}_{split}.bin"

    def capacity(self, index: int) -> int | None:
        return self.val_tokens if index == 0 else self.shard_size

    def is_own_shard(self, name: str) -> bool:
        """True for file names this spec produces (used to remove stale shards of earlier runs)."""
        if self.numbered:
            return re.fullmatch(re.escape(self.prefix) + r"_(val|train)_\d{6}\.bin", name) is not None
        return name in (f"{self.prefix}_val.bin", f"{self.prefix}_train.bin")

    @property
    def manifest(self) -> Path:
        return Path(self.out_dir) / f"{self.prefix}.manifest.json"


@dataclass
class ShardResult:
    """What :func:`write_shards` produced: all shards of the dataset, in order."""

    files: list[Path] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)  # per shard
    skipped: list[Path] = field(default_factory=list)  # complete shards kept from an earlier run
    tokens_written: int = 0  # by this run
    documents_tokenized: int = 0  # by this run
    seconds: float = 0.0

    @property
    def total_tokens(self) -> int:
        return int(sum(self.tokens))


# ----------------------------------------------------------------------------
# tokenization (runs in worker processes)

_ENCODER = None  # per process: each worker loads the tokenizer once, on its first batch


def _encoder():
    global _ENCODER
    if _ENCODER is None:
        from ..tokenizer import gpt2

        _ENCODER = gpt2()
    return _ENCODER


def _encode_batch(docs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Tokens of ``[EOT] + encode_ordinary(doc)`` for each doc, concatenated, and each
    document's token count.

    Fast path: the documents are joined with the EOT text and encoded in one call with EOT
    allowed; tiktoken encodes the text between special tokens exactly as ``encode_ordinary``
    would, so the result is identical while the per-call overhead is paid once per batch.
    Documents that themselves contain the EOT text are encoded on their own (ordinary text).
    """
    enc = _encoder()
    eot = enc.eot_token
    special = enc.decode_single_token_bytes(eot).decode("utf-8")
    parts: list[np.ndarray] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            text = special + special.join(run)
            if hasattr(enc, "encode_to_numpy"):
                toks = enc.encode_to_numpy(text, allowed_special={special}, disallowed_special=())
            else:  # older tiktoken
                toks = np.array(enc.encode(text, allowed_special={special}, disallowed_special=()))
            parts.append(toks.astype(TOKEN_DTYPE))
            run.clear()

    for doc in docs:
        if not isinstance(doc, str):
            raise TypeError(f"documents must be str, got {type(doc).__name__}")
        if special in doc:
            flush()
            parts.append(np.array([eot, *enc.encode_ordinary(doc)], dtype=TOKEN_DTYPE))
        else:
            run.append(doc)
    flush()
    tokens = np.concatenate(parts) if parts else np.zeros(0, dtype=TOKEN_DTYPE)
    starts = np.flatnonzero(tokens == eot)  # encode_ordinary never yields EOT: one per document
    if starts.size != len(docs):
        raise RuntimeError(f"tokenizer returned {starts.size} EOT tokens for {len(docs)} documents")
    return tokens, np.diff(np.append(starts, tokens.size))


def _batches(docs: Iterable[str], batch_chars: int, max_docs: int = 65536) -> Iterator[list[str]]:
    """Groups documents into lists of about ``batch_chars`` characters. The grouping runs at C
    speed (``islice``, ``sum(map(len, ...))``): the parent process must stay nearly idle so
    the workers have the cores."""
    it = iter(docs)
    n = 64
    while True:
        batch = list(itertools.islice(it, n))
        if not batch:
            return
        try:
            chars = sum(map(len, batch))
        except TypeError:
            bad = next(d for d in batch if not isinstance(d, str))
            raise TypeError(f"documents must be str, got {type(bad).__name__}") from None
        yield batch
        n = max(1, min(max_docs, 4 * n, n * batch_chars // max(chars, 1)))


def default_workers() -> int:
    """Number of cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _context(name: str | None):
    """The start method of the tokenizer processes: ``forkserver`` by default where it exists
    (``fork`` is unsafe once the parent has threads, and numpy's BLAS or torch always start
    some), else ``spawn``. The fork server preloads this module, so workers start warm."""
    if name is None:
        name = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(name)
    if name == "forkserver":
        ctx.set_forkserver_preload([__name__])  # takes effect when the server first starts
    return ctx


def encode_documents(
    docs: Iterable[str],
    workers: int | None = None,
    *,
    batch_chars: int = 1 << 18,
    mp_context: str | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Tokenizes documents in order: yields ``(tokens, lengths)`` per batch of documents.

    ``tokens`` (uint16) concatenates ``[EOT] + encode_ordinary(doc)`` of each document of
    the batch; ``lengths`` holds each document's token count (EOT included). ``workers``
    processes tokenize (None: one per core; 0: this process). At most ``2 * workers + 2``
    batches are in flight, so an endless stream is fine.

    >>> toks, lens = next(encode_documents(["Hello world"], workers=0))
    >>> toks.tolist(), lens.tolist()
    ([50256, 15496, 995], [3])
    """
    enc = _encoder()  # fails here, in the parent, with an actionable error when unavailable
    if enc.n_vocab > MAX_TOKEN + 1:
        raise ValueError(f"vocabulary of {enc.n_vocab} tokens does not fit the uint16 shard format")
    workers = default_workers() if workers is None else int(workers)
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    batches = _batches(docs, batch_chars)
    if workers == 0:
        for b in batches:
            yield _encode_batch(b)
        return
    window = 2 * workers + 2
    # ProcessPoolExecutor, not Pool: a worker that cannot start raises BrokenProcessPool
    # instead of being respawned forever
    with ProcessPoolExecutor(workers, mp_context=_context(mp_context)) as pool:
        pending: deque = deque()
        try:
            for b in batches:
                pending.append(pool.submit(_encode_batch, b))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()


# ----------------------------------------------------------------------------
# the manifest (resume)


def _read_manifest(spec: ShardSpec, key: dict) -> dict | None:
    try:
        with open(spec.manifest) as f:
            m = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(m, dict) or m.get("key") != key:
        return None
    if len(m.get("starts", ())) != len(m.get("shards", ())) + 1:
        return None
    return m


def _write_manifest(spec: ShardSpec, m: dict) -> None:
    atomic_write_bytes(spec.manifest, json.dumps(m, indent=1).encode(), fsync=False)


# ----------------------------------------------------------------------------
# the writer


def write_shards(
    documents: Documents,
    spec: ShardSpec,
    *,
    source: dict | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    total_tokens: int | None = None,
    desc: str = "tokenizing",
    batch_chars: int = 1 << 18,
    mp_context: str | None = None,
) -> ShardResult:
    """Tokenizes ``documents`` and writes them as shards per ``spec``; resumes earlier runs.

    Args:
        documents: the documents in a fixed order (see :data:`Documents`).
        spec: output folder, names and shard sizes.
        source: JSON-able description of the input (paths, sizes, dataset name); a manifest
            from a run with another source or spec is ignored and everything is rewritten.
        workers: tokenizer processes (None: one per core; 0: in this process).
        progress: progress bar in tokens (None: only on a terminal).
        total_tokens: expected total, for the bar's percentage (optional).

    Example: see the module docstring.
    """
    t0 = time.monotonic()
    out_dir = Path(spec.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(f".{spec.prefix}_*.tmp"):  # temp files of a killed run
        stale.unlink(missing_ok=True)
    eot = _encoder().eot_token
    key = {
        "format": MANIFEST_FORMAT,
        "source": source,
        "tokenizer": "gpt2",
        "eot": eot,
        "val_tokens": spec.val_tokens,
        "shard_size": spec.shard_size,
        "numbered": spec.numbered,
    }

    # where to start: after the complete shards an earlier run recorded
    res = ShardResult()
    manifest = _read_manifest(spec, key)
    if manifest is None:
        manifest = {"key": key, "shards": [], "starts": [[0, 0]], "complete": False}
    shards = manifest["shards"]
    k = 0
    while (
        k < len(shards)
        and shards[k]["name"] == spec.name(k)
        and is_complete(out_dir / shards[k]["name"], shards[k]["tokens"])
    ):
        k += 1
    for s in shards[:k]:
        res.files.append(out_dir / s["name"])
        res.tokens.append(int(s["tokens"]))
        res.skipped.append(out_dir / s["name"])
    if manifest["complete"] and k == len(shards):
        res.seconds = time.monotonic() - t0
        return res
    del shards[k:]
    del manifest["starts"][k + 1 :]
    manifest["complete"] = False
    start_doc, skip_tokens = manifest["starts"][k]

    if callable(documents):
        docs = iter(documents(start_doc))
    else:
        docs = itertools.islice(iter(documents), start_doc, None)

    index = k
    parts: list[np.ndarray] = []
    fill = 0
    doc_base = start_doc

    def flush(next_start: list[int]) -> None:
        nonlocal index, parts, fill
        name = spec.name(index)
        tokens = np.concatenate(parts) if parts else np.zeros(0, dtype=TOKEN_DTYPE)
        write_shard(out_dir / name, tokens)
        shards.append({"name": name, "tokens": int(tokens.size)})
        manifest["starts"].append(next_start)
        _write_manifest(spec, manifest)
        res.files.append(out_dir / name)
        res.tokens.append(int(tokens.size))
        res.tokens_written += int(tokens.size)
        index, parts, fill = index + 1, [], 0

    try:
        with Progress(total_tokens, unit="tok", desc=desc, enabled=progress) as bar:
            bar.update(sum(res.tokens))
            for tokens, lengths in encode_documents(
                docs, workers, batch_chars=batch_chars, mp_context=mp_context
            ):
                res.documents_tokenized += len(lengths)
                ends = np.cumsum(lengths)
                pos = skip_tokens  # position inside this batch's tokens
                skip_tokens = 0
                while pos < tokens.size:
                    cap = spec.capacity(index)
                    take = tokens.size - pos if cap is None else min(cap - fill, tokens.size - pos)
                    parts.append(tokens[pos : pos + take])
                    fill += take
                    pos += take
                    bar.update(take)
                    if cap is not None and fill == cap:
                        j = int(np.searchsorted(ends, pos, side="right"))  # document holding token `pos`
                        flush([doc_base + j, pos - (int(ends[j - 1]) if j else 0)])
                doc_base += len(lengths)
            if fill:
                flush([doc_base, 0])
            elif index == 0:
                raise ValueError("no documents to tokenize: the source is empty")
    except ValueError:
        # the input itself is wrong (not UTF-8, a missing field, empty): it must change before a
        # re-run, which then starts over, so the shards of this run are of no use and would
        # pass for a dataset; interruptions (Ctrl-C, the network) keep them for the re-run
        for path in res.files[k:]:
            path.unlink(missing_ok=True)
        del shards[k:]
        del manifest["starts"][k + 1 :]
        _write_manifest(spec, manifest)
        raise

    manifest["complete"] = True
    _write_manifest(spec, manifest)
    keep = {p.name for p in res.files}
    for p in out_dir.iterdir():  # shards of an earlier, longer run with this prefix
        if spec.is_own_shard(p.name) and p.name not in keep:
            p.unlink()
    res.seconds = time.monotonic() - t0
    return res
