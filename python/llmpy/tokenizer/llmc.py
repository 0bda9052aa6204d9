"""The llm.c tokenizer file: how the compiled train_gpt2 binary turns token ids back into text.

Layout (csrc/core/formats.h, llm.c-compatible): a 256 x int32 little-endian header — magic
LLM_TOKENIZER_MAGIC, version LLM_TOKENIZER_VERSION (2: carries the EOT id), vocabulary size,
EOT id — then, for every id in order, a 1-byte length and the token's bytes. Ids without a token
(unused ids of some vocabularies) are written with length 0, which llmpy's reader accepts (llm.c's
asserts on it; GPT-2 has none).

>>> path = write_llmc_tokenizer("gpt2_tokenizer.bin")              # doctest: +SKIP
>>> TokenizerFile(str(path)).decode(50256)                         # doctest: +SKIP
b'<|endoftext|>'
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import _C
from .base import Tokenizer
from .gpt2 import gpt2

#: The C reader of the file (csrc/data/tokenizer.c): ``TokenizerFile(path).decode(id) -> bytes``,
#: ``.decode_many(ids)``, ``.vocab_size``, ``.eot_token``.
TokenizerFile = _C.tokenizer.TokenizerFile


def write_llmc_tokenizer(path: str | os.PathLike, encoding=None, eot_token: int | None = None) -> Path:
    """Writes the llm.c tokenizer file for ``encoding`` (default: GPT-2 through tiktoken), atomically.

    encoding: a ``tiktoken.Encoding`` or one of our tokenizers. eot_token: the end-of-text id
    (default: the encoding's ``eot_token``, or the special token ``<|endoftext|>``).
    """
    enc = gpt2() if encoding is None else encoding
    if isinstance(enc, Tokenizer):
        n = enc.n_vocab
        table = enc.vocab
        token = table.get
        eot = eot_token if eot_token is not None else enc.special_tokens.get("<|endoftext|>")
    else:
        n = enc.max_token_value + 1

        def token(i: int) -> bytes | None:
            try:
                return enc.decode_single_token_bytes(i)
            except KeyError:
                return None

        eot = eot_token if eot_token is not None else getattr(enc, "eot_token", None)
    if eot is None or not 0 <= eot < n:
        raise ValueError(f"the tokenizer file needs an end-of-text token id in [0, {n}): pass eot_token=...")
    header = np.zeros(_C.formats["HEADER_INTS"], dtype="<i4")
    header[:4] = [_C.formats["TOKENIZER_MAGIC"], _C.formats["TOKENIZER_VERSION"], n, eot]
    chunks = [header.tobytes()]
    for i in range(n):
        b = token(i) or b""
        if len(b) > 255:
            raise ValueError(f"token {i} has {len(b)} bytes; the llm.c tokenizer file allows at most 255")
        chunks += [bytes([len(b)]), b]
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    tmp.write_bytes(b"".join(chunks))
    os.replace(tmp, path)
    return path
