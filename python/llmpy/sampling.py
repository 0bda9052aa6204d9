"""Picking the next token from logits: greedy, temperature and top-k.

The one rule that ``GPT2.generate``, training-time samples and ``python -m llmpy.sample`` share;
pure numpy, so that the model can use it without importing the sampling CLI.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .checks import integer, number

__all__ = ["check_sampling", "sample_next"]


def check_sampling(top_k, temperature) -> tuple[Optional[int], float]:
    """``(top_k, temperature)`` checked: ``top_k`` None or an integer >= 1, ``temperature`` a
    finite number >= 0 (TypeError for other types, ValueError naming the argument otherwise).

    >>> check_sampling(None, float("inf"))
    Traceback (most recent call last):
    ValueError: temperature must be a finite number, got inf
    """
    temperature = number(temperature, "temperature", min=0.0)
    if top_k is not None:
        top_k = integer(top_k, "top_k (None: no limit)", min=1)
    return top_k, temperature


def sample_next(logits: np.ndarray, rng: np.random.Generator, top_k: Optional[int] = None,
                temperature: float = 1.0) -> np.ndarray:
    """Picks one token per row of ``logits`` (N, V).

    ``temperature`` 0 or ``top_k`` 1 is greedy (argmax). Otherwise the logits are divided by the
    temperature, all but the ``top_k`` largest are dropped, and a token is drawn from the softmax.
    The arguments are checked by ``check_sampling``: a NaN or infinite temperature would otherwise
    sample garbage in silence.

    >>> sample_next(np.array([[0.0, 3.0, 1.0]]), np.random.default_rng(0), top_k=1)
    array([1])
    """
    top_k, temperature = check_sampling(top_k, temperature)
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0 or top_k == 1:
        return np.argmax(logits, axis=-1)
    z = logits / temperature
    if top_k is not None and top_k < z.shape[-1]:
        kth = np.partition(z, -top_k, axis=-1)[:, -top_k][:, None]
        z = np.where(z < kth, -np.inf, z)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    u = rng.random((z.shape[0], 1))
    # inverse CDF per row; the clip guards against rounding in the last cumulative sum
    return np.minimum((np.cumsum(p, axis=-1) < u).sum(axis=-1), z.shape[-1] - 1)
