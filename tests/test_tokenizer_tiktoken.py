"""GPT-2 and GPT-4 tokenization against tiktoken, and the llm.c tokenizer file read by C.

Oracle: tiktoken (gpt2, cl100k_base) from the local cache (TIKTOKEN_CACHE_DIR, set to
../shared/tiktoken_cache when unset); never the network.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_helpers import SHAKESPEARE, TIKTOKEN_CACHE  # the shared folder, located once

os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))

import llmpy
from llmpy.tokenizer import (
    GPT2_SPLIT_PATTERN,
    GPT4_SPECIAL_TOKENS,
    GPT4_SPLIT_PATTERN,
    GPT4Tokenizer,
    RegexTokenizer,
    TokenizerFile,
    TokenizerUnavailable,
    gpt2,
    load,
    write_llmc_tokenizer,
)

tiktoken = pytest.importorskip("tiktoken")
pytest.importorskip("regex", reason="split patterns need the regex package (pip install regex)")


def shakespeare() -> str:
    if not SHAKESPEARE.exists():
        pytest.skip(f"tiny Shakespeare not found at {SHAKESPEARE} (set LLMPY_DATA_DIR)")
    return SHAKESPEARE.read_text(encoding="utf-8")


def first_difference(a: list, b: list) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"first difference at {i}: {x} != {y} (lengths {len(a)}, {len(b)})"
    return f"lengths differ: {len(a)} != {len(b)}"


@pytest.fixture(scope="module")
def cl100k():
    return tiktoken.get_encoding("cl100k_base")


@pytest.fixture(scope="module")
def gpt4() -> GPT4Tokenizer:
    return GPT4Tokenizer()


# Strings that exercise every branch of the split patterns and of byte-level BPE.
TRICKY = [
    "",
    " ",
    "  ",
    "\n",
    "\n\n\n",
    "\r\n",
    "\r\n\r\n  ",
    " \t\n \r\n  ",
    "a" * 1000,
    " " * 1000,
    "\n" * 300 + "x",
    "x" + " " * 50 + "y",
    "trailing   ",
    "   leading",
    "tab\tseparated\tvalues",
    "hello world!!!? (안녕하세요!) lol123 😉",
    "I'm",
    "I'M",
    "we'll've",
    "'s",
    "don't",
    "DON'T",
    "it'S",
    "12345678901234567890",
    "3.14159",
    "1,000,000",
    "x²+y²=z²",
    "٣٤٥ ٦٧",
    "১২৩",
    "naïve café",
    "e\u0301",
    "a\u0308\u0301\u0327",
    "\u0915\u094d\u0937",
    "👨‍👩‍👧‍👦",
    "🏳️‍🌈",
    "日本語のテキスト",
    "中文字符测试",
    "한국어 문장",
    "Ελληνικά",
    "Русский",
    "עברית",
    "العربية",
    "\x00\x01\x1f\x7f",
    "\u200b\u200d\ufeff",
    "\ufffd",
    "\u2028\u2029",
    "\u00a0\u3000",
    "function(x) { return x**2; }\n\tif (a && b) {}",
    "SELECT * FROM t WHERE a='b';",
    "https://example.com/a?b=c&d=e#f",
    "ÀÉÎÕÜ",
    "ǅ",
    "ﬁ",
    "İstanbul",
    "straße",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "\U0010ffff\U000e0001",
    "!!!!!!!!!!!!!!!!!!!!!",
    "....\n\n....",
    "a\n\nb\r\n\r\nc  \n  d",
    "<|endoftext|>",
    "<|endo",
    "<|endoftext|><|endoftext|>",
    "a<|fim_prefix|>b<|fim_middle|>c<|fim_suffix|>",
    "<|endofprompt|> x",
]


# ---------------------------------------------------------------------------
# gpt2() through tiktoken


def test_gpt2_encoding():
    enc = gpt2()
    assert enc.eot_token == 50256 and enc.n_vocab == 50257
    ids = enc.encode("Hello world, <|endoftext|>!", allowed_special={"<|endoftext|>"})
    assert ids == [15496, 995, 11, 220, 50256, 0]  # published GPT-2 ids
    assert enc.decode(ids) == "Hello world, <|endoftext|>!"


def test_gpt2_without_cache_or_network_says_how_to_fix(tmp_path, monkeypatch):
    import tiktoken.load
    import tiktoken.registry

    def offline(*args, **kwargs):
        raise ConnectionError("network disabled in tests")

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # empty cache
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # no encoding loaded earlier in this process
    monkeypatch.setattr(tiktoken.load, "read_file", offline)  # what tiktoken calls to download
    with pytest.raises(TokenizerUnavailable, match="TIKTOKEN_CACHE_DIR") as err:
        gpt2()
    assert str(tmp_path) in str(err.value)


# ---------------------------------------------------------------------------
# GPT-4 (cl100k_base) and GPT-2 ranks in our tokenizer


def test_patterns_and_specials_are_tiktokens(cl100k):
    assert GPT4_SPLIT_PATTERN == cl100k._pat_str
    assert GPT2_SPLIT_PATTERN == tiktoken.get_encoding("gpt2")._pat_str
    assert GPT4_SPECIAL_TOKENS == {s: cl100k.encode_single_token(s) for s in cl100k.special_tokens_set}


def test_gpt4_merges_and_byte_permutation(gpt4, cl100k):
    # every multi-byte token is recovered as a merge of two lower-ranked tokens
    assert len(gpt4.merges) == 100256 - 256
    assert all(a < z and b < z for (a, b), z in gpt4.merges.items())
    assert gpt4.byte_ids != list(range(256))  # cl100k does not give byte b the id b ...
    assert sorted(gpt4.byte_ids) == sorted(cl100k.encode_single_token(bytes([b])) for b in range(256))
    for b in (0, 32, 65, 200, 255):  # ... and we follow its permutation
        assert gpt4.byte_ids[b] == cl100k.encode_single_token(bytes([b]))
    for (a, b), z in list(gpt4.merges.items())[::997]:
        assert gpt4.vocab[a] + gpt4.vocab[b] == cl100k.decode_single_token_bytes(z)


def test_gpt4_equals_cl100k_on_shakespeare(gpt4, cl100k):
    text = shakespeare()
    ours, theirs = gpt4.encode(text), cl100k.encode(text)
    assert ours == theirs, first_difference(ours, theirs)
    assert gpt4.decode(ours) == text


def test_gpt4_equals_cl100k_on_tricky_strings(gpt4, cl100k):
    for text in TRICKY + [" ".join(TRICKY), "\n".join(TRICKY)]:
        assert gpt4.encode(text, allowed_special="all") == cl100k.encode(text, allowed_special="all"), repr(
            text
        )
        assert gpt4.encode(text, allowed_special="none") == cl100k.encode(text, disallowed_special=()), repr(
            text
        )
        assert gpt4.decode(gpt4.encode(text, allowed_special="all")) == text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(text=st.one_of(st.text(max_size=100), st.lists(st.sampled_from(TRICKY), max_size=8).map("".join)))
def test_gpt4_equals_cl100k_on_any_unicode(gpt4, cl100k, text):
    assert gpt4.encode(text, allowed_special="none") == cl100k.encode(text, disallowed_special=())


def test_gpt4_special_tokens_behave_like_tiktoken(gpt4, cl100k):
    text = "hi <|endoftext|> there <|fim_prefix|>"
    with pytest.raises(ValueError):
        gpt4.encode(text)
    with pytest.raises(ValueError):
        cl100k.encode(text)
    allowed = {"<|endoftext|>", "<|fim_prefix|>"}
    assert gpt4.encode(text, allowed_special=allowed) == cl100k.encode(text, allowed_special=allowed)
    with pytest.raises(ValueError):
        gpt4.encode(text, allowed_special={"<|endoftext|>"})
    with pytest.raises(ValueError):
        cl100k.encode(text, allowed_special={"<|endoftext|>"})


def test_gpt4_is_pretrained(gpt4):
    with pytest.raises(NotImplementedError, match="RegexTokenizer"):
        gpt4.train("text", 300)


def test_gpt4_save_load_and_to_tiktoken(gpt4, tmp_path):
    gpt4.save(tmp_path / "cl100k")
    tok = load(tmp_path / "cl100k.model")
    assert type(tok) is RegexTokenizer and tok.byte_ids == gpt4.byte_ids and tok.merges == gpt4.merges
    enc = gpt4.to_tiktoken("cl100k_copy")
    for text in TRICKY:
        want = gpt4.encode(text, allowed_special="all")
        assert tok.encode(text, allowed_special="all") == want
        assert enc.encode(text, allowed_special="all") == want


def test_gpt2_ranks_in_our_tokenizer_equal_tiktoken_on_shakespeare():
    enc = tiktoken.get_encoding("gpt2")
    tok = RegexTokenizer.from_tiktoken(enc)
    assert tok.pattern == GPT2_SPLIT_PATTERN and tok.special_tokens == {"<|endoftext|>": 50256}
    assert len(tok.merges) == 50000 and tok.byte_ids != list(range(256))
    text = shakespeare()
    ours, theirs = tok.encode(text), enc.encode(text)
    assert ours == theirs, first_difference(ours, theirs)
    for text in TRICKY:
        assert tok.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all"), repr(text)


# ---------------------------------------------------------------------------
# the llm.c tokenizer file and its C decoder


@pytest.fixture(scope="module")
def gpt2_file(tmp_path_factory) -> Path:
    return write_llmc_tokenizer(tmp_path_factory.mktemp("llmc") / "gpt2_tokenizer.bin")


def test_llmc_tokenizer_file_header(gpt2_file):
    header = np.fromfile(gpt2_file, dtype="<i4", count=llmpy.formats["HEADER_INTS"])
    assert header[0] == llmpy.formats["TOKENIZER_MAGIC"] == 20240328
    assert header[1] == llmpy.formats["TOKENIZER_VERSION"] == 2
    assert (header[2], header[3]) == (50257, 50256)
    assert not header[4:].any()


def test_c_decoder_equals_tiktoken_decode(gpt2_file):
    enc = gpt2()
    f = TokenizerFile(str(gpt2_file))
    assert (f.vocab_size, f.eot_token) == (50257, 50256)
    for i in range(enc.n_vocab):  # every token
        assert f.decode(i) == enc.decode_single_token_bytes(i), i
    ids = enc.encode(shakespeare()[:200_000]) + [50256] + enc.encode(" 😉 日本語")
    raw = f.decode_many(ids)
    assert raw == enc.decode_bytes(ids)
    assert raw.decode("utf-8", errors="replace") == enc.decode(ids)
    split = [f.decode(i) for i in enc.encode("😉")]  # one character over several tokens
    assert len(split) > 1 and b"".join(split).decode() == "😉"


def test_c_decoder_rejects_bad_files_and_ids(gpt2_file, tmp_path):
    f = TokenizerFile(str(gpt2_file))
    for bad_id in (-1, 50257, 2**40):
        with pytest.raises(ValueError, match="outside the vocabulary"):
            f.decode(bad_id)
    data = gpt2_file.read_bytes()
    cases = {
        "magic": np.int32(20240326).tobytes() + data[4:],
        "version": data[:4] + np.int32(7).tobytes() + data[8:],
        "eot": data[:12] + np.int32(60000).tobytes() + data[16:],
        "truncated": data[: len(data) // 2],
        "header_only": data[:100],
        "trailing": data + b"\x00",
    }
    for name, blob in cases.items():
        path = tmp_path / f"{name}.bin"
        path.write_bytes(blob)
        with pytest.raises(ValueError, match=str(path)):
            TokenizerFile(str(path))
    with pytest.raises(OSError, match="cannot open"):
        TokenizerFile(str(tmp_path / "missing.bin"))


def test_llmc_file_from_our_tokenizer(tmp_path):
    tok = RegexTokenizer(GPT2_SPLIT_PATTERN)
    tok.train(shakespeare()[:50_000], 300)
    with pytest.raises(ValueError, match="end-of-text"):
        write_llmc_tokenizer(tmp_path / "x.bin", tok)
    tok.register_special_tokens({"<|endoftext|>": 300})
    f = TokenizerFile(str(write_llmc_tokenizer(tmp_path / "ours.bin", tok)))
    assert (f.vocab_size, f.eot_token) == (301, 300)
    ids = tok.encode("To be, or not to be<|endoftext|>", allowed_special="all")
    assert f.decode_many(ids) == tok.decode_bytes(ids)
