"""The GPT-2 tokenizer through tiktoken (the fast, standard implementation).

>>> enc = gpt2()
>>> enc.decode(enc.encode("Hello world"))
'Hello world'
>>> enc.eot_token, enc.n_vocab
(50256, 50257)
"""

from __future__ import annotations

import os

from ..extras import require


class TokenizerUnavailable(RuntimeError):
    """The GPT-2 encoding files are neither cached nor downloadable."""


def get_tiktoken_encoding(name: str):
    """``tiktoken.get_encoding(name)`` with actionable errors when tiktoken or its files are missing."""
    tiktoken = require("tiktoken", None, "the GPT-2/GPT-4 tokenizers")  # a dependency of llmpy itself
    try:
        return tiktoken.get_encoding(name)
    except Exception as e:  # tiktoken raises requests/urllib/OS errors when offline
        cache = os.environ.get("TIKTOKEN_CACHE_DIR", "(TIKTOKEN_CACHE_DIR not set)")
        raise TokenizerUnavailable(
            f"cannot load the {name!r} encoding: its files are not in the tiktoken cache and could not be "
            f"downloaded ({type(e).__name__}: {e}). Copy a tiktoken cache holding {name!r} to a directory "
            f"and set TIKTOKEN_CACHE_DIR to it (currently: {cache})."
        ) from e


def gpt2():
    """The GPT-2 encoding (``tiktoken.get_encoding("gpt2")``): encode, decode, eot_token, n_vocab.

    Raises an actionable error when tiktoken is missing or the encoding files are not cached
    and cannot be downloaded (set ``TIKTOKEN_CACHE_DIR`` to a directory holding them).
    """
    return get_tiktoken_encoding("gpt2")
