"""Rank-aware, resumable, optionally shuffled batches of (inputs, targets) from token shards.

The loader is the C one (``csrc/data/dataloader.c``, bound as ``llmpy._C.data.DataLoader``),
shared with the ``train_gpt2`` binary; ``csrc/data/dataloader.h`` is the reference for its
semantics. In short:

* The shards are the files matching ``pattern`` (a glob, a path, or a list of them), sorted
  by path; every header and size is validated when the loader is built.
* A shard of ``n`` tokens holds ``(n - 1) // T`` sequences of ``T + 1`` tokens (sequence ``k``
  starts at token ``k * T``; ``x`` is its first ``T`` tokens, ``y`` its last ``T``).
* A global batch is ``B * world_size`` sequences; rank ``r`` takes rows ``[r * B, (r + 1) * B)``
  of it, so the ranks together read what one process with ``B * world_size`` reads.
  A shard yields ``(n - 1) // T // (B * world_size)`` global batches; the rest is skipped.
* Without shuffling a shard is read in order (as llm.c does); with ``shuffle=True`` every
  epoch permutes the shard order and each shard's sequences, from ``(seed, epoch)`` only
  (:func:`permutation`, :func:`stream_seed`).
* Iteration is endless (``for x, y in loader`` yields the rest of the current epoch), and the
  position is global: ``state_dict()`` of rank 0 resumes every rank, even with another
  ``world_size`` as long as ``B * world_size`` is unchanged.

What stays here is the Python face: argument conversion and the checkpoint dictionary
(``state_dict``/``load_state_dict``).

>>> import tempfile, os, numpy as np
>>> from llmpy.data.shards import write_shard
>>> d = tempfile.mkdtemp()
>>> _ = write_shard(os.path.join(d, "toy_train_000001.bin"), np.arange(17))
>>> loader = DataLoader(os.path.join(d, "toy_train_*.bin"), batch_size=2, seq_len=4)
>>> x, y = loader.next_batch()
>>> x.tolist(), y.tolist()
([[0, 1, 2, 3], [4, 5, 6, 7]], [[1, 2, 3, 4], [5, 6, 7, 8]])
>>> len(loader)  # 16 // 4 = 4 sequences = 2 batches of 2
2
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Union

import numpy as np

from .. import _C
from ..checks import integer

__all__ = ["DataLoader", "permutation", "stream_seed"]

PathLike = Union[str, "os.PathLike[str]"]
Pattern = Union[PathLike, Sequence[PathLike]]

STATE_VERSION = 1

_MASK = (1 << 64) - 1  # seeds are uint64 in C; Python ints are taken modulo 2**64
_INT_MAX = 2**31 - 1  # sizes are C ints


def _c_int(value, name: str) -> int:
    """An integer that fits a C int (TypeError/ValueError naming it, not a pybind11 listing)."""
    return integer(value, name, min=-_INT_MAX - 1, max=_INT_MAX)


def _patterns(pattern: Pattern) -> list[str]:
    """The shard patterns as strings: one path or glob, or a non-empty sequence of them."""
    if isinstance(pattern, (str, os.PathLike)):
        pats = [pattern]
    elif isinstance(pattern, Iterable) and not isinstance(pattern, (bytes, dict)):
        pats = list(pattern)
    else:
        raise TypeError(f"pattern must be a path, a glob or a list of them, got {type(pattern).__name__}")
    if not pats:
        raise ValueError("no shard pattern given (an empty list)")
    out = []
    for p in pats:
        if not isinstance(p, (str, os.PathLike)):
            raise TypeError(f"shard pattern {p!r} is a {type(p).__name__}, not a path or glob string")
        out.append(os.fspath(p))
    return out


def stream_seed(seed: int, epoch: int, which: int) -> int:
    """64-bit seed of one random stream: ``which`` is 0 for the shard order of ``epoch`` and
    ``1 + i`` for the sequence order of shard ``i`` (index in the sorted file list).

    >>> stream_seed(1, 0, 0) == stream_seed(1 + 2**64, 0, 0)
    True
    """
    return _C.data.stream_seed(int(seed) & _MASK, int(epoch) & _MASK, int(which) & _MASK)


def permutation(n: int, seed: int) -> np.ndarray:
    """A permutation of ``range(n)`` (int64): indices sorted by the first ``n`` outputs of
    splitmix64 started at ``seed`` (stable, so equal keys keep index order).

    >>> sorted(permutation(5, 42).tolist())
    [0, 1, 2, 3, 4]
    """
    return _C.data.permutation(int(n), int(seed) & _MASK)


class DataLoader:
    """Batches ``(x, y)`` of int32 arrays, shape ``(batch_size, seq_len)``, from token shards.

    Args:
        pattern: shard files: a glob such as ``".../fineweb_train_*.bin"``, a path, or a list.
        batch_size: B, sequences per batch on this rank.
        seq_len: T, tokens per sequence.
        rank, world_size: this process's slice of every global batch of ``B * world_size``.
        shuffle: permute shard order and sequence order every epoch.
        seed: seed of the permutations (ignored without shuffle); any int, used modulo 2**64.
        vocab_size: when given (the model's ``config.vocab_size``), every token id handed out
            must be below it: a shard token at or above it raises ShardError naming the shard and
            the token's offset in it (the model, which sees only the batch, could not). Settable
            later: ``loader.vocab_size = model.config.vocab_size``.

    Raises :class:`~llmpy.data.shards.MissingShardError` for a pattern that matches nothing,
    :class:`~llmpy.data.shards.ShardError` for a corrupt shard, shards too small for one
    batch or a token outside ``vocab_size``, ``TypeError``/``ValueError`` for bad arguments.
    See the module docstring for the order of the data.
    """

    def __init__(
        self,
        pattern: Pattern,
        batch_size: int,
        seq_len: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = False,
        seed: int = 0,
        vocab_size: int | None = None,
    ) -> None:
        pats = _patterns(pattern)
        # types here, ranges in the core (dataloader.c), which names them
        self.batch_size, self.seq_len = _c_int(batch_size, "batch_size"), _c_int(seq_len, "seq_len")
        self.rank, self.world_size = _c_int(rank, "rank"), _c_int(world_size, "world_size")
        self.shuffle, self.seed = bool(shuffle), integer(seed, "seed")
        vocab = 0 if vocab_size is None else integer(vocab_size, "vocab_size", min=1, max=_INT_MAX)
        self._dl = _C.data.DataLoader(
            pats, self.batch_size, self.seq_len, rank=self.rank,
            world_size=self.world_size, shuffle=self.shuffle, seed=self.seed & _MASK, vocab_size=vocab,
        )
        self.files: list[str] = self._dl.files
        self.file_tokens: list[int] = self._dl.file_tokens

    @property
    def vocab_size(self) -> int | None:
        """Token ids handed out are below it (None: not checked); see the class docstring."""
        return self._dl.vocab_size or None

    @vocab_size.setter
    def vocab_size(self, value: int | None) -> None:
        self._dl.vocab_size = 0 if value is None else integer(value, "vocab_size", min=1, max=_INT_MAX)

    # ------------------------------------------------------------------ sizes

    def __len__(self) -> int:
        """Batches per epoch (the same on every rank)."""
        return self._dl.batches_per_epoch

    @property
    def batches_per_epoch(self) -> int:
        return self._dl.batches_per_epoch

    @property
    def num_tokens(self) -> int:
        """Tokens in all shards."""
        return self._dl.num_tokens

    @property
    def position(self) -> tuple[int, int, int]:
        """(epoch, shard, batch) of the next batch: ``shard`` indexes the epoch's shard order."""
        return self._dl.position

    @property
    def epoch(self) -> int:
        """Epoch of the next batch."""
        return self._dl.position[0]

    def __repr__(self) -> str:
        return (
            f"DataLoader({len(self.files)} shards, {self.num_tokens} tokens, B={self.batch_size}, T={self.seq_len}, "
            f"rank {self.rank}/{self.world_size}, shuffle={self.shuffle}, position={self.position})"
        )

    # ------------------------------------------------------------------ batches

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """The next ``(x, y)``: int32 arrays of shape (B, T), ``y`` = ``x`` shifted by one."""
        return self._dl.next_batch()

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yields the remaining batches of the current epoch."""
        epoch = self.epoch
        while self.epoch == epoch:
            yield self._dl.next_batch()

    def reset(self, epoch: int = 0) -> None:
        """Goes to the first batch of ``epoch`` (default: the very beginning)."""
        self._dl.reset(integer(epoch, "epoch", min=0))

    # ------------------------------------------------------------------ resume

    def state_dict(self) -> dict:
        """The position and what it depends on; JSON-able, the same on every rank."""
        epoch, shard, batch = self.position
        return {
            "version": STATE_VERSION,
            "epoch": epoch,
            "shard": shard,
            "batch": batch,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "seq_len": self.seq_len,
            "global_batch": self.batch_size * self.world_size,
            "files": [os.path.basename(f) for f in self.files],
        }

    def load_state_dict(self, state: dict) -> None:
        """Continues exactly where the loader that produced ``state`` stopped."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"data loader state has version {state.get('version')}, expected {STATE_VERSION}"
            )
        mine = self.state_dict()
        for k in ("seq_len", "global_batch", "shuffle", "seed"):
            if state.get(k) != mine[k]:
                raise ValueError(
                    f"cannot resume: the saved data loader had {k}={state.get(k)!r}, this one has {mine[k]!r}"
                )
        if state.get("files") != mine["files"]:
            raise ValueError(
                f"cannot resume: the shards changed since the state was saved ({len(state.get('files') or [])} "
                f"saved, {len(mine['files'])} now; first saved: {(state.get('files') or ['-'])[0]})"
            )
        self._dl.position = (int(state["epoch"]), int(state["shard"]), int(state["batch"]))

    def close(self) -> None:
        """Closes the current shard (the loader reopens it when used again)."""
        self._dl.release_shard()
