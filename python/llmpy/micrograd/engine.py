"""The scalar autograd engine: a :class:`Value` remembers how it was computed.

Every arithmetic operation on a ``Value`` returns a new ``Value`` that keeps its inputs
(``_prev``), the name of the operation (``_op``) and a closure (``_backward``) that knows
the local derivative of that one operation: called with the gradient arriving at the
output, it adds ``local derivative * that gradient`` to each input's ``.grad``. :meth:`Value.backward` orders the graph
topologically (iteratively, so a 100,000-node chain is fine) and applies the chain rule
from the output back to the leaves, *accumulating* into ``.grad`` — a value used twice
receives both contributions.

>>> a, b = Value(2.0), Value(-3.0)
>>> y = a * b + a ** 2          # dy/da = b + 2a = 1, dy/db = a = 2
>>> y.backward()
>>> (y.data, a.grad, b.grad)
(-2.0, 1.0, 2.0)
"""

from __future__ import annotations

import contextlib
import gc
import math
import numbers
from collections.abc import Iterable, Iterator
from typing import Callable, Union

__all__ = ["Value", "gc_paused", "total"]

Number = Union[int, float]


def _noop(g: float) -> None:
    return None


class Value:
    """A scalar in a computation graph, with its gradient.

    Args:
        data: the number.
        _children: the values it was computed from (set by the operators, not by users).
        _op: short name of the operation that made it, for :func:`~llmpy.micrograd.draw_dot`.
        label: optional name shown in drawings.

    Operators ``+ - * /`` work with other ``Value`` objects and with plain numbers on either
    side; ``**`` takes a plain number as the exponent.

    >>> x = Value(0.5)
    >>> (2 * x - 1 / x).data
    -1.0
    """

    __slots__ = ("_backward", "_op", "_prev", "data", "grad", "label")

    # The closure receives the output's gradient as an argument instead of reading ``out.grad``:
    # a closure that captured ``out`` would make a reference cycle (out -> closure -> out), and
    # then every graph could only be freed by Python's cyclic garbage collector, which made
    # training about 7x slower. Without the cycle, a graph is freed as soon as it is dropped.

    def __init__(self, data: Number, _children: tuple = (), _op: str = "", label: str = "") -> None:
        self.data = float(data)
        self.grad = 0.0
        self._backward: Callable[[float], None] = _noop
        self._prev: tuple[Value, ...] = tuple(_children)
        self._op = _op
        self.label = label

    # ------------------------------------------------------------------ binary operators

    def __add__(self, other: Value | Number) -> Value:
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other), "+")

        def _backward(g: float) -> None:  # d(a+b)/da = d(a+b)/db = 1
            self.grad += g
            other.grad += g

        out._backward = _backward
        return out

    def __mul__(self, other: Value | Number) -> Value:
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other), "*")

        def _backward(g: float) -> None:  # d(ab)/da = b, d(ab)/db = a
            self.grad += other.data * g
            other.grad += self.data * g

        out._backward = _backward
        return out

    def __pow__(self, k: Number) -> Value:
        if isinstance(k, Value) or not isinstance(k, numbers.Real):
            raise TypeError(
                f"Value ** {type(k).__name__}: the exponent must be a plain int or float "
                "(write (k * x.log()).exp() for a Value exponent)"
            )
        out = Value(self.data**k, (self,), f"**{k:g}")

        def _backward(g: float) -> None:  # d(x^k)/dx = k x^(k-1)
            self.grad += k * self.data ** (k - 1) * g

        out._backward = _backward
        return out

    # Everything else is built from the three above, as in the lecture: a - b = a + (-b),
    # a / b = a * b**-1. The graph is a little larger but there is less to get wrong.

    def __neg__(self) -> Value:
        return self * -1

    def __sub__(self, other: Value | Number) -> Value:
        return self + (-other)

    def __truediv__(self, other: Value | Number) -> Value:
        other = other if isinstance(other, Value) else Value(other)
        return self * other**-1

    def __radd__(self, other: Number) -> Value:  # 2 + x
        return self + other

    def __rmul__(self, other: Number) -> Value:  # 2 * x
        return self * other

    def __rsub__(self, other: Number) -> Value:  # 2 - x
        return (-self) + other

    def __rtruediv__(self, other: Number) -> Value:  # 2 / x
        return Value(other) * self**-1

    # ------------------------------------------------------------------ unary functions

    def _unary(self, y: float, dydx: float, op: str) -> Value:
        out = Value(y, (self,), op)

        def _backward(g: float) -> None:
            self.grad += dydx * g

        out._backward = _backward
        return out

    def exp(self) -> Value:
        """e**x; its derivative is itself."""
        y = math.exp(self.data)
        return self._unary(y, y, "exp")

    def log(self) -> Value:
        """Natural logarithm (x > 0); derivative 1/x."""
        if self.data <= 0:
            raise ValueError(f"log of a non-positive value ({self.data})")
        return self._unary(math.log(self.data), 1.0 / self.data, "log")

    def tanh(self) -> Value:
        """Hyperbolic tangent; derivative 1 - tanh(x)**2."""
        t = math.tanh(self.data)
        return self._unary(t, 1.0 - t * t, "tanh")

    def relu(self) -> Value:
        """max(0, x); derivative 1 where x > 0, else 0."""
        return self._unary(max(self.data, 0.0), float(self.data > 0), "ReLU")

    def sigmoid(self) -> Value:
        """1 / (1 + e**-x); derivative s(1 - s). Computed without overflow for large |x|."""
        x = self.data
        s = 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
        return self._unary(s, s * (1.0 - s), "sigmoid")

    # ------------------------------------------------------------------ backpropagation

    def topological_order(self) -> list[Value]:
        """All values this one depends on (itself included), each after its inputs.

        Depth-first search with an explicit stack instead of recursion: a node is emitted when
        the marker pushed before its children comes back off the stack, i.e. after all of them.
        """
        order: list[Value] = []
        visited: set[int] = set()
        stack: list[tuple[Value, bool]] = [(self, False)]
        while stack:
            node, children_done = stack.pop()
            if children_done:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            for child in node._prev:
                if id(child) not in visited:
                    stack.append((child, False))
        return order

    def backward(self) -> None:
        """Fills ``.grad`` of every value in the graph with d(self)/d(value).

        Gradients accumulate: call ``zero_grad()`` (or set ``.grad = 0``) between steps.
        """
        order = self.topological_order()
        self.grad = 1.0
        for node in reversed(order):
            node._backward(node.grad)

    def __repr__(self) -> str:
        return f"Value(data={self.data:.6g}, grad={self.grad:.6g})"


def total(values: Iterable[Value | Number], start: Value | Number = 0.0) -> Value:
    """Sum of values, like ``sum()`` but always returning a :class:`Value`.

    >>> total([Value(1.0), 2.0, Value(3.0)]).data
    6.0
    """
    acc = start if isinstance(start, Value) else Value(start)
    for v in values:
        acc = acc + v
    return acc


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pauses Python's cyclic garbage collector inside the ``with`` block.

    A graph of Values has no reference cycles, so reference counting frees it; but while a
    graph of 100,000 nodes is being built, the collector would walk it again and again
    looking for cycles that are not there (training the moons MLP ran ~5x slower). The
    previous state is restored on exit.

    >>> with gc_paused():
    ...     y = total(Value(float(i)) for i in range(1000))
    >>> y.data
    499500.0
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
