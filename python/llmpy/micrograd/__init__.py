"""micrograd: backpropagation on scalars, small enough to read in one sitting.

The idea: a neural network is just a big mathematical expression. If every number remembers
which numbers and which operation produced it, the derivative of the output with respect to
every input follows from the chain rule, applied one operation at a time from the output
backwards. That is all backpropagation is; PyTorch does the same on tensors for speed.

Where to look:

* :mod:`.engine` — :class:`Value`, each operator with its local derivative in a ``_backward``
  closure, and :meth:`Value.backward` (topological sort + chain rule, no recursion).
* :mod:`.nn` — :class:`Neuron`, :class:`Layer`, :class:`MLP` built from Values.
* :mod:`.moons` — training an MLP on two moons with a max-margin loss
  (``python -m llmpy.micrograd`` runs it and saves a decision-boundary PNG).
* :mod:`.viz` — :func:`draw_dot` draws the graph (needs the optional ``graphviz`` package).

>>> x = Value(3.0)
>>> y = (x * x + 1).log()         # dy/dx = 2x / (x^2 + 1) = 0.6
>>> y.backward()
>>> round(x.grad, 12)
0.6
"""

from .engine import Value, total
from .moons import make_moons, train_moons
from .nn import MLP, Layer, Module, Neuron
from .viz import draw_dot, trace

__all__ = [
    "MLP",
    "Layer",
    "Module",
    "Neuron",
    "Value",
    "draw_dot",
    "make_moons",
    "total",
    "trace",
    "train_moons",
]
