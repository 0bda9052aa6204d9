"""Training checkpoints: a model file plus a training-state file per saved step.

A checkpoint of step N in ``out_dir`` is the pair

    ckpt_00000N.bin     the model, llm.c format (loads in llm.c, llmpy and the PyTorch oracle)
    ckpt_00000N.state   AdamW moments and step + the loop's JSON (schedule, RNG, data position, ...)

Both carry CRC32C checksums (``csrc/core/formats.h``: the integrity block) that every load
verifies, and the state records the checksums of the model file saved with it, its step and
the run's id, so a ``.bin`` and a ``.state`` of two runs are never loaded as one checkpoint.
Both are written atomically and durably (temp file, fsync, rename, fsync of the folder), the
model first. ``find_latest`` returns the newest pair that verifies and matches, by the core's
rule (``_C.checkpoint_find_latest``, the one ``train_gpt2 --resume latest`` uses), reporting
every newer pair it skips and why.

>>> save("runs/x", 100, model, {"step": 100}, run_id=new_run_id())   # doctest: +SKIP
>>> model, extra, step = find_latest("runs/x")                        # doctest: +SKIP
"""

from __future__ import annotations

import re
import secrets
import sys
from os import PathLike
from pathlib import Path
from typing import Callable, Optional, Union

from . import _C
from .model import GPT2

_NAME = re.compile(r"^ckpt_(\d{6,})\.state$")

PathType = Union[str, PathLike]


def paths(out_dir: PathType, step: int) -> tuple:
    """(model path, state path) of the checkpoint of ``step``."""
    d = Path(out_dir)
    return d / f"ckpt_{step:06d}.bin", d / f"ckpt_{step:06d}.state"


def steps(out_dir: PathType) -> list:
    """Steps with a state file in ``out_dir``, ascending (intact or not: see ``find_latest``)."""
    d = Path(out_dir)
    if not d.is_dir():
        return []
    found = (_NAME.match(p.name) for p in d.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def new_run_id() -> str:
    """A fresh run id (16 hex digits) for ``save(..., run_id=)``: a resumed run keeps its own."""
    return secrets.token_hex(8)


def save(out_dir: PathType, step: int, model: GPT2, extra: dict, keep: int = 0, run_id: str = "") -> Path:
    """Writes the checkpoint of ``step`` and deletes all but the newest ``keep`` (0: keep all).

    The state records the model file's checksums, ``step`` and ``run_id``. Collective after
    ``distribute()`` (rank 0 writes).
    """
    model_path, state_path = paths(out_dir, step)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    model.save(model_path)
    model.save_state(state_path, extra, model_path=model_path, step=step, run_id=run_id)
    if keep > 0:
        for old in steps(out_dir)[:-keep]:
            for p in paths(out_dir, old):
                p.unlink(missing_ok=True)
    return model_path


def load(model_path: PathType, state_path: PathType, device: str = "cpu") -> tuple:
    """(model, extra) from a checkpoint pair, both files verified.

    ValueError naming the file when one is damaged ("checksum mismatch") or when the two are not
    one checkpoint; FileNotFoundError when one is missing.
    """
    model = GPT2.from_checkpoint(model_path, device=device)
    extra = model.load_state(state_path)
    return model, extra


def resolve(spec: str, out_dir: PathType) -> tuple:
    """The (model path, state path) pair meant by ``--resume SPEC``: a .bin, a .state, or their stem."""
    p = Path(spec)
    stem = p.with_suffix("") if p.suffix in (".bin", ".state") else p
    model_path, state_path = stem.with_suffix(".bin"), stem.with_suffix(".state")
    if not state_path.exists() and not model_path.exists():
        raise FileNotFoundError(f"--resume {spec}: no checkpoint {model_path} / {state_path}")
    return model_path, state_path


def latest_step(out_dir: PathType, log: Optional[Callable[[str], None]] = None) -> Optional[int]:
    """The newest step whose pair in ``out_dir`` verifies and matches, or None.

    Every newer step that does not is passed to ``log`` (default: stderr) with the reason
    ("skipping checkpoint of step 40 in run: run/ckpt_000040.bin: checksum mismatch ...").
    Every step in the folder is a candidate, whatever a training's ``--max-steps``.
    """
    if not Path(out_dir).is_dir():
        return None
    log = log or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    return _C.checkpoint_find_latest(str(out_dir), log)


def find_latest(out_dir: PathType, device: str = "cpu", log: Optional[Callable[[str], None]] = None
                ) -> Optional[tuple]:
    """(model, extra, step) of the newest intact checkpoint in ``out_dir``, or None if there is none.

    Damaged (truncated, bit flips), incomplete (a ``.bin`` without its ``.state``) and mismatched
    pairs are reported through ``log`` and skipped (``latest_step``).
    """
    step = latest_step(out_dir, log)
    if step is None:
        return None
    model, extra = load(*paths(out_dir, step), device=device)
    return model, extra, step


def verify(path: PathType) -> dict:
    """Checks a model or state file whole (header, size, checksums) without loading it.

    Returns what it holds: ``kind`` ("model"/"state"), ``version``, ``has_checksum`` (False for
    files of llm.c and older llmpy: nothing to verify), ``checksum``, ``header_checksum``,
    ``config``; for a state also ``step``, ``adam_steps``, ``run_id``, ``model_checksum`` and
    ``model_header_checksum`` (None when no model file was recorded). Raises as loading would.
    """
    return _C.checkpoint_verify(str(path))


def clean_temp(out_dir: PathType) -> int:
    """Removes the temp files (``<name>.tmp.<pid>.<n>``) that killed writes left in ``out_dir``,
    those whose writer process is gone; returns how many. Meant for the start of a run."""
    if not Path(out_dir).is_dir():
        return 0
    return _C.checkpoint_clean_temp(str(out_dir))
