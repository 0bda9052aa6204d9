"""Argument checks of the public API: an int is an int, a number is a finite number, in our words.

Without them a float batch size is truncated in silence (``int(2.5) == 2``), a string reaches
pybind11 and comes back as an "incompatible function arguments" listing, and a NaN slips through
comparisons (``nan < 0`` is False). Numpy scalars are accepted (``np.int64(3)`` is an int); bools
are not numbers here (``True`` as a batch size is a bug).

>>> integer(np.int64(3), "batch_size", min=1)
3
>>> integer(2.5, "batch_size")
Traceback (most recent call last):
TypeError: batch_size must be an integer, got float 2.5
>>> number(float("nan"), "temperature", min=0.0)
Traceback (most recent call last):
ValueError: temperature must be a finite number, got nan
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

import numpy as np

__all__ = ["integer", "number"]


def _got(value) -> str:
    return f"{type(value).__name__} {value!r}"


def integer(value, name: str, *, min: Optional[int] = None, max: Optional[int] = None) -> int:
    """``value`` as an int: ints and numpy integers only (TypeError otherwise, bools included),
    within ``[min, max]`` (ValueError naming ``name`` otherwise)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {_got(value)}")
    v = int(value)
    if min is not None and v < min:
        raise ValueError(f"{name} must be >= {min}, got {v}")
    if max is not None and v > max:
        raise ValueError(f"{name} must be <= {max}, got {v}")
    return v


def number(value, name: str, *, min: Optional[float] = None, finite: bool = True) -> float:
    """``value`` as a float: ints, floats and numpy reals (TypeError otherwise, bools included);
    NaN always and infinities unless ``finite=False`` are ValueErrors, as is a value below ``min``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {_got(value)}")
    v = float(value)
    if math.isnan(v) or (finite and math.isinf(v)):
        raise ValueError(f"{name} must be a finite number, got {v}")
    if min is not None and v < min:
        raise ValueError(f"{name} must be >= {min}, got {v}")
    return v
