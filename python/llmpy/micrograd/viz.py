"""Drawing a computation graph with graphviz (optional dependency).

Each value becomes a record node ``label | data | grad``; each operation an oval node between
its inputs and its output, so the chain rule can be followed by eye after ``backward()``.

>>> from llmpy.micrograd import Value
>>> y = (Value(2.0, label="a") * Value(-3.0, label="b")).tanh()
>>> # dot = draw_dot(y); dot.render("graph")   # needs: pip install graphviz (and Graphviz's dot)
"""

from __future__ import annotations

from typing import Any

from ..extras import MissingDependency, require
from .engine import Value

__all__ = ["draw_dot", "trace"]


def trace(root: Value) -> tuple[list[Value], list[tuple[Value, Value]]]:
    """All nodes of the graph of ``root`` and its edges ``(input, output)``."""
    nodes = root.topological_order()
    edges = [(child, v) for v in nodes for child in v._prev]
    return nodes, edges


def draw_dot(root: Value, rankdir: str = "LR") -> Any:
    """A ``graphviz.Digraph`` of the graph that computed ``root``.

    Args:
        root: the output value.
        rankdir: "LR" (left to right) or "TB" (top to bottom).

    Raises:
        ImportError: the ``graphviz`` Python package is not installed; the message says how to
            get it. (Rendering to a file also needs the Graphviz ``dot`` program.)
    """
    try:
        graphviz = require("graphviz", "chapters", "draw_dot")
    except MissingDependency as e:
        raise MissingDependency(
            f"{e}; rendering also needs the Graphviz programs (e.g. apt-get install graphviz), and "
            "without either, trace(root) returns the nodes and edges as Python lists"
        ) from None
    if rankdir not in ("LR", "TB"):
        raise ValueError(f"rankdir must be 'LR' or 'TB', got {rankdir!r}")
    dot = graphviz.Digraph(format="svg", graph_attr={"rankdir": rankdir})
    nodes, edges = trace(root)
    for n in nodes:
        uid = str(id(n))
        name = f"{n.label} | " if n.label else ""
        dot.node(name=uid, label=f"{{ {name}data {n.data:.4f} | grad {n.grad:.4f} }}", shape="record")
        if n._op:
            dot.node(name=uid + n._op, label=n._op)
            dot.edge(uid + n._op, uid)
    for a, b in edges:
        dot.edge(str(id(a)), str(id(b)) + b._op)
    return dot
