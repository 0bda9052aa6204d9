"""The package's structure: no import cycles in python/llmpy (function-local imports included).

The oracle is the import graph read from the source with ``ast``: an edge A -> B for every
``import``/``from ... import`` of an llmpy module B anywhere in A (top level or inside a
function), and the test fails naming the first cycle found.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "llmpy"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(current: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = current.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict:
    """module -> set of llmpy modules it imports (submodules imported by name included)."""
    mods = _modules()
    graph = {m: set() for m in mods}
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_pkg, node)
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                if t in mods and t != name and not name.startswith(t + "."):  # a package's own __init__
                    graph[name].add(t)
    return graph


def _find_cycle(graph: dict):
    state: dict = {}
    stack: list = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_graph_reader_sees_imports():
    g = import_graph()
    assert "llmpy.model" in g["llmpy.train"], "the reader missed train.py's import of the model"
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycles():
    cycle = _find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# ----------------------------------------------------------------------------
# docs/architecture.md matches the tree

ROOT = PACKAGE.parents[1]
DOC = ROOT / "docs" / "architecture.md"
_PATH = re.compile(r"(?<![\w/])((?:csrc|cuda|python/llmpy|tests|dev)/[\w./-]*)")


def _named_in_doc() -> set:
    """Paths the document names: full paths, plus bare file names after a folder on a tree line
    (``python/llmpy/data/   download.py ...``)."""
    named = set()
    for line in DOC.read_text().splitlines():
        paths = _PATH.findall(line)
        named.update(p.rstrip(".") for p in paths)
        if paths and paths[0].endswith("/"):
            rest = line.split(paths[0], 1)[1].split("(")[0]
            named.update(paths[0] + name for name in re.findall(r"\b[\w-]+\.(?:py|c|h|cu|cuh|cpp)\b", rest))
    return named


def _sources() -> list:
    out = []
    for top, exts in (("csrc", {".c", ".h", ".cpp"}), ("cuda", {".cu", ".cuh", ".h", ".cpp"}),
                      ("python/llmpy", {".py"})):
        for p in (ROOT / top).rglob("*"):
            if p.suffix in exts and "__pycache__" not in p.parts:
                rel = p.relative_to(ROOT).as_posix()
                if p.name in ("__init__.py", "__main__.py") and p.parent != PACKAGE:
                    continue  # a subpackage's own files are covered by its folder's line
                out.append(rel)
    return sorted(out)


def test_architecture_doc_names_every_source_file():
    named = _named_in_doc()
    missing = [s for s in _sources() if s not in named]
    assert not missing, f"docs/architecture.md does not describe: {', '.join(missing)}"


def test_architecture_doc_names_only_existing_paths():
    gone = sorted(p for p in _named_in_doc() if not (ROOT / p).exists())
    assert not gone, f"docs/architecture.md names paths that do not exist: {', '.join(gone)}"
