"""Training checkpoints: a model file plus a training-state file per saved step.

A checkpoint of step N in ``out_dir`` is the pair

    ckpt_00000N.bin     the model, llm.c format (loads in llm.c, llmpy and the PyTorch oracle)
    ckpt_00000N.state   AdamW moments and step + the loop's JSON (schedule, RNG, data position, ...)

Both are written atomically (temp file + rename), the model first, so a pair whose state file
exists is complete. ``find_latest`` walks back from the newest step and returns the first pair
that loads, so a damaged newest checkpoint falls back to the previous good one.
"""

from __future__ import annotations

import re
import sys
from os import PathLike
from pathlib import Path
from typing import Optional, Union

from .model import GPT2

_NAME = re.compile(r"^ckpt_(\d{6,})\.state$")


def paths(out_dir: Union[str, PathLike], step: int) -> tuple:
    """(model path, state path) of the checkpoint of ``step``."""
    d = Path(out_dir)
    return d / f"ckpt_{step:06d}.bin", d / f"ckpt_{step:06d}.state"


def steps(out_dir: Union[str, PathLike]) -> list:
    """Steps with a state file in ``out_dir``, ascending."""
    d = Path(out_dir)
    if not d.is_dir():
        return []
    found = (_NAME.match(p.name) for p in d.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def save(out_dir: Union[str, PathLike], step: int, model: GPT2, extra: dict, keep: int = 0) -> Path:
    """Writes the checkpoint of ``step`` and deletes all but the newest ``keep`` (0: keep all)."""
    model_path, state_path = paths(out_dir, step)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    model.save(model_path)
    model.save_state(state_path, extra)
    if keep > 0:
        for old in steps(out_dir)[:-keep]:
            for p in paths(out_dir, old):
                p.unlink(missing_ok=True)
    return model_path


def load(model_path: Union[str, PathLike], state_path: Union[str, PathLike], device: str = "cpu") -> tuple:
    """(model, extra) from a checkpoint pair; ValueError/OSError naming the file if it is damaged."""
    model = GPT2.from_checkpoint(model_path, device=device)
    extra = model.load_state(state_path)
    return model, extra


def resolve(spec: str, out_dir: Union[str, PathLike]) -> tuple:
    """The (model path, state path) pair meant by ``--resume SPEC``: a .bin, a .state, or their stem."""
    p = Path(spec)
    stem = p.with_suffix("") if p.suffix in (".bin", ".state") else p
    model_path, state_path = stem.with_suffix(".bin"), stem.with_suffix(".state")
    if not state_path.exists() and not model_path.exists():
        raise FileNotFoundError(f"--resume {spec}: no checkpoint {model_path} / {state_path}")
    return model_path, state_path


def find_latest(out_dir: Union[str, PathLike], device: str = "cpu", log=None) -> Optional[tuple]:
    """(model, extra, step) of the newest checkpoint in ``out_dir`` that loads, or None if none does.

    A damaged checkpoint (truncated, corrupt) is reported through ``log`` and skipped.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    for step in reversed(steps(out_dir)):
        model_path, state_path = paths(out_dir, step)
        try:
            model, extra = load(model_path, state_path, device)
        except (OSError, ValueError) as e:
            log(f"warning: skipping damaged checkpoint of step {step}: {e}")
            continue
        return model, extra, step
    return None
