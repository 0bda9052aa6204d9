"""names.txt, the character vocabulary, the 80/10/10 split and the context-window datasets.

``names.txt`` holds 32,033 names, one per line. It lives in the data cache at
``$LLMPY_DATA_DIR/makemore/names.txt`` and is downloaded there when missing. Characters are
numbered ``'.' = 0`` (the start/end token) then ``a..z = 1..26``.

A word becomes one example per character it contains plus one for the end: with a context
of 3, ``"emma"`` gives ``... -> e``, ``..e -> m``, ``.em -> m``, ``emm -> a``, ``mma -> .``.

>>> v = Vocab.from_words(["emma", "ava"])
>>> v.itos, v.encode("ava"), v.decode([2, 3, 3, 1])
(('.', 'a', 'e', 'm', 'v'), [1, 4, 1], 'emma')
>>> X, Y = build_dataset(["emma"], block_size=3, vocab=v)
>>> X.tolist(), Y.tolist()
([[0, 0, 0], [0, 0, 2], [0, 2, 3], [2, 3, 3], [3, 3, 1]], [2, 3, 3, 1, 0])
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.download import dataset_dir, download

__all__ = [
    "NAMES_SHA256",
    "NAMES_URL",
    "Splits",
    "Vocab",
    "build_dataset",
    "fetch_names",
    "load_words",
    "names_path",
    "split_words",
]

NAMES_URL = "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt"
NAMES_SHA256 = "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"  # 228,145 bytes
SPLIT_SEED = 42


def names_path() -> Path:
    """Where names.txt lives in the cache: ``$LLMPY_DATA_DIR/makemore/names.txt``."""
    return dataset_dir("makemore") / "names.txt"


def fetch_names(progress: bool | None = None) -> Path:
    """The path of names.txt, downloading it (SHA-256 checked) when it is not cached."""
    return download(NAMES_URL, names_path(), sha256=NAMES_SHA256, progress=progress)


def load_words(path: str | Path | None = None) -> list[str]:
    """The names, lower-case, one per non-empty line (default: the cached names.txt)."""
    path = Path(path) if path is not None else fetch_names()
    return [w.strip() for w in path.read_text(encoding="utf-8").splitlines() if w.strip()]


@dataclass(frozen=True)
class Vocab:
    """Characters <-> integers; index 0 is ``'.'``, the token that starts and ends every word."""

    itos: tuple[str, ...]

    @classmethod
    def from_words(cls, words: list[str]) -> Vocab:
        chars = sorted(set("".join(words)))
        if "." in chars:
            raise ValueError("'.' is reserved for the start/end token and cannot appear in a word")
        return cls(tuple(["."] + chars))

    @property
    def stoi(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, word: str) -> list[int]:
        stoi = self.stoi
        return [stoi[c] for c in word]

    def decode(self, ix: list[int]) -> str:
        return "".join(self.itos[i] for i in ix)


@dataclass
class Splits:
    """Words split 80/10/10 into train, val and test."""

    train: list[str]
    val: list[str]
    test: list[str]


def split_words(words: list[str], seed: int = SPLIT_SEED) -> Splits:
    """Shuffles a copy of ``words`` with ``random.Random(seed)`` and cuts it at 80% and 90%.

    ``random.Random(42).shuffle`` gives the same order as the lecture's
    ``random.seed(42); random.shuffle(words)``, so the splits are the lecture's.
    """
    words = list(words)
    random.Random(seed).shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    return Splits(words[:n1], words[n1:n2], words[n2:])


def build_dataset(words: list[str], block_size: int, vocab: Vocab) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``X`` (N, block_size) and targets ``Y`` (N,), int64: every next character of
    every word (end token included) with the ``block_size`` characters before it."""
    stoi = vocab.stoi
    xs: list[list[int]] = []
    ys: list[int] = []
    for w in words:
        context = [0] * block_size
        for ch in w + ".":
            ix = stoi[ch]
            xs.append(context)
            ys.append(ix)
            context = context[1:] + [ix]
    X = torch.tensor(xs, dtype=torch.long).view(-1, block_size)
    return X, torch.tensor(ys, dtype=torch.long)
