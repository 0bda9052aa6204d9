"""karpathy/minbpe's ``.model`` files: read by ``load`` beside ours, written by ``save(format="minbpe")``.

minbpe is not on PyPI, so the oracle is its format as its ``base.py`` writes and reads it, in files
written here by hand: ``minbpe v1``; the pattern on one line (empty for BasicTokenizer); the number
of special tokens; ``name id`` for each; then ``left right`` per merge, merge k making token 256 + k.
The expected ids are worked out by hand from minbpe's README example and from its merge rule.
"""

from __future__ import annotations

import pytest
from llmpy.tokenizer import (
    GPT4_SPLIT_PATTERN,
    BasicTokenizer,
    GPT4Tokenizer,
    ModelFileError,
    RegexTokenizer,
    load,
)
from llmpy.tokenizer.__main__ import main as cli

# minbpe's README: BasicTokenizer trained on "aaabdaaabac" with 3 merges
BASIC = "minbpe v1\n\n0\n97 97\n256 97\n257 98\n"
# GPT-4's pattern, merges he -> 256, hel -> 257, lo -> 258, " w" -> 259, and one special token
REGEX = f"minbpe v1\n{GPT4_SPLIT_PATTERN}\n1\n<|endoftext|> 260\n104 101\n256 108\n108 111\n32 119\n"


def read_minbpe(text: str) -> tuple:
    """(pattern, specials, merges) as minbpe's load() reads them (merge k makes 256 + k)."""
    lines = text.split("\n")
    assert lines[0] == "minbpe v1"
    n = int(lines[2])
    specials = {s: int(i) for s, i in (line.split() for line in lines[3:3 + n])}
    merges = {tuple(map(int, line.split())): 256 + k for k, line in enumerate(x for x in lines[3 + n:] if x)}
    return lines[1], specials, merges


def test_basic_file_of_minbpe_encodes_like_its_readme(tmp_path):
    (tmp_path / "toy.model").write_text(BASIC)
    tok = load(tmp_path / "toy.model")
    assert isinstance(tok, BasicTokenizer) and tok.pattern is None
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"
    tok.save(tmp_path / "again", format="minbpe")  # byte for byte what minbpe writes
    assert (tmp_path / "again.model").read_text() == BASIC
    tok.save(tmp_path / "ours")  # and through our format, the same tokenizer
    assert (tmp_path / "ours.model").read_text().startswith("llmpy-bpe 1\n")
    assert load(tmp_path / "ours.model").encode("aaabdaaabac") == [258, 100, 258, 97, 99]


def test_regex_file_of_minbpe_with_a_special_token(tmp_path):
    (tmp_path / "r.model").write_text(REGEX)
    tok = load(tmp_path / "r.model")
    assert isinstance(tok, RegexTokenizer) and tok.pattern == GPT4_SPLIT_PATTERN
    assert tok.special_tokens == {"<|endoftext|>": 260}
    text = "hello world<|endoftext|>"
    # "hello": he, then hel (rank 257 before lo's 258), then lo; " world": " w" then bytes
    want = [257, 258, 259, ord("o"), ord("r"), ord("l"), ord("d"), 260]
    assert tok.encode(text, allowed_special="all") == want
    assert tok.decode(want) == text
    tok.save(tmp_path / "again", format="minbpe")
    assert (tmp_path / "again.model").read_text() == REGEX
    RegexTokenizer().load(tmp_path / "r.model")  # the class method reads it too


def test_our_trained_tokenizer_in_minbpe_format(tmp_path):
    text = "the cat sat on the mat with the hat; that cat, this hat! " * 20
    tok = RegexTokenizer(GPT4_SPLIT_PATTERN)
    tok.train(text, 256 + 20)
    tok.register_special_tokens({"<|endoftext|>": tok.n_vocab, "<|fim|>": tok.n_vocab + 1})
    tok.save(tmp_path / "m", format="minbpe")
    pattern, specials, merges = read_minbpe((tmp_path / "m.model").read_text())
    assert pattern == GPT4_SPLIT_PATTERN and specials == tok.special_tokens and merges == tok.merges
    back = load(tmp_path / "m.model")
    sample = "that mat, the cat<|endoftext|> hats"
    assert back.encode(sample, allowed_special="all") == tok.encode(sample, allowed_special="all")
    assert back.decode(tok.encode(sample, allowed_special="all")) == sample
    # minbpe's file and ours hold the same tokenizer
    tok.save(tmp_path / "o")
    assert load(tmp_path / "o.model").encode(sample, allowed_special="all") == back.encode(
        sample, allowed_special="all")


def test_what_minbpe_cannot_hold_is_refused_before_writing(tmp_path):
    cases = [
        (GPT4Tokenizer(), "byte ids are permuted"),
        (RegexTokenizer(" x+"), "starts or ends with a space"),
        (RegexTokenizer("a\nb"), "line break"),
    ]
    spaced = BasicTokenizer()
    spaced.register_special_tokens({"<|end of text|>": 256})
    cases.append((spaced, "has white space"))
    for tok, why in cases:
        with pytest.raises(ValueError, match=why):
            tok.save(tmp_path / "x", format="minbpe")
        assert not (tmp_path / "x.model").exists()
    with pytest.raises(ValueError, match="format must be one of llmpy, minbpe"):
        BasicTokenizer().save(tmp_path / "x", format="sentencepiece")


@pytest.mark.parametrize("text, line, match", [
    ("minbpe v1\n\nx\n", 3, "number of special tokens"),
    ("minbpe v1\n\n1\n", 4, "unexpected end of file"),
    ("minbpe v1\n\n0\n97 97\n97 300\n", 5, "not defined before it"),
    ("minbpe v1\n\n0\n97 97\n97 97\n", 5, "given twice"),
    ("minbpe v1\n\n0\n97 x\n", 4, "expected a merge"),
])
def test_a_damaged_minbpe_file_names_the_line(tmp_path, text, line, match):
    (tmp_path / "bad.model").write_text(text)
    with pytest.raises(ModelFileError, match=rf"line {line}: .*{match}"):
        BasicTokenizer().load(tmp_path / "bad.model")


def test_cli_trains_and_converts_in_minbpe_format(tmp_path, capsys):
    corpus = tmp_path / "in.txt"
    corpus.write_text("low lower lowest newer newest wider " * 30)
    assert cli(["train", str(corpus), "--vocab-size", "270", "--pattern", "none", "--format", "minbpe",
                "--out", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m.model").read_text().startswith("minbpe v1\n\n0\n")
    assert cli(["convert", "--model", str(tmp_path / "m.model"), "--out", str(tmp_path / "o"),
                "--format", "llmpy"]) == 0
    assert cli(["convert", "--model", str(tmp_path / "o.model"), "--out", str(tmp_path / "m2"),
                "--format", "minbpe"]) == 0
    assert (tmp_path / "m2.model").read_text() == (tmp_path / "m.model").read_text()
    capsys.readouterr()
    assert cli(["train", str(corpus), "--vocab-size", "270", "--pattern", " x", "--format", "minbpe",
                "--out", str(tmp_path / "n")]) == 1
    assert "starts or ends with a space" in capsys.readouterr().err
