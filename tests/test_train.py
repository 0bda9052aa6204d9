"""The training CLI: schema of the log, checkpoints, exact resume, oracle parity, signals, NaN."""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import llmpy
from llmpy import checkpoint
from llmpy.train import main

from data_helpers import SHAKESPEARE, TIKTOKEN_CACHE
from binaries import find_train_gpt2

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--batch-size", "4", "--seq-len", "32"]


@pytest.fixture(scope="session")
def shakespeare_cache(tmp_path_factory):
    """A data cache with tiny Shakespeare tokenized once for the whole session."""
    root = tmp_path_factory.mktemp("cache")
    (root / "tinyshakespeare").mkdir()
    (root / "tinyshakespeare" / "input.txt").symlink_to(SHAKESPEARE)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(TIKTOKEN_CACHE)
    from llmpy.data import tinyshakespeare

    mp = pytest.MonkeyPatch()
    mp.setenv("LLMPY_DATA_DIR", str(root))
    tinyshakespeare.prepare(progress=False)
    mp.undo()
    return root


@pytest.fixture
def env(shakespeare_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("LLMPY_DATA_DIR", str(shakespeare_cache))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))
    monkeypatch.setenv("LLMPY_PROGRESS", "0")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def read_log(path) -> list:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def train_losses(path) -> list:
    return [r["loss"] for r in read_log(path) if "loss" in r]


def test_cli_trains_logs_and_saves(env, capsys):
    out = env / "run"
    rc = main([*TINY, "--max-steps", "30", "--lr", "3e-3", "--warmup-steps", "3", "--eval-every", "10",
               "--sample-every", "15", "--sample-tokens", "8", "--checkpoint-every", "10", "--keep-checkpoints", "2",
               "--out-dir", str(out), "--json"])
    assert rc == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # --json: stdout is only the summary
    assert "val loss" in captured.err and "sample at step 15" in captured.err
    log = read_log(out / "log.jsonl")
    steps = [r for r in log if "loss" in r]
    evals = [r for r in log if "val_loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 31))
    for r in steps:
        assert set(r) == {"step", "loss", "lr", "grad_norm", "ms", "tokens_per_s"}
        assert all(math.isfinite(v) for v in r.values())
    assert [r["step"] for r in evals] == [10, 20, 30] and all(set(r) == {"step", "val_loss"} for r in evals)
    losses = [r["loss"] for r in steps]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5, losses
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    assert checkpoint.steps(out) == [20, 30]  # keep 2
    assert summary["steps"] == 30 and summary["val_loss"] == pytest.approx(evals[-1]["val_loss"])
    assert Path(summary["checkpoint"]).exists() and Path(summary["plot"]).stat().st_size > 0
    m, extra = checkpoint.load(*checkpoint.paths(out, 30))
    assert extra["step"] == 30 and m.steps == 30


def test_resume_latest_alone_is_bit_identical(env):
    """``--resume latest`` with no other flag continues the run with its own schedule, data order,
    accumulation and sampling: the log's lr and loss equal the uninterrupted run's exactly."""
    out = env / "run"
    flags = [*TINY, "--max-steps", "8", "--lr", "3e-3", "--warmup-steps", "2", "--lr-schedule", "linear",
             "--min-lr-frac", "0.2", "--total-batch-size", "256", "--shuffle", "--seed", "5",
             "--eval-every", "0", "--sample-every", "2", "--sample-tokens", "4", "--checkpoint-every", "4",
             "--out-dir", str(out)]
    assert main(flags) == 0  # 2 micro-batches per step, shuffled data
    straight = [(r["lr"], r["loss"]) for r in read_log(out / "log.jsonl")]
    # pretend the run died after its step-4 checkpoint
    for p in checkpoint.paths(out, 8):
        p.unlink()
    assert main(["--resume", "latest", "--out-dir", str(out)]) == 0
    resumed = [(r["lr"], r["loss"]) for r in read_log(out / "log.jsonl")]
    assert len(straight) == len(resumed) == 8
    assert resumed == straight, "the resumed run's (lr, loss) per step differ from the uninterrupted run's"


def cosine_lr(step, max_steps, lr, warmup, min_frac):
    """The schedule written out independently: linear warmup, cosine to lr*min_frac."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / (max_steps - warmup)
    return lr * min_frac + 0.5 * lr * (1 - min_frac) * (1 + math.cos(math.pi * t))


def linear_lr(step, max_steps, lr, warmup, min_frac):
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr - (lr - lr * min_frac) * min(1.0, (step - warmup) / (max_steps - warmup))


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
def test_schedule_is_the_written_out_formula(schedule):
    """The core's schedule (llm_lr_at, which train_gpt2 uses too) against the formulas above."""
    from llmpy.train import lr_at

    oracle = {"cosine": cosine_lr, "linear": linear_lr,
              "constant": lambda s, n, lr, w, f: lr * (s + 1) / w if s < w else lr}[schedule]
    for max_steps, warmup in [(50, 10), (7, 0), (30, 1)]:
        for step in range(max_steps):
            got, want = lr_at(step, max_steps, 3e-3, warmup, schedule, 0.1), oracle(step, max_steps, 3e-3, warmup, 0.1)
            assert got == pytest.approx(want, rel=1e-15, abs=0), f"{schedule} step {step}/{max_steps}: {got} vs {want}"
    with pytest.raises(ValueError, match="--lr-schedule must be cosine, linear or constant, got 'wsd'"):
        lr_at(0, 10, 1e-3, 1, "wsd", 0.1)


def test_training_matches_oracle(env, oracle):
    steps, lr, wd, clip, warmup = 20, 3e-3, 0.1, 1.0, 5
    torch.manual_seed(0)
    ref = oracle.GPT(oracle.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=50257, block_size=32))
    oracle.write_model(ref, env / "init.bin")
    out = env / "run"
    assert main(["--init-from", str(env / "init.bin"), "--batch-size", "4", "--seq-len", "32", "--no-shuffle",
                 "--max-steps", str(steps), "--lr", str(lr), "--warmup-steps", str(warmup), "--weight-decay",
                 str(wd), "--grad-clip", str(clip), "--eval-every", "0", "--sample-every", "0",
                 "--checkpoint-every", "0", "--out-dir", str(out)]) == 0
    ours = train_losses(out / "log.jsonl")

    ref = copy.deepcopy(ref).double()
    opt = oracle.configure_adamw(ref, lr, (0.9, 0.95), 1e-8, wd, fused=False)
    from llmpy.data import DataLoader, dataset_dir

    loader = DataLoader(dataset_dir("tinyshakespeare") / "tiny_shakespeare_train.bin", 4, 32)
    for step in range(steps):
        x, y = loader.next_batch()
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, lr, warmup, 0.1)
        opt.zero_grad()
        _, loss = ref(torch.from_numpy(x).long(), torch.from_numpy(y).long())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), clip)
        opt.step()
        want = float(loss.detach())
        assert abs(ours[step] - want) / want <= 1e-4, f"step {step + 1}: llmpy {ours[step]} vs oracle {want}"


def run_cli(args, env_dir, **kw):
    env = dict(os.environ, LLMPY_PROGRESS="0")
    return subprocess.Popen([sys.executable, "-m", "llmpy.train", *args], cwd=env_dir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def test_sigterm_saves_a_loadable_checkpoint(env):
    out = env / "run"
    proc = run_cli([*TINY, "--max-steps", "100000", "--eval-every", "0", "--sample-every", "0",
                    "--checkpoint-every", "0", "--out-dir", str(out)], env)
    log = out / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    assert "SIGTERM: saved a checkpoint" in output
    step = checkpoint.steps(out)[-1]
    model, extra = checkpoint.load(*checkpoint.paths(out, step))
    assert extra["step"] == step == len(train_losses(log))


def test_damaged_checkpoint_falls_back(env, capsys):
    out = env / "run"
    flags = [*TINY, "--max-steps", "8", "--eval-every", "0", "--sample-every", "0", "--checkpoint-every", "4",
             "--out-dir", str(out)]
    assert main(flags) == 0
    model_path, _ = checkpoint.paths(out, 8)
    model_path.write_bytes(model_path.read_bytes()[:5000])  # truncated
    with pytest.raises(ValueError, match="truncated"):
        checkpoint.load(*checkpoint.paths(out, 8))
    capsys.readouterr()
    assert main([*flags, "--max-steps", "10", "--resume", "latest"]) == 0
    err = capsys.readouterr().out
    assert "skipping checkpoint of step 8" in err and "resumed from step 4" in err
    assert [r["step"] for r in read_log(out / "log.jsonl") if "loss" in r] == list(range(1, 11))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(env, capsys):
    out = env / "run"
    rc = main([*TINY, "--max-steps", "50", "--lr", "1e9", "--warmup-steps", "0", "--grad-clip", "0",
               "--eval-every", "0", "--sample-every", "0", "--checkpoint-every", "1", "--keep-checkpoints", "0",
               "--out-dir", str(out)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "loss is nan" in err or "loss is inf" in err
    last = checkpoint.steps(out)[-1]
    model, extra = checkpoint.load(*checkpoint.paths(out, last))
    assert last >= 1 and all(np.isfinite(p).all() for p in model.parameters().values())
    assert "loss is" in err and str(out) in err


@pytest.mark.parametrize(
    "flags,match",
    [
        (["--total-batch-size", "100"], "not a multiple"),
        (["--min-lr-frac", "-0.5"], "--min-lr-frac must be in [0, 1], got -0.5"),
        (["--warmup-steps", "-1"], "--warmup-steps must be >= 0"),
        (["--lr", "nan"], "--lr must be a finite number"),
        (["--seq-len", "64", "--init-from", "small.bin"], "exceeds the model's block size 32"),
        (["--precision", "bf16"], "CUDA"),
        (["--resume", "nope.bin"], "no checkpoint"),
        (["--hellaswag-every", "5", "--hellaswag-data", "missing.jsonl"], "HellaSwag data missing.jsonl"),
    ],
)
def test_bad_flags(env, capsys, flags, match):
    cfg = llmpy.GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=50257, block_size=32)
    llmpy.GPT2(cfg).save(env / "small.bin")
    rc = main([*TINY, "--max-steps", "1", "--out-dir", str(env / "r"), *flags])
    assert rc == 1
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1, err  # one "error: ..." line
    assert not (env / "r").exists(), "a failed start left its run folder"



def test_binary_matches_python_cli(env):
    from llmpy.data import dataset_dir
    from llmpy.tokenizer.llmc import write_llmc_tokenizer

    cfg = llmpy.GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=50257, block_size=64)
    llmpy.GPT2(cfg, seed=3).save(env / "init.bin")
    write_llmc_tokenizer(env / "tok.bin")
    flags = ["--init-from", str(env / "init.bin"), "--batch-size", "4", "--seq-len", "32", "--max-steps", "8",
             "--total-batch-size", "256", "--eval-every", "4", "--sample-every", "4", "--sample-tokens", "8",
             "--checkpoint-every", "4"]
    shards = str(dataset_dir("tinyshakespeare") / "tiny_shakespeare_train.bin")
    res = subprocess.run([find_train_gpt2(), *flags, "--data", shards, "--tokenizer", str(env / "tok.bin"),
                          "--out-dir", str(env / "bin")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "--- sample:" in res.stdout
    assert main([*flags, "--out-dir", str(env / "py")]) == 0
    ours, theirs = read_log(env / "bin" / "log.jsonl"), read_log(env / "py" / "log.jsonl")
    assert [sorted(r) for r in ours] == [sorted(r) for r in theirs]  # same records, same schema
    for a, b in zip(ours, theirs):
        key = "loss" if "loss" in a else "val_loss"
        assert abs(a[key] - b[key]) <= 1e-5 * abs(b[key]), f"step {a['step']} {key}: binary {a[key]} vs {b[key]}"
    # its checkpoints load in Python, and it resumes its own run
    m, extra = checkpoint.load(*checkpoint.paths(env / "bin", 8))
    assert m.steps == 8 and extra["step"] == 8
    for p in checkpoint.paths(env / "bin", 8):
        p.unlink()
    # the run's flags come from its checkpoint
    res = subprocess.run([find_train_gpt2(), "--out-dir", str(env / "bin"), "--resume", "latest"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"resumed from step 4 of {env / 'bin'}\n" in res.stdout, res.stdout
    assert [(r.get("lr"), r.get("loss")) for r in read_log(env / "bin" / "log.jsonl")] == \
        [(r.get("lr"), r.get("loss")) for r in ours]


def test_binary_reports_bad_input(env):
    res = subprocess.run([find_train_gpt2(), "--init-from", str(env / "missing.bin"), "--data", "x_train.bin"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "cannot open model file" in res.stderr
    res = subprocess.run([find_train_gpt2(), "--bogus", "1"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "unknown option --bogus" in res.stderr
