"""Our byte-level BPE tokenizers: BasicTokenizer, RegexTokenizer and GPT4Tokenizer.

The interface is the one of the tokenizer lecture (minbpe): ``train``, ``encode``, ``decode``,
``register_special_tokens``, ``save``/``load``; plus ``to_tiktoken`` and ``from_tiktoken``.
Training runs in C (llmpy._C.tokenizer.train); see ``Tokenizer.train`` for the exact rule.

>>> tok = RegexTokenizer(GPT2_SPLIT_PATTERN)
>>> tok.train("hello hello hello world", 256 + 4)
>>> tok.decode(tok.encode("hello world!"))
'hello world!'
"""

from __future__ import annotations

import os

from .base import MINBPE_HEADER, Tokenizer, regex_module
from .gpt2 import get_tiktoken_encoding

#: GPT-2's split pattern as tiktoken 0.14 writes it ("r50k"); equivalent to the published
#: ``'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`` and faster.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

#: GPT-4's split pattern (tiktoken's ``cl100k_base``): case-insensitive contractions, at most three
#: digits per piece, newlines kept apart from other whitespace.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|"""
    r"""\s*[\r\n]|\s+(?!\S)|\s"""
)

#: The special tokens of ``cl100k_base``.
GPT4_SPECIAL_TOKENS = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}

PATTERNS = {"gpt2": GPT2_SPLIT_PATTERN, "gpt4": GPT4_SPLIT_PATTERN}


class BasicTokenizer(Tokenizer):
    """Byte-level BPE on the raw text: no splitting, so tokens may span words and spaces.

    >>> tok = BasicTokenizer()
    >>> tok.train("aaabdaaabac", 256 + 3)
    >>> tok.merges
    {(97, 97): 256, (97, 98): 257, (256, 257): 258}
    """

    def __init__(self) -> None:
        super().__init__(pattern=None)


class RegexTokenizer(Tokenizer):
    """Byte-level BPE within the pieces a regular expression splits the text into (GPT-2/GPT-4 style).

    pattern: a regular expression for the ``regex`` package; default GPT4_SPLIT_PATTERN.

    >>> tok = RegexTokenizer()
    >>> tok.train(open("input.txt").read(), 4096)        # doctest: +SKIP
    >>> tok.save("shakespeare")  # shakespeare.model, shakespeare.vocab   # doctest: +SKIP
    """

    _uses_pattern = True

    def __init__(self, pattern: str | None = None) -> None:
        super().__init__(pattern=GPT4_SPLIT_PATTERN if pattern is None else pattern)

    @classmethod
    def from_tiktoken(cls, encoding, pattern: str | None = None) -> RegexTokenizer:
        """Our tokenizer with the vocabulary, pattern and special tokens of a ``tiktoken.Encoding``.

        The merges (and the byte permutation: GPT-2 and GPT-4 do not give byte b the id b) are
        recovered from the ranks. ``pattern`` overrides the encoding's split pattern.

        >>> import tiktoken
        >>> tok = RegexTokenizer.from_tiktoken(tiktoken.get_encoding("gpt2"))   # doctest: +SKIP
        """
        if pattern is None:
            pattern = getattr(encoding, "_pat_str", None)
            if pattern is None:
                raise ValueError("cannot read the split pattern of this encoding: pass pattern=...")
        tok = cls.__new__(cls)
        Tokenizer.__init__(tok, pattern=pattern)
        tok._load_ranks(*_tiktoken_ranks(encoding))
        return tok


def _tiktoken_ranks(encoding) -> tuple[list, dict[str, int]]:
    """Token bytes by id (None for special and unused ids) and the special tokens of an encoding."""
    specials = {s: encoding.encode_single_token(s) for s in encoding.special_tokens_set}
    special_ids = set(specials.values())
    tokens: list = [None] * encoding.n_vocab
    for i in range(encoding.n_vocab):
        if i not in special_ids:
            try:
                tokens[i] = encoding.decode_single_token_bytes(i)
            except KeyError:  # an unused id (cl100k_base has a few)
                pass
    return tokens, specials


class GPT4Tokenizer(RegexTokenizer):
    """tiktoken's ``cl100k_base`` (GPT-4), as our RegexTokenizer: same ids for every text.

    The vocabulary is read from tiktoken (its cache; see ``TIKTOKEN_CACHE_DIR``), and the merges
    and byte permutation are recovered from its ranks. It is pretrained: ``train`` is refused.

    >>> tok = GPT4Tokenizer()                                         # doctest: +SKIP
    >>> tok.encode("hello world!!!? (안녕하세요!) lol123 😉")          # doctest: +SKIP
    [15339, 1917, 12340, 30, 320, 31495, 230, 75265, 243, 92245, 16715, 28509, 4513, 57037]
    """

    def __init__(self) -> None:
        enc = get_tiktoken_encoding("cl100k_base")
        super().__init__(GPT4_SPLIT_PATTERN)
        self._load_ranks(*_tiktoken_ranks(enc))

    def train(self, text: str, vocab_size: int, verbose: bool = False) -> None:
        raise NotImplementedError(
            "GPT4Tokenizer is pretrained (cl100k_base); to train with its split pattern use "
            "RegexTokenizer(GPT4_SPLIT_PATTERN)"
        )


def load(model_file: str | os.PathLike) -> Tokenizer:
    """Loads a ``.model`` file into a BasicTokenizer or RegexTokenizer, whichever wrote it.

    >>> tok = load("shakespeare.model")                               # doctest: +SKIP
    """
    path = os.fspath(model_file)
    tok: Tokenizer = RegexTokenizer()
    try:  # the second line says which class wrote it (minbpe's: empty); load() checks the whole file
        with open(path, encoding="utf-8") as f:
            minbpe = f.readline().strip() == MINBPE_HEADER
            second = f.readline().strip()
            if second == "pattern null" or (minbpe and not second):
                tok = BasicTokenizer()
    except (UnicodeDecodeError, IsADirectoryError):
        pass
    tok.load(path)
    return tok


def resolve_pattern(name: str | None) -> str | None:
    """ "gpt2"/"gpt4" -> the split pattern; "none"/None -> None (BasicTokenizer); else a regex itself."""
    if name is None or name == "none":
        return None
    if name in PATTERNS:
        return PATTERNS[name]
    regex = regex_module()
    try:
        regex.compile(name)
    except regex.error as e:
        raise ValueError(f"invalid split pattern {name!r}: {e}") from e
    return name
