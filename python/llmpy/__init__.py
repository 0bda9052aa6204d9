"""llmpy: GPT-2 training with a C/CUDA core and a thin Python package.

>>> import numpy as np, llmpy
>>> m = llmpy.GPT2(llmpy.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=64, block_size=16))
>>> x = np.zeros((1, 8), dtype=np.int32)
>>> round(m.forward(x, x), 1)  # about ln(64) at initialisation
4.2

Importing has no side effects: no threads are started and nothing is read or downloaded.
"""

from __future__ import annotations

from . import _C
from .checks import integer
from .model import GPT2, GPT2Config

__version__: str = _C.build_info()["version"]

#: File-format constants (magic numbers, versions), read from csrc/core/formats.h via the C module.
formats: dict = dict(_C.formats)


def set_num_threads(n: int) -> None:
    """Sets the number of OpenMP threads the CPU backend uses (default: all available cores).

    ``n`` is an integer >= 1 (TypeError, ValueError otherwise; the core refuses n < 1 too).
    """
    _C.set_num_threads(integer(n, "number of threads", min=1, max=2**31 - 1))


def get_num_threads() -> int:
    """Number of OpenMP threads the CPU backend will use."""
    return _C.get_num_threads()


def set_cpu_isa(name: str = "auto") -> str:
    """Selects the instruction-set variant of the CPU kernels; returns the one now in use.

    ``name`` is one of ``build_info()["cpu_isas"]`` or ``"auto"`` (the best this CPU supports).
    Raises ValueError for a variant this build lacks and NotImplementedError for one this CPU
    cannot run; the ValueError's message lists this build's variants (an empty name is refused
    like any unknown one). Results differ between variants only by float32 rounding.

    >>> llmpy.set_cpu_isa("generic")
    'generic'
    >>> llmpy.set_cpu_isa()  # back to the best one, e.g. 'avx512'
    'avx512'
    """
    if not isinstance(name, str):
        raise TypeError(f"CPU ISA name must be a string: 'auto' or one of {_C.build_info()['cpu_isas']}, "
                        f"got {type(name).__name__}")
    _C.set_cpu_isa(name)
    return _C.build_info()["cpu_isa"]


def cuda_available() -> bool:
    """True when this llmpy has the CUDA backend and a GPU is visible (``device="cuda"`` works).

    >>> llmpy.cuda_available()  # on a machine without a GPU
    False
    """
    from . import cuda

    return cuda.available()


def cuda_status():
    """Whether ``device="cuda"`` works and, when it does not, why: ``reason`` starts with
    ``not built:``, ``import error:``, ``no driver:``, ``no device:`` or ``driver error:``.

    >>> print(llmpy.cuda_status())  # a CPU-only install
    not built: this llmpy has no CUDA backend; reinstall on a machine with nvcc and cuBLAS: ...
    """
    from . import cuda

    return cuda.status()


def build_info() -> dict:
    """What this build of llmpy contains.

    ``cpu_isa`` is the instruction-set variant of the CPU kernels in use (picked at run time
    from the CPU's features; ``LLMPY_CPU_ISA=avx2`` in the environment asks for another) and
    ``cpu_isas`` the variants this build contains, best first.

    >>> info = llmpy.build_info()
    >>> sorted(info)
    ['backends', 'compiler', 'cpu_isa', 'cpu_isas', 'cuda', 'mpi', 'nccl', 'num_threads', 'openmp', 'version']
    >>> info["cpu_isa"] in info["cpu_isas"]  # e.g. 'avx512' of ['avx512', 'avx2', 'generic']
    True
    """
    info = dict(_C.build_info())
    info["cpu_isas"] = info["cpu_isas"].split(",")
    info["num_threads"] = _C.get_num_threads()
    info["backends"] = ["cpu"] + [name for name in ("cuda", "mpi") if info[name]]
    return info


__all__ = ["GPT2", "GPT2Config", "build_info", "cuda_available", "cuda_status", "formats", "get_num_threads",
           "set_cpu_isa", "set_num_threads"]
