"""A fixed-seed training run writes the same bytes as the golden record (tests/golden_run.py).

The record was taken before the core was reorganised (issue 19); a difference means a change
altered the numbers or the files, which a refactoring must not do.
"""

from __future__ import annotations

import json

from data_helpers import SHAKESPEARE, TIKTOKEN_CACHE
from golden_run import GOLDEN, digest


def test_fixed_seed_run_is_byte_identical(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    (cache / "tinyshakespeare").mkdir(parents=True)
    (cache / "tinyshakespeare" / "input.txt").symlink_to(SHAKESPEARE)
    monkeypatch.setenv("LLMPY_DATA_DIR", str(cache))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))
    monkeypatch.setenv("LLMPY_PROGRESS", "0")
    (tmp_path / "work").mkdir()
    got = digest(tmp_path / "work")
    want = json.loads(GOLDEN.read_text())
    assert sorted(got["files"]) == sorted(want["files"]), "the run wrote other checkpoint files"
    for name in want["files"]:
        assert got["files"][name] == want["files"][name], f"{name} differs from the golden record"
    assert len(got["log"]) == len(want["log"])
    for g, w in zip(got["log"], want["log"]):
        assert g == w, f"log record differs: {g} != {w}"
    assert got == want
