"""Character-level data and the training loop for :class:`~llmpy.gpt.model.GPT`.

The text is tiny Shakespeare (1,115,394 characters, ``$LLMPY_DATA_DIR/tinyshakespeare/input.txt``,
downloaded when missing); the vocabulary is its 65 distinct characters, each its own token.
The first 90% is for training, the last 10% for validation. A batch is ``batch_size``
random windows of ``block_size + 1`` characters: inputs are the first ``block_size``, targets
the same window shifted by one — so one window holds ``block_size`` examples, with contexts
of 1 up to ``block_size`` characters.

>>> tok = CharTokenizer.from_text("hello")
>>> tok.encode("hole"), tok.decode(tok.encode("hole"))
([1, 3, 2, 0], 'hole')
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..data.tinyshakespeare import fetch
from .model import GPT, GPTConfig

__all__ = ["CharTokenizer", "TrainResult", "estimate_loss", "get_batch", "load_data", "train"]


@dataclass(frozen=True)
class CharTokenizer:
    """Every distinct character of the text is a token, numbered in sorted order."""

    chars: str

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, s: str) -> list[int]:
        stoi = {c: i for i, c in enumerate(self.chars)}
        return [stoi[c] for c in s]

    def decode(self, ix: list[int]) -> str:
        return "".join(self.chars[i] for i in ix)


def load_data(path: str | Path | None = None) -> tuple[CharTokenizer, torch.Tensor, torch.Tensor]:
    """The tokenizer and the train/val token tensors (90/10) of the text at ``path``
    (default: tiny Shakespeare from the data cache, downloaded if missing)."""
    path = Path(path) if path is not None else fetch()
    text = path.read_text(encoding="utf-8")
    tok = CharTokenizer.from_text(text)
    data = torch.tensor(tok.encode(text), dtype=torch.long)
    n = int(0.9 * len(data))
    return tok, data[:n], data[n:]


def get_batch(
    data: torch.Tensor,
    batch_size: int,
    block_size: int,
    generator: torch.Generator | None = None,
    device: str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random windows: inputs (B, T) and the same shifted by one (B, T)."""
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    x = torch.stack([data[i : i + block_size] for i in ix])
    y = torch.stack([data[i + 1 : i + block_size + 1] for i in ix])
    return x.to(device), y.to(device)


@torch.no_grad()
def estimate_loss(
    model: GPT,
    splits: dict[str, torch.Tensor],
    eval_iters: int,
    generator: torch.Generator | None = None,
    device: str = "cpu",
) -> dict[str, float]:
    """Mean loss over ``eval_iters`` random batches of each split, with dropout off.

    A single batch's loss is noisy; the average is a steadier estimate.
    """
    was_training = model.training
    model.eval()
    out = {}
    c = model.config
    for name, data in splits.items():
        losses = torch.zeros(eval_iters)
        for k in range(eval_iters):
            x, y = get_batch(data, c.batch_size, c.block_size, generator, device)
            losses[k] = model(x, y)[1].item()
        out[name] = losses.mean().item()
    model.train(was_training)
    return out


@dataclass
class TrainResult:
    model: GPT
    history: list[dict]  # {"step", "train", "val", "seconds"} at every evaluation
    train_losses: list[float]  # every step's minibatch loss


def train(
    config: GPTConfig,
    train_data: torch.Tensor,
    val_data: torch.Tensor,
    steps: int | None = None,
    seed: int = 1337,
    device: str = "cpu",
    log: Callable[[str], None] | None = print,
) -> TrainResult:
    """Trains a fresh :class:`GPT` with AdamW for ``steps`` (default ``config.max_iters``),
    estimating train/val loss every ``eval_interval`` steps and after the last."""
    torch.manual_seed(seed)  # weights and dropout masks
    g = torch.Generator().manual_seed(seed)  # batches
    g_eval = torch.Generator().manual_seed(seed + 1)
    model = GPT(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    steps = config.max_iters if steps is None else steps
    splits = {"train": train_data, "val": val_data}
    history: list[dict] = []
    losses: list[float] = []
    t0 = time.time()
    if log:
        log(
            f"{model.num_parameters() / 1e6:.3f}M parameters, {steps} steps of {config.batch_size} x {config.block_size}"
        )
    for step in range(steps + 1):
        if step % config.eval_interval == 0 or step == steps:
            est = estimate_loss(model, splits, config.eval_iters, g_eval, device)
            history.append({"step": step, **est, "seconds": round(time.time() - t0, 1)})
            if log:
                log(
                    f"step {step:5d}: train loss {est['train']:.4f}, val loss {est['val']:.4f} ({time.time() - t0:.0f} s)"
                )
        if step == steps:
            break
        x, y = get_batch(train_data, config.batch_size, config.block_size, g, device)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return TrainResult(model, history, losses)
