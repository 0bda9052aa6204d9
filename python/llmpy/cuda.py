"""The CUDA backend, when llmpy was built with it (extension module ``llmpy._cuda``).

``llmpy._cuda`` holds only the CUDA backend: the C core it plugs into is ``libllmpy.so``, shared
with ``llmpy._C``, so importing either first works and one process has one core. A CPU install
has no ``_cuda`` and never needs CUDA libraries. Importing this module does nothing; the GPU is
initialised by the first model created with ``device="cuda"`` (or by ``module()``).

Why CUDA is or is not usable, in one call:

>>> import llmpy.cuda
>>> llmpy.cuda.status()             # on a CPU-only install
CudaStatus(available=False, device_count=0, reason='not built: ...')
>>> llmpy.cuda.available()          # the same, as a bool
False

``reason`` starts with ``not built:``, ``import error:`` (the module exists but its libraries do
not load: the message says which), ``no driver:``, ``no device:`` or ``driver error:``; with a
GPU it reads ``available: N GPU(s)``. ``module()`` raises the import error itself (never hidden).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import NamedTuple

from . import _C

_initialised: int | None = None

NOT_BUILT = ("not built: this llmpy has no CUDA backend; reinstall on a machine with nvcc and cuBLAS: "
             "pip install . --no-build-isolation --config-settings=cmake.define.LLMPY_CUDA=ON")


class CudaStatus(NamedTuple):
    """Whether ``device="cuda"`` works here, and why not."""

    available: bool
    device_count: int
    reason: str

    def __str__(self) -> str:
        return self.reason


def built() -> bool:
    """True when this llmpy has the CUDA extension module (whether or not it loads)."""
    try:
        return importlib.util.find_spec(f"{__package__}._cuda") is not None
    except (ImportError, ValueError):
        return False


def _import():
    """llmpy._cuda; NotImplementedError when it is not built, its ImportError when it fails to load."""
    if not built():
        raise NotImplementedError(f"device 'cuda': {NOT_BUILT}")
    return importlib.import_module(f"{__package__}._cuda")


def status() -> CudaStatus:
    """Whether models can be created with ``device="cuda"``, and the reason when they cannot."""
    if not built():
        return CudaStatus(False, 0, NOT_BUILT)
    try:
        mod = _import()
    except ImportError as e:
        return CudaStatus(False, 0, f"import error: llmpy._cuda does not load: {e}")
    n, why = mod.probe()
    if n > 0:
        return CudaStatus(True, int(n), f"available: {n} GPU{'s' if n > 1 else ''}")
    return CudaStatus(False, 0, why)


def available() -> bool:
    """True when models can be created with ``device="cuda"`` (``status()`` says why not)."""
    return status().available


def device_count() -> int:
    """Number of usable GPUs (0 without the backend, a driver or a GPU)."""
    return status().device_count


def resolve(spec: str, *, local_rank: int | None = None) -> str:
    """``'cuda:N'`` for a canonical non-CPU device string (``auto``, ``cuda``, ``cuda:N``; see
    ``llmpy.device``, which parses before calling this), or ``'cpu'`` for ``auto`` without a usable
    GPU. The rules are the core's (``llm_device_resolve``); this supplies what it needs to know:
    the GPUs here and this process's rank on its machine (the launcher's, without joining a group).
    """
    from . import dist

    st = status()
    if local_rank is None:
        local_rank = dist.launched_local_rank()
    return _C.resolve_device(spec, st.device_count, int(local_rank), "" if st.available else st.reason)


def module(device: str = "cuda"):
    """The CUDA extension module, initialised on ``device`` ('cuda' or 'cuda:N'; 'cuda' resolves
    to ``cuda:<local rank>`` under an MPI launch, see ``resolve``).

    One process drives one GPU (launch one process per GPU with mpirun for more). Raises
    NotImplementedError when CUDA is not built or not usable (with the reason) and the module's
    own ImportError when it does not load.
    """
    global _initialised
    mod = _import()  # ImportError propagates with its message
    spec = _C.parse_device(device)
    dev = resolve(spec) if spec != "cpu" else "cpu"
    if dev == "cpu":
        raise ValueError(f"llmpy.cuda.module() needs a CUDA device, got {device!r} (which means the CPU here)")
    index = int(dev.split(":")[1])
    if _initialised is None:
        mod.init(index)
        _initialised = index
    elif _initialised != index:
        raise ValueError(f"this process already drives cuda:{_initialised} (asked for cuda:{index}); one GPU "
                         "per process: launch one process per GPU with mpirun")
    return mod
