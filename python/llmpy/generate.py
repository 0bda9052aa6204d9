"""Generating tokens with the C core's KV cache: batched prompts, streaming, bf16 weights.

The math lives in ``csrc/core/generate.c`` (prefill writes the prompts' keys and values into a
cache; decode appends one token per sequence, one pass over the weights for all of them); this
module holds the policy: prompts in, the sampling rule (``llmpy.sampling``: temperature, top-k,
top-p, as Hugging Face's ``generate`` defines them), stop tokens, and what comes back.

>>> m = GPT2(GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=64, block_size=16))  # doctest: +SKIP
>>> gen = Generator(m)                                           # doctest: +SKIP
>>> gen.generate([1, 2, 3], max_new_tokens=5, temperature=0)     # greedy, (1, 8)  # doctest: +SKIP
>>> for tok in gen.stream([1, 2, 3], 5, top_k=10, seed=0): ...   # one int per step  # doctest: +SKIP

Sequences longer than the block: a prompt must fit in ``block_size``; generation may run past
it, and the tokens beyond the block are then predicted from the last ``block_size`` tokens
(the cache cannot slide over absolute positions, so each such token costs a prefill of the
window: O(block) per token, as before the cache existed).

This module takes the model by duck typing (``._m``, ``.config``) and never imports
``llmpy.model``, which imports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Optional, Union

import numpy as np

from . import _C
from .checks import integer
from .sampling import check_sampling, sample_next

__all__ = ["Generator"]

Prompts = Union[Sequence[int], Sequence[Sequence[int]], np.ndarray]


def _is_one_prompt(prompts) -> bool:
    """A flat sequence of token ids (one prompt), as opposed to a list of prompts / a 2-D array."""
    if isinstance(prompts, np.ndarray):
        return prompts.ndim <= 1
    if isinstance(prompts, (str, bytes)):
        raise TypeError("prompt must be a sequence of token ids, not text: encode it first "
                        "(e.g. llmpy.tokenizer.gpt2().encode(text))")
    try:
        first = next(iter(prompts))
    except StopIteration:
        return True  # [] : one empty prompt, refused below with a clear message
    except TypeError:
        got = type(prompts).__name__
        raise TypeError(f"prompts must be a sequence of token ids or a list of them, got {got}") from None
    return not isinstance(first, (Sequence, np.ndarray))


class Generator:
    """Generation over a model: its decode weights and a KV cache, reused across calls.

    ``weights``: ``"fp32"`` or ``"bf16"`` (None: the model's precision). bf16 on an fp32 model
    converts a copy of the weight matrices once, here (half the bytes per token: faster where
    decoding is bound by memory bandwidth, logits within ~1e-2 of fp32); that copy does not see
    later changes of the model's parameters (make a new Generator after training). Otherwise the
    generator reads the model's own parameters. Generating does not touch the model's forward
    state (``logits()`` of the last ``forward`` stay as they were).

    >>> gen = model.generator("bf16")                      # doctest: +SKIP
    >>> out = gen.generate([[50256], [464, 3290]], 20, seed=0)  # two prompts: two arrays  # doctest: +SKIP
    """

    def __init__(self, model, weights: Optional[str] = None):
        if weights is not None and weights not in ("fp32", "bf16"):
            raise ValueError(f"weights must be 'fp32', 'bf16' or None, got {weights!r}")
        self._model = model  # kept alive: the C generator reads its parameters
        self._g = _C.Generator(model._m, weights)
        self.config = model.config

    @property
    def weights(self) -> str:
        """'fp32' or 'bf16': what decode multiplies by."""
        return self._g.info["weights"]

    @property
    def info(self) -> dict:
        """Memory and traffic: ``cache_bytes`` (the KV cache, grown to the largest call so far),
        ``copy_bytes`` (the bf16 copy), ``work_bytes`` (activations), ``step_bytes`` (parameter
        bytes one decode step reads), ``slots`` and ``max_len`` (the cache's shape), ``weights``."""
        return dict(self._g.info)

    # -- the two ways to call it ---------------------------------------------------

    def generate(self, prompts: Prompts, max_new_tokens: int, *, temperature: float = 1.0,
                 top_k: Optional[int] = None, top_p: Optional[float] = None, seed: Optional[int] = None,
                 stop_tokens: Optional[Iterable[int]] = None, num_samples: int = 1,
                 rng: Optional[np.random.Generator] = None) -> Union[np.ndarray, list]:
        """Continues each prompt by up to ``max_new_tokens`` tokens.

        ``prompts``: one prompt (a sequence of token ids) or several (a list of sequences of any
        lengths, or a 2-D array), each non-empty and at most ``block_size`` long; each is continued
        ``num_samples`` times. Sampling: ``temperature`` 0 (or ``top_k`` 1) is greedy; otherwise
        temperature, then top-k, then top-p, as ``llmpy.sampling`` and Hugging Face define them.
        Random numbers come from ``rng`` or a generator seeded with ``seed`` (never a global one):
        the same seed gives the same tokens. A sequence stops after ``max_new_tokens`` tokens or
        right after it produces one of ``stop_tokens`` (which is kept).

        Returns, for one prompt, an int64 array (num_samples, len(prompt) + new) as before
        (a row that stopped early is padded with the stop token that ended it, as ``transformers``
        pads with ``pad_token_id = eos``); for several prompts, a list of 1-D int64 arrays (prompt
        + continuation), ``num_samples`` per prompt, prompt by prompt.

        >>> gen.generate([5, 6], 3, temperature=0).shape      # doctest: +SKIP
        (1, 5)
        """
        one = _is_one_prompt(prompts)
        run = self._run(prompts, max_new_tokens, temperature, top_k, top_p, seed, stop_tokens, num_samples,
                        rng)
        seqs = next(run)
        for _ in run:
            pass
        if not one:
            return [np.asarray(s, dtype=np.int64) for s in seqs]
        width = max(len(s) for s in seqs)
        return np.array([s + [s[-1]] * (width - len(s)) for s in seqs], dtype=np.int64)

    def stream(self, prompts: Prompts, max_new_tokens: int, *, temperature: float = 1.0,
               top_k: Optional[int] = None, top_p: Optional[float] = None, seed: Optional[int] = None,
               stop_tokens: Optional[Iterable[int]] = None, num_samples: int = 1,
               rng: Optional[np.random.Generator] = None) -> Iterator:
        """The same generation as ``generate`` (same arguments, same tokens for the same seed),
        yielded a step at a time as it is produced.

        One prompt and ``num_samples == 1``: yields each new token id (int). Otherwise yields an
        int64 array (sequences,) per step holding each sequence's new token, or -1 for a
        sequence that has already stopped. The arguments are checked on the first ``next()``.

        >>> for tok in gen.stream([5, 6], 3, temperature=0): print(tok)   # doctest: +SKIP
        """
        single = _is_one_prompt(prompts) and num_samples == 1
        run = self._run(prompts, max_new_tokens, temperature, top_k, top_p, seed, stop_tokens, num_samples,
                        rng)
        next(run)
        for step in run:
            yield int(step[0]) if single else step

    # -- the loop --------------------------------------------------------------------

    def _prompts(self, prompts: Prompts, num_samples: int) -> list:
        V, block = self.config.vocab_size, self.config.block_size
        one = _is_one_prompt(prompts)
        rows = [prompts] if one else list(prompts)
        if not rows:
            raise ValueError("prompts is an empty list: give at least one prompt")
        out = []
        for i, p in enumerate(rows):
            what = "prompt" if one else f"prompts[{i}]"
            if isinstance(p, (str, bytes)):
                raise TypeError(f"{what} must be a sequence of token ids, not text: encode it first")
            a = np.asarray(p)
            if a.ndim != 1:
                raise ValueError(f"{what} must be a 1-D sequence of token ids, got shape {a.shape}")
            if a.size == 0:
                raise ValueError(f"{what} is empty: a prompt must hold at least one token "
                                 "(e.g. <|endoftext|>)")
            if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
                raise TypeError(f"{what} must hold integer token ids, got dtype {a.dtype}")
            if a.size > block:
                raise ValueError(f"{what} has {a.size} tokens, more than the model's block_size {block}; "
                                 f"keep its end ({what}[-{block}:]) or use a model with a longer block")
            bad = np.flatnonzero((a < 0) | (a >= V))
            if bad.size:
                j = int(bad[0])
                raise ValueError(f"{what}[{j}] = {int(a[j])} is out of range [0, {V}): token ids must be "
                                 "below the model's vocab_size")
            out.extend(a.astype(np.int64).tolist() for _ in range(num_samples))  # one list each
        return out

    def _run(self, prompts, max_new_tokens, temperature, top_k, top_p, seed, stop_tokens, num_samples, rng):
        """Yields the sequences (lists, extended in place) once checked, then each step's new
        tokens (-1 for stopped sequences)."""
        temperature, top_k, top_p = check_sampling(temperature, top_k, top_p)
        max_new_tokens = integer(max_new_tokens, "max_new_tokens", min=0)
        num_samples = integer(num_samples, "num_samples", min=1)
        stop = frozenset(integer(t, "stop_tokens[i]") for t in stop_tokens) if stop_tokens is not None \
            else frozenset()
        if rng is None:
            if seed is not None:
                seed = integer(seed, "seed", min=0)
            rng = np.random.default_rng(seed)
        elif not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        seqs = self._prompts(prompts, num_samples)
        yield seqs
        if max_new_tokens == 0:
            return
        B, block = len(seqs), self.config.block_size
        max_len = min(block, max(len(s) for s in seqs) + int(max_new_tokens) - 1)
        g = self._g
        g.reserve(B, max_len)
        logits = g.prefill(np.concatenate(seqs).astype(np.int32), np.array([len(s) for s in seqs], np.int32),
                           np.arange(B, dtype=np.int32))
        live = np.ones(B, dtype=bool)
        for step in range(int(max_new_tokens)):
            new = np.asarray(sample_next(logits, rng, top_k=top_k, temperature=temperature, top_p=top_p),
                             dtype=np.int64)
            new[~live] = -1
            for b in np.flatnonzero(live):
                t = int(new[b])
                seqs[b].append(t)
                if t in stop:
                    live[b] = False
            yield new
            if step + 1 == max_new_tokens or not live.any():
                return
            # the next logits: decode where the cache has room, a prefill of the last block
            # tokens where the sequence has outgrown the block
            rows = np.flatnonzero(live)
            grown = np.array([len(seqs[b]) > max_len for b in rows], dtype=bool)
            if (~grown).any():
                r = rows[~grown].astype(np.int32)
                logits[r] = g.decode(new[r].astype(np.int32), r)
            if grown.any():
                r = rows[grown].astype(np.int32)
                window = [seqs[b][-block:] for b in r]
                logits[r] = g.prefill(np.concatenate(window).astype(np.int32),
                                      np.full(len(r), block, np.int32), r)
