"""--model d12|d24|d36|d48: GPT-2's shapes from the core's table, random weights in both programs.

Oracles: the shapes GPT-2's released configs give (124M, 350M, 774M, 1558M); for the binary's
initialisation, python -m llmpy.train --model d12 with the same seed (the first step's loss and
gradient norm must be the same numbers, which they are only if every weight is); for the
tokenizer, the samples the binary prints once python -m llmpy.tokenizer llmc has written its file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import llmpy
import numpy as np
import pytest
from binaries import find_train_gpt2
from llmpy import _C
from llmpy.data import write_shard
from llmpy.train import PRESETS

GPT2_SHAPES = {  # n_layer, n_head, n_embd of gpt2, gpt2-medium, gpt2-large, gpt2-xl
    "d12": (12, 12, 768), "d24": (24, 16, 1024), "d36": (36, 20, 1280), "d48": (48, 25, 1600),
}


def test_presets_are_gpt2s_shapes_in_both_programs():
    got = {k: (v["n_layer"], v["n_head"], v["n_embd"]) for k, v in _C.PRESETS.items()}
    assert got == GPT2_SHAPES
    assert PRESETS == _C.PRESETS  # python -m llmpy.train reads the core's table


@pytest.fixture
def shards(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        write_shard(tmp_path / f"d_{split}.bin", rng.integers(0, 50257, 4096).astype(np.uint16))
    return tmp_path / "d_train.bin"


def binary(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([find_train_gpt2(), *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=600, check=False)


@pytest.mark.parametrize("flags, match", [
    (["--model", "d13"], "--model must be d12, d24, d36 or d48"),
    (["--model", "d12", "--init-from", "x.bin"], "exclude each other"),
    ([], "--init-from MODEL.bin or --model d12|d24|d36|d48"),
])
def test_binary_refuses_bad_model_flags(tmp_path, shards, flags, match):
    res = binary(*flags, "--data", str(shards), "--out-dir", str(tmp_path / "run"))
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert res.stderr.startswith("error: ") and match in res.stderr, res.stderr


@pytest.mark.slow
def test_binary_model_d12_starts_from_pythons_weights(tmp_path, shards):
    flags = ["--model", "d12", "--data", str(shards), "--batch-size", "1", "--seq-len", "16", "--max-steps", "1",
             "--eval-every", "0", "--sample-every", "0", "--checkpoint-every", "0", "--threads", "1",
             "--seed", "7"]
    res = binary(*flags, "--out-dir", str(tmp_path / "c"))
    assert res.returncode == 0, res.stderr
    env = {**os.environ, "LLMPY_PROGRESS": "0"}
    res = subprocess.run([sys.executable, "-m", "llmpy.train", *flags, "--device", "cpu", "--out-dir",
                          str(tmp_path / "p")], capture_output=True, text=True, env=env, timeout=600, check=False)
    assert res.returncode == 0, res.stderr
    c = json.loads((tmp_path / "c" / "log.jsonl").read_text().splitlines()[0])
    p = json.loads((tmp_path / "p" / "log.jsonl").read_text().splitlines()[0])
    assert (c["loss"], c["grad_norm"]) == (p["loss"], p["grad_norm"]), (c, p)


def test_binary_finds_the_tokenizer_the_tokenizer_cli_writes(tmp_path, shards):
    cfg = llmpy.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50257, block_size=16)
    llmpy.GPT2(cfg, seed=0).save(tmp_path / "small.bin")
    env = {**os.environ, "LLMPY_DATA_DIR": str(tmp_path / "cache")}
    flags = ["--init-from", str(tmp_path / "small.bin"), "--data", str(shards), "--batch-size", "1",
             "--seq-len", "16", "--max-steps", "1", "--eval-every", "0", "--sample-every", "1",
             "--sample-tokens", "4", "--checkpoint-every", "0"]
    res = binary(*flags, "--out-dir", str(tmp_path / "a"), env=env)
    assert res.returncode == 0, res.stderr
    want = f"python -m llmpy.tokenizer llmc writes {tmp_path / 'cache' / 'gpt2_tokenizer.bin'}"
    assert want in res.stderr and "sample" not in res.stdout.lower(), res.stderr
    res = subprocess.run([sys.executable, "-m", "llmpy.tokenizer", "llmc"], capture_output=True, text=True,
                         env=env, check=False)
    assert res.returncode == 0 and (tmp_path / "cache" / "gpt2_tokenizer.bin").is_file(), res.stderr
    res = binary(*flags, "--out-dir", str(tmp_path / "b"), env=env)
    assert res.returncode == 0 and "no tokenizer file" not in res.stderr, res.stderr
    assert "sample" in res.stdout.lower(), res.stdout
    # LLMPY_DATA_DIR="~/..." (a quoted tilde): the binary expands it as data_dir() does
    tilde = {**env, "HOME": str(tmp_path), "LLMPY_DATA_DIR": "~/cache"}
    res = binary(*flags, "--out-dir", str(tmp_path / "c"), env=tilde)
    assert res.returncode == 0 and "no tokenizer file" not in res.stderr, res.stderr
    assert "sample" in res.stdout.lower(), res.stdout
