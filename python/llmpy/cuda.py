"""The CUDA backend, when llmpy was built with it (extension module ``llmpy._cuda``).

``llmpy._cuda`` is separate from the CPU module ``llmpy._C`` so that a CPU install never needs
CUDA libraries. Importing this module does nothing; the GPU is initialised by the first model
created with ``device="cuda"`` (or by ``module()``).

>>> import llmpy.cuda
>>> llmpy.cuda.available()          # False on a machine without a GPU or without the backend
False
"""

from __future__ import annotations

_initialised: int | None = None


def built() -> bool:
    """True when this llmpy has the CUDA extension module."""
    try:
        from . import _cuda  # noqa: F401
    except ImportError:
        return False
    return True


def device_count() -> int:
    """Number of usable GPUs (0 without the backend, a driver or a GPU)."""
    try:
        from . import _cuda
    except ImportError:
        return 0
    return int(_cuda.device_count())


def available() -> bool:
    """True when models can be created with ``device="cuda"``."""
    return device_count() > 0


def _index(device: str) -> int:
    if device == "cuda":
        return 0
    tail = device.split(":", 1)[1]
    if not tail.isdigit():
        raise ValueError(f"bad device {device!r}: expected 'cuda' or 'cuda:N'")
    return int(tail)


def module(device: str = "cuda"):
    """The initialised CUDA extension module for ``device`` ('cuda' or 'cuda:N').

    One process drives one GPU (launch one process per GPU with mpirun for more).
    """
    global _initialised
    try:
        from . import _cuda
    except ImportError as e:
        raise NotImplementedError(
            "device 'cuda': this llmpy was built without the CUDA backend. Reinstall on a machine with the "
            "CUDA toolkit: pip install . --config-settings=cmake.define.LLMPY_CUDA=ON") from e
    index = _index(device)
    if _initialised is None:
        n = int(_cuda.device_count())
        if index >= n:
            raise RuntimeError(f"device {device!r}: {n} CUDA device(s) visible")
        _cuda.init(index)
        _initialised = index
    elif _initialised != index:
        raise ValueError(f"this process already drives cuda:{_initialised}; one GPU per process (use mpirun)")
    return _cuda
