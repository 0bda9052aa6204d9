"""The character-level models beyond the bigram: MLP, MLP + BatchNorm, WaveNet-style tree.

* :class:`MLP` (Bengio et al. 2003): look up a learned 10-d vector for each of the last 3
  characters, concatenate them (30 numbers), one tanh hidden layer of 200, then logits over
  the 27 characters. Written with bare tensors, as in the lecture.

  ``init="lecture"`` draws every parameter from N(0, 1), as the first version did. Two
  problems follow: the initial loss is ~25 instead of ln 27 = 3.30 (the softmax is confidently
  wrong), and most tanh units sit in their flat tails (their gradient 1 - t**2 is ~0).
  ``init="scaled"`` fixes both: output layer scaled by 0.01 (logits near 0, loss near 3.30)
  and ``W1`` scaled by the Kaiming factor (5/3)/sqrt(fan_in).

* :func:`mlp_bn`: the same network from :mod:`.layers` with a :class:`~.layers.BatchNorm1d`
  after each hidden linear layer (whose bias becomes redundant and is dropped), Kaiming
  init, and optionally more hidden layers (``n_layers``) to make the diagnostics interesting.

* :func:`wavenet`: context 8; instead of squashing all 8 characters into the first layer,
  fuse them two at a time — 8 → 4 → 2 → 1 — with ``FlattenConsecutive(2)`` + Linear +
  BatchNorm + Tanh at each level (as in WaveNet's dilated causal convolutions, without the
  convolution's reuse across positions).

>>> g = torch.Generator().manual_seed(0)
>>> sum(p.numel() for p in wavenet(27, generator=g).parameters())   # the lecture's count
76579
"""

from __future__ import annotations

import torch

from .layers import BatchNorm1d, Embedding, FlattenConsecutive, Linear, Sequential, Tanh

__all__ = ["MLP", "TANH_GAIN", "mlp_bn", "wavenet"]

#: Kaiming gain for tanh: weights ~ N(0, 1) * gain / sqrt(fan_in) keep activations from
#: shrinking layer after layer (tanh squashes; the gain compensates).
TANH_GAIN = 5 / 3


class MLP:
    """Bengio et al.'s MLP with bare tensors ``C, W1, b1, W2, b2``.

    Args:
        vocab_size: number of characters (27).
        block_size: how many previous characters the model sees (3).
        n_embd: size of each character's embedding (10).
        n_hidden: units in the tanh layer (200).
        init: "lecture" (all N(0, 1)) or "scaled" (see the module docstring).
        generator: random generator for the initialisation.
    """

    def __init__(
        self,
        vocab_size: int = 27,
        block_size: int = 3,
        n_embd: int = 10,
        n_hidden: int = 200,
        init: str = "lecture",
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if init not in ("lecture", "scaled"):
            raise ValueError(f"init must be 'lecture' or 'scaled', got {init!r}")
        self.block_size = block_size
        fan_in = block_size * n_embd

        def randn(*shape: int) -> torch.Tensor:
            return torch.randn(shape, generator=generator, dtype=dtype)

        self.C = randn(vocab_size, n_embd)
        self.W1, self.b1 = randn(fan_in, n_hidden), randn(n_hidden)
        self.W2, self.b2 = randn(n_hidden, vocab_size), randn(vocab_size)
        if init == "scaled":
            self.W1 *= TANH_GAIN / fan_in**0.5
            self.b1 *= 0.01
            self.W2 *= 0.01
            self.b2 *= 0.0
        for p in self.parameters():
            p.requires_grad_(True)
        self.training = True

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        emb = self.C[X]  # (B, block_size, n_embd)
        h = torch.tanh(emb.view(emb.shape[0], -1) @ self.W1 + self.b1)  # (B, n_hidden)
        return h @ self.W2 + self.b2  # (B, vocab_size)

    def parameters(self) -> list[torch.Tensor]:
        return [self.C, self.W1, self.b1, self.W2, self.b2]

    def train(self, mode: bool = True) -> MLP:
        self.training = mode  # nothing behaves differently; kept for a uniform interface
        return self

    def eval(self) -> MLP:
        return self.train(False)


def _finish(model: Sequential, block_size: int, last_scale: float) -> Sequential:
    """Makes the last layer less confident, turns on gradients and records the context size."""
    last = model.layers[-1]
    assert isinstance(last, Linear)
    with torch.no_grad():
        last.weight *= last_scale
    for p in model.parameters():
        p.requires_grad_(True)
    model.block_size = block_size  # type: ignore[attr-defined]
    return model


def mlp_bn(
    vocab_size: int = 27,
    block_size: int = 3,
    n_embd: int = 10,
    n_hidden: int = 200,
    n_layers: int = 1,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Sequential:
    """Embedding → flatten → ``n_layers`` x (Linear without bias → BatchNorm1d → Tanh) → Linear.

    Hidden weights use Kaiming init (gain 5/3); the output layer's weights are scaled by 0.1.
    """
    layers = [Embedding(vocab_size, n_embd, generator, dtype), FlattenConsecutive(block_size)]
    fan_in = block_size * n_embd
    for _ in range(n_layers):
        lin = Linear(fan_in, n_hidden, bias=False, generator=generator, dtype=dtype)
        with torch.no_grad():
            lin.weight *= TANH_GAIN
        layers += [lin, BatchNorm1d(n_hidden, dtype=dtype), Tanh()]
        fan_in = n_hidden
    layers.append(Linear(n_hidden, vocab_size, generator=generator, dtype=dtype))
    return _finish(Sequential(layers), block_size, 0.1)


def wavenet(
    vocab_size: int = 27,
    block_size: int = 8,
    n_embd: int = 24,
    n_hidden: int = 128,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Sequential:
    """The hierarchical model: pairs of positions fused level by level until one is left.

    ``block_size`` must be a power of two (8: three levels).
    """
    if block_size < 2 or block_size & (block_size - 1):
        raise ValueError(f"block_size must be a power of two >= 2, got {block_size}")
    layers = [Embedding(vocab_size, n_embd, generator, dtype)]
    width, t = n_embd, block_size
    while t > 1:
        layers += [
            FlattenConsecutive(2),
            Linear(2 * width, n_hidden, bias=False, generator=generator, dtype=dtype),
            BatchNorm1d(n_hidden, dtype=dtype),
            Tanh(),
        ]
        width, t = n_hidden, t // 2
    layers.append(Linear(n_hidden, vocab_size, generator=generator, dtype=dtype))
    return _finish(Sequential(layers), block_size, 0.1)
