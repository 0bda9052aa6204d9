"""Tokenizers: GPT-2 through tiktoken, and our own byte-level BPE (trained in C).

- ``gpt2()``: tiktoken's GPT-2 encoding (encode, decode, eot_token = 50256, n_vocab).
- ``BasicTokenizer``, ``RegexTokenizer(pattern)``, ``GPT4Tokenizer``: train / encode / decode /
  register_special_tokens / save / load / to_tiktoken (see bpe.py and base.py).
- ``write_llmc_tokenizer`` / ``TokenizerFile``: the llm.c tokenizer file the compiled binary reads.
- CLI: ``python -m llmpy.tokenizer train|convert|encode|decode|llmc --help``;
  ``.model`` files are ours (``llmpy-bpe 1``) or karpathy/minbpe's (``minbpe v1``), read and written.

>>> from llmpy.tokenizer import RegexTokenizer, GPT2_SPLIT_PATTERN
>>> tok = RegexTokenizer(GPT2_SPLIT_PATTERN)
>>> tok.train("the cat sat on the mat with the hat", 260)
>>> tok.decode(tok.encode("that cat"))
'that cat'
"""

from .base import ModelFileError, Tokenizer, render_token
from .bpe import (
    GPT2_SPLIT_PATTERN,
    GPT4_SPECIAL_TOKENS,
    GPT4_SPLIT_PATTERN,
    BasicTokenizer,
    GPT4Tokenizer,
    RegexTokenizer,
    load,
)
from .gpt2 import TokenizerUnavailable, get_tiktoken_encoding, gpt2
from .llmc import TokenizerFile, write_llmc_tokenizer

__all__ = [
    "GPT2_SPLIT_PATTERN",
    "GPT4_SPECIAL_TOKENS",
    "GPT4_SPLIT_PATTERN",
    "BasicTokenizer",
    "GPT4Tokenizer",
    "ModelFileError",
    "RegexTokenizer",
    "Tokenizer",
    "TokenizerFile",
    "TokenizerUnavailable",
    "get_tiktoken_encoding",
    "gpt2",
    "load",
    "render_token",
    "write_llmc_tokenizer",
]
