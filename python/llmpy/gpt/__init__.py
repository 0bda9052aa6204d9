"""A character-level GPT, built up from "how can a token look at its past?"

The model predicts the next character of Shakespeare from up to ``block_size`` previous
ones. The chapter's steps and where they live:

1. :mod:`.averaging` — the causal average computed three ways (loops; a matmul with a
   normalised lower-triangular matrix; a masked softmax). The last one, with learned
   affinities instead of zeros, *is* self-attention.
2. :mod:`.model` — :class:`Head` (scaled dot-product attention with a causal mask),
   :class:`MultiHeadAttention`, :class:`FeedForward`, :class:`Block` (pre-LayerNorm,
   residual connections, dropout) and :class:`GPT` with ``generate()``.
3. :mod:`.train` — characters as tokens, random windows as batches, AdamW, train/val loss
   averaged over many batches.

``python -m llmpy.gpt`` trains it: the lecture's configuration (6 layers, 6 heads, 384
channels, context 256, dropout 0.2, lr 3e-4, 5000 steps) on a GPU, a small one on a CPU
(``--config small``), then prints a sample.

>>> import torch
>>> x = torch.randn(2, 5, 3)
>>> torch.allclose(average_loops(x), average_softmax(x), atol=1e-6)
True
"""

from importlib.util import find_spec

from ..extras import missing_names

if find_spec("torch") is not None:
    from .averaging import average_loops, average_matmul, average_softmax
    from .model import CONFIGS, GPT, Block, FeedForward, GPTConfig, Head, MultiHeadAttention
    from .train import CharTokenizer, estimate_loss, get_batch, load_data, train
else:  # without torch the package still imports (`python -m llmpy.gpt --help` works); its
    # names say in one line which extra brings torch
    __getattr__ = missing_names(__name__, "torch", "chapters")

__all__ = [
    "CONFIGS",
    "GPT",
    "Block",
    "CharTokenizer",
    "FeedForward",
    "GPTConfig",
    "Head",
    "MultiHeadAttention",
    "average_loops",
    "average_matmul",
    "average_softmax",
    "estimate_loss",
    "get_batch",
    "load_data",
    "train",
]
