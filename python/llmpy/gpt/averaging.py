"""Three ways to let each position average over the positions before it.

Self-attention starts from a simple wish: token ``t`` should see a summary of tokens
``0..t`` and never ``t+1..``. The plainest summary is the mean, ``xbow[b, t] = mean(x[b, :t+1])``
("bag of words"). The three functions below compute the same thing:

1. :func:`average_loops` — two Python loops; obviously right, slow.
2. :func:`average_matmul` — one matrix product with a lower-triangular matrix whose rows
   are normalised to sum to 1: row ``t`` holds ``1/(t+1)`` in columns ``0..t``.
3. :func:`average_softmax` — start from zeros ("affinities"), set the future to ``-inf``,
   apply a row-wise softmax: ``exp(-inf) = 0`` and equal affinities give equal weights, so
   this is again the same triangular matrix.

The third form is the one attention uses: replace the zeros by data-dependent affinities
``q · k / sqrt(head_size)`` and the uniform average becomes a learned, weighted one
(:class:`~llmpy.gpt.model.Head`).

>>> x = torch.arange(6.0).view(1, 3, 2)     # B=1, T=3, C=2
>>> average_softmax(x)[0].tolist()
[[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["average_loops", "average_matmul", "average_softmax", "causal_mean_weights"]


def average_loops(x: torch.Tensor) -> torch.Tensor:
    """``out[b, t] = x[b, :t+1].mean(0)`` with explicit loops. x: (B, T, C)."""
    B, T, _ = x.shape
    out = torch.zeros_like(x)
    for b in range(B):
        for t in range(T):
            out[b, t] = x[b, : t + 1].mean(0)
    return out


def causal_mean_weights(T: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(T, T) lower-triangular matrix with rows summing to 1."""
    w = torch.tril(torch.ones(T, T, dtype=dtype))
    return w / w.sum(1, keepdim=True)


def average_matmul(x: torch.Tensor) -> torch.Tensor:
    """The same with one batched matmul: (T, T) @ (B, T, C) -> (B, T, C)."""
    return causal_mean_weights(x.shape[1], x.dtype) @ x


def average_softmax(x: torch.Tensor) -> torch.Tensor:
    """The same with a masked softmax over all-equal affinities (the form attention uses)."""
    T = x.shape[1]
    tril = torch.tril(torch.ones(T, T, dtype=torch.bool))
    affinities = torch.zeros(T, T, dtype=x.dtype).masked_fill(~tril, float("-inf"))
    return F.softmax(affinities, dim=-1) @ x
