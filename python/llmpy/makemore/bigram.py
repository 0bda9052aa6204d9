"""Bigram models: predict the next character from the current one alone.

Two ways to the same model:

* **Counting** (:class:`BigramCounts`): count every pair ``(a, b)`` of consecutive characters
  in a 27x27 table ``N``; the probability of ``b`` after ``a`` is row ``a`` normalised,
  ``P[a, b] = N[a, b] / sum_b N[a, b]``. Adding ``smoothing`` to every count keeps
  probabilities of unseen pairs above zero (otherwise their log-likelihood is -inf).
* **A one-layer neural net** (:class:`BigramNN`): ``logits = onehot(a) @ W`` (which just
  picks row ``a`` of ``W``), ``softmax`` over ``b``, trained by gradient descent on the
  negative log-likelihood. ``exp(W)`` plays the role of the counts; at the optimum of the
  unregularised loss, ``softmax(W)`` equals the counting model's ``P``, so both reach the same
  loss (2.4540 on the whole of names.txt). The L2 penalty ``reg * mean(W**2)`` pulls ``W``
  towards 0, i.e. towards uniform rows: the neural net's version of smoothing.

The quality measure is the average negative log-likelihood (NLL) of the data:
``-mean(log P[a, b])`` over all bigrams; 3.2958 = ln 27 for a uniform guess.

>>> words = ["ab", "ba"]
>>> m = BigramCounts.fit(words, Vocab.from_words(words), smoothing=0)
>>> round(m.nll(words), 4)      # every row is two pairs seen once each: P = 1/2, NLL = ln 2
0.6931
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .data import Vocab, build_dataset

__all__ = ["BigramCounts", "BigramNN", "bigram_counts", "bigram_nll", "uniform_nll"]


def bigram_counts(words: list[str], vocab: Vocab) -> np.ndarray:
    """``N[a, b]``: how many times ``b`` follows ``a`` (int64, len(vocab) x len(vocab)),
    every word framed by the start/end token."""
    stoi = vocab.stoi
    N = np.zeros((len(vocab), len(vocab)), dtype=np.int64)
    for w in words:
        ix = [0] + [stoi[c] for c in w] + [0]
        np.add.at(N, (ix[:-1], ix[1:]), 1)
    return N


def bigram_nll(words: list[str], P: np.ndarray, vocab: Vocab) -> float:
    """Average NLL of every bigram of ``words`` under the probability table ``P`` (float64)."""
    N = bigram_counts(words, vocab)
    seen = N > 0
    with np.errstate(divide="ignore"):
        logp = np.log(np.asarray(P, dtype=np.float64)[seen])
    return float(-(N[seen] * logp).sum() / N.sum())


class BigramCounts:
    """The counting model. As a "network", ``model(X)`` returns ``log P[X[:, 0]]`` as logits
    (X: (B, 1)); rows of P sum to one, so ``cross_entropy`` of them is exactly ``-log P``."""

    block_size = 1
    training = False

    def __init__(self, counts: np.ndarray, vocab: Vocab, smoothing: float = 1.0) -> None:
        self.counts = counts
        self.vocab = vocab
        self.smoothing = smoothing
        Ns = counts.astype(np.float64) + smoothing
        with np.errstate(invalid="ignore"):  # a row of zeros without smoothing: 0/0
            self.P = np.nan_to_num(Ns / Ns.sum(1, keepdims=True))
        with np.errstate(divide="ignore"):
            self._logP = torch.from_numpy(np.log(self.P)).float()

    @classmethod
    def fit(cls, words: list[str], vocab: Vocab, smoothing: float = 1.0) -> BigramCounts:
        """Counts the bigrams of ``words``; ``smoothing`` is added to every count."""
        return cls(bigram_counts(words, vocab), vocab, smoothing)

    def nll(self, words: list[str]) -> float:
        """Average NLL of the bigrams of ``words`` in float64 (inf if one has probability 0)."""
        return bigram_nll(words, self.P, self.vocab)

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        return self._logP[X[:, -1]]

    def parameters(self) -> list[torch.Tensor]:
        return []

    def train(self, mode: bool = True) -> BigramCounts:
        return self

    def eval(self) -> BigramCounts:
        return self


class BigramNN:
    """The bigram as a single linear layer without bias: ``logits = onehot(X[:, 0]) @ W``.

    ``W`` (V, V) starts as N(0, 1) samples. :meth:`fit` runs full-batch gradient descent on
    ``cross_entropy + reg * mean(W**2)``.
    """

    block_size = 1
    training = True

    def __init__(self, vocab_size: int, generator: torch.Generator | None = None) -> None:
        self.W = torch.randn((vocab_size, vocab_size), generator=generator, requires_grad=True)

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        # onehot(x) @ W multiplies W by a row vector with a single 1 at x: it *is* W[x].
        # Indexing gives the same numbers (and gradients) about three times faster.
        return self.W[X[:, -1]]

    def parameters(self) -> list[torch.Tensor]:
        return [self.W]

    def train(self, mode: bool = True) -> BigramNN:
        return self

    def eval(self) -> BigramNN:
        return self

    def fit(
        self,
        words: list[str],
        vocab: Vocab,
        steps: int = 200,
        lr: float = 50.0,
        reg: float = 0.01,
        grouped: bool = False,
        log_every: int = 0,
    ) -> list[float]:
        """Full-batch gradient descent on all bigrams of ``words``; returns the data loss
        (NLL, without the penalty) of every step.

        The learning rate is large (50) because the gradient of a mean over ~200k bigrams
        spread over 729 weights is tiny for each weight.

        ``grouped=True`` computes the very same loss faster: the full-batch loss is a sum of
        one term per example, and identical bigrams give identical terms, so each distinct
        bigram is evaluated once and weighted by its count (at most 27*27 rows instead of
        ~200k). Loss, gradient and trajectory are the same up to rounding.
        """
        if grouped:
            N = torch.from_numpy(bigram_counts(words, vocab))
            a, b = torch.nonzero(N, as_tuple=True)
            X, Y, weight = a.view(-1, 1), b, N[a, b].double()
        else:
            X, Y = build_dataset(words, 1, vocab)
            weight = None
        losses = []
        for k in range(steps):
            if weight is None:
                nll = F.cross_entropy(self(X), Y)
            else:
                per_pair = F.cross_entropy(self(X), Y, reduction="none").double()
                nll = ((weight * per_pair).sum() / weight.sum()).float()
            loss = nll + reg * (self.W**2).mean()
            self.W.grad = None
            loss.backward()
            with torch.no_grad():
                self.W -= lr * self.W.grad
            losses.append(nll.item())
            if log_every and (k % log_every == 0 or k == steps - 1):
                print(f"step {k:4d} nll {nll.item():.4f}")
        return losses


def uniform_nll(vocab_size: int = 27) -> float:
    """The NLL of guessing uniformly: ln(vocab_size) (3.2958 for 27 characters)."""
    return math.log(vocab_size)
