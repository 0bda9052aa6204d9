"""Token shard format and the sharding pipeline: round trips, header/size agreement, corrupt
files, atomic and resumable writes. Oracles: raw bytes read with numpy, tiktoken itself, and
the error messages as written here (the header check is the C one, llm_shard_read_header)."""

from __future__ import annotations

import re

import llmpy
import numpy as np
import pytest
from data_helpers import decode_documents, enc, raw_shard, tiktoken_cache  # noqa: F401
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llmpy.data import DataLoader, MissingShardError, ShardError, read_header, read_shard, write_shard
from llmpy.data.sharding import ShardSpec, write_shards

# ----------------------------------------------------------------------------
# the format


def test_header_uses_the_formats_constants(tmp_path):
    path = tmp_path / "a_val_000000.bin"
    tokens = np.array([50256, 0, 1, 65535, 1234], dtype=np.int64)
    assert write_shard(path, tokens) == 5
    header, payload = raw_shard(path)
    assert header.size == llmpy.formats["HEADER_INTS"] == 256
    assert header[0] == llmpy.formats["SHARD_MAGIC"] == 20240520
    assert header[1] == llmpy.formats["SHARD_VERSION"] == 1
    assert header[2] == 5 and not header[3:].any()
    np.testing.assert_array_equal(payload, tokens)
    np.testing.assert_array_equal(read_shard(path), tokens)
    np.testing.assert_array_equal(read_shard(path, mmap=False), tokens)
    assert read_header(path) == int(header[2]) == 5
    assert read_header(str(path)) == 5, "str and PathLike paths"


def test_write_is_atomic_and_validates(tmp_path):
    path = tmp_path / "x.bin"
    with pytest.raises(ValueError, match="uint16"):
        write_shard(path, [1, 70000])
    with pytest.raises(ValueError, match="uint16"):
        write_shard(path, [-1])
    assert not path.exists()
    write_shard(path, np.arange(10))
    write_shard(path, np.arange(3))  # replaces, never appends
    assert read_shard(path).tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"], "temp files must not remain"
    assert write_shard(tmp_path / "empty.bin", []) == 0 and read_shard(tmp_path / "empty.bin").size == 0


# ----------------------------------------------------------------------------
# corrupt shards: every reader names the file


def _corrupt(tmp_path, kind):
    path = tmp_path / f"{kind}_train_000001.bin"
    write_shard(path, np.arange(1000))
    data = bytearray(path.read_bytes())
    if kind == "magic":
        data[0:4] = np.int32(12345).tobytes()
    elif kind == "version":
        data[4:8] = np.int32(7).tobytes()
    elif kind == "truncated":
        data = data[:-10]
    elif kind == "longer":
        data += b"\0\0\0\0"
    elif kind == "header":
        data = data[:100]
    elif kind == "negative":
        data[8:12] = np.int32(-5).tobytes()
    path.write_bytes(bytes(data))
    return path


FIX = "re-create it (python -m llmpy.data --help lists the datasets)"


@pytest.mark.parametrize(
    "kind, message",
    [
        ("magic", "{p} is not a token shard: magic number 12345, expected 20240520; " + FIX),
        ("version", "token shard {p} has version 7, this llmpy reads version 1"),
        ("truncated", "token shard {p} is truncated: header says 1000 tokens (3024 bytes), "
                      "file has 3014 bytes (995 tokens); " + FIX),
        ("longer", "token shard {p} is longer than its header says: header says 1000 tokens (3024 bytes), "
                   "file has 3028 bytes (1002 tokens); " + FIX),
        ("header", "token shard {p} is truncated: 100 bytes, smaller than the 1024-byte header; " + FIX),
        ("negative", "token shard {p} is corrupt: negative token count -5 in its header; " + FIX),
    ],
)
def test_corrupt_shard_errors_name_the_file(tmp_path, kind, message):
    path = _corrupt(tmp_path, kind)
    want = message.format(p=path)
    for reader in (read_header, read_shard):
        with pytest.raises(ShardError) as e:
            reader(path)
        assert str(e.value) == want, f"{reader.__name__}: {e.value}"
        assert not isinstance(e.value, FileNotFoundError)
    # the loader validates every shard when it is built, with the same message
    with pytest.raises(ShardError) as e:
        DataLoader(str(tmp_path / "*.bin"), 1, 8)
    assert str(e.value) == want


def test_a_directory_is_not_a_shard(tmp_path):
    d = tmp_path / "dir_train_000001.bin"
    d.mkdir()
    with pytest.raises(ShardError, match=re.escape(f"token shard {d} is a directory, not a file")):
        read_header(d)
    with pytest.raises(ShardError, match=re.escape(f"token shard {d} is a directory, not a file")):
        DataLoader(str(tmp_path / "*.bin"), 1, 8)


def test_missing_shards(tmp_path):
    missing = tmp_path / "nope_000000.bin"
    for reader in (read_header, read_shard):
        with pytest.raises(MissingShardError) as e:
            reader(missing)
        assert str(e.value) == f"token shard {missing} does not exist; " + FIX
        # MissingShardError is also a FileNotFoundError (and a ShardError)
        assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, ShardError)
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        DataLoader(str(missing), 1, 8)
    with pytest.raises(MissingShardError, match="no token shard matches"):
        DataLoader(str(tmp_path / "*.bin"), 1, 8)


# ----------------------------------------------------------------------------
# sharding round trip


def _check_headers(files):
    for p in files:
        header, payload = raw_shard(p)
        assert p.stat().st_size == 1024 + 2 * int(header[2]), f"{p}: header count does not match the size"
        assert payload.size == header[2]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    docs=st.lists(st.text(max_size=60), min_size=1, max_size=12),
    val=st.integers(1, 20),
    size=st.integers(1, 30),
)
def test_sharding_round_trip(tmp_path_factory, enc, docs, val, size):  # noqa: F811
    out = tmp_path_factory.mktemp("rt")
    res = write_shards(docs, ShardSpec(out, "rt", val_tokens=val, shard_size=size), workers=0, progress=False)
    _check_headers(res.files)
    assert decode_documents(res.files, enc) == docs
    n = res.tokens
    assert n[0] == min(val, sum(n)) and all(k == size for k in n[1:-1]) and 0 < n[-1] <= max(size, val)
    assert [p.name for p in res.files] == [
        f"rt_{'val' if i == 0 else 'train'}_{i:06d}.bin" for i in range(len(n))
    ]
    # the tokens are tiktoken's, document by document
    expect = np.concatenate([[enc.eot_token] + enc.encode_ordinary(d) for d in docs]).astype(np.uint16)
    np.testing.assert_array_equal(np.concatenate([raw_shard(p)[1] for p in res.files]), expect)


def test_special_token_text_stays_ordinary(tmp_path, enc):  # noqa: F811
    docs = ["a <|endoftext|> b", "c"]
    res = write_shards(docs, ShardSpec(tmp_path, "sp", val_tokens=100), workers=0, progress=False)
    assert decode_documents(res.files, enc) == docs


def test_empty_source_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        write_shards([], ShardSpec(tmp_path, "e", val_tokens=10), workers=0, progress=False)
    assert not list(tmp_path.glob("*.bin"))


# ----------------------------------------------------------------------------
# resume: complete shards are kept, damaged ones redone, earlier documents not re-tokenized


class CountingSource:
    """A document source ``f(start)`` that records how many documents it handed out."""

    def __init__(self, docs):
        self.docs, self.served, self.starts = docs, 0, []

    def __call__(self, start):
        self.starts.append(start)
        for d in self.docs[start:]:
            self.served += 1
            yield d


def test_rerun_skips_complete_and_redoes_damaged_shards(tmp_path, enc):  # noqa: F811
    docs = [f"Document {i}: " + "lorem ipsum dolor " * (i % 7 + 1) for i in range(300)]
    spec = ShardSpec(tmp_path, "rs", val_tokens=500, shard_size=700)
    first = write_shards(docs, spec, source={"t": 1}, workers=0, progress=False)
    assert len(first.files) >= 6
    original = {p.name: p.read_bytes() for p in first.files}
    stamp = {p.name: p.stat().st_mtime_ns for p in first.files}

    # a complete re-run touches nothing and tokenizes nothing
    src = CountingSource(docs)
    again = write_shards(src, spec, source={"t": 1}, workers=0, progress=False)
    assert src.served == 0 and again.tokens_written == 0 and again.skipped == first.files

    # damage shard 3 (truncate) and delete shard 4: shards 0-2 are kept, the rest redone
    victim = first.files[3]
    victim.write_bytes(victim.read_bytes()[:-6])
    first.files[4].unlink()
    src = CountingSource(docs)
    res = write_shards(src, spec, source={"t": 1}, workers=0, progress=False)
    assert res.skipped == first.files[:3]
    assert src.starts and src.starts[0] > 0, "the resumed run must start after the kept shards' documents"
    assert src.served < len(docs)
    assert res.files == first.files
    for p in first.files[:3]:
        assert p.stat().st_mtime_ns == stamp[p.name], f"{p.name} was rewritten"
    for p in res.files:
        assert p.read_bytes() == original[p.name], f"{p.name} differs after resuming"

    # another source (or spec) ignores the manifest and rewrites everything
    other = write_shards(docs[:10], spec, source={"t": 2}, workers=0, progress=False)
    assert not other.skipped and decode_documents(other.files, enc) == docs[:10]
    assert sorted(tmp_path.glob("rs_*.bin")) == sorted(other.files), "stale shards of the longer run remain"


def test_stale_temp_files_are_removed(tmp_path):
    (tmp_path / ".tt_train_000001.bin.123.abcd.tmp").write_bytes(b"junk")
    write_shards(["x"], ShardSpec(tmp_path, "tt", val_tokens=10), workers=0, progress=False)
    assert not list(tmp_path.glob(".*.tmp"))
