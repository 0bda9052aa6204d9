"""No silent or unclear input outside the training CLIs, and C error exits that free what they hold.

The rule every test here checks: a bad argument, flag or file gives one exception (or one
``error:`` line and exit code 1; 2 for usage errors) in our words, naming the argument, the file
or the offset and what to do, before anything is changed; never a silent default, a pybind11
"incompatible function arguments" listing, a traceback or a leak.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import llmpy
from llmpy import _C, textfile
from llmpy.data import DataLoader, ShardError, write_shard
from llmpy.sampling import sample_next

from binaries import find_train_gpt2

ROOT = Path(__file__).resolve().parents[1]
CFG = llmpy.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, block_size=8)
PYBIND_DUMP = "incompatible function arguments"


@pytest.fixture
def model():
    return llmpy.GPT2(CFG, seed=0)


def raises(exc, match, fn, *args, **kwargs) -> str:
    """fn(*args, **kwargs) raises exc with a message matching `match` (and no pybind11 listing)."""
    with pytest.raises(exc, match=match) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert PYBIND_DUMP not in msg, f"a pybind11 listing instead of our message: {msg}"
    return msg


def one_error_line(err: str) -> str:
    """stderr of a failed CLI: exactly one line, `error: ...`, no traceback."""
    assert "Traceback" not in err, f"a traceback instead of one error line:\n{err}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), f"expected one 'error:' line, got:\n{err}"
    return lines[0]


# ---------------------------------------------------------------------------
# sampling and generate


@pytest.mark.parametrize("t", [float("nan"), float("inf"), -float("inf")])
def test_temperature_nan_or_infinite_is_refused(t):
    raises(
        ValueError,
        "temperature must be a finite number",
        sample_next,
        np.zeros((1, 4)),
        np.random.default_rng(0),
        temperature=t,
    )


def test_negative_temperature_and_bad_top_k_are_refused():
    rng = np.random.default_rng(0)
    raises(ValueError, r"temperature must be >= 0", sample_next, np.zeros((1, 4)), rng, temperature=-0.5)
    for k in (2.5, "2", True, [2]):
        raises(
            TypeError,
            r"top_k \(None: no limit\) must be an integer",
            sample_next,
            np.zeros((1, 4)),
            rng,
            top_k=k,
        )
    raises(
        ValueError,
        r"top_k \(None: no limit\) must be >= 1, got 0",
        sample_next,
        np.zeros((1, 4)),
        rng,
        top_k=0,
    )
    assert sample_next(np.array([[0.0, 3.0, 1.0]]), rng, top_k=np.int64(1)).tolist() == [
        1
    ]  # numpy ints are ints


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(prompt=[1], max_new_tokens=-1), ValueError, r"max_new_tokens must be >= 0, got -1"),
        (dict(prompt=[1], max_new_tokens=1.5), TypeError, r"max_new_tokens must be an integer, got float"),
        (dict(prompt=[1], max_new_tokens=1, num_samples=0), ValueError, r"num_samples must be >= 1"),
        (dict(prompt=[], max_new_tokens=1), ValueError, r"prompt must hold at least one token"),
        (
            dict(prompt=list(range(9)), max_new_tokens=1),
            ValueError,
            r"prompt has 9 tokens, more than the model's block_size 8; keep its end \(prompt\[-8:\]\)",
        ),
        (dict(prompt=[3, 64], max_new_tokens=1), ValueError, r"prompt\[1\] = 64 is out of range \[0, 64\)"),
        (dict(prompt=[-1], max_new_tokens=1), ValueError, r"prompt\[0\] = -1 is out of range"),
        (
            dict(prompt=[1.5], max_new_tokens=1),
            TypeError,
            r"prompt must hold integer token ids, got dtype float64",
        ),
        (dict(prompt="ROMEO:", max_new_tokens=1), TypeError, r"not text: encode it first"),
        (dict(prompt=[[1, 2], [3, 4]], max_new_tokens=1), ValueError, r"prompt must be a 1-D sequence"),
        (dict(prompt=[1], max_new_tokens=1, temperature=float("nan")), ValueError, r"temperature"),
        (dict(prompt=[1], max_new_tokens=1, top_k="5"), TypeError, r"top_k"),
        (dict(prompt=[1], max_new_tokens=1, seed=-1), ValueError, r"seed must be >= 0"),
        (dict(prompt=[1], max_new_tokens=1, rng=42), TypeError, r"rng must be a numpy.random.Generator"),
    ],
)
def test_generate_refuses_bad_arguments_before_any_forward(model, kwargs, exc, match):
    x = np.arange(8, dtype=np.int32).reshape(1, 8)
    model.forward(x)
    before = model.logits().copy()
    raises(exc, match, model.generate, **kwargs)
    np.testing.assert_array_equal(model.logits(), before, err_msg="a refused generate() ran a forward")


def test_generate_still_crops_the_context_past_the_block(model):
    # rule: a prompt of exactly block_size tokens is accepted and generation runs past the block
    out = model.generate(list(range(8)), 5, top_k=1)
    assert out.shape == (1, 13)


# ---------------------------------------------------------------------------
# threads and CPU ISA


def test_set_num_threads_refuses_bad_counts_and_keeps_the_setting():
    before = llmpy.get_num_threads()
    raises(ValueError, r"number of threads must be >= 1, got -3", llmpy.set_num_threads, -3)
    raises(TypeError, r"number of threads must be an integer, got float 2.5", llmpy.set_num_threads, 2.5)
    raises(TypeError, r"must be an integer, got str", llmpy.set_num_threads, "4")
    # the core itself refuses (train_gpt2 and every binding go through llm_set_num_threads)
    raises(ValueError, r"number of threads must be >= 1, got -3", _C.set_num_threads, -3)
    raises(ValueError, r"number of threads must be >= 1, got 0", _C.set_num_threads, 0)
    assert llmpy.get_num_threads() == before


def test_set_cpu_isa_refuses_empty_and_unknown_names_listing_the_valid_ones():
    before = llmpy.build_info()["cpu_isa"]
    names = llmpy.build_info()["cpu_isas"]
    for bad in ("", "avx9000"):
        msg = raises(ValueError, r"is not in this build", llmpy.set_cpu_isa, bad)
        assert all(n in msg for n in names) and "'auto'" in msg, msg
    raises(TypeError, r"CPU ISA name must be a string", llmpy.set_cpu_isa, None)
    assert llmpy.build_info()["cpu_isa"] == before
    assert llmpy.set_cpu_isa("auto") == before  # 'auto' still works


# ---------------------------------------------------------------------------
# GPT2Config and the model's methods


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(n_layer=2.5), TypeError, r"GPT2Config: n_layer must be an integer, got float 2.5"),
        (dict(n_layer="2"), TypeError, r"GPT2Config: n_layer must be an integer, got str '2'"),
        (dict(n_head=True), TypeError, r"GPT2Config: n_head must be an integer, got bool"),
        (dict(vocab_size=None), TypeError, r"GPT2Config: vocab_size must be an integer"),
        (dict(n_layer=0), ValueError, r"GPT2Config: n_layer must be in \[1, "),
        (dict(n_head=0), ValueError, r"GPT2Config: n_head must be >= 1, got 0"),
        (dict(n_head=-2), ValueError, r"GPT2Config: n_head must be >= 1, got -2"),
        (
            dict(n_embd=50, n_head=3),
            ValueError,
            r"GPT2Config: n_embd \(50\) must be divisible by n_head \(3\)",
        ),
        (dict(block_size=-1), ValueError, r"GPT2Config: block_size must be in \[1, "),
        (dict(n_layer=2**40), ValueError, r"GPT2Config: n_layer must be <= 2147483647"),
    ],
)
def test_config_checks_types_and_ranges_in_our_words(kwargs, exc, match):
    base = dict(n_layer=2, n_head=2, n_embd=16, vocab_size=64, block_size=8)
    raises(exc, match, llmpy.GPT2Config, **{**base, **kwargs})


def test_config_takes_numpy_integers_as_plain_ints():
    c = llmpy.GPT2Config(n_layer=np.int64(2), n_head=np.int32(2), n_embd=16, vocab_size=64, block_size=8)
    assert type(c.n_layer) is int and type(c.n_head) is int and c == llmpy.GPT2Config(2, 2, 16, 64, 8)


def test_model_arguments_are_checked_in_our_words(model):
    raises(TypeError, r"seed must be an integer, got float", llmpy.GPT2, CFG, seed=1.5)
    raises(ValueError, r"seed must be >= 0", llmpy.GPT2, CFG, seed=-1)
    raises(ValueError, r"idx must hold integer token ids, got dtype float64", model.forward, np.zeros((1, 4)))
    raises(ValueError, r"idx must hold integer token ids, got dtype float64", model.forward, [[1.0, 2.0]])
    raises(
        ValueError,
        r"idx\[5\] = 99 is out of range \[0, 64\) \(row 1, position 1\)",
        model.forward,
        np.array([[1, 2, 3, 4], [5, 99, 7, 8]], np.int32),
    )
    x = np.zeros((1, 4), np.int32)
    model.forward(x, x)
    model.backward()
    steps = model.steps
    raises(ValueError, r"lr must be a finite number, got nan", model.step, float("nan"))
    raises(TypeError, r"lr must be a number, got str", model.step, "1e-3")
    raises(TypeError, r"lr must be a number, got NoneType", model.step, None)
    raises(
        ValueError,
        r"grad_clip \(None: no clipping\) must be a finite number, got nan",
        model.step,
        1e-3,
        grad_clip=float("nan"),
    )
    raises(ValueError, r"grad_clip must be > 0 or None", model.step, 1e-3, grad_clip=-1.0)
    raises(ValueError, r"weight_decay must be a finite number", model.step, 1e-3, weight_decay=float("nan"))
    raises(ValueError, r"eps and weight_decay must be finite and >= 0", model.step, 1e-3, eps=-1.0)
    raises(TypeError, r"loss_scale must be a number", model.backward, "2")
    assert model.steps == steps, "a refused step() changed the model"


@pytest.mark.parametrize("clip", [float("nan"), -1.0, -float("inf")])
def test_core_step_refuses_nan_and_negative_grad_clip(model, clip):
    # the rule is in llm_step (csrc/core/optimizer.c), so train_gpt2 and Python both get it: a NaN
    # compares false and would otherwise switch clipping off in silence
    x = np.zeros((1, 4), np.int32)
    model.forward(x, x)
    model.backward()
    raises(
        ValueError,
        r"grad_clip must be >= 0 \(0: no clipping\)",
        model._m.step,
        1e-3,
        0.9,
        0.95,
        1e-8,
        0.0,
        clip,
    )
    assert model.steps == 0
    model._m.step(1e-3, 0.9, 0.95, 1e-8, 0.0, 0.0)  # 0 is "no clipping"
    assert model.steps == 1


def test_load_parameters_refuses_wrong_dtypes_shapes_and_containers(model):
    before = model.parameters()["lnfw"].copy()
    raises(
        TypeError,
        r"lnfw: values must be real numbers .* got dtype <U1",
        model.load_parameters,
        {"lnfw": np.array(["a"] * 16)},
    )
    raises(
        TypeError,
        r"lnfw: values must be real numbers .* got dtype complex128",
        model.load_parameters,
        {"lnfw": np.ones(16, complex)},
    )
    raises(
        TypeError,
        r"lnfw: values must be real numbers .* got dtype object",
        model.load_parameters,
        {"lnfw": None},
    )
    raises(
        ValueError,
        r"lnfw: shape \(3,\) does not match the model's \(16,\)",
        model.load_parameters,
        {"lnfw": np.ones(3)},
    )
    raises(TypeError, r"load_parameters takes a dict name -> array, got list", model.load_parameters, [1])
    np.testing.assert_array_equal(model.parameters()["lnfw"], before)


# ---------------------------------------------------------------------------
# token shards: a token outside the model's vocabulary names the shard and the offset

BAD_AT, BAD_ID = 21, 100


def bad_shard(path: Path, n: int = 2000) -> np.ndarray:
    tokens = np.random.default_rng(0).integers(0, 64, n)
    tokens[BAD_AT] = BAD_ID
    write_shard(path, tokens)
    return tokens


def bad_token_message(path: Path) -> str:
    # the rule: shard path, token offset, byte offset (header + 2 bytes a token), the vocabulary
    return (
        f"token shard {path} holds token id {BAD_ID} at token {BAD_AT} (byte offset {1024 + 2 * BAD_AT}), "
        f"outside the model's vocabulary of 64 tokens"
    )


@pytest.mark.parametrize("shuffle", [False, True])
def test_loader_names_shard_and_offset_of_a_token_outside_the_vocabulary(tmp_path, shuffle):
    path = tmp_path / "bad_train.bin"
    bad_shard(path)
    loader = DataLoader(path, 2, 8, shuffle=shuffle, seed=3, vocab_size=64)
    assert loader.vocab_size == 64
    with pytest.raises(ShardError) as info:
        for _ in range(len(loader)):  # the batch holding token 21 fails, whichever it is
            pos = loader.position
            loader.next_batch()
    assert bad_token_message(path) in str(info.value), str(info.value)
    assert "re-create it with the model's tokenizer" in str(info.value)
    assert loader.position == pos, "a refused batch moved the loader"
    loader.vocab_size = None  # no check: the batch comes through (the model would refuse it)
    x, y = loader.next_batch()
    assert BAD_ID in np.concatenate([x.ravel(), y.ravel()])


def test_loader_arguments_are_checked_in_our_words(tmp_path):
    path = tmp_path / "ok_train.bin"
    write_shard(path, np.arange(100) % 64)
    raises(TypeError, r"batch_size must be an integer, got float 2.5", DataLoader, path, 2.5, 8)
    raises(TypeError, r"seq_len must be an integer, got str", DataLoader, path, 2, "8")
    raises(ValueError, r"batch_size and seq_len must be >= 1, got 0, 8", DataLoader, path, 0, 8)  # the core's
    raises(ValueError, r"batch_size must be <= 2147483647", DataLoader, path, 2**31, 8)
    raises(TypeError, r"pattern must be a path, a glob or a list of them, got int", DataLoader, 5, 2, 8)
    raises(TypeError, r"shard pattern 5 is a int", DataLoader, [path, 5], 2, 8)
    raises(ValueError, r"vocab_size must be >= 1", DataLoader, path, 2, 8, vocab_size=0)
    raises(TypeError, r"epoch must be an integer", DataLoader(path, 2, 8).reset, "1")
    raises(
        TypeError,
        r"tokens must be integer ids, got dtype float64",
        write_shard,
        tmp_path / "f.bin",
        [1.5, 2.0],
    )


def test_train_gpt2_names_shard_and_offset_of_a_bad_token(tmp_path):
    llmpy.GPT2(llmpy.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, block_size=16)).save(
        tmp_path / "m.bin"
    )
    bad_shard(tmp_path / "d_train.bin")
    write_shard(tmp_path / "d_val.bin", np.arange(2000) % 64)
    r = subprocess.run(
        [
            find_train_gpt2(),
            "--init-from",
            str(tmp_path / "m.bin"),
            "--data",
            str(tmp_path / "d_train.bin"),
            "--out-dir",
            str(tmp_path / "run"),
            "--batch-size",
            "2",
            "--seq-len",
            "8",
            "--max-steps",
            "5",
            "--no-shuffle",
            "--device",
            "cpu",
            "--eval-every",
            "0",
            "--checkpoint-every",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert bad_token_message(tmp_path / "d_train.bin") in r.stderr, r.stderr


def test_python_train_names_shard_and_offset_of_a_bad_token(tmp_path, capsys):
    from llmpy.train import main

    tokens = np.random.default_rng(0).integers(0, 50257, 4000)
    tokens[BAD_AT] = 50300  # in the padded vocabulary, outside the real one
    write_shard(tmp_path / "d_train.bin", tokens)
    write_shard(tmp_path / "d_val.bin", np.arange(4000))
    rc = main(
        [
            "--n-layer",
            "1",
            "--n-head",
            "2",
            "--n-embd",
            "32",
            "--batch-size",
            "2",
            "--seq-len",
            "16",
            "--data",
            str(tmp_path / "d_train.bin"),
            "--max-steps",
            "3",
            "--no-shuffle",
            "--eval-every",
            "0",
            "--sample-every",
            "0",
            "--checkpoint-every",
            "0",
            "--out-dir",
            str(tmp_path / "run"),
            "--device",
            "cpu",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1, err
    want = (
        f"token shard {tmp_path / 'd_train.bin'} holds token id 50300 at token {BAD_AT} "
        f"(byte offset {1024 + 2 * BAD_AT}), outside the model's vocabulary of 50257 tokens"
    )
    assert want in one_error_line(err), err


# ---------------------------------------------------------------------------
# text that is not UTF-8: the file, the byte offset, the fix


def test_first_bad_utf8_finds_the_offset_across_chunk_boundaries(monkeypatch):
    monkeypatch.setattr(textfile, "_CHUNK", 7)  # multi-byte characters cut by every boundary
    text = "é€😀a\n" * 50
    data = text.encode("utf-8")
    assert textfile.first_bad_utf8(io.BytesIO(data)) is None
    for k in (0, 1, 6, 7, 8, 100, len(data) - 1, len(data)):
        bad = data[:k] + b"\xff" + data[k:]
        try:  # oracle: Python's decoder on the whole buffer at once
            bad.decode("utf-8")
            raise AssertionError("not invalid")
        except UnicodeDecodeError as e:
            want = (e.start, bad.count(b"\n", 0, e.start) + 1)
        got = textfile.first_bad_utf8(io.BytesIO(bad))
        assert got is not None and got[:2] == want, (
            f"inserted at {k}: got {got}, Python's decoder says {want}"
        )
    cut = data + "😀".encode("utf-8")[:3]  # a character cut by the end of the file
    assert textfile.first_bad_utf8(io.BytesIO(cut)) == (
        len(data),
        51,
        b"\xf0\x9f\x98",
        "unexpected end of data",
    )


def latin1_corpus(path: Path, lines: int = 300_000) -> int:
    """A latin-1 file whose first non-ASCII byte lies beyond the first read chunk; returns its offset."""
    head = "hello\n" * lines
    path.write_bytes((head + "café\n").encode("latin-1"))
    return len(head) + 3


def test_data_text_names_file_offset_and_fix(tmp_path, capsys):
    from llmpy.data.__main__ import main

    p = tmp_path / "corpus.txt"
    at = latin1_corpus(p)
    for split in ("file", "lines"):
        assert main(["text", str(p), "--txt-split", split, "--workers", "0", "--no-progress"]) == 1
        line = one_error_line(capsys.readouterr().err)
        assert f"{p} is not UTF-8 text: byte {at} (line 300001) is 0xe9" in line, line
        assert "iconv -f latin1 -t utf-8" in line, line
    gz = tmp_path / "c.jsonl.gz"
    with gzip.open(gz, "wb") as f:
        f.write(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    assert main(["text", str(gz), "--workers", "0", "--no-progress"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"{gz} is not UTF-8 text: byte 28 of its decompressed text (line 2)" in line, line
    assert not list(tmp_path.glob("*.bin")), "shards were written from a file that failed"


def test_tinyshakespeare_input_names_file_offset(tmp_path, capsys):
    from llmpy.data.__main__ import main

    p = tmp_path / "input.txt"
    at = latin1_corpus(p, 10)
    assert main(["tinyshakespeare", "--input", str(p), "--out-dir", str(tmp_path), "--no-progress"]) == 1
    assert f"{p} is not UTF-8 text: byte {at} (line 11)" in one_error_line(capsys.readouterr().err)


def test_tokenizer_cli_names_file_or_stdin_and_offset(tmp_path, capsys, monkeypatch):
    from llmpy.tokenizer.__main__ import main

    p = tmp_path / "corpus.txt"
    at = latin1_corpus(p, 1000)
    assert main(["train", str(p), "--vocab-size", "260", "--out", str(tmp_path / "t")]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"{p} is not UTF-8 text: byte {at} (line 1001) is 0xe9" in line and "iconv" in line, line
    p.write_text("hello world " * 50, encoding="utf-8")
    assert main(["train", str(p), "--vocab-size", "260", "--out", str(tmp_path / "t")]) == 0
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ab\ncd\xff")))
    assert main(["encode", "--model", str(tmp_path / "t.model")]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "<stdin> is not UTF-8 text: byte 5 (line 2) is 0xff (invalid start byte)" in line, line


# ---------------------------------------------------------------------------
# the sampling, HellaSwag and convert CLIs: one error line, exit 1 (2 for usage)


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.bin"
    llmpy.GPT2(llmpy.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50257, block_size=8)).save(path)
    return path


def test_sample_cli_errors_are_one_line(tmp_path, capsys, checkpoint_file, monkeypatch):
    from llmpy import sample

    broken = tmp_path / "broken.bin"
    broken.write_bytes(checkpoint_file.read_bytes()[:1000])
    cases = [
        (["--checkpoint", str(tmp_path / "missing.bin")], "missing.bin"),
        (["--checkpoint", str(broken)], "broken.bin"),
        (
            ["--checkpoint", str(checkpoint_file), "--prompt", " ".join("abcdefghijkl")],
            "more than the model's block_size 8",
        ),
    ]
    if not llmpy.build_info()["cuda"]:
        cases.append((["--checkpoint", str(checkpoint_file), "--device", "cuda"], "CUDA is not available"))
    for argv, want in cases:
        assert sample.main(argv) == 1, argv
        line = one_error_line(capsys.readouterr().err)
        assert want in line, (argv, line)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("llmpy.model.GPT2.from_checkpoint", interrupted)
    assert sample.main(["--checkpoint", str(checkpoint_file)]) == 1
    assert one_error_line(capsys.readouterr().err) == "error: interrupted (Ctrl-C)"


@pytest.mark.parametrize(
    "flags,match",
    [
        (["--temperature", "nan"], r"--temperature must be a finite number >= 0"),
        (["--temperature", "inf"], r"--temperature must be a finite number >= 0"),
        (["--top-k", "-1"], r"--top-k must be >= 0 \(0: all tokens\)"),
        (["--max-new-tokens", "-1"], r"--max-new-tokens must be >= 0"),
        (["--num-samples", "0"], r"--num-samples must be >= 1"),
        (["--seed", "-1"], r"--seed must be >= 0"),
        (["--device", "gpu"], r"unknown device 'gpu'"),
        (["--top-k", "2.5"], r"invalid int value"),
        (["--prompt", ""], r"--prompt encodes to no tokens"),
    ],
)
def test_sample_cli_bad_flags_are_usage_errors(capsys, checkpoint_file, flags, match):
    from llmpy import sample

    with pytest.raises(SystemExit) as info:
        sample.main(["--checkpoint", str(checkpoint_file), *flags])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(match, err), err


def test_sample_cli_still_samples(capsys, checkpoint_file):
    from llmpy import sample

    assert (
        sample.main(
            ["--checkpoint", str(checkpoint_file), "--max-new-tokens", "3", "--num-samples", "2", "--json"]
        )
        == 0
    )
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_hellaswag_cli_missing_checkpoint_fails_before_any_download(tmp_path, capsys, monkeypatch):
    from llmpy import hellaswag

    def no_download(*a, **k):
        raise AssertionError(
            "the HellaSwag data was loaded (or downloaded) before the checkpoint was checked"
        )

    monkeypatch.setattr(hellaswag, "load_examples", no_download)
    assert hellaswag.main(["--checkpoint", str(tmp_path / "missing.bin")]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "cannot open model file" in line and "missing.bin" in line, line
    assert hellaswag.main(["--checkpoint", str(tmp_path / "m.bin"), "--max-tokens", "0"]) == 2
    assert "--max-tokens must be >= 1" in one_error_line(capsys.readouterr().err)


def test_convert_cli_errors_are_one_line(tmp_path, capsys, monkeypatch, checkpoint_file):
    from llmpy import convert

    assert convert.main([str(tmp_path / "nothing"), str(tmp_path / "out.bin"), "--offline"]) == 1
    assert "nothing" in one_error_line(capsys.readouterr().err)
    assert convert.main([str(checkpoint_file), str(tmp_path / "no" / "dir" / "out.bin")]) == 1
    assert "no such directory" in one_error_line(capsys.readouterr().err)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(convert, "convert", interrupted)
    assert convert.main([str(checkpoint_file), str(tmp_path / "out.bin")]) == 1
    assert one_error_line(capsys.readouterr().err) == "error: interrupted (Ctrl-C)"


# ---------------------------------------------------------------------------
# train_gpt2's error exits under AddressSanitizer + LeakSanitizer
#
# Marked `sanitizer` (deselected by default: it needs the sanitizer build). CI runs it after
# building build/ci-asan, with LLMPY_ASAN_TRAIN_GPT2=build/ci-asan/train_gpt2 (.ci/run); without
# that variable it builds its own sanitizer train_gpt2 under tmp_path (a few minutes).


@pytest.fixture(scope="module")
def asan_train_gpt2(tmp_path_factory):
    given = os.environ.get("LLMPY_ASAN_TRAIN_GPT2")
    if given:
        assert Path(given).is_file(), f"LLMPY_ASAN_TRAIN_GPT2={given} does not exist"
        return str(Path(given).resolve())
    build = tmp_path_factory.mktemp("asan-build")
    gen = (
        ["-G", "Ninja"] if subprocess.run(["ninja", "--version"], capture_output=True).returncode == 0 else []
    )
    for cmd in (
        [
            "cmake",
            "-S",
            str(ROOT),
            "-B",
            str(build),
            *gen,
            "-DCMAKE_BUILD_TYPE=Debug",
            "-DLLMPY_SANITIZE=ON",
            "-DLLMPY_CUDA=OFF",
            "-DLLMPY_BUILD_TESTS=OFF",
        ],
        ["cmake", "--build", str(build), "--target", "train_gpt2", "-j", str(os.cpu_count() or 2)],
    ):
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return str(build / "train_gpt2")


@pytest.mark.sanitizer
def test_train_gpt2_error_exits_free_everything_under_leak_sanitizer(tmp_path, asan_train_gpt2):
    d = tmp_path
    model = llmpy.GPT2(llmpy.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, block_size=16))
    model.save(d / "tiny.bin")
    x = np.zeros((1, 4), np.int32)
    model.forward(x, x)
    model.backward()
    model.step(1e-3)
    model.save(d / "py.bin")
    model.save_state(d / "py.state", extra={"step": 1})  # states train_gpt2 did not write
    model.save(d / "py2.bin")
    model.save_state(d / "py2.state", extra={"foo": 1})
    rng = np.random.default_rng(0)
    write_shard(d / "d_train.bin", rng.integers(0, 64, 2000))
    write_shard(d / "d_val.bin", rng.integers(0, 64, 2000))
    bad_shard(d / "bad_train.bin")
    (d / "junk.bin").write_bytes(b"x" * 2000)
    (d / "adir").mkdir()
    common = [
        "--batch-size",
        "2",
        "--seq-len",
        "8",
        "--max-steps",
        "3",
        "--device",
        "cpu",
        "--no-shuffle",
        "--eval-every",
        "0",
        "--sample-every",
        "0",
        "--checkpoint-every",
        "0",
    ]
    ok = ["--init-from", str(d / "tiny.bin"), "--data", str(d / "d_train.bin")]
    cases = [  # (arguments, exit code, what stderr must say): every stage that owns something
        (ok, 0, "done: 3 steps"),
        (["--bogus", "1"], 2, "unknown option --bogus"),
        ([*ok, "--precision", "fp16"], 1, "--precision must be auto, fp32 or bf16"),
        (
            ["--init-from", str(d / "missing.bin"), "--data", str(d / "d_train.bin")],
            1,
            "cannot open model file",
        ),
        (
            ["--init-from", str(d / "junk.bin"), "--data", str(d / "d_train.bin")],
            1,
            "not an llm.c model file",
        ),
        (["--init-from", str(d / "tiny.bin"), "--data", str(d / "none_train.bin")], 1, "does not exist"),
        (
            [
                "--init-from",
                str(d / "tiny.bin"),
                "--data",
                str(d / "junk.bin"),
                "--val-data",
                str(d / "d_val.bin"),
            ],
            1,
            "is not a token shard",
        ),
        ([*ok, "--seq-len", "32"], 1, "exceeds the model's block size"),
        ([*ok, "--tokenizer", str(d / "junk.bin")], 1, "not an llm.c tokenizer file"),
        ([*ok, "--tokenizer", str(d / "adir")], 1, "is a directory"),
        ([*ok, "--hellaswag", str(d / "junk.bin"), "--hellaswag-every", "1"], 1, "not a HellaSwag eval file"),
        ([*ok, "--log-file", str(d / "no" / "dir" / "log.jsonl")], 1, "cannot write"),
        ([*ok, "--grad-clip", "nan"], 1, "--grad-clip must be a finite number >= 0"),
        ([*ok, "--lr", "1e30", "--warmup-steps", "0", "--grad-clip", "0"], 1, "loss is"),
        (
            [
                "--init-from",
                str(d / "tiny.bin"),
                "--data",
                str(d / "bad_train.bin"),
                "--val-data",
                str(d / "d_val.bin"),
            ],
            1,
            f"holds token id {BAD_ID} at token {BAD_AT}",
        ),
        (
            ["--resume", str(d / "py2.bin"), "--data", str(d / "d_train.bin")],
            1,
            "not a checkpoint of train_gpt2",
        ),
        (
            ["--resume", str(d / "py.bin"), "--data", str(d / "d_train.bin")],
            1,
            "state was not written by train_gpt2",
        ),
    ]
    env = {
        **os.environ,
        "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    }
    probe = subprocess.run(
        [asan_train_gpt2, "--help"],
        env={**env, "ASAN_OPTIONS": "help=1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "AddressSanitizer" in probe.stdout + probe.stderr, f"{asan_train_gpt2} is not a sanitizer build"
    failures = []
    for k, (args, code, says) in enumerate(cases):
        # a folder per case (a folder holding a run is refused to a new run); the case's flags win
        argv = ["--out-dir", str(d / f"run{k}"), *common, *args]
        r = subprocess.run([asan_train_gpt2, *argv], env=env, capture_output=True, text=True, timeout=300)
        problems = [
            p
            for p, bad in (
                ("LeakSanitizer report", "LeakSanitizer" in r.stderr),
                ("AddressSanitizer error", "ERROR: AddressSanitizer" in r.stderr),
                ("UBSan report", "runtime error:" in r.stderr),
                (f"exit code {r.returncode}, expected {code}", r.returncode != code),
                (f"no '{says}'", says not in r.stdout + r.stderr),
            )
            if bad
        ]
        if problems:
            failures.append(f"train_gpt2 {' '.join(argv)}: {', '.join(problems)}\n{r.stderr[-2500:]}")
    assert not failures, "\n\n".join(failures)
