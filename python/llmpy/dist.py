"""Data-parallel training across processes: which rank this is, metrics over ranks, shutdown.

Processes are started by an MPI launcher; a single process needs nothing::

    mpirun -np 4 python -m llmpy.train --batch-size 16 ...        # 4 ranks, one machine
    mpirun -np 2 train_gpt2 --init-from model.bin --data ...       # the compiled binary

Every rank holds the whole model, reads its own slice of each global batch (``DataLoader(...,
rank=dist.rank, world_size=dist.world_size)``) and, after ``model.distribute()``, ``model.step()``
averages the gradients over the ranks before AdamW (or shards AdamW with ZeRO-1). Only rank 0
should print and write files (``dist.is_main``).

The process group is joined on first use (``init()``, or reading ``rank`` etc.): importing this
module does nothing. ``rank``, ``world_size``, ``local_rank`` (index on this machine: the GPU to
use), ``local_size`` and ``is_main`` are read as module attributes:

>>> from llmpy import dist
>>> dist.rank, dist.world_size, dist.is_main      # a single process
(0, 1, True)
>>> dist.all_reduce_mean(2.5)                     # the mean over the ranks
2.5

Failure behaviour, with several ranks: an uncaught exception on any rank prints its traceback
and aborts the whole job (MPI_Abort), so the others never wait forever in a collective; a
collective waits at most ``LLMPY_DIST_TIMEOUT`` seconds (default 90) for the other ranks — a rank
that is stopped, stuck or dead — then raises RuntimeError naming this rank and the collective,
which aborts the job; a rank that exits cleanly waits at most ``LLMPY_DIST_SHUTDOWN_TIMEOUT``
seconds (default 30) for the others at shutdown, then aborts the job. A build without MPI that is launched with several
ranks raises ``NotImplementedError`` from ``init()``.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from typing import Any, Optional

from . import _C

__all__ = ["abort", "all_reduce_mean", "all_reduce_sum", "barrier", "broadcast_object", "finalize", "init",
           "launched_local_rank"]

_info: Optional[dict] = None
_finalized = False


def init() -> dict:
    """Joins the process group the launcher started (idempotent) and returns it as a dict
    ``{rank, world_size, local_rank, local_size, mpi}``.

    With several ranks it installs the abort-on-exception hook and the bounded shutdown.
    """
    global _info
    if _info is None:
        info = dict(_C.dist.init())
        if info["world_size"] > 1:
            _install_hooks(info["rank"], info["world_size"])
        _info = info
    return _info


def __getattr__(name: str) -> Any:
    if name in ("rank", "world_size", "local_rank", "local_size"):
        return init()[name]
    if name == "is_main":
        return init()["rank"] == 0
    raise AttributeError(f"module 'llmpy.dist' has no attribute {name!r}")


def launched_local_rank() -> int:
    """This process's rank on its machine without joining the group: the group's after ``init()``,
    else what the launcher set in the environment, else 0 (picks the GPU, see llmpy.device)."""
    return int(_C.dist.local_rank())


def barrier(timeout: Optional[float] = None) -> None:
    """Waits until every rank gets here: at most ``timeout`` seconds (default
    ``$LLMPY_DIST_TIMEOUT``, 90), then RuntimeError naming this rank (``math.inf``: no limit, for
    waits that may legitimately take long, such as one rank preparing the data)."""
    init()
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds or None, got {timeout}")
    _C.dist.barrier(0.0 if timeout is None else float(timeout))


def all_reduce_sum(values: list) -> list:
    """Element-wise sum over the ranks of a list of floats (float64; every rank passes the same length)."""
    init()
    return _C.dist.all_reduce_sum([float(v) for v in values])


def all_reduce_mean(value: float) -> float:
    """Mean of ``value`` over the ranks, the same on every rank (for losses and other metrics)."""
    info = init()
    if info["world_size"] == 1:
        return float(value)
    return _C.dist.all_reduce_sum([float(value)])[0] / info["world_size"]


def broadcast_object(obj: Any = None, root: int = 0) -> Any:
    """Rank ``root``'s ``obj`` (anything JSON can hold) on every rank.

    >>> broadcast_object({"out_dir": "runs/x"})
    {'out_dir': 'runs/x'}
    """
    info = init()
    if info["world_size"] == 1:
        return obj
    data = json.dumps(obj).encode() if info["rank"] == root else b""
    return json.loads(_C.dist.broadcast_bytes(data, root).decode())


def abort(code: int = 1) -> None:
    """Ends every rank of the job with exit code ``code`` (MPI_Abort); without MPI, this process."""
    sys.stdout.flush()
    sys.stderr.flush()
    _C.dist.abort(int(code))


def finalize(timeout_s: Optional[float] = None) -> None:
    """Leaves the process group (idempotent). Waits at most ``timeout_s`` seconds (default:
    ``$LLMPY_DIST_SHUTDOWN_TIMEOUT`` or 30) for the other ranks, then aborts the job instead of
    hanging: call ``barrier()`` first when ranks may legitimately finish far apart."""
    global _finalized
    if _finalized or _info is None or (not _info["mpi"] and _info["world_size"] == 1):
        return
    _finalized = True
    if timeout_s is None:
        timeout_s = float(os.environ.get("LLMPY_DIST_SHUTDOWN_TIMEOUT", "30"))
    try:
        _C.dist.finalize(float(timeout_s))
    except RuntimeError as e:
        print(f"llmpy.dist: {e}", file=sys.stderr, flush=True)
        abort(1)


def _install_hooks(rank: int, world_size: int) -> None:
    previous = sys.excepthook

    def abort_on_exception(kind, value, tb):
        previous(kind, value, tb)
        print(f"llmpy.dist: rank {rank} of {world_size} raised {kind.__name__}; aborting every rank",
              file=sys.stderr, flush=True)
        abort(1)

    sys.excepthook = abort_on_exception
    atexit.register(finalize)
