"""Our byte-level BPE (llmpy.tokenizer): training against the straightforward algorithm, round trips,
special tokens, save/load, to_tiktoken, bad input and the command line.

Oracles: the published Wikipedia BPE example; llmpy.tokenizer.reference.train_reference (recounts
every pair after every merge, pure Python) for the incremental C trainer; tiktoken itself for
to_tiktoken and special-token behaviour; the input text for round trips. Never uses the network.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_helpers import SHAKESPEARE, TIKTOKEN_CACHE  # the shared folder, located once

os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))

from llmpy import _C
from llmpy.tokenizer import (
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    BasicTokenizer,
    ModelFileError,
    RegexTokenizer,
    load,
)
from llmpy.tokenizer.reference import train_reference

regex = pytest.importorskip("regex", reason="split patterns need the regex package (pip install regex)")
tiktoken = pytest.importorskip("tiktoken")


def shakespeare() -> str:
    if not SHAKESPEARE.exists():
        pytest.skip(f"tiny Shakespeare not found at {SHAKESPEARE} (set LLMPY_DATA_DIR)")
    return SHAKESPEARE.read_text(encoding="utf-8")


# A small multilingual sample so trained vocabularies see multi-byte characters too.
UNICODE_SAMPLE = (
    "naïve café façade — “quotes” ‘single’ … 日本語のテキストです。中文字符测试。한국어 문장입니다. "
    "Ελληνικά κείμενα. Русский текст. עברית. العربية. हिन्दी पाठ। 😀😉🎉👍🏽 👨‍👩‍👧 e\u0301 a\u0308 "
    "\t\ttabs  and    spaces\n\n\nnewlines\r\nCRLF 12345 3.14 1,000,000 x² ½ "
)


@pytest.fixture(scope="module")
def corpus() -> str:
    return shakespeare()[:200_000] + UNICODE_SAMPLE * 20


@pytest.fixture(scope="module")
def trained(corpus) -> dict:
    """One tokenizer of each kind, trained once for the module."""
    toks = {
        "basic": BasicTokenizer(),
        "gpt2": RegexTokenizer(GPT2_SPLIT_PATTERN),
        "gpt4": RegexTokenizer(GPT4_SPLIT_PATTERN),
    }
    for name, tok in toks.items():
        tok.train(corpus[:50_000] if name == "basic" else corpus, 700)
    return toks


def c_train(words: dict[bytes, int], vocab_size: int) -> list[tuple[int, int, int, int]]:
    ws = list(words)
    offsets = np.zeros(len(ws) + 1, dtype=np.uint64)
    offsets[1:] = np.cumsum([len(w) for w in ws])
    counts = np.array(list(words.values()), dtype=np.int64)
    return [tuple(r) for r in _C.tokenizer.train(b"".join(ws), offsets, counts, vocab_size).tolist()]


def first_difference(a: list, b: list) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"first difference at {i}: {x} != {y} (lengths {len(a)}, {len(b)})"
    return f"lengths differ: {len(a)} != {len(b)}"


# ---------------------------------------------------------------------------
# training


def test_wikipedia_example():
    # https://en.wikipedia.org/wiki/Byte_pair_encoding: "aaabdaaabac" -> Z=aa, Y=ab, X=ZY -> "XdXac".
    # The tie between (Z, a) and (a, b) after the first merge (2 occurrences each) goes to the
    # smaller id pair (97, 98) = "ab", which is Wikipedia's choice.
    for tok in (BasicTokenizer(), RegexTokenizer()):
        tok.train("aaabdaaabac", 256 + 3)
        assert tok.merges == {(97, 97): 256, (97, 98): 257, (256, 257): 258}
        assert tok.vocab[258] == b"aaab"
        ids = tok.encode("aaabdaaabac")
        assert ids == [258, 100, 258, 97, 99]  # X d X a c
        assert tok.decode(ids) == "aaabdaaabac"


def test_trainer_equals_straightforward_algorithm_on_text():
    text = shakespeare()
    words = Counter(w.encode() for w in regex.findall(GPT2_SPLIT_PATTERN, text[:30_000] + UNICODE_SAMPLE))
    ref, got = train_reference(words, 700), c_train(words, 700)
    assert got == ref, first_difference(got, ref)
    basic = {text[:6000].encode(): 1}  # one long word: overlapping runs, no word boundaries
    ref, got = train_reference(basic, 600), c_train(basic, 600)
    assert got == ref, first_difference(got, ref)


def test_trainer_equals_straightforward_algorithm_on_random_words():
    # tiny alphabets make ties, overlapping pairs ("aaaa") and repeated merges common
    rng = random.Random(0)
    for trial in range(300):
        alphabet = rng.choice([b"a", b"ab", b"abc", bytes(range(250, 256))])
        words = {
            bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 25))): rng.randint(1, 4)
            for _ in range(rng.randint(1, 10))
        }
        vocab_size = 256 + rng.randint(1, 50)
        ref, got = train_reference(words, vocab_size), c_train(words, vocab_size)
        assert got == ref, f"trial {trial}, words {words}: {first_difference(got, ref)}"


def test_overlapping_pairs_merge_left_to_right():
    tok = BasicTokenizer()
    tok.train("aaa", 257)  # (a, a) occurs twice (overlapping) in "aaa"
    assert tok.merges == {(97, 97): 256}
    assert tok.encode("aaa") == [256, 97] and tok.encode("aaaa") == [256, 256]


def test_ties_are_order_independent():
    words = ["xy", "ab", "cd", "ab", "cd", "xy"]  # three pairs, two occurrences each
    merges = []
    for seed in range(5):
        random.Random(seed).shuffle(words)
        tok = RegexTokenizer(r"\S+")
        tok.train(" ".join(words), 256 + 3)
        merges.append(list(tok.merges))
    assert all(m == [(97, 98), (99, 100), (120, 121)] for m in merges), merges


def test_training_runs_out_of_pairs_with_a_warning():
    tok = RegexTokenizer(GPT2_SPLIT_PATTERN)
    with pytest.warns(UserWarning, match="no pairs left"):
        tok.train("ab ab", 1000)
    assert tok.merges == {(97, 98): 256, (32, 256): 257}  # pieces "ab" and " ab": nothing left to merge
    assert tok.encode("ab ab") == [256, 257]
    assert tok.decode(tok.encode("ab ab")) == "ab ab"
    with pytest.warns(UserWarning):
        BasicTokenizer().train("", 300)


def test_vocab_size_is_reached_and_ids_are_dense(trained):
    for tok in trained.values():
        assert sorted(tok.vocab) == list(range(700))
        assert len(set(tok.vocab.values())) == 700  # byte strings are distinct (tiktoken needs it)


def test_shakespeare_vocab_4096_trains_fast():
    import time

    text = shakespeare()
    tok = RegexTokenizer(GPT2_SPLIT_PATTERN)
    t0 = time.perf_counter()
    tok.train(text, 4096)
    seconds = time.perf_counter() - t0
    assert len(tok.vocab) == 4096
    assert tok.decode(tok.encode(text)) == text
    assert seconds < 10, f"training took {seconds:.1f} s (expected well under 1 s)"


# ---------------------------------------------------------------------------
# round trips (byte-level: any Unicode string)

TEXT = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(["😀", "😉", "🎉", "👍🏽", "👨‍👩‍👧", "🏳️‍🌈", "🇫🇷", " "]), max_size=30).map(
        "".join
    ),  # emoji
    st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), max_size=60),  # CJK
    st.text(alphabet=st.sampled_from("ae\u0301\u0308\u0327\u20dd\u0489 "), max_size=60),  # combining marks
    st.text(alphabet=st.characters(categories=("Cc", "Cf", "Zs", "Zl", "Zp")), max_size=60),  # controls
    st.text(alphabet=st.sampled_from(" \t\n\r\x0b\x0c\u00a0\u3000"), min_size=50, max_size=500),  # whitespace
    st.lists(
        st.sampled_from(["the", " ", "  ", "\n", "'s", "I'M", "123456", "ab", "😀", "é"]), max_size=60
    ).map("".join),
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


@FUZZ
@given(text=TEXT)
def test_round_trip_any_unicode(trained, text):
    for name, tok in trained.items():
        ids = tok.encode(text)
        assert tok.decode(ids) == text, f"{name}: {text!r} -> {ids}"
        assert all(isinstance(i, int) for i in ids)


def test_round_trip_long_whitespace_and_repeats(trained):
    for text in [" " * 10_000, "\n" * 5000 + "x", "a" * 20_000, "ab" * 10_000, "😀" * 3000, "\t \n" * 3000]:
        for name, tok in trained.items():
            assert tok.decode(tok.encode(text)) == text, name


@FUZZ
@given(data=st.data())
def test_decode_of_arbitrary_ids_never_raises(trained, data):
    for tok in trained.values():
        ids = data.draw(st.lists(st.integers(0, 699), max_size=50))
        raw = tok.decode_bytes(ids)
        assert tok.decode(ids) == raw.decode("utf-8", errors="replace")


def test_lone_surrogates_are_replaced_like_tiktoken(trained):
    tok = trained["gpt4"]
    enc = tok.to_tiktoken("t")
    for text in ["\ud800", "a\udfffb", "x\ud83d"]:
        assert tok.encode(text) == enc.encode(text)
        assert "\ufffd" in tok.decode(tok.encode(text))


# ---------------------------------------------------------------------------
# to_tiktoken


def test_to_tiktoken_encodes_like_encode_on_shakespeare(trained):
    text = shakespeare()
    for name in ("gpt2", "gpt4"):
        tok = trained[name]
        enc = tok.to_tiktoken(name)
        ours, theirs = tok.encode(text), enc.encode(text)
        assert ours == theirs, f"{name}: {first_difference(ours, theirs)}"
        assert enc.decode(theirs) == text


@pytest.fixture(scope="module")
def as_tiktoken(trained) -> dict:
    return {name: tok.to_tiktoken(name) for name, tok in trained.items()}


@FUZZ
@given(text=TEXT)
def test_to_tiktoken_encodes_like_encode_on_any_unicode(trained, as_tiktoken, text):
    for name, tok in trained.items():
        assert tok.encode(text) == as_tiktoken[name].encode(text), f"{name}: {text!r}"


# ---------------------------------------------------------------------------
# special tokens (behaviour compared with tiktoken's)

SPECIALS = {"<|endoftext|>": 700, "<|fim|>": 701}


@pytest.fixture(scope="module")
def special_tok(corpus):
    tok = RegexTokenizer(GPT4_SPLIT_PATTERN)
    tok.train(corpus[:100_000], 700)
    tok.register_special_tokens(SPECIALS)
    return tok, tok.to_tiktoken("special")


def test_special_tokens_all_none_and_sets(special_tok):
    tok, enc = special_tok
    text = "Hello<|endoftext|> world <|fim|>!<|endoftext|><|endoftext"
    assert tok.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all")
    assert tok.encode(text, allowed_special="all").count(700) == 2
    assert tok.encode(text, allowed_special="none") == enc.encode(text, disallowed_special=())
    assert 700 not in tok.encode(text, allowed_special="none")
    for allowed in ({"<|endoftext|>"}, {"<|fim|>"}, set()):
        with pytest.raises(ValueError, match="not allowed"):
            tok.encode(text, allowed_special=allowed)
        with pytest.raises(ValueError):
            enc.encode(text, allowed_special=allowed)
    only_eot = "a<|endoftext|>b"
    assert tok.encode(only_eot, allowed_special={"<|endoftext|>"}) == enc.encode(
        only_eot, allowed_special={"<|endoftext|>"}
    )
    assert tok.decode(tok.encode(text, allowed_special="all")) == text


def test_special_tokens_default_raises_like_tiktoken(special_tok):
    tok, enc = special_tok
    with pytest.raises(ValueError, match="<\\|fim\\|>"):
        tok.encode("x <|fim|> y")
    with pytest.raises(ValueError):
        enc.encode("x <|fim|> y")
    assert tok.encode("no specials here") == enc.encode("no specials here")


def test_register_special_tokens_checks_ids():
    tok = RegexTokenizer()
    tok.train(shakespeare()[:20_000], 300)
    with pytest.raises(ValueError, match="ordinary token"):
        tok.register_special_tokens({"<|x|>": 5})
    with pytest.raises(ValueError, match="same id"):
        tok.register_special_tokens({"<|x|>": 800, "<|y|>": 800})
    with pytest.raises(TypeError):
        tok.register_special_tokens({"<|x|>": "800"})
    with pytest.raises(TypeError):
        tok.register_special_tokens([("<|x|>", 800)])
    tok.register_special_tokens({"<|x|>": 800})
    assert tok.n_vocab == 801 and tok.decode([800]) == "<|x|>" and tok.vocab[800] == b"<|x|>"
    merges = dict(tok.merges)
    with pytest.raises(ValueError, match="after training"):
        tok.train(shakespeare()[:20_000], 1000)  # would give id 800 to an ordinary token
    assert tok.merges == merges and tok.decode([800]) == "<|x|>"


# ---------------------------------------------------------------------------
# save / load


def test_save_load_preserves_encode_decode(trained, tmp_path, corpus):
    sample = corpus[:20_000] + UNICODE_SAMPLE
    for name, tok in trained.items():
        tok2 = type(tok)()
        tok.register_special_tokens({"<|endoftext|>": 700})
        try:
            tok.save(tmp_path / name)
            tok2.load(tmp_path / f"{name}.model")
            tok3 = load(str(tmp_path / f"{name}.model"))
        finally:
            tok.register_special_tokens({})
        assert type(tok3) is type(tok)
        for t in (tok2, tok3):
            assert t.merges == tok.merges and list(t.merges) == list(tok.merges)
            assert t.pattern == tok.pattern and t.special_tokens == {"<|endoftext|>": 700}
            assert t.encode(sample) == tok.encode(sample)
            assert (
                t.decode(t.encode(sample + "<|endoftext|>", allowed_special="all"))
                == sample + "<|endoftext|>"
            )
        vocab = (tmp_path / f"{name}.vocab").read_text(encoding="utf-8").splitlines()
        assert len(vocab) == 701 and vocab[-1] == "[<|endoftext|>] 700 special"
        assert vocab[256].endswith(" 256") and " -> " in vocab[256]


def write_model(tmp_path: Path, text: str, name: str = "bad.model") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return p


def test_corrupt_model_files_raise_clear_errors(tmp_path):
    tok = RegexTokenizer(GPT2_SPLIT_PATTERN)
    tok.train("hello hello world", 260)
    tok.save(tmp_path / "good")
    good = (tmp_path / "good.model").read_text(encoding="utf-8")
    lines, n = good.splitlines(), len(tok.merges)
    cases = {
        "header": good.replace("llmpy-bpe 1", "minbpe v1"),
        "truncated": "\n".join(lines[:-2]) + "\n",
        "empty": "",
        "merge_not_numbers": good.replace(lines[-1], "a b c"),
        "merge_unknown_id": good.replace(lines[-1], "97 9999 300"),
        "pattern": good.replace(lines[1], "pattern {not json"),
        "bytes": good.replace("bytes identity", "bytes 1 2 3"),
        "count": good.replace(f"merges {n}", "merges x"),
        "trailing": good + "1 2 3\n",
        "binary": b"\x80\x81\xfe\xff" * 10,
        "duplicate_merge": good.replace(f"merges {n}", f"merges {n + 1}") + lines[-1] + "\n",
        "bad_special": good.replace("special 0", "special 1\nnot-json 5"),
    }
    for name, text in cases.items():
        path = write_model(tmp_path, text, f"{name}.model")
        with pytest.raises(ModelFileError, match=r"line \d+: .*(damaged|not a tokenizer)"):
            RegexTokenizer().load(path)
    # a merge whose new id contradicts an earlier token: detected when the vocabulary is built
    clash = good.replace(lines[-1], f"{lines[-1].rsplit(' ', 1)[0]} 97")
    with pytest.raises(ModelFileError, match="damaged"):
        RegexTokenizer().load(write_model(tmp_path, clash, "clash.model"))
    with pytest.raises(FileNotFoundError):
        RegexTokenizer().load(tmp_path / "missing.model")
    with pytest.raises(ValueError, match=r"\.model"):
        RegexTokenizer().load(tmp_path / "good.vocab")
    with pytest.raises(ValueError, match="BasicTokenizer"):
        b = BasicTokenizer()
        b.save(tmp_path / "basic")
        RegexTokenizer().load(tmp_path / "basic.model")
    # a failed load leaves the tokenizer as it was
    t = RegexTokenizer(GPT2_SPLIT_PATTERN)
    t.train("hello hello world", 260)
    before = t.encode("hello world")
    with pytest.raises(ModelFileError):
        t.load(write_model(tmp_path, cases["merge_unknown_id"], "x.model"))
    assert t.encode("hello world") == before


# ---------------------------------------------------------------------------
# bad input


def test_bad_input_raises_clear_errors(trained):
    tok = RegexTokenizer()
    with pytest.raises(ValueError, match="at least 256"):
        tok.train("hello", 255)
    with pytest.raises(TypeError, match="vocab_size"):
        tok.train("hello", 300.0)
    with pytest.raises(TypeError, match="vocab_size"):
        tok.train("hello", True)
    with pytest.raises(TypeError, match="str"):
        tok.train(b"hello", 300)
    with pytest.raises(TypeError, match="str"):
        tok.encode(b"hello")
    with pytest.raises(TypeError, match="str"):
        tok.encode(None)
    with pytest.raises(ValueError, match="allowed_special"):
        tok.encode("x", allowed_special="some")
    with pytest.raises(TypeError, match="allowed_special"):
        tok.encode("x", allowed_special=["<|endoftext|>"])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        trained["gpt2"].decode([700])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        trained["gpt2"].decode([-1])
    with pytest.raises(TypeError, match="int"):
        trained["gpt2"].decode([[1]])
    with pytest.raises(ValueError, match="invalid split pattern"):
        RegexTokenizer("(unclosed")
    with pytest.raises(TypeError, match="pattern"):
        RegexTokenizer(42)
    with pytest.raises(ValueError, match="256"):
        _C.tokenizer.train(b"ab", np.array([0, 2], np.uint64), np.array([1]), 100)
    with pytest.raises(ValueError, match="count"):
        _C.tokenizer.train(b"ab", np.array([0, 2], np.uint64), np.array([0]), 300)
    with pytest.raises(ValueError, match="byte 0x"):
        _C.tokenizer.Vocab([b"a", b"b"])
    with pytest.raises(ValueError, match="same bytes"):
        _C.tokenizer.Vocab([bytes([i]) for i in range(256)] + [b"a"])
    with pytest.raises(TypeError):
        _C.tokenizer.Vocab([1, 2])


# ---------------------------------------------------------------------------
# command line


def test_cli_train_encode_decode(tmp_path, capsys, monkeypatch):
    import io

    from llmpy.tokenizer.__main__ import main

    src = tmp_path / "input.txt"
    src.write_text(shakespeare()[:30_000], encoding="utf-8")
    prefix = tmp_path / "tok"
    assert main(["train", "--vocab-size", "400", "--pattern", "gpt4", str(src), "--out", str(prefix)]) == 0
    assert (tmp_path / "tok.model").exists() and (tmp_path / "tok.vocab").exists()
    text = "First Citizen:\nBefore we proceed any further, hear me speak."
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    capsys.readouterr()
    assert main(["encode", "--model", str(prefix) + ".model"]) == 0
    ids = [int(x) for x in capsys.readouterr().out.split()]
    assert ids == load(str(prefix) + ".model").encode(text)
    monkeypatch.setattr(sys, "stdin", io.StringIO(" ".join(map(str, ids))))
    assert main(["decode", "--model", str(prefix) + ".model"]) == 0
    assert capsys.readouterr().out == text
    assert main(["train", "--vocab-size", "100", str(src), "--out", str(prefix)]) == 1
    assert "at least 256" in capsys.readouterr().err
    assert main(["train", "--vocab-size", "300", "--pattern", "none", str(src), "--out", str(prefix)]) == 0
    assert type(load(str(prefix) + ".model")) is BasicTokenizer


def test_cli_runs_as_module():
    out = subprocess.run(
        [sys.executable, "-m", "llmpy.tokenizer", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "train" in out.stdout and "encode" in out.stdout
