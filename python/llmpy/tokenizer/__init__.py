"""Tokenizers: GPT-2 through tiktoken, and our own byte-level BPE trainer."""

from .gpt2 import TokenizerUnavailable, gpt2

__all__ = ["TokenizerUnavailable", "gpt2"]
