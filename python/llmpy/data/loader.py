"""Rank-aware, resumable, optionally shuffled batches of (inputs, targets) from token shards.

Semantics (``csrc/data/dataloader.c`` implements the same, batch for batch):

* The shards are the files matching ``pattern`` (a glob, a path, or a list of them), sorted
  by path. Every header and size is validated when the loader is built.
* A shard of ``n`` tokens holds ``(n - 1) // T`` *sequences*: sequence ``k`` is the window
  of ``T + 1`` tokens starting at token ``k * T``; ``x`` is its first ``T`` tokens and ``y``
  its last ``T`` (``x`` shifted by one).
* A *global batch* is ``B * world_size`` sequences; rank ``r`` takes sequences
  ``[r * B, (r + 1) * B)`` of it. So the ranks read disjoint data and, concatenated in rank
  order along the batch axis, give exactly what one process with ``B * world_size`` reads.
  A shard yields ``(n - 1) // T // (B * world_size)`` global batches; the rest is skipped.
* Without shuffling, a shard's sequences are read in order (as llm.c does) and every epoch is
  the same. With ``shuffle=True``, each epoch visits the shards in a permuted order and each
  shard's sequences in a permuted order; permutations are derived from ``(seed, epoch)``
  only (``permutation`` below), so every rank and the C loader agree.
* Iteration is endless: after the last batch of an epoch comes the first of the next.
  ``for x, y in loader`` yields the rest of the current epoch.
* The position (epoch, shard, batch) is global, identical on every rank: ``state_dict()``
  saved on rank 0 resumes every rank (``load_state_dict``), even with another
  ``world_size`` as long as ``B * world_size`` is unchanged.

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

import glob
import os
from collections.abc import Iterator, Sequence
from typing import Union

import numpy as np

from .shards import MissingShardError, ShardError, read_header, read_shard

__all__ = ["DataLoader", "expand_pattern", "permutation", "stream_seed"]

PathLike = Union[str, "os.PathLike[str]"]
Pattern = Union[PathLike, Sequence[PathLike]]

STATE_VERSION = 1

# ----------------------------------------------------------------------------
# deterministic permutations (mirrored in csrc/data/dataloader.c)

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MUL1 = 0xBF58476D1CE4E5B9
_MUL2 = 0x94D049BB133111EB


def _mix64(z: int) -> int:
    z &= _MASK
    z = ((z ^ (z >> 30)) * _MUL1) & _MASK
    z = ((z ^ (z >> 27)) * _MUL2) & _MASK
    return z ^ (z >> 31)


def stream_seed(seed: int, epoch: int, which: int) -> int:
    """64-bit seed of one random stream: ``which`` is 0 for the shard order of ``epoch`` and
    ``1 + i`` for the sequence order of shard ``i`` (index in the sorted file list)."""
    h = 0
    for v in (seed, epoch, which):
        h = _mix64((h ^ (v & _MASK)) + _GOLDEN)
    return h


def permutation(n: int, seed: int) -> np.ndarray:
    """A permutation of ``range(n)``: indices sorted by the splitmix64 outputs of ``seed``
    (stable, so equal keys keep index order). Cheap to reproduce exactly in C.

    >>> sorted(permutation(5, 42).tolist())
    [0, 1, 2, 3, 4]
    """
    i = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed & _MASK) + i * np.uint64(_GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_MUL1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_MUL2)
        z ^= z >> np.uint64(31)
    return np.argsort(z, kind="stable").astype(np.int64)


# ----------------------------------------------------------------------------
# shard files


def expand_pattern(pattern: Pattern) -> list[str]:
    """The sorted, de-duplicated files matching a glob, a path, or a list of them.

    Raises :class:`MissingShardError` naming the first pattern that matches nothing.
    """
    pats = [pattern] if isinstance(pattern, (str, os.PathLike)) else list(pattern)
    if not pats:
        raise ValueError("no shard pattern given")
    files = set()
    for p in pats:
        p = os.fspath(p)
        matches = glob.glob(p)
        if not matches:
            if glob.has_magic(p):
                raise MissingShardError(
                    f"no token shard matches {p!r}; create the shards first (python -m llmpy.data --help)"
                )
            raise MissingShardError(
                f"token shard {p} does not exist; create it first (python -m llmpy.data --help)"
            )
        files.update(matches)
    return sorted(files)


# ----------------------------------------------------------------------------
# the loader


class DataLoader:
    """Batches ``(x, y)`` of int32 arrays, shape ``(batch_size, seq_len)``, from token shards.

    Args:
        pattern: shard files: a glob such as ``".../fineweb_train_*.bin"``, a path, or a list.
        batch_size: B, sequences per batch on this rank.
        seq_len: T, tokens per sequence.
        rank, world_size: this process's slice of every global batch of ``B * world_size``.
        shuffle: permute shard order and sequence order every epoch.
        seed: seed of the permutations (ignored without shuffle).

    See the module docstring for the exact order of the data.
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
    ) -> None:
        B, T, R, W = int(batch_size), int(seq_len), int(rank), int(world_size)
        if B < 1 or T < 1:
            raise ValueError(f"batch_size and seq_len must be >= 1, got {batch_size}, {seq_len}")
        if W < 1 or not 0 <= R < W:
            raise ValueError(
                f"need world_size >= 1 and 0 <= rank < world_size, got rank {rank}, world_size {world_size}"
            )
        self.batch_size, self.seq_len, self.rank, self.world_size = B, T, R, W
        self.shuffle, self.seed = bool(shuffle), int(seed)
        self.files: list[str] = expand_pattern(pattern)
        self._ntok = [read_header(f) for f in self.files]
        self._nseq = [max(n - 1, 0) // T for n in self._ntok]
        self._nbatch = [s // (B * W) for s in self._nseq]
        if sum(self._nbatch) == 0:
            need = B * W * T + 1
            raise ShardError(
                f"no shard matching {pattern!r} holds a full batch: B*world_size*T+1 = {need} tokens are needed, "
                f"the largest of {len(self.files)} shard(s) has {max(self._ntok)}; use a smaller batch or seq_len"
            )
        self._window = np.arange(T + 1, dtype=np.int64)
        self._orders: dict[int, np.ndarray] = {}
        self._perm_key = None
        self._perm = None
        self._tokens_key = None
        self._tokens = None
        self.reset()

    # ------------------------------------------------------------------ sizes

    def __len__(self) -> int:
        """Batches per epoch (the same on every rank)."""
        return int(sum(self._nbatch))

    @property
    def batches_per_epoch(self) -> int:
        return len(self)

    @property
    def num_tokens(self) -> int:
        """Tokens in all shards."""
        return int(sum(self._ntok))

    @property
    def position(self) -> tuple[int, int, int]:
        """(epoch, shard, batch) of the next batch: ``shard`` indexes the epoch's shard order."""
        return (self.epoch, self._shard, self._batch)

    def __repr__(self) -> str:
        return (
            f"DataLoader({len(self.files)} shards, {self.num_tokens} tokens, B={self.batch_size}, T={self.seq_len}, "
            f"rank {self.rank}/{self.world_size}, shuffle={self.shuffle}, position={self.position})"
        )

    # ------------------------------------------------------------------ order

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            n = len(self.files)
            order = permutation(n, stream_seed(self.seed, epoch, 0)) if self.shuffle else np.arange(n)
            self._orders = {epoch: order}  # only the current epoch is kept
        return self._orders[epoch]

    def _sequences(self, f: int) -> np.ndarray:
        key = (self.epoch, f)
        if self._perm_key != key:
            self._perm = permutation(self._nseq[f], stream_seed(self.seed, self.epoch, f + 1))
            self._perm_key = key
        return self._perm

    def _shard_tokens(self, f: int) -> np.ndarray:
        if self._tokens_key != f:
            self._tokens = None  # unmap the previous shard first
            self._tokens = np.asarray(read_shard(self.files[f]))  # plain ndarray view of the map
            self._tokens_key = f
        return self._tokens

    def _normalize(self) -> None:
        # skip past exhausted shards (and shards too small for one batch) to the next batch
        while self._batch >= self._nbatch[int(self._order(self.epoch)[self._shard])]:
            self._batch = 0
            self._shard += 1
            if self._shard == len(self.files):
                self._shard = 0
                self.epoch += 1

    # ------------------------------------------------------------------ batches

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """The next ``(x, y)``: int32 arrays of shape (B, T), ``y`` = ``x`` shifted by one."""
        B, T = self.batch_size, self.seq_len
        f = int(self._order(self.epoch)[self._shard])
        tokens = self._shard_tokens(f)
        first = (self._batch * self.world_size + self.rank) * B  # first sequence of this rank
        if self.shuffle:
            idx = self._sequences(f)[first : first + B, None] * T + self._window
            win = tokens[idx].astype(np.int32)
            x, y = np.ascontiguousarray(win[:, :-1]), np.ascontiguousarray(win[:, 1:])
        else:
            buf = tokens[first * T : first * T + B * T + 1]
            x = buf[:-1].astype(np.int32).reshape(B, T)
            y = buf[1:].astype(np.int32).reshape(B, T)
        self._batch += 1
        self._normalize()
        return x, y

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yields the remaining batches of the current epoch."""
        epoch = self.epoch
        while self.epoch == epoch:
            yield self.next_batch()

    def reset(self, epoch: int = 0) -> None:
        """Goes to the first batch of ``epoch`` (default: the very beginning)."""
        if int(epoch) < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch, self._shard, self._batch = int(epoch), 0, 0
        self._normalize()

    # ------------------------------------------------------------------ resume

    def state_dict(self) -> dict:
        """The position and what it depends on; JSON-able, the same on every rank."""
        return {
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "shard": self._shard,
            "batch": self._batch,
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
        epoch, shard, batch = int(state["epoch"]), int(state["shard"]), int(state["batch"])
        if epoch < 0 or not 0 <= shard < len(self.files):
            raise ValueError(f"data loader state has an invalid position (epoch {epoch}, shard {shard})")
        n = self._nbatch[int(self._order(epoch)[shard])]
        if not 0 <= batch < n:
            raise ValueError(f"data loader state has batch {batch} but that shard holds {n} batches")
        self.epoch, self._shard, self._batch = epoch, shard, batch

    def close(self) -> None:
        """Unmaps the current shard (the loader reopens it when used again)."""
        self._tokens, self._tokens_key = None, None
