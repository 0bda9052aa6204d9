"""Token shard files (llm.c format): read, validate and write them atomically.

Layout (constants from ``csrc/core/formats.h`` through ``llmpy.formats``, never retyped)::

    header   256 x int32 little-endian: [0] SHARD_MAGIC, [1] SHARD_VERSION, [2] token count
    payload  token count x uint16 little-endian

Every reader validates the header against the file size, so a truncated or foreign file is
reported by name instead of yielding garbage tokens.

>>> import tempfile, os, numpy as np
>>> path = os.path.join(tempfile.mkdtemp(), "demo_val_000000.bin")
>>> write_shard(path, [50256, 15496, 995])
3
>>> read_shard(path).tolist()
[50256, 15496, 995]
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Union

import numpy as np

from .. import _C, formats

__all__ = [
    "HEADER_BYTES",
    "HEADER_INTS",
    "SHARD_MAGIC",
    "SHARD_VERSION",
    "TOKEN_DTYPE",
    "MissingShardError",
    "ShardError",
    "atomic_write_bytes",
    "read_header",
    "read_shard",
    "write_shard",
]

PathLike = Union[str, "os.PathLike[str]"]

HEADER_INTS: int = formats["HEADER_INTS"]
SHARD_MAGIC: int = formats["SHARD_MAGIC"]
SHARD_VERSION: int = formats["SHARD_VERSION"]
HEADER_BYTES: int = HEADER_INTS * 4
TOKEN_DTYPE = np.dtype("<u2")
MAX_TOKEN = int(np.iinfo(TOKEN_DTYPE).max)
MAX_TOKENS = int(np.iinfo(np.int32).max)  # the count is an int32 in the header


class ShardError(ValueError):
    """A token shard is missing, truncated or corrupt; the message names the file."""


class MissingShardError(ShardError, FileNotFoundError):
    """A token shard (or a pattern for shards) does not exist."""


# ----------------------------------------------------------------------------
# reading


def read_header(path: PathLike) -> int:
    """Validates a shard's header against its size and returns its token count.

    The check is the C one (``llm_shard_read_header`` in ``csrc/data/dataloader.c``), which the
    data loader runs on every shard. Raises :class:`MissingShardError` when the file does not
    exist and :class:`ShardError` for a directory, a wrong magic number or version, a truncated
    file, or a header/size mismatch; the message names the file and says what to do.

    >>> read_header("missing.bin")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    llmpy.data.shards.MissingShardError: token shard missing.bin does not exist; ...
    """
    return _C.data.read_header(os.fspath(path))


def read_shard(path: PathLike, mmap: bool = True) -> np.ndarray:
    """The validated tokens of a shard as uint16: a read-only memory map (or a copy).

    This is the numpy view of a shard file (for tools and tests); training reads shards through
    the C loader (:class:`~llmpy.data.DataLoader`).

    >>> read_shard("missing.bin")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    llmpy.data.shards.MissingShardError: token shard missing.bin does not exist; ...
    """
    ntok = read_header(path)
    if ntok == 0:
        return np.zeros(0, dtype=TOKEN_DTYPE)
    if mmap:
        return np.memmap(path, dtype=TOKEN_DTYPE, mode="r", offset=HEADER_BYTES, shape=(ntok,))
    with open(path, "rb") as f:
        f.seek(HEADER_BYTES)
        return np.fromfile(f, dtype=TOKEN_DTYPE, count=ntok)


# ----------------------------------------------------------------------------
# writing


def atomic_write_bytes(path: PathLike, *chunks, fsync: bool = True) -> None:
    """Writes ``chunks`` (bytes or contiguous arrays, raw) to ``path`` via a temp file in the same folder + rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL on a unique name; mode 0o666 so the umask decides, as for any new file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            for c in chunks:
                f.write(c)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def make_header(ntok: int) -> np.ndarray:
    """The 256 x int32 header of a shard holding ``ntok`` tokens."""
    if not 0 <= ntok <= MAX_TOKENS:
        raise ValueError(f"a shard holds at most {MAX_TOKENS} tokens, got {ntok}")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, ntok
    return header


def write_shard(path: PathLike, tokens, *, fsync: bool = True) -> int:
    """Writes ``tokens`` (ints in [0, 65535]) as a shard, atomically; returns the token count."""
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError(f"tokens must be 1-D, got shape {arr.shape}")
    if arr.dtype != TOKEN_DTYPE:
        if arr.size and (arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer)):
            raise TypeError(f"tokens must be integer ids, got dtype {arr.dtype} (a float would be truncated)")
        if arr.size and (arr.min() < 0 or arr.max() > MAX_TOKEN):
            raise ValueError(
                f"token ids must lie in [0, {MAX_TOKEN}] to fit uint16, got [{arr.min()}, {arr.max()}]"
            )
        arr = arr.astype(TOKEN_DTYPE)
    atomic_write_bytes(path, make_header(arr.size), np.ascontiguousarray(arr), fsync=fsync)
    return int(arr.size)


def is_complete(path: PathLike, ntok: int | None = None) -> bool:
    """True when ``path`` is a valid shard (with exactly ``ntok`` tokens, when given)."""
    try:
        n = read_header(path)
    except ShardError:
        return False
    return ntok is None or n == ntok
