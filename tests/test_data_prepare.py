"""Dataset preparation: tiny Shakespeare (llm.c's counts, tiktoken's tokens), the user's own
corpora (txt, jsonl, parquet), FineWeb against a local fake source (process pool included),
and the command line. No network: the data cache is a seeded temporary folder."""

from __future__ import annotations

import gzip
import json
import sys

import numpy as np
import pytest
from data_helpers import SHAKESPEARE, data_env, decode_documents, enc, raw_shard, tiktoken_cache  # noqa: F401
from llmpy.data import DownloadError, fineweb, text, tinyshakespeare
from llmpy.data.__main__ import main

# ----------------------------------------------------------------------------
# tiny Shakespeare


def _shakespeare_documents(raw: str) -> list:
    # llm.c's rule, written out independently: split at blank lines, re-append "\n\n" but on the last
    parts = raw.split("\n\n")
    return [p + "\n\n" for p in parts[:-1]] + parts[-1:]


def test_tinyshakespeare_matches_llm_c_and_tiktoken(data_env, enc):  # noqa: F811
    res = tinyshakespeare.prepare()
    folder = data_env / "tinyshakespeare"
    assert [p.name for p in res.files] == ["tiny_shakespeare_val.bin", "tiny_shakespeare_train.bin"]
    assert all(p.parent == folder for p in res.files), "shards go next to input.txt"
    (hv, val), (ht, train) = raw_shard(res.files[0]), raw_shard(res.files[1])
    assert (hv[2], ht[2], val.size, train.size) == (32768, 305260, 32768, 305260)

    docs = _shakespeare_documents(SHAKESPEARE.read_text(encoding="utf-8"))
    oracle = np.concatenate([[enc.eot_token] + enc.encode_ordinary(d) for d in docs]).astype(np.uint16)
    stream = np.concatenate([val, train])
    mism = np.flatnonzero(stream != oracle)
    assert stream.size == oracle.size and mism.size == 0, f"{mism.size} tokens differ, first at {mism[:5]}"
    assert decode_documents(res.files, enc) == docs

    # a re-run keeps both files
    stamp = [p.stat().st_mtime_ns for p in res.files]
    again = tinyshakespeare.prepare()
    assert again.skipped == res.files and again.tokens_written == 0
    assert [p.stat().st_mtime_ns for p in res.files] == stamp


def test_tinyshakespeare_offline_error_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMPY_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(tinyshakespeare, "URL", "http://127.0.0.1:9/input.txt")  # refused at once, no network
    with pytest.raises(DownloadError) as e:
        tinyshakespeare.prepare()
    msg = str(e.value)
    assert str(tmp_path / "empty" / "tinyshakespeare" / "input.txt") in msg and "put it at" in msg, msg


def test_cli_tinyshakespeare(data_env, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "shards"
    assert main(["tinyshakespeare", "--out-dir", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "32,768 tokens" in printed and "305,260 tokens" in printed
    assert sorted(p.name for p in out.glob("*.bin")) == [
        "tiny_shakespeare_train.bin",
        "tiny_shakespeare_val.bin",
    ]
    assert main([]) == 2


# ----------------------------------------------------------------------------
# the user's own corpora


def _corpus(n=40):
    rng = np.random.default_rng(0)
    words = [
        "alpha",
        "beta",
        "γάμμα",
        "δέλτα",
        "日本語",
        "emoji 🙂",
        "tab\t",
        "\n",
        "  spaces",
        "<|endoftext|>",
    ]
    return ["".join(rng.choice(words, size=rng.integers(0, 30))) for _ in range(n)]


def test_jsonl_parquet_and_txt_shard_correctly(tmp_path, enc):  # noqa: F811
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = _corpus()
    a, b, c = docs[:15], docs[15:30], docs[30:]
    (tmp_path / "a.jsonl").write_text(
        "".join(json.dumps({"id": i, "text": d}) + "\n" for i, d in enumerate(a))
    )
    pq.write_table(pa.table({"body": b, "n": list(range(len(b)))}), tmp_path / "b.parquet", row_group_size=4)
    with gzip.open(tmp_path / "c.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"body": d}) + "\n" for d in c)

    res = text.prepare([tmp_path / "a.jsonl"], shard_size=50, workers=0, progress=False)
    assert res.files[0].name == "a_val_000000.bin" and res.files[0].parent == tmp_path
    assert decode_documents(res.files, enc) == a
    assert all(n == 50 for n in res.tokens[:-1])
    for p in res.files:
        h, toks = raw_shard(p)
        assert h[2] == toks.size and p.stat().st_size == 1024 + 2 * toks.size

    res = text.prepare(
        [tmp_path / "b.parquet", tmp_path / "c.jsonl.gz"],
        out_dir=tmp_path / "o",
        name="mix",
        shard_size=64,
        val_tokens=10,
        parquet_column="body",
        jsonl_field="body",
        workers=0,
        progress=False,
    )
    assert res.tokens[0] == 10 and res.files[1].name == "mix_train_000001.bin"
    assert decode_documents(res.files, enc) == b + c


def test_txt_splits(tmp_path, enc):  # noqa: F811
    body = "one\n\ntwo\nlines\n\n\nthree"
    (tmp_path / "t.txt").write_text(body)
    for split, expect in [
        ("file", [body]),
        ("blank-lines", ["one\n\n", "two\nlines\n\n", "\nthree"]),
        ("lines", ["one\n", "\n", "two\n", "lines\n", "\n", "\n", "three"]),
    ]:
        res = text.prepare(
            [tmp_path / "t.txt"], out_dir=tmp_path / split, txt_split=split, workers=0, progress=False
        )
        assert decode_documents(res.files, enc) == expect, split


def test_text_input_errors(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"content": "hi"}\n')
    with pytest.raises(ValueError, match=r"x.jsonl:1: no field 'text' \(found \['content'\]\); choose one"):
        text.prepare([tmp_path / "x.jsonl"], workers=0, progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        text.prepare([tmp_path / "missing.txt"], workers=0)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["a"]}), tmp_path / "p.parquet")
    with pytest.raises(ValueError, match=r"no column 'text' \(columns: \['body'\]\)"):
        text.prepare([tmp_path / "p.parquet"], workers=0, progress=False)


def test_cli_text(tmp_path, enc, capsys):  # noqa: F811
    docs = _corpus(12)
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"t": d}) + "\n" for d in docs))
    rc = main(
        [
            "text",
            str(tmp_path / "c.jsonl"),
            "--jsonl-field",
            "t",
            "--shard-size",
            "40",
            "--workers",
            "0",
            "--no-progress",
        ]
    )
    assert rc == 0
    files = [tmp_path / "c_val_000000.bin"] + sorted(tmp_path.glob("c_train_*.bin"))
    assert decode_documents(files, enc) == docs
    assert main(["text", str(tmp_path / "c.jsonl"), "--workers", "0"]) == 1  # no field "text"
    assert "choose one with --jsonl-field" in capsys.readouterr().err


# ----------------------------------------------------------------------------
# FineWeb with a fake source


def _fake_fineweb(n=400):
    rng = np.random.default_rng(1)
    vocab = [
        "The",
        " quick",
        " brown",
        " fox",
        " jumps",
        " over",
        " lazy",
        " dogs",
        ".",
        "\n",
        " 1984",
        " café",
    ]
    return ["".join(rng.choice(vocab, size=rng.integers(1, 60))) for _ in range(n)]


# the default start method (forkserver) and plain fork
@pytest.mark.parametrize("start", [None, "fork"])
def test_fineweb_with_process_pool(tmp_path, enc, start):  # noqa: F811
    docs = _fake_fineweb()
    serial = fineweb.prepare(
        documents=docs, shard_size=1000, out_dir=tmp_path / "w0", workers=0, progress=False
    )
    pooled = fineweb.prepare(
        documents=iter(docs),
        shard_size=1000,
        out_dir=tmp_path / "w2",
        workers=2,
        progress=False,
        batch_chars=2000,  # ~30 tasks, so both workers interleave
        mp_context=start,
    )
    names = [p.name for p in pooled.files]
    assert names[0] == "fineweb_val_000000.bin" and names[1] == "fineweb_train_000001.bin"
    assert all(n == 1000 for n in pooled.tokens[:-1]) and len(names) >= 4
    assert decode_documents(pooled.files, enc) == docs
    assert [p.name for p in serial.files] == names
    for a, b in zip(serial.files, pooled.files):
        assert a.read_bytes() == b.read_bytes(), f"{b.name}: the process pool changed the tokens"


def test_fineweb_edu_layout(data_env, enc):  # noqa: F811
    res = fineweb.prepare(edu=True, documents=["a b c", "d e f"], shard_size=3, workers=0, progress=False)
    assert res.files[0] == data_env / "edu_fineweb10B" / "edu_fineweb_val_000000.bin"
    assert decode_documents(res.files, enc) == ["a b c", "d e f"]


def test_fineweb_without_datasets_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(ImportError, match=r'pip install "\.\[data\]"'):
        fineweb.prepare(out_dir=tmp_path, workers=0)
    assert main(["fineweb", "--out-dir", str(tmp_path), "--workers", "0"]) == 1


def test_default_val_split_leaves_a_small_corpus_a_train_split(tmp_path, enc):  # noqa: F811
    # rule: without val_tokens the val split is a tenth of the corpus estimated at 4 bytes per
    # token (file bytes // 4 // 10), at least 1, at most shard_size; the rest is train
    body = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(800))
    (tmp_path / "notes.txt").write_text(body)
    nbytes = (tmp_path / "notes.txt").stat().st_size
    assert text.default_val_tokens([tmp_path / "notes.txt"], 10**8) == nbytes // 4 // 10
    assert text.default_val_tokens([tmp_path / "notes.txt"], 100) == 100
    res = text.prepare([tmp_path / "notes.txt"], out_dir=tmp_path / "o", workers=0, progress=False)
    assert [p.name for p in res.files] == ["notes_val_000000.bin", "notes_train_000001.bin"]
    assert res.tokens[0] == nbytes // 4 // 10 and res.tokens[1] > 8 * res.tokens[0]
    assert decode_documents(res.files, enc) == [body]
