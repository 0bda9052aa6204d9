"""GPT-2's shape, on its own so that every layer of the package can name it.

``llmpy.model`` (the model) and ``llmpy.hf`` (the converters, which sit below the model and never
import it) both use it; ``llmpy.GPT2Config`` and ``llmpy.model.GPT2Config`` are this class.

>>> GPT2Config(n_layer=2, n_head=3, n_embd=48, vocab_size=101, block_size=32).n_embd
48
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GPT2Config"]


@dataclass(frozen=True)
class GPT2Config:
    """Shape of a GPT-2 model. Defaults are GPT-2 small (124M).

    The vocabulary is padded internally to a multiple of 128 (50257 -> 50304); the padding rows
    are never visible through the Python API.
    """

    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    vocab_size: int = 50257
    block_size: int = 1024
