"""Training, evaluation and sampling, shared by every makemore model.

A model is anything with ``model(X) -> logits`` (X: (B, block_size) int64, logits: (B, V)),
``parameters()``, ``train()``/``eval()`` and a ``block_size`` attribute.

Training is minibatch SGD as in the lectures: 32 random examples per step, a learning rate
of 0.1 that drops to 0.01 late in training (:class:`Schedule`).

>>> s = Schedule(steps=200_000, lr=0.1, lr_late=0.01, decay_at=0.5)
>>> s(99_999), s(100_000)
(0.1, 0.01)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F

from .data import Vocab

__all__ = ["LECTURE_SCHEDULES", "Model", "Schedule", "evaluate", "sample", "train"]


class Model(Protocol):
    block_size: int

    def __call__(self, X: torch.Tensor) -> torch.Tensor: ...

    def parameters(self) -> list[torch.Tensor]: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...


@dataclass(frozen=True)
class Schedule:
    """Step learning rate: ``lr`` until ``decay_at * steps``, then ``lr_late``."""

    steps: int
    lr: float = 0.1
    lr_late: float = 0.01
    decay_at: float = 0.5
    batch_size: int = 32

    def __call__(self, step: int) -> float:
        return self.lr if step < int(self.decay_at * self.steps) else self.lr_late

    def with_steps(self, steps: int) -> Schedule:
        """The same schedule compressed or stretched to ``steps`` (the decay stays at the same fraction)."""
        return Schedule(steps, self.lr, self.lr_late, self.decay_at, self.batch_size)


#: The lectures' schedules: 200k steps of batch 32; 0.1 -> 0.01 at 100k (MLP parts) or at 150k (WaveNet).
LECTURE_SCHEDULES = {
    "mlp": Schedule(200_000, 0.1, 0.01, 0.5),
    "mlp-bn": Schedule(200_000, 0.1, 0.01, 0.5),
    "wavenet": Schedule(200_000, 0.1, 0.01, 0.75),
}


def train(
    model: Model,
    X: torch.Tensor,
    Y: torch.Tensor,
    schedule: Schedule,
    generator: torch.Generator | None = None,
    log_every: int = 0,
    on_step: Callable[[int, float, float], None] | None = None,
    before_backward: Callable[[int], None] | None = None,
) -> list[float]:
    """Minibatch SGD; returns the training loss of every step.

    Args:
        model: see the module docstring.
        X, Y: the training set, (N, block_size) and (N,).
        schedule: number of steps, learning rates and batch size.
        generator: draws the minibatches.
        log_every: print the loss every this many steps (0: never).
        on_step: called after each update with (step, lr, loss) — the diagnostics use it.
        before_backward: called with the step number after the forward pass, before
            ``backward()`` (to ``retain_grad()`` intermediate outputs).
    """
    params = model.parameters()
    model.train()
    losses: list[float] = []
    t0 = time.time()
    for i in range(schedule.steps):
        ix = torch.randint(0, X.shape[0], (schedule.batch_size,), generator=generator)
        loss = F.cross_entropy(model(X[ix]), Y[ix])
        if before_backward is not None:
            before_backward(i)
        for p in params:
            p.grad = None
        loss.backward()
        lr = schedule(i)
        with torch.no_grad():
            for p in params:
                p.add_(p.grad, alpha=-lr)
        losses.append(loss.item())
        if on_step is not None:
            on_step(i, lr, losses[-1])
        if log_every and (i % log_every == 0 or i == schedule.steps - 1):
            print(
                f"{i:7d}/{schedule.steps:7d}: loss {losses[-1]:.4f} lr {lr:g} ({time.time() - t0:.0f} s)",
                flush=True,
            )
    return losses


@torch.no_grad()
def evaluate(model: Model, X: torch.Tensor, Y: torch.Tensor, chunk: int = 8192) -> float:
    """Mean cross-entropy over the whole split, in evaluation mode (BatchNorm's running stats)."""
    was_training = getattr(model, "training", False)
    model.eval()
    total = 0.0
    for i in range(0, X.shape[0], chunk):
        logits = model(X[i : i + chunk]).double()
        total += F.cross_entropy(logits, Y[i : i + chunk], reduction="sum").item()
    model.train(was_training)
    return total / X.shape[0]


@torch.no_grad()
def sample(
    model: Model, vocab: Vocab, n: int = 20, generator: torch.Generator | None = None, max_len: int = 50
) -> list[str]:
    """``n`` words drawn one character at a time from the model's distribution.

    Each word starts from a context of ``block_size`` start tokens and ends when the model
    draws the end token (or after ``max_len`` characters). The same generator seed gives the
    same words.
    """
    was_training = getattr(model, "training", False)
    model.eval()
    words = []
    for _ in range(n):
        context = [0] * model.block_size
        out: list[int] = []
        while len(out) < max_len:
            logits = model(torch.tensor([context]))
            ix = int(torch.multinomial(F.softmax(logits.double(), dim=-1), 1, generator=generator))
            if ix == 0:
                break
            out.append(ix)
            context = context[1:] + [ix]
        words.append(vocab.decode(out))
    model.train(was_training)
    return words
