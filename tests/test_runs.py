"""Run folders, by both training programs (python -m llmpy.train and train_gpt2) on the same flags.

The rules (csrc/core/run.c, csrc/core/schedule.c) are the oracle, stated in each test: one run
holds a folder at a time and a second one is refused naming the holder's PID; the lock file of a
killed run is taken over; a partial last log line is trimmed with a warning and a resumed run
cuts only the records after its step; --resume takes the run's flags from the checkpoint
(changing those a resumed run may change, refusing the others); a complete run says so; a log
rewrite on a full disk leaves the old log as it was; bad flags get the same one-line message from
both programs, and a failed start leaves no folder behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import llmpy
import pytest
import test_train
from binaries import find_train_gpt2
from llmpy import _C, checkpoint
from llmpy.train import main

# test_train's fixtures: a data cache with tiny Shakespeare tokenized once, a working folder
shakespeare_cache, env = test_train.shakespeare_cache, test_train.env

PROGRAMS = ["python", "binary"]
NAME = {"python": "python -m llmpy.train", "binary": "train_gpt2"}
TIMINGS = ("ms", "tokens_per_s", "mfu")


def base(env) -> list:
    """Flags both programs take: a tiny model from a file, tiny Shakespeare's shards, no samples."""
    from llmpy.data import dataset_dir

    init = env / "init.bin"
    if not init.exists():
        cfg = llmpy.GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=50257, block_size=64)
        llmpy.GPT2(cfg, seed=3).save(init)
    shards = str(dataset_dir("tinyshakespeare") / "tiny_shakespeare_train.bin")
    return ["--init-from", str(init), "--data", shards, "--batch-size", "4", "--seq-len", "32", "--sample-every",
            "0", "--val-steps", "2"]


def run(program: str, args: list, capsys) -> tuple:
    """(exit code, stdout + stderr) of one training run: in process for Python, a subprocess for the binary."""
    args = [str(a) for a in args]
    if program == "python":
        capsys.readouterr()
        rc = main(args)
        captured = capsys.readouterr()
        return rc, captured.out + captured.err
    res = subprocess.run([find_train_gpt2(), *args], capture_output=True, text=True, timeout=600, check=False)
    return res.returncode, res.stdout + res.stderr


def start(program: str, args: list, cwd: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "llmpy.train"] if program == "python" else [find_train_gpt2()]
    return subprocess.Popen([*cmd, *[str(a) for a in args]], cwd=cwd, env=dict(os.environ, LLMPY_PROGRESS="0"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_records(log: Path, proc: subprocess.Popen, n: int) -> None:
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and sum(1 for line in log.read_text().splitlines() if '"loss"' in line) >= n:
            return
        time.sleep(0.1)
    out = proc.communicate(timeout=60)[0] if proc.poll() is not None else "(still running)"
    pytest.fail(f"the run never logged {n} steps: {out}")


def records(log: Path) -> list:
    """The log's records without their timings (which differ between two runs of the same steps)."""
    return [{k: v for k, v in json.loads(line).items() if k not in TIMINGS} for line in log.read_text().splitlines()]


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def last_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, f"expected one 'error:' line, got:\n{output}"
    return lines[0]


# ----------------------------------------------------------------------------
# one writer per folder


@pytest.mark.parametrize("holder", PROGRAMS)
def test_second_run_is_refused_naming_the_holders_pid(env, holder, capsys):
    out = env / "run"
    flags = [*base(env), "--max-steps", "100000", "--eval-every", "0", "--checkpoint-every", "0"]
    proc = start(holder, [*flags, "--out-dir", out], env)
    try:
        wait_for_records(out / "log.jsonl", proc, 1)
        want = (f"error: {out} is in use by PID {proc.pid} (another training run: {NAME[holder]}); wait for it or "
                f"pick another --out-dir")
        for contender in PROGRAMS:
            for extra in ([], ["--resume", "latest"]):
                rc, output = run(contender, [*flags, "--out-dir", out, *extra], capsys)
                assert rc == 1 and last_error(output) == want, f"{contender} {extra}: {output}"
        assert (out / ".lock").read_text().splitlines()[:2] == [str(proc.pid), NAME[holder]]
        assert proc.poll() is None, "the holder was disturbed"
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, output
    assert not (out / ".lock").exists(), "a run that ends releases its folder (removes .lock)"


@pytest.mark.parametrize("program", PROGRAMS)
def test_lock_of_a_killed_run_is_taken_over(env, program, capsys):
    out = env / "run"
    flags = [*base(env), "--max-steps", "100000", "--eval-every", "0", "--checkpoint-every", "1",
             "--keep-checkpoints", "2"]
    proc = start(program, [*flags, "--out-dir", out], env)
    wait_for_records(out / "log.jsonl", proc, 2)
    proc.kill()
    proc.wait()
    assert (out / ".lock").exists(), "a killed run cannot remove its lock file"
    logged = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()
              if line.endswith("}")]
    rc, output = run(program, ["--resume", "latest", "--out-dir", out, "--max-steps", max(logged) + 1], capsys)
    assert rc == 0, output
    assert (f"note: {out}/.lock was left by PID {proc.pid} ({NAME[program]}), which ended without releasing it; "
            f"taking it over") in output
    assert not (out / ".lock").exists()
    steps = [r["step"] for r in records(out / "log.jsonl") if "loss" in r]
    assert steps == list(range(1, max(logged) + 2)), steps


def test_a_lock_file_naming_no_process_is_taken_silently(env, capsys):
    out = env / "run"
    out.mkdir()
    (out / ".lock").write_text("garbage")  # not held by anyone, names no PID
    rc, output = run("python", [*base(env), "--max-steps", "1", "--eval-every", "0", "--out-dir", out], capsys)
    assert rc == 0 and "note:" not in output, output


def test_the_lock_is_exclusive_and_released(tmp_path):
    """The core's lock from Python: a second holder in this process is refused too; release removes .lock."""
    first = _C.run.Lock(str(tmp_path / "a" / "b"), "test")
    assert first.created and (tmp_path / "a" / "b" / ".lock").read_text().startswith(f"{os.getpid()}\ntest\n")
    with pytest.raises(BlockingIOError, match=rf"is in use by PID {os.getpid()} \(another training run: test\)"):
        _C.run.Lock(str(tmp_path / "a" / "b"), "other")
    first.release(discard=True)  # a failed start: the folders it created go, being empty
    assert not (tmp_path / "a").exists()
    second = _C.run.Lock(str(tmp_path / "c"), "test")
    (tmp_path / "c" / "kept").write_text("x")
    second.release(discard=True)  # not empty: kept
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["kept"]


# ----------------------------------------------------------------------------
# logs


def test_log_rewind_rules(tmp_path):
    """The core's rewind against the stated rule, record by record."""
    log = tmp_path / "log.jsonl"
    lines = ['{"step": 1, "loss": 1.5}', '{"note": "no step"}', "not a record", '{"step": 2, "val_loss": 1.25}',
             '{"step": 3, "loss": 1.0}', '{"step": 4, "loss": {"nested": "}"}}']
    log.write_text("\n".join(lines) + "\n" + '{"step": 5, "lo')
    info = _C.run.log_rewind(str(log), 2, 10)
    assert log.read_text() == "\n".join(lines[:4]) + "\n", "kept: steps <= 2 and lines without a step, as they were"
    assert info["dropped"] == 2 and info["partial_bytes"] == len('{"step": 5, "lo') and info["kept"] == 4
    assert info["warning"] == f"{log}: trimmed a partial last line (line 7, 15 bytes: a record cut off mid-write)"
    assert info["note"] == f"{log}: cut 2 records after step 2 (the resumed run writes them again)"
    # nothing to change: the file is not rewritten at all
    inode = log.stat().st_ino
    assert _C.run.log_rewind(str(log), 2, 10)["dropped"] == 0 and log.stat().st_ino == inode
    # a whole last record without its newline is kept, with one
    log.write_text('{"step": 1, "loss": 1.5}')
    _C.run.log_rewind(str(log), 1, 10)
    assert log.read_text() == '{"step": 1, "loss": 1.5}\n'
    # records past --max-steps would be lost: refused, the log unchanged
    log.write_text('{"step": 1}\n{"step": 9}\n')
    with pytest.raises(ValueError, match="has records up to step 9, past --max-steps 5"):
        _C.run.log_rewind(str(log), 1, 5)
    assert log.read_text() == '{"step": 1}\n{"step": 9}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl"], "no temp file left"
    _C.run.log_rewind(str(tmp_path / "missing.jsonl"), 1, 5)  # nothing to rewind


@pytest.mark.parametrize("program", PROGRAMS)
def test_partial_last_log_line_is_trimmed_and_the_resumed_run_rewrites_only_its_steps(env, program, capsys):
    out, log = env / "run", env / "run" / "log.jsonl"
    flags = [*base(env), "--max-steps", "6", "--eval-every", "3", "--checkpoint-every", "3", "--keep-checkpoints", "0"]
    rc, output = run(program, [*flags, "--out-dir", out], capsys)
    assert rc == 0, output
    full = records(log)
    # the run died after its step-3 checkpoint, writing the record of step 5
    for p in checkpoint.paths(out, 6):
        p.unlink()
    lines = log.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith('{"step": 5,'))
    cut = lines[at][: len(lines[at]) // 2]
    log.write_text("".join(lines[:at]) + cut)
    rc, output = run(program, ["--resume", "latest", "--out-dir", out], capsys)
    assert rc == 0, output
    assert (f"warning: {log}: trimmed a partial last line (line {at + 1}, {len(cut)} bytes: a record cut off "
            f"mid-write)") in output
    assert f"note: {log}: cut 1 record after step 3 (the resumed run writes it again)" in output
    assert records(log) == full, "the resumed run's log differs from the run's own"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a tmpfs")
@pytest.mark.parametrize("program", PROGRAMS)
def test_full_disk_log_rewrite_leaves_the_old_log(env, program, capsys):
    mnt = env / "mnt"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], capture_output=True, text=True,
                         check=False)
    if res.returncode != 0:
        pytest.skip(f"needs root to mount a tmpfs (mount: {res.stderr.strip()})")
    try:
        out, log = mnt / "run", mnt / "run" / "log.jsonl"
        flags = [*base(env), "--max-steps", "4", "--eval-every", "0", "--checkpoint-every", "2", "--keep-checkpoints",
                 "0"]
        rc, output = run(program, [*flags, "--out-dir", out], capsys)
        assert rc == 0, output
        # the run died after its step-2 checkpoint; its log is long (history that must survive)
        for p in checkpoint.paths(out, 4):
            p.unlink()
        for p in checkpoint.paths(out, 2):
            assert p.exists()
        text = log.read_text()
        history = "".join(json.dumps({"step": 1, "note": "x" * 200}) + "\n" for _ in range(1000)) + text
        log.write_text(history)
        # fill the disk but for 2 pages: the lock file fits, the rewritten log does not
        filler = mnt / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 65536)
        except OSError:
            pass
        finally:
            os.close(fd)
        os.truncate(filler, max(0, filler.stat().st_size - 2 * 4096))
        rc, output = run(program, ["--resume", "latest", "--out-dir", out], capsys)
        assert rc == 1
        assert last_error(output) == (f"error: cannot rewrite {log}: No space left on device; the log is unchanged "
                                      f"(free some space, then resume again)")
        assert log.read_text() == history, "the old log was damaged"
        left = sorted(p.name for p in out.iterdir() if p.name != "loss.png")  # (the Python run's plot)
        assert left == ["ckpt_000002.bin", "ckpt_000002.state", "log.jsonl"], "a temp or lock file was left"
        filler.unlink()  # space again: the same command resumes
        rc, output = run(program, ["--resume", "latest", "--out-dir", out], capsys)
        assert rc == 0, output
        assert [r["step"] for r in records(log)] == [1] * 1000 + [1, 2, 3, 4]
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# ----------------------------------------------------------------------------
# resume restores the run


@pytest.mark.parametrize("program", PROGRAMS)
def test_resume_keeps_the_runs_flags_and_changes_only_safe_ones(env, program, capsys):
    out, log = env / "run", env / "run" / "log.jsonl"
    flags = [*base(env), "--max-steps", "4", "--eval-every", "2", "--checkpoint-every", "2", "--keep-checkpoints", "0"]
    rc, output = run(program, [*flags, "--out-dir", out], capsys)
    assert rc == 0, output
    before = snapshot(out)
    # complete: said so, nothing written
    rc, output = run(program, ["--resume", "latest", "--out-dir", out], capsys)
    assert rc == 0 and (f"{out} is complete: step 4 of --max-steps 4 is done; resume with a larger --max-steps to "
                        f"train further") in output, output
    assert "done:" not in output and snapshot(out) == before
    # a new run in the folder: refused
    rc, output = run(program, [*flags, "--out-dir", out], capsys)
    assert rc == 1 and last_error(output) == (
        f"error: {out} already holds a run (checkpoints up to step 4, {log}); continue it with --resume latest "
        f"--out-dir {out}, or pick another --out-dir")
    # the flags that define the run cannot change; the message names the saved value
    for given, saved, why in [(["--batch-size", "8"], "--batch-size 4", "the data position was saved with it"),
                              (["--seq-len", "16"], "--seq-len 32", "the data position was saved with it"),
                              (["--seed", "5"], "--seed 1337", "it fixes the data order and the samples"),
                              (["--no-shuffle"], "--shuffle", "it fixes the data order"),
                              (["--init-from", env / "other.bin"], f"--init-from {env / 'init.bin'}",
                               "the model comes from the checkpoint")]:
        shown = " ".join(str(g) for g in given)
        rc, output = run(program, ["--resume", "latest", "--out-dir", out, "--max-steps", "6", *given], capsys)
        assert rc == 1 and last_error(output) == (
            f"error: {shown} cannot change when resuming: the run was saved with {saved} ({why}); drop the flag to "
            f"continue the run, or start a new one in another --out-dir"), output
        assert snapshot(out) == before
    # the same value again is no change; safe flags change, and the banner says so
    rc, output = run(program, ["--resume", "latest", "--out-dir", out, "--batch-size", "4", "--max-steps", "6",
                               "--eval-every", "3"], capsys)
    assert rc == 0, output
    assert f"resumed from step 4 of {out}; --max-steps 4 -> 6, --eval-every 2 -> 3\n" in output
    assert [r["step"] for r in records(log) if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in records(log) if "val_loss" in r] == [2, 4, 6]
    # the new checkpoint keeps the changed flags: resuming it again finds the run complete
    rc, output = run(program, ["--resume", "latest", "--out-dir", out], capsys)
    assert rc == 0 and "is complete: step 6 of --max-steps 6" in output, output


# ----------------------------------------------------------------------------
# flags: one rule, one message, in both programs


@pytest.mark.parametrize("flags,message", [
    (["--grad-clip", "nan"], "--grad-clip must be a finite number >= 0 (0: no clipping), got nan"),
    (["--grad-clip", "-1"], "--grad-clip must be a finite number >= 0 (0: no clipping), got -1"),
    (["--beta1", "1"], "--beta1 must be in [0, 1), got 1"),
    (["--beta2", "nan"], "--beta2 must be in [0, 1), got nan"),
    (["--weight-decay", "inf"], "--weight-decay must be a finite number >= 0, got inf"),
    (["--keep-checkpoints", "-1"], "--keep-checkpoints must be >= 0 (0: keep all), got -1"),
    (["--eval-every", "-5"], "--eval-every must be >= 0 (0: off), got -5"),
    (["--checkpoint-every", "-1"], "--checkpoint-every must be >= 0 (0: off), got -1"),
    (["--val-steps", "0"], "--val-steps must be >= 1, got 0"),
    (["--threads", "-2"], "--threads must be >= 0 (0: all cores), got -2"),
    (["--zero-stage", "2"], "--zero-stage must be 0 or 1, got 2"),
    (["--lr-schedule", "step"], "--lr-schedule must be cosine, linear, constant or wsd, got 'step'"),
    (["--major-checkpoint-every", "-3"], "--major-checkpoint-every must be >= 0 (0: none), got -3"),
    (["--skip-update-loss-z", "-1"], "--skip-update-loss-z must be a finite number >= 0 (0: off), got -1"),
    (["--skip-update-grad-z", "nan"], "--skip-update-grad-z must be a finite number >= 0 (0: off), got nan"),
    (["--skip-update-grad-z", "inf"], "--skip-update-grad-z must be a finite number >= 0 (0: off), got inf"),
    (["--max-steps", "0"], "--max-steps must be >= 1, got 0"),
    (["--data", "nowhere/x_*.bin"], "--data: no token shard matches 'nowhere/x_*.bin'"),
])
def test_bad_flags_get_the_same_message_from_both_programs(env, capsys, flags, message):
    out = env / "new" / "run"
    for program in PROGRAMS:
        rc, output = run(program, [*base(env), *flags, "--out-dir", out], capsys)
        assert rc == 1 and last_error(output).startswith(f"error: {message}"), f"{program}: {output}"
        assert "Traceback" not in output
        assert not (env / "new").exists(), f"{program}: a failed start left {out}"


@pytest.mark.parametrize("flags", [["--max-steps", "x"], ["--max-steps", "99999999999"], ["--seed", "-1"]])
def test_unreadable_flag_values_are_one_line(env, capsys, flags):
    for program in PROGRAMS:
        cmd = [sys.executable, "-m", "llmpy.train"] if program == "python" else [find_train_gpt2()]
        res = subprocess.run([*cmd, *base(env), *flags], capture_output=True, text=True, timeout=120, cwd=env,
                             check=False)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and flags[0] in lines[0], \
            f"{program}: {res.stderr}"
