"""Device strings: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` — parsed and resolved in one place.

Every part of llmpy that takes a device (``GPT2(device=...)``, ``python -m llmpy.train
--device``, sampling, HellaSwag, the ``train_gpt2`` binary) goes through the C core's
``llm_device_parse``/``llm_device_resolve`` (csrc/core/device.c), so the rules are written once:

- ``auto``: ``cuda:<local rank>`` when a GPU is usable, else ``cpu``;
- ``cuda``: ``cuda:<local rank>`` — under ``mpirun`` each rank takes the GPU numbered by its rank
  on its machine; a single process takes GPU 0;
- ``cuda:N``: GPU N (N must exist);
- ``cpu``: the CPU.

>>> from llmpy.device import resolve
>>> resolve("cpu")
'cpu'
>>> resolve("auto")                 # on a machine without a usable GPU
'cpu'
>>> resolve("gpu")
Traceback (most recent call last):
ValueError: unknown device 'gpu' (expected auto, cpu, cuda or cuda:N)
"""

from __future__ import annotations

from . import _C, cuda

__all__ = ["arg", "parse", "resolve"]


def parse(spec: str) -> str:
    """Checks a device string and returns its canonical form (ValueError when it is malformed)."""
    if not isinstance(spec, str):
        raise TypeError(f"device must be a string such as 'cpu', 'cuda' or 'cuda:1', "
                        f"got {type(spec).__name__}")
    return _C.parse_device(spec)


def resolve(spec: str = "auto", *, local_rank: int | None = None) -> str:
    """The device this process uses for ``spec``: ``'cpu'`` or ``'cuda:N'``.

    ``local_rank`` defaults to this process's rank on its machine (``llmpy.dist.launched_local_rank``;
    0 without a launcher). The CUDA cases are ``llmpy.cuda.resolve``'s. A CUDA request that cannot be met raises NotImplementedError with the
    reason (not built, no driver, no device) or ValueError (no such GPU).
    """
    spec = parse(spec)
    if spec == "cpu":
        return "cpu"
    return cuda.resolve(spec, local_rank=local_rank)


def arg(spec: str) -> str:
    """``type=`` for an argparse ``--device`` flag: a malformed device is a usage error."""
    import argparse

    try:
        return parse(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


#: Help text of every ``--device`` flag.
HELP = "auto (a GPU when one is usable, else the CPU), cpu, cuda (this rank's GPU under mpirun) or cuda:N"
