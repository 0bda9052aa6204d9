"""The decoder-only Transformer of "Let's build GPT", at the character level.

Pieces, bottom up:

* :class:`Head` — one head of causal self-attention. Every position emits a query ("what am
  I looking for"), a key ("what do I contain") and a value ("what I pass on"). Affinities
  are ``q · k / sqrt(head_size)`` (the scaling keeps the softmax from collapsing onto one
  position at initialisation); the future is masked to ``-inf``; a softmax turns each row
  into weights; the output is the weighted sum of values. Positions only talk to the past.
* :class:`MultiHeadAttention` — several heads side by side, concatenated, then a linear
  projection back into the residual stream.
* :class:`FeedForward` — per-position MLP (expand 4x, ReLU, project back): after the tokens
  have communicated, each one thinks about what it gathered.
* :class:`Block` — ``x + attention(ln(x))`` then ``x + feedforward(ln(x))``: residual
  connections give the gradient a straight path to the bottom, pre-LayerNorm keeps each
  branch's input normalised; dropout regularises both branches.
* :class:`GPT` — token + position embeddings, ``n_layer`` blocks, a final LayerNorm and a
  linear map to logits over the characters; :meth:`GPT.generate` samples one character at
  a time, feeding each back in.

>>> cfg = GPTConfig(vocab_size=65, block_size=8, n_embd=32, n_head=4, n_layer=2, dropout=0.0)
>>> m = GPT(cfg)
>>> logits, loss = m(torch.zeros(2, 8, dtype=torch.long), torch.zeros(2, 8, dtype=torch.long))
>>> tuple(logits.shape), round(loss.item(), 0)   # about ln 65 = 4.17 at initialisation
((2, 8, 65), 4.0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CONFIGS", "GPT", "Block", "FeedForward", "GPTConfig", "Head", "MultiHeadAttention"]


@dataclass(frozen=True)
class GPTConfig:
    """Model and training hyperparameters."""

    vocab_size: int = 65
    block_size: int = 256  # context length
    n_embd: int = 384
    n_head: int = 6
    n_layer: int = 6
    dropout: float = 0.2
    batch_size: int = 64
    learning_rate: float = 3e-4
    max_iters: int = 5000
    eval_interval: int = 500
    eval_iters: int = 200

    def replace(self, **kw) -> GPTConfig:
        return GPTConfig(**{**asdict(self), **kw})


#: "lecture": the lecture's final run (meant for a GPU; ~10.8M parameters; val loss ~1.48 there).
#: "small": sized for a CPU core in well under an hour.
#: "tiny": for tests.
CONFIGS = {
    "lecture": GPTConfig(),
    "small": GPTConfig(block_size=64, n_embd=128, n_head=4, n_layer=4, dropout=0.1, batch_size=16,
                       learning_rate=1e-3, max_iters=5000, eval_interval=500, eval_iters=50),
    "tiny": GPTConfig(block_size=16, n_embd=32, n_head=4, n_layer=2, dropout=0.0, batch_size=16,
                      learning_rate=3e-3, max_iters=200, eval_interval=100, eval_iters=10),
}  # fmt: skip


class Head(nn.Module):
    """One head of causal self-attention: (B, T, n_embd) -> (B, T, head_size)."""

    def __init__(self, n_embd: int, head_size: int, block_size: int, dropout: float) -> None:
        super().__init__()
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size, dtype=torch.bool)))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        k, q, v = self.key(x), self.query(x), self.value(x)  # (B, T, hs) each
        wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5  # (B, T, T) affinities
        wei = wei.masked_fill(~self.tril[:T, :T], float("-inf"))  # no peeking at the future
        wei = self.dropout(F.softmax(wei, dim=-1))
        return wei @ v


class MultiHeadAttention(nn.Module):
    """``n_head`` heads of size ``n_embd // n_head`` in parallel, concatenated and projected."""

    def __init__(self, n_embd: int, n_head: int, block_size: int, dropout: float) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
        self.heads = nn.ModuleList(Head(n_embd, n_embd // n_head, block_size, dropout) for _ in range(n_head))
        self.proj = nn.Linear(n_embd, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([h(x) for h in self.heads], dim=-1)
        return self.dropout(self.proj(out))


class FeedForward(nn.Module):
    """Position-wise MLP: Linear(n, 4n) → ReLU → Linear(4n, n) → dropout."""

    def __init__(self, n_embd: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd), nn.ReLU(), nn.Linear(4 * n_embd, n_embd), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Block(nn.Module):
    """Transformer block: communication (attention) then computation (feed-forward), each
    as a pre-LayerNorm residual branch."""

    def __init__(self, n_embd: int, n_head: int, block_size: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd)
        self.sa = MultiHeadAttention(n_embd, n_head, block_size, dropout)
        self.ln2 = nn.LayerNorm(n_embd)
        self.ffwd = FeedForward(n_embd, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.sa(self.ln1(x))
        return x + self.ffwd(self.ln2(x))


class GPT(nn.Module):
    """Character-level GPT: ``forward(idx, targets=None) -> (logits, loss)``.

    Weights of Linear and Embedding layers start as N(0, 0.02), biases at 0.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.n_embd)
        self.position_embedding = nn.Embedding(c.block_size, c.n_embd)
        self.blocks = nn.Sequential(
            *(Block(c.n_embd, c.n_head, c.block_size, c.dropout) for _ in range(c.n_layer))
        )
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        pos = torch.arange(T, device=idx.device)
        x = self.token_embedding(idx) + self.position_embedding(pos)  # (B, T, C)
        x = self.ln_f(self.blocks(x))
        logits = self.lm_head(x)  # (B, T, vocab)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(B * T, -1), targets.view(B * T))
        return logits, loss

    @torch.no_grad()
    def generate(
        self, idx: torch.Tensor, max_new_tokens: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Appends ``max_new_tokens`` sampled tokens to ``idx`` (B, T); the model sees at most
        the last ``block_size`` of them. Call ``eval()`` first to switch dropout off."""
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.config.block_size :])
            probs = F.softmax(logits[:, -1, :], dim=-1)
            nxt = torch.multinomial(probs, num_samples=1, generator=generator)
            idx = torch.cat((idx, nxt), dim=1)
        return idx

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
