"""The byte-level BPE tokenizer shared by BasicTokenizer, RegexTokenizer and GPT4Tokenizer.

A tokenizer is three things:

- ``byte_ids``: the token id of each of the 256 bytes (``range(256)`` after training; a permutation
  for vocabularies that come from tiktoken, such as GPT-2's and GPT-4's);
- ``merges``: ``{(left_id, right_id): new_id}`` in the order they were learned;
- ``special_tokens``: ``{"<|endoftext|>": id, ...}``, matched in the text before splitting.

Everything else is derived: ``vocab`` (id -> bytes, specials included) and the C encoder. The rank
of a token is its id, and text is encoded with tiktoken's rule (llmpy._C.tokenizer.Vocab.encode):
the text is split into pieces by ``pattern`` (the whole text is one piece when it is None); a
piece that is a token becomes that token; otherwise, starting from bytes, the adjacent pair whose
concatenation is the lowest-ranked token is merged (leftmost on ties) until none is left. So
``to_tiktoken()`` encodes exactly like ``encode()``, and tiktoken's own vocabularies loaded with
``from_tiktoken()`` encode exactly like tiktoken.

>>> from llmpy.tokenizer import BasicTokenizer
>>> tok = BasicTokenizer()
>>> tok.train("aaabdaaabac", 256 + 3)
>>> tok.encode("aaabdaaabac")
[258, 100, 258, 97, 99]
>>> tok.decode([258, 100, 258, 97, 99])
'aaabdaaabac'
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from functools import lru_cache
from pathlib import Path
from typing import NoReturn

import numpy as np

from .. import _C

MODEL_HEADER = "llmpy-bpe 1"
MINBPE_HEADER = "minbpe v1"  # karpathy/minbpe's .model files: load() reads them, save(format="minbpe") writes them
FORMATS = ("llmpy", "minbpe")


class ModelFileError(ValueError):
    """A tokenizer ``.model`` file is damaged or not a tokenizer model."""


# ----------------------------------------------------------------------------
# helpers


def render_token(b: bytes) -> str:
    """Printable form of token bytes: invalid UTF-8 as \\xNN, control characters as \\uXXXX.

    >>> render_token(b"hi\\n")
    'hi\\\\u000a'
    """
    s = b.decode("utf-8", errors="backslashreplace")
    return "".join(ch if unicodedata.category(ch)[0] != "C" else f"\\u{ord(ch):04x}" for ch in s)


def fix_surrogates(text: str) -> str:
    """Lone surrogates cannot be UTF-8 encoded: replace them by U+FFFD, as tiktoken does."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def regex_module():
    """The third-party ``regex`` module (the split patterns use ``\\p{L}`` and possessive quantifiers)."""
    try:
        import regex
    except ImportError as e:
        raise ImportError(
            "split patterns need the 'regex' package (Unicode classes like \\p{L}): pip install regex"
        ) from e
    return regex


@lru_cache(maxsize=64)
def _special_regex(tokens: frozenset) -> re.Pattern:
    # longest first, so that a special token that is a prefix of another never wins
    return re.compile("(" + "|".join(re.escape(t) for t in sorted(tokens, key=lambda t: (-len(t), t))) + ")")


def _check_id(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if not 0 <= int(value) < 2**31 - 1:
        raise ValueError(f"{what} must be in [0, 2**31 - 1), got {value}")
    return int(value)


# ----------------------------------------------------------------------------
# the tokenizer


class Tokenizer:
    """Byte-level BPE (see the module docstring). Use BasicTokenizer, RegexTokenizer or GPT4Tokenizer."""

    _uses_pattern = False  # whether the text is split by a regular expression before BPE

    def __init__(self, pattern: str | None = None) -> None:
        self.pattern: str | None = None
        self._compiled = None
        if pattern is not None:
            self._set_pattern(pattern)
        self.byte_ids: list[int] = list(range(256))
        self.merges: dict[tuple[int, int], int] = {}
        self.special_tokens: dict[str, int] = {}
        self.inverse_special_tokens: dict[int, str] = {}
        self._rebuild()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__}: {len(self._tokens)} tokens, {len(self.merges)} merges, "
            f"{len(self.special_tokens)} special>"
        )

    # --- model state -----------------------------------------------------------------------

    def _set_pattern(self, pattern: str) -> None:
        if not isinstance(pattern, str):
            raise TypeError(
                f"pattern must be a str (a regular expression) or None, got {type(pattern).__name__}"
            )
        regex = regex_module()
        try:
            self._compiled = regex.compile(pattern)
        except regex.error as e:
            raise ValueError(f"invalid split pattern {pattern!r}: {e}") from e
        self.pattern = pattern

    def _rebuild(self, tokens: list | None = None, c_vocab=None) -> None:
        """Derives the vocabulary and the C encoder from byte_ids and merges."""
        if tokens is None:
            vocab = {i: bytes([b]) for b, i in enumerate(self.byte_ids)}
            for (a, b), idx in self.merges.items():
                merged = vocab[a] + vocab[b]
                if vocab.setdefault(idx, merged) != merged:
                    raise ValueError(f"merge ({a}, {b}) -> {idx} disagrees with token {idx} = {vocab[idx]!r}")
            tokens = [None] * (max(vocab) + 1)
            for i, t in vocab.items():
                tokens[i] = t
        self._c = c_vocab if c_vocab is not None else _C.tokenizer.Vocab(tokens)
        self._tokens = {i: t for i, t in enumerate(tokens) if t is not None}
        self._check_specials(self.special_tokens)
        self._refresh_vocab()

    def _check_specials(self, specials: dict) -> None:
        ids = {}
        for s, i in specials.items():
            if i in self._tokens:
                raise ValueError(
                    f"special token {s!r} has id {i}, which is the ordinary token {self._tokens[i]!r}"
                )
            if i in ids:
                raise ValueError(f"special tokens {ids[i]!r} and {s!r} have the same id {i}")
            ids[i] = s

    def _refresh_vocab(self) -> None:
        #: token id -> bytes, special tokens included (UTF-8 of their text); derived, do not edit
        self.vocab: dict[int, bytes] = dict(self._tokens)
        self.vocab.update({i: s.encode("utf-8") for s, i in self.special_tokens.items()})

    @property
    def n_vocab(self) -> int:
        """One past the largest token id (as tiktoken's ``n_vocab``)."""
        return max([*self._tokens, *self.special_tokens.values()]) + 1

    def register_special_tokens(self, special_tokens: dict[str, int]) -> None:
        """Sets the special tokens (replacing any before), e.g. ``{"<|endoftext|>": 4096}``.

        Their ids must not be ordinary token ids. Which of them ``encode`` matches is chosen by its
        ``allowed_special`` argument.
        """
        if not isinstance(special_tokens, dict):
            raise TypeError(f"special_tokens must be a dict str -> int, got {type(special_tokens).__name__}")
        checked = {}
        for s, i in special_tokens.items():
            if not isinstance(s, str) or not s:
                raise TypeError(f"special token names must be non-empty str, got {s!r}")
            checked[s] = _check_id(i, f"id of special token {s!r}")
        self._check_specials(checked)
        self.special_tokens = checked
        self.inverse_special_tokens = {i: s for s, i in checked.items()}
        self._refresh_vocab()

    # --- training --------------------------------------------------------------------------

    def _split(self, text: str) -> list[str]:
        if self._compiled is None:
            return [text] if text else []
        return self._compiled.findall(text)

    def train(self, text: str, vocab_size: int, verbose: bool = False) -> None:
        """Learns merges on ``text`` until the vocabulary has ``vocab_size`` tokens (256 bytes + merges).

        The text is split into pieces by the pattern (Basic: one piece); identical pieces are
        counted once with their frequency; pairs never cross piece boundaries. The C trainer
        (llmpy._C.tokenizer.train) merges the most frequent adjacent pair, ties going to the
        smallest (left id, right id) — deterministic and independent of text order; each merge gets
        the next id unless its bytes already are a token (then that token is reused, so the list of
        merges can be slightly longer than ``vocab_size - 256``). Training replaces earlier merges;
        registered special tokens are kept (their ids must stay clear of the new vocabulary).
        If the text runs out of pairs first, a warning says how many tokens were learned.
        """
        if not isinstance(text, str):
            raise TypeError(f"train() expects text as str, got {type(text).__name__}")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)):
            raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
        if not 256 <= vocab_size < 2**31 - 1:
            raise ValueError(f"vocab_size must be at least 256 (one token per byte), got {vocab_size}")
        counts = Counter(self._split(text))
        try:
            words = [w.encode("utf-8") for w in counts]
        except UnicodeEncodeError:
            return self.train(fix_surrogates(text), vocab_size, verbose)
        offsets = np.zeros(len(words) + 1, dtype=np.uint64)
        offsets[1:] = np.cumsum([len(w) for w in words])
        freq = np.fromiter(counts.values(), dtype=np.int64, count=len(words))
        table = _C.tokenizer.train(b"".join(words), offsets, freq, int(vocab_size))
        n_tokens = 256 + len(set(table[:, 2].tolist()))
        for s, i in self.special_tokens.items():
            if i < n_tokens:
                raise ValueError(
                    f"special token {s!r} has id {i}, inside the {n_tokens} trained tokens: register special "
                    f"tokens after training (ids from {n_tokens})"
                )
        self.byte_ids = list(range(256))
        self.merges = {(int(a), int(b)): int(z) for a, b, z, _ in table}
        self._rebuild()
        if verbose:
            for k, (a, b, z, c) in enumerate(table.tolist()):
                print(
                    f"merge {k + 1}/{len(table)}: ({a}, {b}) -> {z} "
                    f"[{render_token(self._tokens[z])}] had {c} occurrences"
                )
        if len(self._tokens) < vocab_size:
            warnings.warn(
                f"the training text has no pairs left after {len(self.merges)} merges: the vocabulary "
                f"has {len(self._tokens)} tokens, not {vocab_size}",
                stacklevel=2,
            )

    # --- encoding and decoding -------------------------------------------------------------

    def encode_ordinary(self, text: str) -> list[int]:
        """Encodes ``text`` ignoring special tokens (their text is encoded as ordinary text)."""
        if not isinstance(text, str):
            raise TypeError(f"encode() expects str, got {type(text).__name__}")
        try:
            return self._c.encode(self._split(text)).tolist()
        except UnicodeEncodeError:
            return self._c.encode(self._split(fix_surrogates(text))).tolist()

    def encode(self, text: str, allowed_special="none_raise") -> list[int]:
        """Encodes ``text`` to token ids.

        allowed_special, as tiktoken's ``encode`` (``disallowed_special`` is everything not allowed):

        - ``"none_raise"`` (default): no special tokens; ValueError if the text contains one;
        - ``"none"``: no special tokens; their text is encoded as ordinary text;
        - ``"all"``: every registered special token is matched;
        - a set of names: those are matched; ValueError if the text contains another one.

        >>> from llmpy.tokenizer import BasicTokenizer
        >>> tok = BasicTokenizer(); tok.register_special_tokens({"<|eot|>": 300})
        >>> tok.encode("a<|eot|>", allowed_special="all")
        [97, 300]
        """
        if not isinstance(text, str):
            raise TypeError(f"encode() expects str, got {type(text).__name__}")
        specials = set(self.special_tokens)
        if isinstance(allowed_special, str):
            if allowed_special == "all":
                allowed = specials
            elif allowed_special in ("none", "none_raise"):
                allowed = set()
            else:
                raise ValueError(
                    f'allowed_special must be "all", "none", "none_raise" or a set of special tokens, '
                    f"got {allowed_special!r}"
                )
        elif isinstance(allowed_special, AbstractSet):
            allowed = specials & set(allowed_special)
        else:
            raise TypeError(
                f'allowed_special must be "all", "none", "none_raise" or a set, got {type(allowed_special).__name__}'
            )
        disallowed = set() if allowed_special == "none" else specials - allowed
        if disallowed:
            m = _special_regex(frozenset(disallowed)).search(text)
            if m:
                raise ValueError(
                    f"the text contains the special token {m.group()!r}, which is not allowed: pass "
                    f'allowed_special={{{m.group()!r}}} (or "all") to encode it as a special token, or '
                    f'allowed_special="none" to encode it as ordinary text'
                )
        if not allowed:
            return self.encode_ordinary(text)
        ids: list[int] = []
        for k, part in enumerate(_special_regex(frozenset(allowed)).split(text)):
            if k % 2:
                ids.append(self.special_tokens[part])
            elif part:
                ids.extend(self.encode_ordinary(part))
        return ids

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of a sequence of token ids (special tokens as their UTF-8 text)."""
        table = self._tokens
        try:
            return b"".join(
                [table[i] if i in table else self.inverse_special_tokens[i].encode() for i in ids]
            )
        except KeyError as e:
            raise ValueError(f"token id {e.args[0]!r} is not in the vocabulary of {self!r}") from None
        except TypeError as e:
            raise TypeError(f"decode() expects a sequence of int token ids ({e})") from None

    def decode(self, ids: Iterable[int]) -> str:
        """Decodes token ids to text; bytes that are not valid UTF-8 become U+FFFD (never raises for that)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # --- files -----------------------------------------------------------------------------

    def save(self, file_prefix: str | os.PathLike, format: str = "llmpy") -> None:
        """Writes ``file_prefix.model`` (read back by ``load``) and ``file_prefix.vocab`` (for people).

        ``format="llmpy"`` (the default) holds every tokenizer: text with a header line
        (``llmpy-bpe 1``), the pattern (JSON), the byte ids, the special tokens (JSON name and id)
        and the merges (left right new) in learning order. ``format="minbpe"`` writes karpathy/minbpe's
        ``minbpe v1`` file, which minbpe's ``load`` reads: the pattern as a raw line, the number of
        special tokens and a ``name id`` line for each, then one ``left right`` line per merge (new
        ids 256, 257, ... implied). It cannot hold permuted byte ids (GPT-2's and GPT-4's
        vocabularies from tiktoken), a pattern with a line break or edge spaces, or special tokens
        with spaces: ValueError says which, before anything is written.

        >>> tok.save("shakespeare", format="minbpe")                       # doctest: +SKIP
        """
        prefix = os.fspath(file_prefix)
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
        if format == "minbpe":
            _atomic_write(prefix + ".model", self._minbpe_text())
        else:
            lines = [MODEL_HEADER, "pattern " + json.dumps(self.pattern)]
            identity = self.byte_ids == list(range(256))
            lines.append("bytes identity" if identity else "bytes " + " ".join(map(str, self.byte_ids)))
            lines.append(f"special {len(self.special_tokens)}")
            lines += [f"{json.dumps(s)} {i}" for s, i in self.special_tokens.items()]
            lines.append(f"merges {len(self.merges)}")
            lines += [f"{a} {b} {z}" for (a, b), z in self.merges.items()]
            _atomic_write(prefix + ".model", "\n".join(lines) + "\n")

        made_by = {}
        for (a, b), z in self.merges.items():
            made_by.setdefault(z, (a, b))
        out = []
        for i in sorted(self._tokens):
            s = render_token(self._tokens[i])
            if i in made_by:
                a, b = made_by[i]
                out.append(f"[{render_token(self._tokens[a])}][{render_token(self._tokens[b])}] -> [{s}] {i}")
            else:
                out.append(f"[{s}] {i}")
        out += [f"[{render_token(s.encode())}] {i} special" for s, i in sorted(self.special_tokens.items())]
        _atomic_write(prefix + ".vocab", "\n".join(out) + "\n")

    def _minbpe_text(self) -> str:
        """This tokenizer as minbpe's ``.model`` text; ValueError when that format cannot hold it."""
        why = "minbpe's .model format cannot hold this tokenizer"
        if self.byte_ids != list(range(256)):
            raise ValueError(f"{why}: its byte ids are permuted (a vocabulary from tiktoken); save it in "
                             "the default format")
        for k, ((a, b), z) in enumerate(self.merges.items()):
            if z != 256 + k:
                raise ValueError(f"{why}: merge {k} ({a}, {b}) makes token {z}, not {256 + k} (minbpe numbers "
                                 "merges 256, 257, ... in order)")
        pattern = self.pattern or ""
        if pattern != pattern.strip() or "\n" in pattern or "\r" in pattern:
            raise ValueError(f"{why}: its pattern has a line break or starts or ends with a space "
                             "(minbpe keeps the pattern on one stripped line)")
        lines = [MINBPE_HEADER, pattern, str(len(self.special_tokens))]
        for name, i in self.special_tokens.items():
            if name.split() != [name]:
                raise ValueError(f"{why}: special token {name!r} has white space (minbpe splits its line on it)")
            lines.append(f"{name} {i}")
        lines += [f"{a} {b}" for a, b in self.merges]
        return "\n".join(lines) + "\n"

    def load(self, model_file: str | os.PathLike) -> None:
        """Reads a ``.model`` file into this tokenizer (pattern included): ours (``llmpy-bpe 1``) or
        karpathy/minbpe's (``minbpe v1``), recognised by the first line.

        ModelFileError (a ValueError) when the file is damaged; OSError when it cannot be read.
        """
        path = os.fspath(model_file)
        if not path.endswith(".model"):
            raise ValueError(f"expected a .model file (written by save()), got {path!r}")
        pattern, byte_ids, merges, specials = _read_model(path)
        if (pattern is not None) != self._uses_pattern:
            has = (
                "a split pattern: load it with RegexTokenizer"
                if pattern is not None
                else ("no split pattern: load it with BasicTokenizer")
            )
            raise ValueError(f"{path} has {has}().load(...) or llmpy.tokenizer.load(...)")
        old = (self.pattern, self._compiled, self.byte_ids, self.merges, self.special_tokens)
        try:
            self._compiled, self.pattern = None, None
            if pattern is not None:
                self._set_pattern(pattern)
            self.byte_ids, self.merges, self.special_tokens = byte_ids, merges, {}
            self._rebuild()
            self.register_special_tokens(specials)
        except (ValueError, TypeError) as e:
            self.pattern, self._compiled, self.byte_ids, self.merges, self.special_tokens = old
            self._rebuild()
            raise ModelFileError(
                f"{path}: {e}. The file is damaged; write it again with Tokenizer.save(prefix)"
            ) from None

    # --- tiktoken --------------------------------------------------------------------------

    def to_tiktoken(self, name: str = "llmpy"):
        """A ``tiktoken.Encoding`` that encodes exactly like this tokenizer (and fast, in Rust).

        Its ``encode`` follows tiktoken's special-token arguments (``allowed_special``,
        ``disallowed_special``). For BasicTokenizer the pattern matches the whole text.
        """
        try:
            import tiktoken
        except ImportError as e:
            raise ImportError("to_tiktoken() needs tiktoken: pip install tiktoken") from e
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        return tiktoken.Encoding(
            name=name,
            pat_str=self.pattern if self.pattern is not None else r"[\s\S]+",
            mergeable_ranks={t: i for i, t in self._tokens.items()},
            special_tokens=dict(self.special_tokens),
        )

    def _load_ranks(self, tokens: list, specials: dict[str, int]) -> None:
        """Takes a vocabulary given by ranks (token bytes by id): byte ids and merges are recovered."""
        c_vocab = _C.tokenizer.Vocab(tokens)
        parts = c_vocab.recover_merges()
        self.byte_ids = [0] * 256
        for i, t in enumerate(tokens):
            if t is not None and len(t) == 1:
                self.byte_ids[t[0]] = i
        rows = np.flatnonzero(parts[:, 0] >= 0)
        self.merges = {(int(parts[i, 0]), int(parts[i, 1])): int(i) for i in rows}
        self.special_tokens = {}
        self._rebuild(tokens, c_vocab)
        self.register_special_tokens(specials)


# ----------------------------------------------------------------------------
# the .model file


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)


def _read_model(path: str):
    """Parses a .model file, ours or minbpe's; ModelFileError names the line and what was wrong."""
    pos = 0

    def fail(msg: str) -> NoReturn:
        raise ModelFileError(
            f"{path}, line {pos}: {msg}. The file is damaged or not a tokenizer model; "
            "write it again with Tokenizer.save(prefix)"
        )

    raw = Path(path).read_bytes()
    try:
        lines = raw.decode("utf-8").split("\n")
    except UnicodeDecodeError as e:
        pos = raw.count(b"\n", 0, e.start) + 1
        fail(f"not UTF-8 text ({e.reason} at byte {e.start})")
    pos = 0  # lines read so far

    def line() -> str:
        nonlocal pos
        if pos >= len(lines):
            fail("unexpected end of file")
        pos += 1
        return lines[pos - 1]

    def ints(text: str, n: int) -> list[int]:
        fields = text.split(" ")
        if len(fields) != n or not all(f.isdigit() for f in fields):
            fail(f"expected {n} non-negative integers, got {text[:80]!r}")
        return [int(f) for f in fields]

    def count(key: str) -> int:
        text = line()
        if not text.startswith(key + " "):
            fail(f"expected '{key} N', got {text[:80]!r}")
        return ints(text[len(key) + 1 :], 1)[0]

    first = line()
    if first.rstrip("\r") == MINBPE_HEADER:

        def fail_at(lineno: int, msg: str) -> NoReturn:
            nonlocal pos
            pos = lineno
            fail(msg)

        return _read_minbpe(lines, fail_at)
    if first != MODEL_HEADER:
        fail(f"the first line must be {MODEL_HEADER!r} (ours) or {MINBPE_HEADER!r} (minbpe's)")
    text = line()
    try:
        if not text.startswith("pattern "):
            raise ValueError
        pattern = json.loads(text[len("pattern ") :])
        if pattern is not None and not isinstance(pattern, str):
            raise ValueError
    except ValueError:
        fail(f"expected 'pattern <JSON string or null>', got {text[:80]!r}")
    text = line()
    if text == "bytes identity":
        byte_ids = list(range(256))
    elif text.startswith("bytes "):
        byte_ids = ints(text[len("bytes ") :], 256)
        if len(set(byte_ids)) != 256:
            fail("the byte ids are not distinct")
    else:
        fail(f"expected 'bytes identity' or 'bytes <256 ids>', got {text[:80]!r}")
    specials = {}
    for _ in range(count("special")):
        text = line()
        name, _, idx = text.rpartition(" ")
        try:
            name = json.loads(name)
            if not isinstance(name, str) or not idx.isdigit():
                raise ValueError
        except ValueError:
            fail(f"expected '<JSON string> <id>', got {text[:80]!r}")
        specials[name] = int(idx)
    known = set(byte_ids)
    merges = {}
    for _ in range(count("merges")):
        a, b, z = ints(line(), 3)
        if a not in known or b not in known:
            fail(f"merge ({a}, {b}) uses a token that is not defined before it")
        if (a, b) in merges:
            fail(f"merge ({a}, {b}) is given twice")
        merges[(a, b)] = z
        known.add(z)
    if any(text.strip() for text in lines[pos:]):
        pos += 1
        fail("unexpected data after the merges")
    return pattern, byte_ids, merges, specials



def _read_minbpe(lines: list, fail) -> tuple:
    """minbpe's ``.model`` file as split lines (the first, ``minbpe v1``, already checked): the
    pattern (an empty line: none), the number of special tokens, a ``name id`` line for each, then
    ``left right`` per merge, merge k making token 256 + k. Lines are stripped, as minbpe's load
    does. ``fail(lineno, message)`` raises."""
    lines = [t.strip() for t in lines]
    while len(lines) > 1 and not lines[-1]:
        lines.pop()  # the final line break
    if len(lines) < 3:
        fail(len(lines) + 1, "unexpected end of file")
    pattern = lines[1] or None
    if not lines[2].isdigit():
        fail(3, f"expected the number of special tokens, got {lines[2][:80]!r}")
    n_special = int(lines[2])
    if len(lines) < 3 + n_special:
        fail(len(lines) + 1, "unexpected end of file")
    specials = {}
    for k in range(3, 3 + n_special):
        fields = lines[k].split()
        if len(fields) != 2 or not fields[1].isdigit():
            fail(k + 1, f"expected '<special token> <id>', got {lines[k][:80]!r}")
        specials[fields[0]] = int(fields[1])
    merges = {}
    for k in range(3 + n_special, len(lines)):
        fields = lines[k].split()
        if len(fields) != 2 or not all(f.isdigit() for f in fields):
            fail(k + 1, f"expected a merge '<id> <id>', got {lines[k][:80]!r}")
        a, b = int(fields[0]), int(fields[1])
        z = 256 + len(merges)
        if a >= z or b >= z:
            fail(k + 1, f"merge ({a}, {b}) uses a token that is not defined before it")
        if (a, b) in merges:
            fail(k + 1, f"merge ({a}, {b}) is given twice")
        merges[(a, b)] = z
    return pattern, list(range(256)), merges, specials
