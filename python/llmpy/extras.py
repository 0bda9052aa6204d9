"""Optional dependencies: one line that names the extra bringing them, never a traceback.

llmpy itself needs numpy, tiktoken and regex. Everything else is an extra of pyproject.toml
(``chapters``: torch, matplotlib, graphviz; ``plot``: matplotlib; ``data``: datasets, pyarrow;
``hf``: huggingface_hub). Code that needs one imports it through :func:`require` when it needs
it, never at import time, so that ``--help`` works without it and a missing package says what to
install in one line:

>>> require("json", "chapters", "this example").__name__
'json'
>>> try:
...     require("no_such_module_xyz", "chapters", "python -m llmpy.gpt")
... except MissingDependency as e:
...     print(e)
python -m llmpy.gpt needs no_such_module_xyz, which is not installed: pip install ".[chapters]" in your llmpy checkout (or pip install no_such_module_xyz)

The command-line entry points catch :class:`MissingDependency` (an ``ImportError``) and print
``error: <that line>`` with exit status 1 (:func:`exit_missing`).
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType


class MissingDependency(ImportError):
    """An optional dependency is not installed; ``str(e)`` is one line saying what to install."""


def install_hint(package: str, extra: str | None) -> str:
    """What to run to get ``package``: the extra that brings it, or the package itself.

    >>> install_hint("pyarrow", "data")
    'pip install ".[data]" in your llmpy checkout (or pip install pyarrow)'
    >>> install_hint("tiktoken", None)
    'pip install tiktoken'
    """
    if extra is None:
        return f"pip install {package}"
    return f'pip install ".[{extra}]" in your llmpy checkout (or pip install {package})'


def require(module: str, extra: str | None, what: str) -> ModuleType:
    """``importlib.import_module(module)``, or :class:`MissingDependency` naming ``extra``.

    ``what`` is who needs it, as the user knows it ("python -m llmpy.makemore",
    "parameters(torch=True)"). Only the absence of ``module``'s own package is translated: an
    ImportError from inside an installed package (a broken install) is raised as it is.
    """
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = getattr(e, "name", None)
        if missing is not None and missing.split(".")[0] != top:
            raise
        raise MissingDependency(f"{what} needs {top}, which is not installed: {install_hint(top, extra)}") from None


def exit_missing(e: MissingDependency) -> int:
    """Prints ``error: <message>`` on stderr and returns the exit status (1) for a CLI's main()."""
    print(f"error: {e}", file=sys.stderr)
    return 1


def missing_names(package: str, module: str, extra: str):
    """A module ``__getattr__`` for ``package`` when ``module`` is missing: each public name (in the
    package's ``__all__``) raises :class:`MissingDependency` naming ``extra``; other names are the
    usual AttributeError. The package still imports, so its ``--help`` works."""

    def __getattr__(name: str):
        if name not in getattr(sys.modules[package], "__all__", ()):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        require(module, extra, f"{package}.{name}")

    return __getattr__
