"""Layers in the style of ``torch.nn``, written out so nothing is hidden.

Each layer is a callable with ``parameters()``; it keeps its last output in ``.out`` so the
diagnostics can look at activations and their gradients. ``training`` switches BatchNorm
between batch statistics (training) and its running estimates (evaluation, sampling).

Shapes: ``B`` batch, ``T`` positions, ``C`` channels. :class:`FlattenConsecutive` turns
``(B, T, C)`` into ``(B, T/n, C*n)`` — it fuses ``n`` neighbouring positions, which is how
the WaveNet-style model merges characters two at a time instead of all at once.

:class:`BatchNorm1d` normalises each channel over every dimension but the last: over ``B``
for 2-D input and over ``(B, T)`` for 3-D input. (Normalising 3-D input over dimension 0
only — the bug the lecture found — would keep separate statistics per position ``T``.)
It matches ``torch.nn.BatchNorm1d``: the batch variance is the biased one, the running
variance the unbiased one.

>>> g = torch.Generator().manual_seed(0)
>>> net = Sequential([Embedding(27, 4, generator=g), FlattenConsecutive(2), Linear(8, 5, generator=g)])
>>> net(torch.zeros(3, 4, dtype=torch.long)).shape     # (3, 4) -> (3, 4, 4) -> (3, 2, 8) -> (3, 2, 5)
torch.Size([3, 2, 5])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["BatchNorm1d", "Embedding", "FlattenConsecutive", "Linear", "Sequential", "Tanh"]


class Layer:
    """Base: no parameters, always in training mode until told otherwise."""

    training: bool = True
    out: torch.Tensor | None = None

    def parameters(self) -> list[torch.Tensor]:
        return []

    def __repr__(self) -> str:
        return type(self).__name__


class Linear(Layer):
    """``x @ weight + bias``; ``weight`` (fan_in, fan_out) ~ N(0, 1/fan_in), ``bias`` = 0.

    Dividing by sqrt(fan_in) keeps the output's variance equal to the input's at
    initialisation; multiply by a gain (5/3 for tanh) for Kaiming initialisation.
    """

    def __init__(
        self,
        fan_in: int,
        fan_out: int,
        bias: bool = True,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.weight = torch.randn((fan_in, fan_out), generator=generator, dtype=dtype) / fan_in**0.5
        self.bias = torch.zeros(fan_out, dtype=dtype) if bias else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.out = x @ self.weight
        if self.bias is not None:
            self.out = self.out + self.bias
        return self.out

    def parameters(self) -> list[torch.Tensor]:
        return [self.weight] + ([] if self.bias is None else [self.bias])

    def __repr__(self) -> str:
        return f"Linear({self.weight.shape[0]}, {self.weight.shape[1]}, bias={self.bias is not None})"


class BatchNorm1d(Layer):
    """Per-channel normalisation with a learned scale (``gamma``) and shift (``beta``).

    Input ``(B, C)`` or ``(B, T, C)``; statistics over all dimensions but the channel one.
    ``running_mean`` and ``running_var`` (shape ``(C,)``) are exponential moving averages of
    the batch statistics, updated in training mode and used in evaluation mode.
    """

    def __init__(
        self, dim: int, eps: float = 1e-5, momentum: float = 0.1, dtype: torch.dtype = torch.float32
    ):
        self.eps = eps
        self.momentum = momentum
        self.gamma = torch.ones(dim, dtype=dtype)
        self.beta = torch.zeros(dim, dtype=dtype)
        self.running_mean = torch.zeros(dim, dtype=dtype)
        self.running_var = torch.ones(dim, dtype=dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim not in (2, 3) or x.shape[-1] != self.gamma.shape[0]:
            raise ValueError(
                f"BatchNorm1d({self.gamma.shape[0]}) expects (B, C) or (B, T, C) input, got {tuple(x.shape)}"
            )
        if self.training:
            dims = tuple(range(x.ndim - 1))  # (0,) or (0, 1): every dimension but the channels
            n = x.numel() // x.shape[-1]
            mean = x.mean(dims)
            var = x.var(dims, unbiased=False)
            with torch.no_grad():
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * var * (n / max(n - 1, 1)))
        else:
            mean, var = self.running_mean, self.running_var
        xhat = (x - mean) / torch.sqrt(var + self.eps)
        self.out = self.gamma * xhat + self.beta
        return self.out

    def parameters(self) -> list[torch.Tensor]:
        return [self.gamma, self.beta]

    def __repr__(self) -> str:
        return f"BatchNorm1d({self.gamma.shape[0]})"


class Tanh(Layer):
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.out = torch.tanh(x)
        return self.out


class Embedding(Layer):
    """A lookup table: row ``i`` of ``weight`` (num_embeddings, dim) ~ N(0, 1) is the vector of token ``i``."""

    def __init__(
        self,
        num_embeddings: int,
        dim: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.weight = torch.randn((num_embeddings, dim), generator=generator, dtype=dtype)

    def __call__(self, ix: torch.Tensor) -> torch.Tensor:
        self.out = self.weight[ix]
        return self.out

    def parameters(self) -> list[torch.Tensor]:
        return [self.weight]

    def __repr__(self) -> str:
        return f"Embedding({self.weight.shape[0]}, {self.weight.shape[1]})"


class FlattenConsecutive(Layer):
    """``(B, T, C) -> (B, T/n, C*n)``, concatenating each run of ``n`` positions; a dimension
    of size 1 in the middle is dropped, giving ``(B, C*n)``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        if T % self.n:
            raise ValueError(f"FlattenConsecutive({self.n}): {T} positions is not a multiple of {self.n}")
        x = x.reshape(B, T // self.n, C * self.n)
        self.out = x.squeeze(1) if x.shape[1] == 1 else x
        return self.out

    def __repr__(self) -> str:
        return f"FlattenConsecutive({self.n})"


class Sequential(Layer):
    """Layers applied in order; ``train()``/``eval()`` switch all of them."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.layers = list(layers)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        self.out = x
        return x

    def parameters(self) -> list[torch.Tensor]:
        return [p for layer in self.layers for p in layer.parameters()]

    def train(self, mode: bool = True) -> Sequential:
        self.training = mode
        for layer in self.layers:
            layer.training = mode
        return self

    def eval(self) -> Sequential:
        return self.train(False)

    def __repr__(self) -> str:
        inner = "\n".join(f"  {layer!r}" for layer in self.layers)
        return f"Sequential(\n{inner}\n)"
