"""Checkpoints under faults: killed writers, bit flips, mixed pairs, a full disk, llm.c readers.

Oracles: a straight training run in this process (the parameters every resumed checkpoint must
hold, bit for bit), CRC32C written from its definition (ckpt_helpers.crc32c), an llm.c-style
reader of model files (ckpt_helpers.llmc_read: header ints 0..7 only), the bytes of files written
before a fault (which must not change), and the stated rules of csrc/core/llmpy.h (checkpoints).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import llmpy
import numpy as np
import pytest
from binaries import find_train_gpt2
from ckpt_helpers import AT, FM, HEADER_BYTES, check_block, crc32c, header, llmc_read, strip
from llmpy import _C, checkpoint, hf

CFG = llmpy.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=300, block_size=16)


def train_step(model: llmpy.GPT2, step: int, cfg: llmpy.GPT2Config = CFG) -> None:
    """Step ``step`` of the one deterministic training every test here follows (data from the step)."""
    x = np.random.default_rng([5, step]).integers(0, cfg.vocab_size, size=(2, 9)).astype(np.int32)
    model.zero_grad()
    model.forward(x[:, :-1].copy(), x[:, 1:].copy())
    model.backward()
    model.step(1e-2, weight_decay=0.1, grad_clip=1.0)


def digest(model: llmpy.GPT2) -> str:
    h = hashlib.sha256()
    for name, p in model.parameters().items():
        h.update(name.encode() + np.ascontiguousarray(p).tobytes())
    return h.hexdigest()


class Reference:
    """The straight run: digests of the parameters after each step, computed as far as asked."""

    def __init__(self, cfg=CFG, seed=1):
        self.cfg, self.model, self.digests = cfg, llmpy.GPT2(cfg, seed=seed), [None]
        self.digests[0] = digest(self.model)

    def __getitem__(self, step: int) -> str:
        while len(self.digests) <= step:
            train_step(self.model, len(self.digests) - 1, self.cfg)
            self.digests.append(digest(self.model))
        return self.digests[step]


def run_with_checkpoints(out: Path, steps: list, seed=1, run_id="run-a", cfg=CFG) -> llmpy.GPT2:
    """Trains from scratch and saves a checkpoint after each step in ``steps``."""
    model = llmpy.GPT2(cfg, seed=seed)
    for s in range(max(steps)):
        train_step(model, s, cfg)
        if s + 1 in steps:
            checkpoint.save(out, s + 1, model, {"step": s + 1}, run_id=run_id)
    return model


def flip(path: Path, byte: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[byte] ^= 1 << bit
    path.write_bytes(bytes(data))


def temps(d: Path) -> list:
    return sorted(p.name for p in d.iterdir() if ".tmp." in p.name)


# ----------------------------------------------------------------------------
# the checksum itself


def test_crc32c_matches_its_definition():
    assert crc32c(b"123456789") == 0xE3069283  # RFC 3720's check value, for the oracle itself
    assert _C.crc32c(b"123456789") == 0xE3069283 and _C.crc32c(b"123456789", portable=True) == 0xE3069283
    rng = np.random.default_rng(0)
    blob = rng.integers(0, 256, 60000, dtype=np.uint8).tobytes()
    cases = [(0, 0), (0, 1), (1, 7), (3, 8), (5, 63), (7, 1000), (0, 4999), (13, 4096), (0, 3 * 256),
             (1, 3 * 8192), (6, 3 * 8192 + 3 * 256 + 11), (0, 59999)]  # the 3-stream blocks of the fast path
    for start, n in cases:
        part = blob[start:start + n]  # every alignment and tail length the fast paths split on
        want = crc32c(part)
        assert _C.crc32c(part) == want, f"{_C.crc32c_impl()} path: [{start}:{start + n}]"
        assert _C.crc32c(part, portable=True) == want, f"table path: [{start}:{start + n}]"
        assert _C.crc32c(part[n // 2:], _C.crc32c(part[:n // 2])) == want, "continuing a checksum"


def test_files_carry_checksums_where_llmc_reads_nothing(tmp_path):
    """llm.c (and the oracle) read model header ints 0..7: ours are unchanged, the integrity block
    sits in ints llm.c never reads, and an llm.c-style reader gets the model back."""
    m = llmpy.GPT2(CFG, seed=3)
    m.save(tmp_path / "m.bin")
    h = header((tmp_path / "m.bin").read_bytes())
    assert h[:8].tolist() == [FM["MODEL_MAGIC"], FM["MODEL_VERSION_FP32"], 16, 300, 2, 2, 32, 384]
    assert not h[8:AT].any() and not h[AT + 4:].any()
    block = check_block(tmp_path / "m.bin")  # CRC32C by the oracle
    cfg, params = llmc_read(tmp_path / "m.bin")
    assert cfg == {**vars(CFG), "padded_vocab_size": 384}
    for name, p in m.parameters().items():
        np.testing.assert_array_equal(params[name], p, err_msg=name)
    info = checkpoint.verify(tmp_path / "m.bin")
    assert info["kind"] == "model" and info["has_checksum"] and info["checksum"] == block["checksum"]
    # the state: its own checksum, the model file's, the step and the run id
    train_step(m, 0)
    m.save(tmp_path / "m.bin")
    m.save_state(tmp_path / "m.state", {"k": 1}, model_path=tmp_path / "m.bin", step=7, run_id="abc.1-x_")
    sblock = check_block(tmp_path / "m.state")
    s = checkpoint.verify(tmp_path / "m.state")
    mb = check_block(tmp_path / "m.bin")
    assert s == {"kind": "state", "version": FM["TRAIN_STATE_VERSION"], "has_checksum": True,
                 "checksum": sblock["checksum"], "header_checksum": sblock["header_checksum"],
                 "config": {**vars(CFG), "padded_vocab_size": 384}, "step": 7, "adam_steps": 1,
                 "run_id": "abc.1-x_", "model_checksum": mb["checksum"],
                 "model_header_checksum": mb["header_checksum"]}  # fmt: skip
    with pytest.raises(ValueError, match="run id 'a b'"):
        m.save_state(tmp_path / "x.state", run_id="a b")
    with pytest.raises(ValueError, match="run id"):
        m.save_state(tmp_path / "x.state", run_id="x" * 32)


def test_files_without_checksums_still_load(tmp_path):
    """llm.c's model files and older llmpy's files (state version 1) have no checksum: nothing to
    verify, they load as before."""
    m = llmpy.GPT2(CFG, seed=3)
    train_step(m, 0)
    m.save(tmp_path / "m.bin")
    m.save_state(tmp_path / "m.state", {"k": 2}, model_path=tmp_path / "m.bin", step=1, run_id="r")
    legacy = tmp_path / "legacy.bin"
    legacy.write_bytes(bytes(strip(bytearray((tmp_path / "m.bin").read_bytes()))))
    assert not checkpoint.verify(legacy)["has_checksum"]
    assert digest(llmpy.GPT2.from_checkpoint(legacy)) == digest(m)
    # a version 1 state: the version 2 file without its pairing fields and integrity block
    data = bytearray((tmp_path / "m.state").read_bytes())
    h = header(data)
    h[1] = FM["TRAIN_STATE_VERSION_V1"]
    h[15:28] = 0
    h[AT:AT + 4] = 0
    data[:HEADER_BYTES] = h.tobytes()
    (tmp_path / "v1.state").write_bytes(bytes(data))
    info = checkpoint.verify(tmp_path / "v1.state")
    assert info["version"] == 1 and not info["has_checksum"] and info["model_checksum"] is None
    fresh = llmpy.GPT2.from_checkpoint(legacy)
    assert fresh.load_state(tmp_path / "v1.state") == {"k": 2} and fresh.steps == 1


def test_directories_and_missing_files_say_so(tmp_path):
    (tmp_path / "d.bin").mkdir()
    with pytest.raises(OSError, match=re.escape(str(tmp_path / "d.bin")) + ": it is a directory"):
        llmpy.GPT2.from_checkpoint(tmp_path / "d.bin")
    with pytest.raises(OSError, match="it is a directory"):
        llmpy.GPT2(CFG).load_state(tmp_path / "d.bin")
    with pytest.raises(FileNotFoundError, match="cannot open model file .*nope.bin"):
        llmpy.GPT2.from_checkpoint(tmp_path / "nope.bin")
    with pytest.raises(FileNotFoundError, match="cannot open training-state file .*nope.state"):
        llmpy.GPT2(CFG).load_state(tmp_path / "nope.state")


# ----------------------------------------------------------------------------
# bit flips and header edits


def _model_positions(size: int) -> list:
    ints = [0, 1, 2, 5, 7, 8, 100, AT - 1, AT, AT + 1, AT + 2, AT + 3, AT + 4, 255]
    header_bytes = [4 * i + b for i, b in zip(ints, [0, 1, 2, 3] * 4)]
    payload = [HEADER_BYTES, HEADER_BYTES + 1, HEADER_BYTES + 4 * 300 * 32 + 5, size // 2, size - 1]
    return header_bytes + payload


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    run_with_checkpoints(d, [1, 2])
    return d


def test_bit_flips_in_model_files_are_detected(pair, tmp_path):
    good = checkpoint.paths(pair, 2)[0]
    size = good.stat().st_size
    for pos in _model_positions(size):
        for bit in (0, 5, 7):
            bad = tmp_path / f"flip_{pos}_{bit}.bin"
            shutil.copy(good, bad)
            flip(bad, pos, bit)
            where = re.escape(str(bad))
            for load in (llmpy.GPT2.from_checkpoint, lambda p: _C.ModelFile.open(str(p)), checkpoint.verify,
                         hf.open_source):
                with pytest.raises(ValueError, match=where + ": .*damaged") as e:
                    load(bad)
                assert "checksum" in str(e.value), f"byte {pos} bit {bit}: {e.value}"
            bad.unlink()
    # a header edited with a plausible value (another context length): the same
    data = bytearray(good.read_bytes())
    h = header(data)
    h[2] = 32
    data[:HEADER_BYTES] = h.tobytes()
    (tmp_path / "edit.bin").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum mismatch in the header .*the file is damaged; restore it"):
        llmpy.GPT2.from_checkpoint(tmp_path / "edit.bin")


def test_bit_flips_in_state_files_are_detected(pair, tmp_path):
    model_path, good = checkpoint.paths(pair, 2)
    size = good.stat().st_size
    json_len = len(json.dumps({"step": 2}))
    ints = [0, 1, 2, 4, 6, 7, 9, 15, 16, 17, 18, 20, 27, 100, AT, AT + 1, AT + 2, AT + 3]
    positions = [4 * i + (i % 4) for i in ints]
    positions += [HEADER_BYTES, HEADER_BYTES + 777, (size - json_len) // 2, size - json_len, size - 1]
    for pos in positions:
        bad = tmp_path / f"flip_{pos}.state"
        shutil.copy(good, bad)
        flip(bad, pos, pos % 8)
        model = llmpy.GPT2.from_checkpoint(model_path)
        before = (model.steps, digest(model))
        with pytest.raises(ValueError, match=re.escape(str(bad)) + ": .*damaged") as e:
            model.load_state(bad)
        assert "checksum" in str(e.value), f"byte {pos}: {e.value}"
        assert (model.steps, digest(model)) == before, "a refused state must change nothing"
        with pytest.raises(ValueError, match="damaged"):
            checkpoint.verify(bad)
        bad.unlink()


def test_damaged_newest_pair_is_skipped_with_the_reason(tmp_path):
    run_with_checkpoints(tmp_path, [2, 4, 6, 8, 10])
    ref = Reference()
    flip(checkpoint.paths(tmp_path, 10)[0], HEADER_BYTES + 100)             # payload bit flip
    flip(checkpoint.paths(tmp_path, 8)[1], 4 * 3)                            # state header bit flip
    checkpoint.paths(tmp_path, 6)[1].unlink()                                # a .bin without its .state
    shutil.copy(checkpoint.paths(tmp_path, 2)[1], tmp_path / "ckpt_000012.state")  # a state renamed
    shutil.copy(checkpoint.paths(tmp_path, 2)[0], tmp_path / "ckpt_000012.bin")
    lines = []
    assert checkpoint.latest_step(tmp_path, lines.append) == 4
    assert len(lines) == 4, lines
    assert re.search(r"step 12 .*ckpt_000012.state holds the state of step 2, not 12", lines[0]), lines[0]
    assert re.search(r"step 10 .*ckpt_000010.bin: checksum mismatch \(stored", lines[1]), lines[1]
    assert re.search(r"step 8 .*ckpt_000008.state: checksum mismatch in the header", lines[2]), lines[2]
    assert re.search(r"step 6 .*ckpt_000006.bin has no .*ckpt_000006.state", lines[3]), lines[3]
    model, extra, step = checkpoint.find_latest(tmp_path, log=lambda m: None)
    assert step == 4 and extra == {"step": 4} and model.steps == 4 and digest(model) == ref[4]
    # every step is a candidate, not only those below some --max-steps
    assert checkpoint.steps(tmp_path) == [2, 4, 8, 10, 12]


# ----------------------------------------------------------------------------
# two runs, one folder


def test_mixed_pairs_are_refused(tmp_path):
    a, b, mixed = tmp_path / "a", tmp_path / "b", tmp_path / "mixed"
    run_with_checkpoints(a, [2, 4], seed=1, run_id="run-a")
    run_with_checkpoints(b, [4], seed=2, run_id="run-b")
    mixed.mkdir()
    for p in [*checkpoint.paths(a, 2), checkpoint.paths(a, 4)[0]]:
        shutil.copy(p, mixed / p.name)
    shutil.copy(checkpoint.paths(b, 4)[1], mixed / "ckpt_000004.state")
    bin4, state4 = checkpoint.paths(mixed, 4)
    want = (re.escape(f"{bin4} and {state4}") + " are not one checkpoint: "
            r"the training state \(step 4, run run-b\) was saved with a model file whose checksums")
    with pytest.raises(ValueError, match=want):
        checkpoint.load(bin4, state4)
    lines = []
    assert checkpoint.latest_step(mixed, lines.append) == 2
    assert len(lines) == 1 and "are not one checkpoint" in lines[0] and "of run run-b" in lines[0], lines
    # a model not loaded from a file (nothing to compare with) still takes any state of its shape
    assert llmpy.GPT2(CFG).load_state(state4) == {"step": 4}


# ----------------------------------------------------------------------------
# kill -9 while checkpoints are written

CHILD = r"""
import sys
import numpy as np
import llmpy
from llmpy import checkpoint

out = sys.argv[1]
cfg = llmpy.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=300, block_size=16)
llmpy.set_num_threads(1)
found = checkpoint.find_latest(out, log=lambda m: None)
if found:
    model, extra, step = found
    run_id = extra["run_id"]
else:
    model, step, run_id = llmpy.GPT2(cfg, seed=1), 0, checkpoint.new_run_id()
print("ready", step, flush=True)
while True:
    x = np.random.default_rng([5, step]).integers(0, cfg.vocab_size, size=(2, 9)).astype(np.int32)
    model.zero_grad()
    model.forward(x[:, :-1].copy(), x[:, 1:].copy())
    model.backward()
    model.step(1e-2, weight_decay=0.1, grad_clip=1.0)
    step += 1
    checkpoint.save(out, step, model, {"step": step, "run_id": run_id}, keep=2, run_id=run_id)
    sys.stdout.write(f"saved {step}\n")  # one write: under PYTHONUNBUFFERED print() makes four
    sys.stdout.flush()
"""


@pytest.mark.parametrize("trials", [8, pytest.param(60, marks=pytest.mark.slow)])
def test_kill_during_checkpoint_writes(tmp_path, trials):
    """A writer saving checkpoints as fast as it can is killed (SIGKILL) at random moments, again and
    again, each time resuming from the newest intact pair: no completed checkpoint is ever lost,
    the newest intact pair always loads, and it holds exactly the straight run's parameters."""
    out = tmp_path / "run"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    ref, rnd = Reference(), random.Random(20)
    saved, log = 0, []
    for trial in range(trials):
        child = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE, text=True)
        ready = child.stdout.readline().split()
        assert ready and ready[0] == "ready" and int(ready[1]) >= saved, f"trial {trial}: resumed at {ready}"
        time.sleep(rnd.uniform(0.0, 0.4))
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read().split("\n")[:-1]  # whole lines: the kill may cut the last one
        child.wait()
        # complete pairs: those reported saved, and the one the child resumed from (a pair completed
        # in the previous trial after its last report)
        done = [int(line.split()[1]) for line in rest if line.startswith("saved")]
        saved = max([saved, int(ready[1]), *done])
        latest = checkpoint.latest_step(out, log.append)
        if latest is None:  # killed before its first checkpoint was complete
            assert saved == 0, f"trial {trial}: saves reported up to {saved}, but no intact pair; {log[-3:]}"
            continue
        assert saved <= latest <= saved + 1, \
            f"trial {trial}: saves reported up to {saved}, newest intact pair {latest}; skipped: {log[-3:]}"
        model, extra, step = checkpoint.find_latest(out, log=lambda m: None)
        assert step == latest and extra["step"] == step and model.steps == step
        assert digest(model) == ref[step], f"trial {trial}: the pair of step {step} is not the straight run's"
    assert saved >= 1, f"no checkpoint in {trials} trials: the writer never got to write one"
    # kills did land inside writes: temp files left behind, or a model file without its state
    interrupted = len(temps(out)) + len({m.split(":")[0] for m in log if "stopped between" in m})
    if trials >= 60:
        assert interrupted > 0, f"no kill in {trials} trials landed inside a checkpoint write"
    # a resume from the last one continues bit-exactly
    model, _, step = checkpoint.find_latest(out, log=lambda m: None)
    train_step(model, step)
    assert digest(model) == ref[step + 1]
    # the temp files of killed writes go, the checkpoints stay
    pairs = {p.name: p.read_bytes() for p in out.iterdir() if ".tmp." not in p.name}
    removed = checkpoint.clean_temp(out)
    assert temps(out) == [] and removed >= 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == pairs


def test_clean_temp_removes_only_dead_writers_files(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is free now (reused by another process at worst: then its file stays)
    names = {
        f"ckpt_000004.bin.tmp.{dead.pid}.0": False,  # a killed writer's: removed
        f"ckpt_000004.state.tmp.{dead.pid}.17": False,
        f"ckpt_000004.bin.tmp.{os.getpid()}.3": True,  # a live writer's (this process): kept
        f"x.bin.tmp.{os.getppid()}.0": True,  # the parent is alive
        f"tok.bin.tmp.{dead.pid}": True,  # not our pattern (another writer's naming)
        "loss.png.tmp.png": True,
        ".tmp.1.2": True,  # no name before it
        "ckpt_000004.bin": True,
    }
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    assert checkpoint.clean_temp(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, keep in names.items() if keep)
    assert checkpoint.clean_temp(tmp_path / "missing") == 0


# ----------------------------------------------------------------------------
# a full disk


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs (a disk that fills up), mounted for the test and unmounted after it."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"needs root to mount a tmpfs (mount failed: {r.stderr.strip()})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, check=False)


def fill(d: Path, leave: int) -> None:
    """Fills the file system of d up to ``leave`` free bytes."""
    chunk = b"\0" * 65536
    with open(d / "filler", "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    size = (d / "filler").stat().st_size
    os.truncate(d / "filler", max(0, size - leave))


def test_full_disk_never_damages_a_checkpoint(small_disk):
    # a model file of 0.9 MB, its state 1.8 MB
    cfg = llmpy.GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=1000, block_size=16)
    model = llmpy.GPT2(cfg, seed=1)
    train_step(model, 0, cfg)
    checkpoint.save(small_disk, 1, model, {"step": 1}, run_id="r")
    before = {p.name: p.read_bytes() for p in small_disk.iterdir()}
    train_step(model, 1, cfg)
    size = checkpoint.paths(small_disk, 1)[0].stat().st_size
    for leave in (100_000, size + 100_000):  # the model file does not fit / it fits, its state does not
        fill(small_disk, leave)
        with pytest.raises(OSError, match=r"ckpt_000002\.(bin|state): write failed: No space left on device: "
                                          "the disk is full; free space"):
            checkpoint.save(small_disk, 2, model, {"step": 2}, run_id="r")
        assert temps(small_disk) == [], "a failed write must remove its temp file"
        (small_disk / "filler").unlink()
        for name, data in before.items():
            assert (small_disk / name).read_bytes() == data, f"{name} changed"
        lines = []
        assert checkpoint.latest_step(small_disk, lines.append) == 1, lines
        # the model written before its state did not fit: a .bin without its .state, skipped
        assert lines == [] if leave < size else "ckpt_000002.bin has no" in lines[0], lines
    checkpoint.paths(small_disk, 2)[0].unlink()
    # overwriting an existing file in place: the old one stays whole
    fill(small_disk, 100_000)
    with pytest.raises(OSError, match="No space left on device"):
        model.save(checkpoint.paths(small_disk, 1)[0])
    with pytest.raises(OSError, match="No space left on device"):
        model.save_state(checkpoint.paths(small_disk, 1)[1])
    assert {p.name: p.read_bytes() for p in small_disk.iterdir() if p.name != "filler"} == before
    _, extra, step = checkpoint.find_latest(small_disk)
    assert step == 1 and extra == {"step": 1}


# ----------------------------------------------------------------------------
# train_gpt2 --resume latest: the same rule, whatever --max-steps says


def write_shard(path: Path, tokens: np.ndarray) -> None:
    h = np.zeros(256, dtype="<i4")
    h[:3] = (FM["SHARD_MAGIC"], FM["SHARD_VERSION"], tokens.size)
    path.write_bytes(h.tobytes() + tokens.astype("<u2").tobytes())


def test_binary_resumes_from_the_newest_intact_pair(tmp_path):
    cfg = llmpy.GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=300, block_size=16)
    llmpy.GPT2(cfg, seed=0).save(tmp_path / "init.bin")
    rng = np.random.default_rng(0)
    write_shard(tmp_path / "x_train.bin", rng.integers(0, 300, 4000))
    write_shard(tmp_path / "x_val.bin", rng.integers(0, 300, 1000))
    out = tmp_path / "run"

    def run(*more, out=out):
        flags = [find_train_gpt2(), "--init-from", str(tmp_path / "init.bin"), "--data",
                 str(tmp_path / "x_train.bin"), "--out-dir", str(out), "--batch-size", "2", "--seq-len", "16",
                 "--checkpoint-every", "4", "--keep-checkpoints", "0", "--eval-every", "0",
                 "--sample-every", "0", "--threads", "1"]
        return subprocess.run([*flags, *more], capture_output=True, text=True, timeout=300, check=False)

    res = run("--max-steps", "12")
    assert res.returncode == 0, res.stdout + res.stderr
    info = checkpoint.verify(checkpoint.paths(out, 12)[1])
    assert info["step"] == 12 and re.fullmatch(r"[0-9a-f]{16}", info["run_id"])
    assert info["model_checksum"] == checkpoint.verify(checkpoint.paths(out, 12)[0])["checksum"]
    # a shorter --max-steps must not hide the newer checkpoints
    # (step 12 is past --max-steps 6: the run says it is complete at the step it found)
    res = run("--max-steps", "6", "--resume", "latest")
    assert res.returncode == 0 and "is complete: step 12 of --max-steps 6" in res.stdout, res.stdout + res.stderr
    # a damaged newest pair is skipped, on stderr, with its reason
    flip(checkpoint.paths(out, 12)[1], HEADER_BYTES + 64)
    res = run("--max-steps", "12", "--resume", "latest")
    assert res.returncode == 0 and "resumed from step 8" in res.stdout, res.stdout + res.stderr
    assert re.search(r"warning: skipping checkpoint of step 12 in .*ckpt_000012.state: checksum mismatch",
                     res.stderr), res.stderr
    # resuming continued the same run: its checkpoints keep the run id
    res = run("--max-steps", "16", "--resume", "latest")
    assert res.returncode == 0, res.stdout + res.stderr
    assert checkpoint.verify(checkpoint.paths(out, 16)[1])["run_id"] == info["run_id"]
    # a .bin with another run's .state is refused, naming both
    other = tmp_path / "other"
    res = run("--max-steps", "4", "--seed", "99", out=other)
    assert res.returncode == 0, res.stdout + res.stderr
    shutil.copy(checkpoint.paths(other, 4)[1], checkpoint.paths(out, 4)[1])
    res = run("--max-steps", "6", "--resume", str(checkpoint.paths(out, 4)[0]))
    assert res.returncode == 1 and "are not one checkpoint" in res.stderr, res.stdout + res.stderr
