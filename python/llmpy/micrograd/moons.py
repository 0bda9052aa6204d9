"""The micrograd demo: a small MLP separates two interleaving half-moons.

The loss is the SVM "max-margin" loss: ``mean(relu(1 - y * score))`` over the points, with
labels ``y`` in {-1, +1}, plus ``alpha * sum(p**2)`` (L2 regularisation). The loss is zero for
a point only once it is on the right side *with a margin* of 1, so training keeps pushing
the boundary away from the data. Plain gradient descent with a learning rate decaying from
1.0 to 0.1 reaches 100% training accuracy in well under 100 full-batch steps.

>>> X, y = make_moons(8, noise=0.0, seed=0)
>>> len(X), sorted(set(y))
(8, [-1, 1])
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..extras import install_hint
from .engine import Value, gc_paused
from .nn import MLP

__all__ = ["MoonsResult", "make_moons", "mlp_scores", "save_decision_boundary", "train_moons"]


def make_moons(
    n_samples: int = 100, noise: float = 0.1, seed: int = 1337
) -> tuple[list[list[float]], list[int]]:
    """Two interleaving half circles in 2-D, labelled -1 (upper) and +1 (lower).

    The upper moon is ``(cos t, sin t)`` and the lower one ``(1 - cos t, 0.5 - sin t)`` for
    ``t`` evenly spaced in [0, pi]; Gaussian noise of std ``noise`` is added to both
    coordinates. ``n_samples // 2`` points go to the upper moon, the rest to the lower.

    Returns:
        ``(X, y)``: a list of ``[x1, x2]`` and a list of labels.
    """
    rng = random.Random(seed)
    n_up = n_samples // 2
    n_down = n_samples - n_up
    X: list[list[float]] = []
    y: list[int] = []
    for i in range(n_up):
        t = math.pi * i / max(n_up - 1, 1)
        X.append([math.cos(t) + rng.gauss(0, noise), math.sin(t) + rng.gauss(0, noise)])
        y.append(-1)
    for i in range(n_down):
        t = math.pi * i / max(n_down - 1, 1)
        X.append([1 - math.cos(t) + rng.gauss(0, noise), 0.5 - math.sin(t) + rng.gauss(0, noise)])
        y.append(1)
    order = list(range(n_samples))
    rng.shuffle(order)
    return [X[i] for i in order], [y[i] for i in order]


def max_margin_loss(
    model: MLP, X: Sequence[Sequence[float]], y: Sequence[int], alpha: float
) -> tuple[Value, float]:
    """SVM max-margin loss + L2 regularisation over the whole set, and the accuracy."""
    scores = [model(x) for x in X]
    margins = [(1 + -yi * si).relu() for yi, si in zip(y, scores)]
    data_loss = margins[0]
    for m in margins[1:]:
        data_loss = data_loss + m
    data_loss = data_loss * (1.0 / len(margins))
    reg = Value(0.0)
    for p in model.parameters():
        reg = reg + p * p
    accuracy = sum((yi > 0) == (si.data > 0) for yi, si in zip(y, scores)) / len(y)
    return data_loss + alpha * reg, accuracy


@dataclass
class MoonsResult:
    """What :func:`train_moons` returns."""

    model: MLP
    X: list[list[float]]
    y: list[int]
    losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        """Training accuracy after the last step (computed on the updated weights)."""
        return float(np.mean((mlp_scores(self.model, np.asarray(self.X)) > 0) == (np.asarray(self.y) > 0)))


def train_moons(
    n_samples: int = 100,
    steps: int = 100,
    hidden: Sequence[int] = (16, 16),
    alpha: float = 1e-4,
    noise: float = 0.1,
    seed: int = 1337,
    stop_at_full_accuracy: bool = False,
    log: Callable[[str], None] | None = None,
) -> MoonsResult:
    """Trains ``MLP(2, [*hidden, 1])`` on :func:`make_moons` data with full-batch gradient descent.

    The learning rate decays linearly from 1.0 at step 0 to 0.1 at step ``steps``. With
    ``stop_at_full_accuracy`` training stops at the first step whose forward pass classifies
    every point correctly (the tests use it to stay fast).

    >>> r = train_moons(n_samples=20, steps=3, hidden=(4,))
    >>> len(r.losses)
    3
    """
    X, y = make_moons(n_samples, noise=noise, seed=seed)
    model = MLP(2, [*hidden, 1], activation="relu", rng=random.Random(seed))
    result = MoonsResult(model, X, y)
    with gc_paused():  # the graphs have no cycles; see gc_paused
        for k in range(steps):
            loss, acc = max_margin_loss(model, X, y, alpha)
            result.losses.append(loss.data)
            result.accuracies.append(acc)
            if log is not None:
                log(f"step {k:3d} loss {loss.data:.4f} accuracy {acc * 100:.0f}%")
            if stop_at_full_accuracy and acc == 1.0:
                break
            model.zero_grad()
            loss.backward()
            lr = 1.0 - 0.9 * k / steps
            for p in model.parameters():
                p.data -= lr * p.grad
    return result


def mlp_scores(model: MLP, X: np.ndarray) -> np.ndarray:
    """The MLP's output for each row of ``X`` (N, nin), computed with numpy instead of Values.

    Building a graph for every point of a plotting grid would be slow and is not needed:
    only the forward numbers matter here.
    """
    h = np.asarray(X, dtype=np.float64)
    for layer in model.layers:
        W = np.array([[w.data for w in n.w] for n in layer.neurons])
        b = np.array([n.b.data for n in layer.neurons])
        h = h @ W.T + b
        act = layer.neurons[0].activation
        if act == "relu":
            h = np.maximum(h, 0.0)
        elif act == "tanh":
            h = np.tanh(h)
        elif act == "sigmoid":
            h = 1.0 / (1.0 + np.exp(-h))
    return h[:, 0]


def save_decision_boundary(result: MoonsResult, path: str | Path, resolution: int = 200) -> Path | None:
    """Saves the data and the model's decision regions as a PNG; returns the path.

    Returns None (after printing a note) when matplotlib is not installed.
    """
    try:
        from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state
    except ImportError:
        print(f"note: matplotlib is not installed, {path} not written ({install_hint('matplotlib', 'chapters')})")
        return None
    X = np.asarray(result.X)
    y = np.asarray(result.y)
    x_min, x_max = X[:, 0].min() - 1, X[:, 0].max() + 1
    y_min, y_max = X[:, 1].min() - 1, X[:, 1].max() + 1
    xx, yy = np.meshgrid(np.linspace(x_min, x_max, resolution), np.linspace(y_min, y_max, resolution))
    zz = mlp_scores(result.model, np.c_[xx.ravel(), yy.ravel()]).reshape(xx.shape)
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    ax.contourf(xx, yy, (zz > 0).astype(float), cmap="Spectral", alpha=0.8)
    ax.scatter(X[:, 0], X[:, 1], c=y, s=30, cmap="Spectral", edgecolors="k")
    ax.set_title(f"micrograd MLP on two moons: {result.accuracy * 100:.0f}% training accuracy")
    ax.set_xlim(x_min, x_max)
    ax.set_ylim(y_min, y_max)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path
