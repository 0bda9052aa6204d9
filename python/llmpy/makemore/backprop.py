"""Backpropagation by hand through the MLP with BatchNorm, one tensor at a time.

:func:`forward` spells the network out in small steps and keeps every intermediate tensor:
embedding lookup, concatenation, linear layer, BatchNorm (mean, difference, square,
variance, inverse std, normalise, scale and shift), tanh, output layer, and the
cross-entropy written out (max subtraction, exp, sum, inverse, probabilities, log, pick,
mean). :func:`manual_backward` then walks the same list backwards, applying to each step
its local derivative — no autograd. Three rules cover almost everything:

* a **broadcast** in the forward pass (a (1, n) row used by every row of a (B, n) tensor)
  becomes a **sum** over the broadcast dimension in the backward pass, and vice versa;
* a tensor **used twice** receives the **sum** of both gradients;
* a **matmul** ``y = x @ W`` sends ``dy @ W.T`` to ``x`` and ``x.T @ dy`` to ``W`` (the only
  shapes that fit).

Then two whole steps are done at once, analytically: cross-entropy's gradient with respect
to the logits is ``(softmax(logits) - onehot(y)) / B`` (:func:`cross_entropy_backward`), and
BatchNorm's gradient with respect to its input collapses into one line
(:func:`batchnorm_backward`). :func:`compare` checks everything against autograd: in
float64 every gradient agrees to ~1e-15.

The batch variance here is the biased one (divide by ``B``), as in ``torch.nn.BatchNorm1d``
and :class:`~.layers.BatchNorm1d`.

>>> p = init_params(vocab_size=27, block_size=3, n_embd=5, n_hidden=16, dtype=torch.float64)
>>> X, Y = torch.randint(0, 27, (8, 3)), torch.randint(0, 27, (8,))
>>> worst = max(r["maxdiff"] for r in compare(p, X, Y))
>>> worst < 1e-12
True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "BN_EPS",
    "batchnorm_backward",
    "compare",
    "cross_entropy_backward",
    "forward",
    "init_params",
    "manual_backward",
    "train_manual",
]

BN_EPS = 1e-5

#: Intermediate tensors in forward order (every one gets a manual gradient).
INTERMEDIATES = [
    "emb", "embcat", "hprebn", "bnmeani", "bndiff", "bndiff2", "bnvar", "bnvar_inv", "bnraw",
    "hpreact", "h", "logits", "logit_maxes", "norm_logits", "counts", "counts_sum",
    "counts_sum_inv", "probs", "logprobs",
]  # fmt: skip
PARAMS = ["C", "W1", "b1", "bngain", "bnbias", "W2", "b2"]


def init_params(
    vocab_size: int = 27,
    block_size: int = 3,
    n_embd: int = 10,
    n_hidden: int = 64,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Parameters of the MLP + BatchNorm, all small and non-zero.

    Biases and BatchNorm's gain/shift get small random values instead of the usual 0 and 1,
    so that a wrong gradient formula cannot hide behind a zero.
    """

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator, dtype=dtype)

    fan_in = block_size * n_embd
    p = {
        "C": randn(vocab_size, n_embd),
        "W1": randn(fan_in, n_hidden) * (5 / 3) / fan_in**0.5,
        "b1": randn(n_hidden) * 0.1,  # useless in front of BatchNorm; here to check its gradient is 0
        "bngain": randn(1, n_hidden) * 0.1 + 1.0,
        "bnbias": randn(1, n_hidden) * 0.1,
        "W2": randn(n_hidden, vocab_size) * 0.1,
        "b2": randn(vocab_size) * 0.1,
    }
    for t in p.values():
        t.requires_grad_(True)
    return p


def forward(p: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> dict[str, torch.Tensor]:
    """The forward pass in small steps; returns every intermediate and ``loss``."""
    B = X.shape[0]
    t: dict[str, torch.Tensor] = {}
    t["emb"] = p["C"][X]  # (B, block, n_embd)
    t["embcat"] = t["emb"].view(B, -1)  # (B, block * n_embd)
    t["hprebn"] = t["embcat"] @ p["W1"] + p["b1"]  # (B, H)
    # BatchNorm, step by step
    t["bnmeani"] = t["hprebn"].sum(0, keepdim=True) / B  # (1, H)
    t["bndiff"] = t["hprebn"] - t["bnmeani"]
    t["bndiff2"] = t["bndiff"] ** 2
    t["bnvar"] = t["bndiff2"].sum(0, keepdim=True) / B  # biased variance, (1, H)
    t["bnvar_inv"] = (t["bnvar"] + BN_EPS) ** -0.5
    t["bnraw"] = t["bndiff"] * t["bnvar_inv"]
    t["hpreact"] = p["bngain"] * t["bnraw"] + p["bnbias"]
    t["h"] = torch.tanh(t["hpreact"])
    t["logits"] = t["h"] @ p["W2"] + p["b2"]  # (B, V)
    # cross-entropy, step by step
    t["logit_maxes"] = t["logits"].max(1, keepdim=True).values  # for numerical stability only
    t["norm_logits"] = t["logits"] - t["logit_maxes"]
    t["counts"] = t["norm_logits"].exp()
    t["counts_sum"] = t["counts"].sum(1, keepdim=True)
    t["counts_sum_inv"] = t["counts_sum"] ** -1
    t["probs"] = t["counts"] * t["counts_sum_inv"]
    t["logprobs"] = t["probs"].log()
    t["loss"] = -t["logprobs"][torch.arange(B), Y].mean()
    return t


def manual_backward(p: dict[str, torch.Tensor], t: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor):
    """d loss / d (every intermediate and every parameter), by hand; returns a dict of tensors."""
    with torch.no_grad():
        return _manual_backward(p, {k: v.detach() for k, v in t.items()}, X, Y)


def _manual_backward(p, t, X, Y):
    B = X.shape[0]
    d: dict[str, torch.Tensor] = {}
    # loss = -mean over rows of logprobs[i, Y[i]]: each picked entry gets -1/B, the rest 0
    d["logprobs"] = torch.zeros_like(t["logprobs"])
    d["logprobs"][torch.arange(B), Y] = -1.0 / B
    d["probs"] = d["logprobs"] / t["probs"]  # d log(x) = 1/x
    # probs = counts * counts_sum_inv: counts_sum_inv (B, 1) was broadcast over columns -> sum
    d["counts_sum_inv"] = (t["counts"] * d["probs"]).sum(1, keepdim=True)
    d["counts_sum"] = -(t["counts_sum"] ** -2) * d["counts_sum_inv"]  # d x^-1 = -x^-2
    # counts is used twice: directly in probs, and through counts_sum (a row sum: gradient copied back)
    d["counts"] = t["counts_sum_inv"] * d["probs"] + d["counts_sum"]
    d["norm_logits"] = t["counts"] * d["counts"]  # d exp(x) = exp(x)
    # norm_logits = logits - logit_maxes: logits directly, and through the max (picks one entry per row)
    d["logit_maxes"] = -d["norm_logits"].sum(1, keepdim=True)  # ~0: the max does not change the loss
    d["logits"] = d["norm_logits"].clone()
    d["logits"] += (
        F.one_hot(t["logits"].argmax(1), t["logits"].shape[1]).to(d["logits"].dtype) * d["logit_maxes"]
    )
    # logits = h @ W2 + b2
    d["h"] = d["logits"] @ p["W2"].T
    d["W2"] = t["h"].T @ d["logits"]
    d["b2"] = d["logits"].sum(0)
    d["hpreact"] = (1.0 - t["h"] ** 2) * d["h"]  # d tanh(x) = 1 - tanh(x)^2
    # hpreact = bngain * bnraw + bnbias, gain and bias (1, H) broadcast over the batch -> sum
    d["bngain"] = (t["bnraw"] * d["hpreact"]).sum(0, keepdim=True)
    d["bnbias"] = d["hpreact"].sum(0, keepdim=True)
    d["bnraw"] = p["bngain"].detach() * d["hpreact"]
    # bnraw = bndiff * bnvar_inv
    d["bnvar_inv"] = (t["bndiff"] * d["bnraw"]).sum(0, keepdim=True)
    d["bnvar"] = -0.5 * (t["bnvar"] + BN_EPS) ** -1.5 * d["bnvar_inv"]
    d["bndiff2"] = torch.ones_like(t["bndiff2"]) / B * d["bnvar"]  # a column mean: spread evenly
    # bndiff is used twice: in bnraw and in bndiff2
    d["bndiff"] = t["bnvar_inv"] * d["bnraw"] + 2 * t["bndiff"] * d["bndiff2"]
    d["bnmeani"] = -d["bndiff"].sum(0, keepdim=True)
    # hprebn is used twice: in bndiff directly and through the mean
    d["hprebn"] = d["bndiff"] + torch.ones_like(t["hprebn"]) / B * d["bnmeani"]
    # hprebn = embcat @ W1 + b1
    d["embcat"] = d["hprebn"] @ p["W1"].T
    d["W1"] = t["embcat"].T @ d["hprebn"]
    d["b1"] = d["hprebn"].sum(0)
    d["emb"] = d["embcat"].view(t["emb"].shape)
    # emb = C[X]: each row of C receives the gradients of every position where it was looked up
    d["C"] = torch.zeros_like(p["C"])
    d["C"].index_add_(0, X.reshape(-1), d["emb"].reshape(-1, p["C"].shape[1]))
    return d


def cross_entropy_backward(logits: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """d mean(cross_entropy) / d logits in one step: ``(softmax(logits) - onehot(Y)) / B``.

    Each row pulls down the probability of every wrong character by as much as the model
    gives it, and pushes up the right one by ``1 - p``: the pulls and the push cancel, so
    every row of the gradient sums to zero.
    """
    B = logits.shape[0]
    d = F.softmax(logits, 1)
    d[torch.arange(B), Y] -= 1.0
    return d / B


def batchnorm_backward(
    dout: torch.Tensor, gain: torch.Tensor, var_inv: torch.Tensor, xhat: torch.Tensor
) -> torch.Tensor:
    """d loss / d x for ``out = gain * xhat + bias``, ``xhat = (x - mean) * var_inv`` (biased
    batch variance) in one expression, given ``dout`` (B, H):

        dx = gain * var_inv / B * (B * dout - sum(dout) - xhat * sum(dout * xhat))

    (sums over the batch). The two subtracted terms are what flows back through the mean and
    through the variance, which both depend on every row of the batch.
    """
    B = dout.shape[0]
    return gain * var_inv / B * (B * dout - dout.sum(0) - xhat * (dout * xhat).sum(0))


def compare(p: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> list[dict]:
    """Every manual gradient (and the two fused ones) next to autograd's.

    Returns one row per tensor: ``name``, ``exact`` (bitwise equal), ``approx``
    (``torch.allclose``) and ``maxdiff`` (max abs difference).
    """
    t = forward(p, X, Y)
    for k in INTERMEDIATES:
        t[k].retain_grad()
    for v in p.values():
        v.grad = None
    t["loss"].backward()
    d = manual_backward(p, t, X, Y)
    with torch.no_grad():
        d["logits (fused)"] = cross_entropy_backward(t["logits"], Y)
        d["hprebn (fused)"] = batchnorm_backward(d["hpreact"], p["bngain"], t["bnvar_inv"], t["bnraw"])
    ref = {k: t[k].grad for k in INTERMEDIATES} | {k: p[k].grad for k in PARAMS}
    ref["logits (fused)"], ref["hprebn (fused)"] = ref["logits"], ref["hprebn"]
    rows = []
    for name in ["logprobs", *INTERMEDIATES[::-1][1:], *PARAMS, "logits (fused)", "hprebn (fused)"]:
        got, want = d[name], ref[name]
        if got.shape != want.shape:
            raise AssertionError(
                f"{name}: manual gradient has shape {tuple(got.shape)}, autograd {tuple(want.shape)}"
            )
        rows.append(
            {
                "name": name,
                "exact": bool(torch.equal(got, want)),
                "approx": bool(torch.allclose(got, want)),
                "maxdiff": float((got - want).abs().max()),
            }
        )
    return rows


@torch.no_grad()
def train_manual(
    p: dict[str, torch.Tensor],
    X: torch.Tensor,
    Y: torch.Tensor,
    steps: int,
    batch_size: int = 32,
    lr: float = 0.1,
    generator: torch.Generator | None = None,
) -> list[float]:
    """SGD with the fused manual gradients only (autograd switched off); returns the losses.

    The backward pass of the whole network in a dozen lines: this is what ``loss.backward()``
    does for us.
    """
    losses = []
    for _ in range(steps):
        ix = torch.randint(0, X.shape[0], (batch_size,), generator=generator)
        Xb, Yb = X[ix], Y[ix]
        B = batch_size
        emb = p["C"][Xb]
        embcat = emb.view(B, -1)
        hprebn = embcat @ p["W1"] + p["b1"]
        mean = hprebn.mean(0, keepdim=True)
        var_inv = (hprebn.var(0, keepdim=True, unbiased=False) + BN_EPS) ** -0.5
        bnraw = (hprebn - mean) * var_inv
        h = torch.tanh(p["bngain"] * bnraw + p["bnbias"])
        logits = h @ p["W2"] + p["b2"]
        losses.append(F.cross_entropy(logits, Yb).item())
        g: dict[str, torch.Tensor] = {}
        dlogits = cross_entropy_backward(logits, Yb)
        g["W2"], g["b2"] = h.T @ dlogits, dlogits.sum(0)
        dhpreact = (1.0 - h**2) * (dlogits @ p["W2"].T)
        g["bngain"] = (bnraw * dhpreact).sum(0, keepdim=True)
        g["bnbias"] = dhpreact.sum(0, keepdim=True)
        dhprebn = batchnorm_backward(dhpreact, p["bngain"], var_inv, bnraw)
        g["W1"], g["b1"] = embcat.T @ dhprebn, dhprebn.sum(0)
        g["C"] = torch.zeros_like(p["C"]).index_add_(
            0, Xb.reshape(-1), (dhprebn @ p["W1"].T).view(-1, emb.shape[-1])
        )
        for k, v in g.items():
            p[k] -= lr * v
    return losses
