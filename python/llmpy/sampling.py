"""Picking the next token from logits: greedy, temperature, top-k and top-p (nucleus).

The one rule that ``GPT2.generate``, training-time samples and ``python -m llmpy.sample`` share;
pure numpy, so that the model can use it without importing the sampling CLI.

The distribution is the one Hugging Face's ``generate(do_sample=True, temperature=t, top_k=k,
top_p=p)`` samples from (transformers/generation/utils.py applies its warpers in the order
temperature, top-k, top-p; logits_process.py defines them):

1. temperature: the logits are divided by ``t`` (``t == 0`` means greedy: the argmax);
2. top-k: every logit below the k-th largest is dropped (ties with the k-th are kept, so more
   than k tokens may remain); the order of 1 and 2 does not matter, dividing by t > 0 keeps
   the order of the logits;
3. top-p: on the softmax of what is left, i.e. at temperature ``t`` and after top-k, sorted from
   the least likely token up, a token is dropped while the cumulative probability up to and
   including it is <= 1 - p. Put the other way: a token stays when the tokens more likely than
   it add up to less than p, so the kept set is the smallest set of most likely tokens whose
   probability reaches p, and the most likely token always stays;
4. the next token is drawn from the softmax of the remaining tempered logits.

So top-p depends on the temperature (a higher temperature flattens the distribution and keeps
more tokens), exactly as in ``transformers``. Sampling draws one uniform number per row from the
caller's ``numpy.random.Generator`` and inverts the cumulative distribution, so a seed fixes the
tokens. Computed in float64 (``transformers`` in the logits' dtype): only a token whose
cumulative probability sits within rounding of the top-p threshold can be kept by one and
dropped by the other.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .checks import integer, number

__all__ = ["check_sampling", "probabilities", "sample_next"]


def check_sampling(temperature=1.0, top_k=None, top_p=None) -> tuple[float, Optional[int], Optional[float]]:
    """``(temperature, top_k, top_p)`` checked and normalised: ``temperature`` a finite number >= 0
    (0: greedy), ``top_k`` None or an integer >= 1, ``top_p`` None or a number in (0, 1]
    (TypeError for other types, ValueError naming the argument otherwise).

    >>> check_sampling(temperature=float("nan"))
    Traceback (most recent call last):
    ValueError: temperature must be a finite number, got nan
    >>> check_sampling(top_p=1.5)
    Traceback (most recent call last):
    ValueError: top_p must be in (0, 1] or None, got 1.5
    """
    temperature = number(temperature, "temperature", min=0.0)
    if top_k is not None:
        top_k = integer(top_k, "top_k (None: no limit)", min=1)
    if top_p is not None:
        top_p = number(top_p, "top_p (None: no limit)")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}")
    return temperature, top_k, top_p


def _greedy(temperature: float, top_k: Optional[int]) -> bool:
    return temperature == 0 or top_k == 1


def probabilities(logits: np.ndarray, temperature: float = 1.0, top_k: Optional[int] = None,
                  top_p: Optional[float] = None) -> np.ndarray:
    """The (N, V) float64 distribution each row of ``logits`` (N, V) is sampled from.

    Greedy settings (``temperature == 0`` or ``top_k == 1``) give one-hot rows at the argmax.

    >>> probabilities(np.array([[0.0, 1.0, 2.0]]), top_k=2).round(3)
    array([[0.   , 0.269, 0.731]])
    >>> probabilities(np.array([[0.0, 1.0, 2.0]]), top_p=0.7)
    array([[0., 0., 1.]])
    """
    temperature, top_k, top_p = check_sampling(temperature, top_k, top_p)
    logits = np.asarray(logits, dtype=np.float64)
    if _greedy(temperature, top_k):
        p = np.zeros_like(logits)
        p[np.arange(logits.shape[0]), np.argmax(logits, axis=-1)] = 1.0
        return p
    z = logits / temperature
    if top_k is not None and top_k < z.shape[-1]:
        kth = np.partition(z, -top_k, axis=-1)[:, -top_k][:, None]
        z = np.where(z < kth, -np.inf, z)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    if top_p is not None and top_p < 1.0:
        p = _top_p(p, float(top_p))
    return p


def _top_p(p: np.ndarray, top_p: float) -> np.ndarray:
    """Drops, row by row, the least likely tokens whose probabilities add up to <= 1 - top_p
    (the most likely token always stays) and renormalises."""
    out = np.zeros_like(p)
    for r in range(p.shape[0]):
        live = np.flatnonzero(p[r])  # tokens top-k dropped have p == 0: dropped here as well
        order = live[np.argsort(p[r, live], kind="stable")]  # ascending
        cum = np.cumsum(p[r, order])
        keep = order[~(cum <= 1.0 - top_p)]
        keep = keep if keep.size else order[-1:]
        out[r, keep] = p[r, keep] / p[r, keep].sum()
    return out


def sample_next(logits: np.ndarray, rng: np.random.Generator, top_k: Optional[int] = None,
                temperature: float = 1.0, top_p: Optional[float] = None) -> np.ndarray:
    """Picks one token per row of ``logits`` (N, V) from ``probabilities(...)``.

    ``temperature`` 0 or ``top_k`` 1 is greedy (argmax, no random number drawn). Otherwise one
    uniform number is drawn per row from ``rng`` and the cumulative distribution inverted.

    >>> sample_next(np.array([[0.0, 3.0, 1.0]]), np.random.default_rng(0), top_k=1)
    array([1])
    """
    temperature, top_k, top_p = check_sampling(temperature, top_k, top_p)
    if _greedy(temperature, top_k):
        return np.argmax(logits, axis=-1)
    p = probabilities(logits, temperature, top_k, top_p)
    u = rng.random((p.shape[0], 1))
    # inverse CDF per row; the clip guards against rounding in the last cumulative sum
    return np.minimum((np.cumsum(p, axis=-1) < u).sum(axis=-1), p.shape[-1] - 1)
