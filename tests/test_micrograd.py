"""micrograd: scalar gradients against PyTorch float64 autograd, deep graphs, the moons demo."""

from __future__ import annotations

import json
import math
import random
import sys

import pytest
from llmpy.micrograd import MLP, Value, draw_dot, total, trace, train_moons
from llmpy.micrograd.__main__ import main
from llmpy.micrograd.engine import gc_paused

torch = pytest.importorskip("torch")

TOL = 1e-10


def _expressions(lib):
    """Compound expressions using every operator, written once for Values and torch tensors."""

    def e1(a, b):
        c = a * b + b**3 - a / b
        d = (c * 2 + 1).tanh() * (-a) + (b * b + 1).log()
        return d.relu() + lib.sigmoid(c - 0.5) + 3 - d

    def e2(a, b):
        c = 1 / (a + 2.5) + 2 * b - (4 - a) ** 2 / 7
        d = lib.exp(a * 0.3) * c + (b.sigmoid() * 10).log() ** 0.5
        return (d**-1.5 if d.data > 0 else (-d) ** 2) + lib.relu(a * b - 1) * c

    def e3(a, b):
        x = a
        for _ in range(5):  # values used many times: gradients must accumulate
            x = (x * b + a).tanh() - x / 3 + (a - b) ** 2 * 0.1
        return x * x - 2.0 / (1 + x.exp())

    return [e1, e2, e3]


class _Lib:
    """Function-call spelling of the methods, so expressions mix both styles."""

    exp = staticmethod(lambda v: v.exp())
    sigmoid = staticmethod(lambda v: v.sigmoid())
    relu = staticmethod(lambda v: v.relu())


class _TorchT:
    """Wraps a torch scalar so the same expression code runs on both (``.data`` = the number)."""

    def __init__(self, t):
        self.t = t

    @property
    def data(self):
        return float(self.t.detach())

    def _w(self, o):
        return o.t if isinstance(o, _TorchT) else o

    def __add__(self, o):
        return _TorchT(self.t + self._w(o))

    __radd__ = __add__

    def __mul__(self, o):
        return _TorchT(self.t * self._w(o))

    __rmul__ = __mul__

    def __sub__(self, o):
        return _TorchT(self.t - self._w(o))

    def __rsub__(self, o):
        return _TorchT(o - self.t)

    def __truediv__(self, o):
        return _TorchT(self.t / self._w(o))

    def __rtruediv__(self, o):
        return _TorchT(o / self.t)

    def __pow__(self, k):
        return _TorchT(self.t**k)

    def __neg__(self):
        return _TorchT(-self.t)

    def exp(self):
        return _TorchT(self.t.exp())

    def log(self):
        return _TorchT(self.t.log())

    def tanh(self):
        return _TorchT(self.t.tanh())

    def relu(self):
        return _TorchT(self.t.relu())

    def sigmoid(self):
        return _TorchT(self.t.sigmoid())


@pytest.mark.parametrize("idx", [0, 1, 2])
@pytest.mark.parametrize("point", [(-2.0, 1.5), (0.7, 0.9), (1.3, -0.4)])
def test_gradients_match_torch_float64(idx, point):
    a, b = Value(point[0]), Value(point[1])
    y = _expressions(_Lib)[idx](a, b)
    y.backward()

    ta = torch.tensor(point[0], dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(point[1], dtype=torch.float64, requires_grad=True)
    ty = _expressions(_Lib)[idx](_TorchT(ta), _TorchT(tb)).t
    ty.backward()

    for name, got, ref in [
        ("y", y.data, ty.item()),
        ("dy/da", a.grad, ta.grad.item()),
        ("dy/db", b.grad, tb.grad.item()),
    ]:
        diff = abs(got - ref)
        assert diff <= TOL * max(1.0, abs(ref)), (
            f"expr {idx} at {point}: {name} = {got!r}, torch {ref!r}, diff {diff:.3e}"
        )


def test_each_operator_derivative():
    """Single operators against their closed-form derivatives (an oracle independent of torch)."""
    x0 = 0.8
    cases = {
        "exp": (lambda v: v.exp(), math.exp(x0)),
        "log": (lambda v: v.log(), 1 / x0),
        "tanh": (lambda v: v.tanh(), 1 - math.tanh(x0) ** 2),
        "relu": (lambda v: v.relu(), 1.0),
        "sigmoid": (lambda v: v.sigmoid(), math.exp(-x0) / (1 + math.exp(-x0)) ** 2),
        "pow": (lambda v: v**2.5, 2.5 * x0**1.5),
        "neg": (lambda v: -v, -1.0),
        "rsub": (lambda v: 3 - v, -1.0),
        "rdiv": (lambda v: 3 / v, -3 / x0**2),
        "div": (lambda v: v / 4, 0.25),
        "radd": (lambda v: 3 + v, 1.0),
        "rmul": (lambda v: 3 * v, 3.0),
    }
    for name, (f, want) in cases.items():
        x = Value(x0)
        f(x).backward()
        assert abs(x.grad - want) <= 1e-12, f"{name}: grad {x.grad!r}, closed form {want!r}"
    x = Value(-0.3)
    x.relu().backward()
    assert x.grad == 0.0


def test_value_exponent_is_rejected():
    with pytest.raises(TypeError, match="plain int or float"):
        Value(2.0) ** Value(3.0)


def test_sigmoid_does_not_overflow():
    assert Value(-1000.0).sigmoid().data == 0.0
    assert Value(1000.0).sigmoid().data == 1.0


def test_100k_node_chain_no_recursion_limit():
    n = 100_000
    assert n > sys.getrecursionlimit()  # a recursive topological sort would fail here
    x = Value(0.5)
    y = x
    with gc_paused():  # only for speed: the collector would rescan the growing graph
        for _ in range(n):
            y = y + x  # y = (n + 1) x
        y.backward()
    assert len(y.topological_order()) == n + 1
    assert x.grad == n + 1, f"dy/dx = {x.grad}, expected {n + 1}"

    # a chain of nonlinear ops, against the chain rule done by hand
    z = w = Value(0.1)
    with gc_paused():
        for _ in range(n):
            z = z * 0.99999 + 0.00001
        z.backward()
    assert abs(w.grad - 0.99999**n) <= 1e-9, f"{w.grad} vs {0.99999**n}"


def test_total_and_grad_accumulation():
    a = Value(3.0)
    y = total([a, a * a, 2.0])  # a + a^2 + 2
    y.backward()
    assert y.data == 14.0 and a.grad == 7.0


def test_mlp_parameters_and_zero_grad():
    net = MLP(3, [4, 4, 1], rng=random.Random(0))
    assert len(net.parameters()) == 3 * 4 + 4 + 4 * 4 + 4 + 4 + 1
    out = net([1.0, -2.0, 0.5])
    assert isinstance(out, Value)
    (out * out).backward()
    assert any(p.grad != 0 for p in net.parameters())
    net.zero_grad()
    assert all(p.grad == 0 for p in net.parameters())
    assert len(MLP(2, [3, 2])([1.0, 2.0])) == 2  # several outputs come back as a list


def test_mlp_on_moons_reaches_full_accuracy():
    r = train_moons(n_samples=100, steps=100, stop_at_full_accuracy=True)
    assert r.accuracies[-1] == 1.0, f"accuracy after {len(r.accuracies)} steps: {r.accuracies[-1]:.2f}"
    assert r.losses[-1] < r.losses[0] / 5, f"loss {r.losses[0]:.3f} -> {r.losses[-1]:.3f}"


def test_draw_dot_or_clear_message():
    y = (Value(2.0, label="a") * Value(-3.0, label="b")).tanh()
    nodes, edges = trace(y)
    assert len(nodes) == 4 and len(edges) == 3
    try:
        import graphviz  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install graphviz"):
            draw_dot(y)
    else:
        dot = draw_dot(y)
        assert "tanh" in dot.source


def test_cli_writes_metrics_and_png(tmp_path, capsys):
    png = tmp_path / "moons.png"
    assert main(["--samples", "20", "--steps", "3", "--hidden", "4", "--png", str(png), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["steps"] == 3 and 0.0 <= metrics["train_accuracy"] <= 1.0
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert metrics["png"] is None
    else:
        assert png.stat().st_size > 1000
