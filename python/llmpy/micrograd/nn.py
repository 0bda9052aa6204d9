"""A neural-network library on top of :class:`~llmpy.micrograd.engine.Value`.

A :class:`Neuron` is a weighted sum plus a bias, optionally passed through a nonlinearity;
a :class:`Layer` is a list of neurons reading the same inputs; an :class:`MLP` is a list of
layers. The API mirrors PyTorch's in spirit: ``parameters()`` lists the trainable scalars,
``zero_grad()`` resets their gradients.

>>> import random
>>> net = MLP(3, [4, 4, 1], rng=random.Random(0))
>>> len(net.parameters())       # (3*4 + 4) + (4*4 + 4) + (4*1 + 1)
41
>>> out = net([1.0, -2.0, 0.5])
>>> out.backward()
>>> any(p.grad != 0 for p in net.parameters())
True
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .engine import Number, Value

__all__ = ["MLP", "Layer", "Module", "Neuron"]

_ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")


class Module:
    """Base class: something with parameters."""

    def parameters(self) -> list[Value]:
        return []

    def zero_grad(self) -> None:
        """Sets the gradient of every parameter to 0 (gradients accumulate otherwise)."""
        for p in self.parameters():
            p.grad = 0.0


class Neuron(Module):
    """``act(w · x + b)`` with ``w`` uniform in [-1, 1] and ``b = 0``.

    Args:
        nin: number of inputs.
        activation: "relu", "tanh", "sigmoid" or "linear" (no nonlinearity).
        rng: random generator for the weights (default: the ``random`` module's).
    """

    def __init__(self, nin: int, activation: str = "relu", rng: random.Random | None = None) -> None:
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
        uniform = rng.uniform if rng is not None else random.uniform  # default: the global generator
        self.w = [Value(uniform(-1, 1)) for _ in range(nin)]
        self.b = Value(0.0)
        self.activation = activation

    def __call__(self, x: Sequence[Value | Number]) -> Value:
        act = self.b
        for wi, xi in zip(self.w, x):
            act = act + wi * xi
        if self.activation == "linear":
            return act
        return getattr(act, self.activation)()

    def parameters(self) -> list[Value]:
        return self.w + [self.b]

    def __repr__(self) -> str:
        return f"{self.activation}Neuron({len(self.w)})"


class Layer(Module):
    """``nout`` independent neurons, each reading all ``nin`` inputs."""

    def __init__(
        self, nin: int, nout: int, activation: str = "relu", rng: random.Random | None = None
    ) -> None:
        self.neurons = [Neuron(nin, activation, rng) for _ in range(nout)]

    def __call__(self, x: Sequence[Value | Number]) -> Value | list[Value]:
        out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list[Value]:
        return [p for n in self.neurons for p in n.parameters()]

    def __repr__(self) -> str:
        return f"Layer[{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):
    """Multi-layer perceptron: ``nin`` inputs, hidden layers with ``activation``, a linear last layer.

    Args:
        nin: input size.
        nouts: the size of each layer, the last one being the output size.
        activation: nonlinearity of the hidden layers.
        rng: random generator for the weights.
    """

    def __init__(
        self, nin: int, nouts: Sequence[int], activation: str = "relu", rng: random.Random | None = None
    ) -> None:
        sizes = [nin, *nouts]
        self.layers = [
            Layer(sizes[i], sizes[i + 1], activation if i < len(nouts) - 1 else "linear", rng)
            for i in range(len(nouts))
        ]

    def __call__(self, x: Sequence[Value | Number]) -> Value | list[Value]:
        for layer in self.layers:
            x = layer(x)
            if isinstance(x, Value):
                x = [x]
        return x[0] if len(x) == 1 else x

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self) -> str:
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"
