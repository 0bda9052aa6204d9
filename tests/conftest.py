"""Shared test helpers: the PyTorch oracle (dev/train_gpt2.py) and comparison with clear failures."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "dev"))


@pytest.fixture(scope="session")
def oracle():
    """The PyTorch reference implementation (dev/train_gpt2.py)."""
    import train_gpt2

    return train_gpt2


def rel_err(a, b) -> float:
    """‖a − b‖ / ‖b‖ in float64 (0 when both are zero)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    den = np.linalg.norm(b)
    num = np.linalg.norm(a - b)
    return float(num / den) if den > 0 else float(num)


def assert_close(name: str, got, ref, *, max_abs: float | None = None, rel: float | None = None) -> None:
    """Checks max |got − ref| ≤ max_abs and/or ‖got − ref‖/‖ref‖ ≤ rel, reporting both figures."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != reference {ref.shape}"
    mad = float(np.max(np.abs(got - ref))) if got.size else 0.0
    r = rel_err(got, ref)
    ok = (max_abs is None or mad <= max_abs) and (rel is None or r <= rel)
    assert ok, f"{name}: max abs diff {mad:.3e} (limit {max_abs}), relative error {r:.3e} (limit {rel})"
