"""GPT-2's shape, on its own so that every layer of the package can name it.

``llmpy.model`` (the model) and ``llmpy.hf`` (the converters, which sit below the model and never
import it) both use it; ``llmpy.GPT2Config`` and ``llmpy.model.GPT2Config`` are this class.

>>> GPT2Config(n_layer=2, n_head=3, n_embd=48, vocab_size=101, block_size=32).n_embd
48
>>> GPT2Config(n_layer=2.5)
Traceback (most recent call last):
TypeError: GPT2Config: n_layer must be an integer, got float 2.5
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from . import _C
from .checks import integer

__all__ = ["GPT2Config"]


@dataclass(frozen=True)
class GPT2Config:
    """Shape of a GPT-2 model. Defaults are GPT-2 small (124M).

    The vocabulary is padded internally to a multiple of 128 (50257 -> 50304); the padding rows
    are never visible through the Python API.

    Every field is checked when the config is made: integers (numpy integers too; TypeError for
    anything else), then the core's rules (``llm_config_check``: each size >= 1 and below the
    core's limits, ``n_embd`` divisible by ``n_head``; ValueError naming the field).
    """

    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    vocab_size: int = 50257
    block_size: int = 1024

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            try:
                v = integer(v, f.name, max=2**31 - 1)  # a C int; the core's own limits are lower
            except (TypeError, ValueError) as e:
                raise type(e)(f"GPT2Config: {e}") from None
            object.__setattr__(self, f.name, v)  # np.int64(12) -> 12: the config holds plain ints
        try:
            _C.check_config(self.n_layer, self.n_head, self.n_embd, self.vocab_size, self.block_size)
        except ValueError as e:
            raise ValueError(f"GPT2Config: {e}") from None
