"""Helpers of the data tests (tests/test_data*.py): the shared folder, a seeded data cache,
the GPT-2 oracle straight from tiktoken, and reading shards back without llmpy's reader.

The shared folder (``../shared`` beside the repository, or ``$LLMPY_SHARED_DIR``) holds the
data cache (``data/``) and the tiktoken cache. CI exports LLMPY_DATA_DIR and
TIKTOKEN_CACHE_DIR pointing into it; both are honoured. Tests never touch the network and
write only under ``tmp_path``: the data cache they use is a temporary folder whose inputs are
symlinks to the shared files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(os.environ.get("LLMPY_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
SHARED_DATA = Path(os.environ.get("LLMPY_DATA_DIR") or SHARED / "data")
TIKTOKEN_CACHE = Path(os.environ.get("TIKTOKEN_CACHE_DIR") or SHARED / "tiktoken_cache")
SHAKESPEARE = SHARED_DATA / "tinyshakespeare" / "input.txt"

HEADER_BYTES = 1024  # stated independently of llmpy: 256 int32


@pytest.fixture(autouse=True)
def tiktoken_cache(monkeypatch):
    """Every data test finds the GPT-2 encoding in the shared tiktoken cache (no download)."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))
    monkeypatch.setenv("LLMPY_PROGRESS", "0")


@pytest.fixture
def data_env(tmp_path, monkeypatch) -> Path:
    """A temporary LLMPY_DATA_DIR seeded with tinyshakespeare/input.txt (a symlink)."""
    root = tmp_path / "cache"
    (root / "tinyshakespeare").mkdir(parents=True)
    if not SHAKESPEARE.is_file():
        pytest.fail(f"the shared tiny Shakespeare text is missing: {SHAKESPEARE}")
    (root / "tinyshakespeare" / "input.txt").symlink_to(SHAKESPEARE)
    monkeypatch.setenv("LLMPY_DATA_DIR", str(root))
    return root


@pytest.fixture(scope="session")
def enc():
    """The oracle tokenizer: tiktoken's GPT-2 encoding, loaded directly."""
    import tiktoken

    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))
    return tiktoken.get_encoding("gpt2")


def raw_shard(path) -> tuple:
    """(header int32[256], tokens uint16) read with plain numpy, independently of llmpy."""
    data = Path(path).read_bytes()
    header = np.frombuffer(data[:HEADER_BYTES], dtype="<i4")
    return header, np.frombuffer(data[HEADER_BYTES:], dtype="<u2")


def decode_documents(paths, enc) -> list:
    """Concatenates the shards, splits at EOT (dropping it) and decodes each document."""
    stream = np.concatenate([raw_shard(p)[1] for p in paths]).astype(np.int64)
    eot = enc.eot_token
    assert stream.size and stream[0] == eot, "the token stream must start with EOT"
    cuts = np.flatnonzero(stream == eot).tolist() + [stream.size]
    return [enc.decode(stream[a + 1 : b].tolist()) for a, b in zip(cuts[:-1], cuts[1:])]
