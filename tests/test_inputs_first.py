"""Every CLI checks the files and numbers its flags give before it downloads anything.

The oracle: the network is cut (``socket.getaddrinfo`` and ``socket.socket.connect`` raise and
record the attempt) and the caches are empty, so that any download — the HellaSwag validation
set, tiny Shakespeare, tiktoken's GPT-2 files, a hub model — would be attempted and recorded. A
bad input must give its own error (exit 1, or 2 for usage) with no attempt recorded.
"""

from __future__ import annotations

import socket

import pytest


@pytest.fixture
def offline(tmp_path, monkeypatch) -> list:
    """The network attempts made during the test (there must be none)."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise OSError("network cut by the test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("LLMPY_DATA_DIR", str(tmp_path / "empty-data-cache"))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-tiktoken-cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.setenv("LLMPY_PROGRESS", "0")
    return attempts


def error_of(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err


def test_hellaswag_cli(tmp_path, capsys, offline):
    from llmpy.hellaswag import main

    assert main(["--checkpoint", str(tmp_path / "missing.bin")]) == 1
    assert "missing.bin" in error_of(capsys)
    assert main(["--write-eval-file", str(tmp_path / "v.bin"), "--data", str(tmp_path / "no.jsonl")]) == 1
    assert "--data" in error_of(capsys)
    assert main(["--write-eval-file", str(tmp_path / "no" / "v.bin")]) == 1
    assert "--write-eval-file" in error_of(capsys)
    assert offline == []


def test_train_cli(tmp_path, capsys, offline):
    from llmpy.train import main

    base = ["--max-steps", "1", "--device", "cpu"]
    assert main([*base, "--init-from", str(tmp_path / "missing.bin"), "--out-dir", str(tmp_path / "r1")]) == 1
    assert "--init-from" in error_of(capsys)
    assert main([*base, "--hellaswag-every", "1", "--hellaswag-data", str(tmp_path / "no.jsonl"),
                 "--out-dir", str(tmp_path / "r2")]) == 1
    assert "--hellaswag-data" in error_of(capsys)
    assert main([*base, "--data", str(tmp_path / "nothing_train_*.bin"), "--out-dir", str(tmp_path / "r3")]) == 1
    assert "--data" in error_of(capsys)
    assert offline == []


def test_convert_cli(tmp_path, capsys, offline):
    from llmpy.convert import main

    assert main(["gpt2", str(tmp_path / "no" / "gpt2.bin")]) == 1
    assert "no such directory" in error_of(capsys)
    (tmp_path / "file").write_text("x")
    assert main(["gpt2", str(tmp_path / "file")]) == 1
    assert "not a directory" in error_of(capsys)
    assert offline == []


def test_data_cli(tmp_path, capsys, offline):
    from llmpy.data.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["tinyshakespeare", "--input", str(tmp_path / "missing.txt")])
    assert e.value.code == 2 and "--input" in error_of(capsys)
    with pytest.raises(SystemExit) as e:
        main(["tinyshakespeare", "--workers", "-1"])
    assert e.value.code == 2 and "--workers" in error_of(capsys)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as e:
        main(["tinyshakespeare", "--out-dir", str(tmp_path / "file")])
    assert e.value.code == 2 and "--out-dir" in error_of(capsys)
    with pytest.raises(SystemExit) as e:
        main(["fineweb", "--shard-size", "0", "--out-dir", str(tmp_path / "f")])
    assert e.value.code == 2 and "--shard-size" in error_of(capsys)
    assert main(["text", str(tmp_path / "missing.txt"), "--out-dir", str(tmp_path / "t")]) == 1
    assert "missing.txt" in error_of(capsys)
    assert offline == []


@pytest.mark.parametrize("chapter,argv", [("makemore", ["--model", "bigram-counts"]),
                                          ("gpt", ["--config", "tiny", "--steps", "1"])])
def test_chapter_offline_without_data_is_one_error_line(capsys, offline, chapter, argv):
    # rule: a chapter whose data is neither cached nor downloadable says so in one line (where to
    # put the file), exit 1, no traceback
    main = __import__(f"llmpy.{chapter}.__main__", fromlist=["main"]).main
    assert main(argv) == 1
    err = error_of(capsys)
    assert err.startswith("error: cannot download") and "LLMPY_DATA_DIR" in err, err
    assert len(offline) >= 1  # the download was attempted, and refused by the cut network
