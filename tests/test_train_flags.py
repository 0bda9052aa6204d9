"""llm.c's training flags in both programs (issue 23): the warmup-stable-decay schedule, skipping an
update whose loss or gradient norm is an outlier, overfitting a single batch, major checkpoints,
model FLOPs utilisation, and --help.

Every rule lives once in the core (csrc/core/schedule.c, checkpoint_dir.c, optimizer.c); the tests
check it against formulas written out here, then check that python -m llmpy.train and train_gpt2
follow it with the same flags. Flag validation errors of the new flags are in test_runs.py's table
(the same message from both programs).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import llmpy
import test_train
from binaries import find_train_gpt2
from llmpy import _C, checkpoint
from llmpy.train import build_parser, lr_at
from test_runs import run

# test_train's fixtures: a data cache with tiny Shakespeare tokenized once, a working folder
shakespeare_cache, env = test_train.shakespeare_cache, test_train.env

PROGRAMS = ["python", "binary"]




def steps_of(log: Path) -> list:
    return [r for r in map(json.loads, log.read_text().splitlines()) if "loss" in r]


def tiny_model(path: Path, block_size: int = 64) -> Path:
    cfg = llmpy.GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=50257, block_size=block_size)
    llmpy.GPT2(cfg, seed=3).save(path)
    return path


def shakespeare(env) -> list:
    """Flags both programs take: a tiny model from a file, tiny Shakespeare, no samples or evaluations."""
    from llmpy.data import dataset_dir

    init = env / "init.bin"
    if not init.exists():
        tiny_model(init)
    shards = str(dataset_dir("tinyshakespeare") / "tiny_shakespeare_train.bin")
    return ["--init-from", init, "--data", shards, "--batch-size", "4", "--seq-len", "32", "--sample-every", "0",
            "--eval-every", "0", "--val-steps", "1"]


# ----------------------------------------------------------------------------
# the warmup-stable-decay schedule


def wsd_lr(step: int, max_steps: int, lr: float, warmup: int, min_frac: float) -> float:
    """llm.c's wsd (llmc/schedulers.h) written out: linear warmup, lr until floor(0.8 * max_steps),
    then 1 - sqrt decay to lr * min_frac at max_steps (held after it)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    start = math.floor(Fraction(4, 5) * max_steps)  # 0.8 * max_steps, exactly
    if step < start:
        return lr
    r = min(1.0, (step - start) / (max_steps - start))
    min_lr = lr * min_frac
    return min_lr + (1.0 - math.sqrt(r)) * (lr - min_lr)


def test_wsd_is_the_written_out_formula():
    cases = [(1, 0), (5, 0), (10, 2), (50, 10), (100, 0), (101, 7), (333, 50), (1000, 900), (20, 30)]
    for max_steps, warmup in cases:
        for min_frac in (0.0, 0.1, 1.0):
            for step in range(max_steps + 3):  # after max_steps: held at the end value
                got, want = lr_at(step, max_steps, 6e-4, warmup, "wsd", min_frac), wsd_lr(step, max_steps, 6e-4, warmup,
                                                                                          min_frac)
                assert got == pytest.approx(want, rel=1e-15, abs=0), \
                    f"wsd step {step}/{max_steps} warmup {warmup}: {got} vs {want}"
    # its landmarks: held at lr up to the decay's start, lr * min_frac at the end, decreasing between
    lrs = [lr_at(s, 100, 1.0, 10, "wsd", 0.0) for s in range(101)]
    assert lrs[10:80] == [1.0] * 70 and lrs[100] == 0.0 and all(a > b for a, b in zip(lrs[80:100], lrs[81:]))
    assert lrs[80] == 1.0 and lrs[95] == pytest.approx(1 - math.sqrt(0.75), rel=1e-15)


def test_wsd_decay_starts_where_llmc_starts_it():
    """llm.c computes the start as (int)(0.8f * train_num_batches) in float32: the core's integer
    rule floor(4 * max_steps / 5) is the same step for every max_steps up to 20000."""
    n = np.arange(1, 20001)
    llmc = (np.float32(0.8) * n.astype(np.float32)).astype(np.int64)
    ours = np.array([_C.wsd_decay_start(int(k)) for k in n])
    bad = np.flatnonzero(llmc != ours)
    assert bad.size == 0, f"max_steps {n[bad[:5]]}: llm.c {llmc[bad[:5]]}, ours {ours[bad[:5]]}"


@pytest.mark.parametrize("program", PROGRAMS)
def test_programs_follow_wsd(env, capsys, program):
    out = env / program
    rc, output = run(program, [*shakespeare(env), "--max-steps", "10", "--warmup-steps", "2", "--lr", "1e-3",
                               "--lr-schedule", "wsd", "--min-lr-frac", "0", "--checkpoint-every", "0",
                               "--out-dir", out], capsys)
    assert rc == 0, output
    got = [r["lr"] for r in steps_of(out / "log.jsonl")]
    want = [wsd_lr(s, 10, 1e-3, 2, 0.0) for s in range(10)]
    assert got == pytest.approx(want, rel=1e-15, abs=0)


# ----------------------------------------------------------------------------
# outlier detection: the window's z-score


def test_outlier_window_is_the_z_score_over_the_window():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(3.0, 0.5, 300), [40.0], rng.normal(3.0, 0.5, 50)])
    w, seen = _C.OutlierWindow(), []
    W = _C.OUTLIER_WINDOW
    for i, x in enumerate(values):
        z = w.update(float(x))
        seen.append(float(x))
        if i < W:  # not scored until the window was full before x came
            assert math.isnan(z), f"value {i}: {z}"
            continue
        window = np.array(seen[-W:])  # x included, as in llm.c
        want = (x - window.mean()) / window.std()
        assert z == pytest.approx(want, rel=1e-9, abs=1e-12), f"value {i}: {z} vs {want}"
    assert w.values() == seen[-W:]
    z_spike = _C.OutlierWindow([float(v) for v in values[:300]]).update(40.0)
    assert z_spike > 10, z_spike  # a lone outlier among 127 others scores up to sqrt(127) = 11.3
    # a window refilled with the values of one that wrapped around scores every later value as the
    # original, bit for bit (what a resumed run needs)
    b = _C.OutlierWindow()
    for v in values[:200]:
        b.update(float(v))
    a = _C.OutlierWindow(b.values())
    assert a.values() == b.values() == [float(v) for v in values[200 - W:200]]
    for v in values[200:]:
        assert a.update(float(v)) == b.update(float(v))
    # constant values: z 0; non-finite values do not join the window
    c = _C.OutlierWindow([1.0] * W)
    assert c.update(1.0) == 0.0
    assert c.update(math.inf) == math.inf and math.isnan(c.update(math.nan)) and c.count == W + 1


def test_outlier_skip_rule():
    nan = math.nan
    assert _C.outlier_skip(6.0, 0.0, 5.0, 5.0) == "loss"
    assert _C.outlier_skip(6.0, 9.0, 5.0, 5.0) == "loss"  # the loss first, as in llm.c
    assert _C.outlier_skip(1.0, 9.0, 5.0, 5.0) == "grad_norm"
    assert _C.outlier_skip(6.0, 9.0, 0.0, 0.0) is None  # 0: off
    assert _C.outlier_skip(5.0, 5.0, 5.0, 5.0) is None  # above, not at
    assert _C.outlier_skip(nan, nan, 5.0, 5.0) is None  # no score yet: never skipped
    assert _C.outlier_skip(math.inf, 0.0, 5.0, 0.0) == "loss"


# ----------------------------------------------------------------------------
# outlier detection in the loop: a spike injected through the data

T_SPIKE, B_SPIKE, SPIKE_STEP = 16, 2, 200


def spike_data(env) -> list:
    """Shards whose batches repeat one short pattern (a tiny model learns it within a few dozen steps),
    except the batch of step SPIKE_STEP, which is random tokens: its loss and gradient norm are far
    above the 128 steps before it. No shuffling: batch k is tokens [k*B*T, (k+1)*B*T + 1)."""
    from llmpy.data import write_shard

    per_batch = B_SPIKE * T_SPIKE
    tokens = np.tile(np.array([464, 3290, 11, 290], dtype=np.int64), (SPIKE_STEP + 10) * per_batch // 4 + 1)
    at = (SPIKE_STEP - 1) * per_batch + 1  # token `at - 1` is also the previous batch's last target
    tokens[at:at + per_batch] = np.random.default_rng(1).integers(0, 50257, per_batch)
    write_shard(env / "spike_train.bin", tokens)
    write_shard(env / "spike_val.bin", tokens[:4 * per_batch + 1])
    init = env / "spike_init.bin"
    if not init.exists():
        tiny_model(init, block_size=T_SPIKE)
    return ["--init-from", init, "--data", env / "spike_train.bin", "--batch-size", B_SPIKE, "--seq-len", T_SPIKE,
            "--no-shuffle", "--lr", "1e-2", "--warmup-steps", "0", "--lr-schedule", "constant", "--eval-every", "0",
            "--val-steps", "1", "--sample-every", "0", "--keep-checkpoints", "0"]


def params(out: Path, step: int) -> dict:
    model, _ = checkpoint.load(*checkpoint.paths(out, step))
    return model.parameters(), model.steps


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("which", ["loss", "grad_norm"])
def test_spike_skips_the_update(env, capsys, program, which):
    flag = "--skip-update-loss-z" if which == "loss" else "--skip-update-grad-z"
    out = env / "run"
    rc, output = run(program, [*spike_data(env), "--max-steps", SPIKE_STEP, "--checkpoint-every", SPIKE_STEP - 1,
                               flag, "5", "--out-dir", out], capsys)
    assert rc == 0, output
    log = steps_of(out / "log.jsonl")
    assert [r["step"] for r in log if r["skipped"]] == [SPIKE_STEP], [(r["step"], r["skipped"]) for r in log
                                                                      if r["skipped"]]
    spike = log[-1]
    assert spike["skipped"] == which and spike[f"{which}_z"] > 5, spike
    assert all(r["loss_z"] is None for r in log[:128]) and log[128]["loss_z"] is not None
    assert f"step {SPIKE_STEP:5d} | update skipped: the {which.replace('_', ' ')}'s z-score" in output
    before, t_before = params(out, SPIKE_STEP - 1)
    after, t_after = params(out, SPIKE_STEP)
    for name in before:  # the step was computed, its update not applied
        assert np.array_equal(before[name], after[name]), f"{name} changed at the skipped step"
    assert t_before == t_after == SPIKE_STEP - 1, "a skipped update must not advance AdamW's step"


def test_without_the_flag_the_spike_updates(env, capsys):
    """The control: the same run without --skip-update-*-z applies the spike's update."""
    out = env / "run"
    rc, output = run("python", [*spike_data(env), "--max-steps", SPIKE_STEP, "--checkpoint-every", SPIKE_STEP - 1,
                                "--out-dir", out], capsys)
    assert rc == 0, output
    log = steps_of(out / "log.jsonl")
    assert "skipped" not in log[-1] and "loss_z" not in log[-1]  # the default log is today's
    before, _ = params(out, SPIKE_STEP - 1)
    after, t_after = params(out, SPIKE_STEP)
    assert t_after == SPIKE_STEP and not np.array_equal(before["wte"], after["wte"])


@pytest.mark.parametrize("program", PROGRAMS)
def test_resume_keeps_the_outlier_windows(env, capsys, program):
    """A run stopped at step 150 and resumed scores and skips the spike as the uninterrupted run: the
    windows are in the checkpoint (refilled from scratch, step 200's loss would have no score)."""
    flags = [*spike_data(env), "--checkpoint-every", "50", "--skip-update-loss-z", "5"]
    rc, output = run(program, [*flags, "--max-steps", SPIKE_STEP, "--out-dir", env / "straight"], capsys)
    assert rc == 0, output
    rc, output = run(program, [*flags, "--max-steps", 150, "--out-dir", env / "split"], capsys)
    assert rc == 0, output
    rc, output = run(program, ["--resume", "latest", "--out-dir", env / "split", "--max-steps", SPIKE_STEP], capsys)
    assert rc == 0 and "resumed from step 150" in output, output
    keys = ("step", "loss", "lr", "grad_norm", "loss_z", "grad_norm_z", "skipped")
    straight = [[r[k] for k in keys] for r in steps_of(env / "straight" / "log.jsonl")]
    split = [[r[k] for k in keys] for r in steps_of(env / "split" / "log.jsonl")]
    assert split == straight
    assert straight[-1][-1] == "loss"
    a, _ = params(env / "straight", SPIKE_STEP)
    b, _ = params(env / "split", SPIKE_STEP)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_programs_agree_on_the_spike(env, capsys):
    flags = [*spike_data(env), "--max-steps", SPIKE_STEP, "--checkpoint-every", "0", "--skip-update-grad-z", "4"]
    logs = {}
    for program in PROGRAMS:
        rc, output = run(program, [*flags, "--out-dir", env / program], capsys)
        assert rc == 0, output
        logs[program] = steps_of(env / program / "log.jsonl")
    py, binary = logs["python"], logs["binary"]
    assert [sorted(r) for r in py] == [sorted(r) for r in binary]  # one schema
    assert [r["skipped"] for r in py] == [r["skipped"] for r in binary]
    for a, b in zip(py, binary):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-4), a["step"]


# ----------------------------------------------------------------------------
# overfitting a single batch


@pytest.mark.parametrize("program", PROGRAMS)
def test_overfit_single_batch(env, capsys, program):
    # lr 0: nothing changes but the batch, so equal losses mean the same batch every step
    rc, output = run(program, [*shakespeare(env), "--total-batch-size", "256", "--max-steps", "4", "--lr", "0",
                               "--checkpoint-every", "0", "--overfit-single-batch", "--out-dir", env / "frozen"],
                     capsys)
    assert rc == 0 and "overfitting a single batch" in output, output
    losses = [r["loss"] for r in steps_of(env / "frozen" / "log.jsonl")]
    assert losses == [losses[0]] * 4, losses
    rc, output = run(program, [*shakespeare(env), "--total-batch-size", "256", "--max-steps", "4", "--lr", "0",
                               "--checkpoint-every", "0", "--out-dir", env / "normal"], capsys)
    assert rc == 0, output
    assert len({r["loss"] for r in steps_of(env / "normal" / "log.jsonl")}) == 4  # the control: new batches
    # with a learning rate the batch is learnt by heart
    rc, output = run(program, [*shakespeare(env), "--max-steps", "40", "--lr", "1e-2", "--warmup-steps", "0",
                               "--lr-schedule", "constant", "--checkpoint-every", "20", "--overfit-single-batch",
                               "--out-dir", env / "learn"], capsys)
    assert rc == 0, output
    losses = [r["loss"] for r in steps_of(env / "learn" / "log.jsonl")]
    assert losses[0] > 10.0 and losses[-1] < 1.0, losses
    # the flag defines the run: a resumed run keeps it
    rc, output = run(program, ["--resume", "latest", "--out-dir", env / "learn", "--max-steps", "41",
                               "--no-overfit-single-batch"], capsys)
    assert rc == 1 and ("--no-overfit-single-batch cannot change when resuming: the run was saved with "
                        "--overfit-single-batch (it fixes the data every step sees)") in output, output


# ----------------------------------------------------------------------------
# major checkpoints


def prune_oracle(existing: list, step: int, keep: int, major: int) -> list:
    """The retention rule written out: of the steps <= step, the newest `keep` and the multiples of
    `major` stay; later steps are not touched."""
    mine = sorted((s for s in existing if s <= step), reverse=True)
    stay = set(mine[:keep] if keep else mine) | {s for s in mine if major and s % major == 0}
    return sorted(stay | {s for s in existing if s > step})


def test_prune_rule(tmp_path):
    rng = np.random.default_rng(0)
    for trial in range(200):
        d = tmp_path / f"t{trial}"
        d.mkdir()
        existing = sorted(set(rng.integers(1, 60, rng.integers(0, 15)).tolist()))
        for s in existing:
            for p in checkpoint.paths(d, s):
                p.write_bytes(b"x")
        (d / "ckpt_000007.bin").write_bytes(b"x")  # a .bin without its .state: not a checkpoint, left alone
        step, keep, major = int(rng.integers(1, 60)), int(rng.integers(0, 5)), int(rng.integers(0, 12))
        removed = _C.checkpoint_prune(str(d), step, keep, major)
        want = prune_oracle(existing, step, keep, major)
        assert checkpoint.steps(d) == want, (existing, step, keep, major)
        assert removed == len(existing) - len(want)
        assert all(p.exists() for s in want for p in checkpoint.paths(d, s))
        assert (d / "ckpt_000007.bin").exists() or 7 in existing


@pytest.mark.parametrize("program", PROGRAMS)
def test_major_checkpoints_survive_retention(env, capsys, program):
    out = env / "run"
    rc, output = run(program, [*shakespeare(env), "--max-steps", "15", "--checkpoint-every", "2",
                               "--keep-checkpoints", "2", "--major-checkpoint-every", "6", "--out-dir", out], capsys)
    assert rc == 0, output
    # written: 2, 4, ..., 14 and 15 (the last); kept: the newest two and the multiples of 6
    assert checkpoint.steps(out) == prune_oracle([2, 4, 6, 8, 10, 12, 14, 15], 15, 2, 6) == [6, 12, 14, 15]
    for s in (6, 12):
        _, extra = checkpoint.load(*checkpoint.paths(out, s))
        assert extra["step"] == s


# ----------------------------------------------------------------------------
# model FLOPs utilisation


def flops_per_token(L: int, C: int, V: int, T: int) -> int:
    """dev/bench/cpu_step.py's count: N = every parameter but wpe, wte unpadded; 6 N + 12 L T C."""
    n = V * C + L * (12 * C * C + 13 * C) + 2 * C
    return 6 * n + 12 * L * T * C


def test_mfu_arithmetic():
    for L, H, C, V, maxT, T in [(12, 12, 768, 50257, 1024, 1024), (1, 2, 32, 50257, 64, 32), (6, 6, 384, 1000, 256, 7)]:
        got = _C.flops_per_token(L, H, C, V, maxT, T)
        assert got == flops_per_token(L, C, V, T), (L, C, V, T)
    # GPT-2 124M at T=1024: 6 * 123,653,376 (124.4M parameters less wpe's 0.79M) + 12 * 12 * 1024 * 768
    assert _C.flops_per_token(12, 12, 768, 50257, 1024, 1024) == 855_166_464
    with pytest.raises(ValueError):
        _C.flops_per_token(1, 2, 32, 50257, 64, 65)  # T beyond the block size
    # peaks (dense, FLOP/s): bf16 on the tensor cores, fp32 on the CUDA cores (our fp32 path)
    assert _C.peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989.4e12
    assert _C.peak_flops("NVIDIA H100 PCIe", "bf16") == 756e12
    assert _C.peak_flops("NVIDIA H200", "bf16") == 989.4e12
    assert _C.peak_flops("NVIDIA A100-SXM4-80GB", "bf16") == 312e12
    assert _C.peak_flops("NVIDIA A100-SXM4-80GB", "fp32") == 19.5e12
    assert _C.peak_flops("NVIDIA GeForce GTX 1080", "bf16") == 0.0 and _C.peak_flops("cpu", "fp32") == 0.0
    # a 124M step of 0.5M tokens in 1.5 s on an H100 SXM: 4.48e14 FLOPs / 1.5 s / 9.894e14 FLOP/s = 30.2%
    tokens, seconds, peak = 524288, 1.5, 989.4e12
    f = flops_per_token(12, 768, 50257, 1024)
    assert _C.mfu(f, tokens, seconds, peak) == pytest.approx(f * tokens / seconds / peak, rel=1e-15)
    assert _C.mfu(f, tokens, seconds, peak) == pytest.approx(0.30210, abs=1e-5)
    assert math.isnan(_C.mfu(f, tokens, seconds, 0.0))  # no peak: no MFU


@pytest.mark.parametrize("program", PROGRAMS)
def test_mfu_on_the_cpu_is_null_in_the_log(env, capsys, program):
    out = env / "run"
    rc, output = run(program, [*shakespeare(env), "--max-steps", "2", "--checkpoint-every", "0", "--out-dir", out],
                     capsys)
    assert rc == 0, output
    assert all(r["mfu"] is None for r in steps_of(out / "log.jsonl"))
    assert "MFU" not in output


@pytest.mark.skipif(not llmpy.build_info()["cuda"], reason="needs the CUDA build of llmpy and a GPU")
def test_mfu_on_a_known_gpu(env, capsys):
    from llmpy import cuda

    if not cuda.available():
        pytest.skip(f"no usable GPU: {cuda.status()}")
    name = cuda.module("cuda").device_name()
    peak = _C.peak_flops(name, "bf16")
    if not peak:
        pytest.skip(f"{name} is not in the core's table of peaks")
    out = env / "run"
    rc, output = run("python", [*shakespeare(env), "--device", "cuda", "--max-steps", "3", "--checkpoint-every", "0",
                                "--out-dir", out], capsys)
    assert rc == 0, output
    log = steps_of(out / "log.jsonl")
    f = flops_per_token(1, 32, 50257, 32)
    for r in log:
        want = f * 4 * 32 / (r["ms"] / 1000) / peak
        assert r["mfu"] == pytest.approx(want, rel=1e-3), r
    assert re.search(r"\| MFU \d+\.\d%", output), output


# ----------------------------------------------------------------------------
# --help


def python_help_entries() -> dict:
    """flag -> its help as --help prints it (the flag's default filled in)."""
    parser = build_parser()
    fmt = parser._get_formatter()
    out = {}
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            out[action.option_strings[0]] = fmt._expand_help(action) if action.help else ""
    return out


def test_python_help_states_every_default_once():
    entries = python_help_entries()
    for flag, text in entries.items():
        assert text, f"{flag} has no help"
        assert text.count("default") == 1, f"{flag}: {text}"
        assert "(default: None)" not in text, f"{flag}: {text}"
    for flag in ("--lr-schedule", "--beta1", "--beta2"):
        assert "(default: " in entries[flag], entries[flag]
    assert "(default: None)" not in build_parser().format_help()


def binary_help() -> str:
    res = subprocess.run([find_train_gpt2(), "--help"], capture_output=True, text=True, timeout=60, check=True)
    return res.stdout


def test_binary_help_lists_every_flag_once_with_its_default():
    text = binary_help()
    entries = re.split(r"\n(?=  --)", text)  # one entry per flag (with its continuation lines)
    flags = {}
    for entry in entries[1:]:
        flag = entry.split()[0].rstrip(",")
        assert flag not in flags, f"{flag} twice"
        flags[flag] = " ".join(entry.split())
    for flag, entry in flags.items():  # a required flag has no default
        assert entry.count("default") == 1 or (flag in ("--init-from", "--model", "--data") and "required" in entry), \
            f"{flag}: {entry}"
    python = set(python_help_entries())
    only_python = {"--n-layer", "--n-head", "--n-embd", "--hellaswag-data", "--hellaswag-limit", "--json"}
    only_binary = {"--tokenizer", "--hellaswag"}
    assert set(flags) - only_binary == python - only_python, set(flags) ^ python


def test_new_flags_name_llmc_in_both_helps():
    py, binary = python_help_entries(), binary_help()
    for flag, llmc in [("--lr-schedule", "-k"), ("--skip-update-loss-z", "-sl"), ("--skip-update-grad-z", "-sg"),
                       ("--overfit-single-batch", "-a 1"), ("--keep-checkpoints", "-nk"),
                       ("--major-checkpoint-every", "-nm")]:
        assert f"[llm.c: {llmc}]" in py[flag], py[flag]
        entry = binary[binary.index(f"  {flag}"):]
        entry = entry[:entry.index("]") + 1]
        assert f"[llm.c: {llmc}]" in " ".join(entry.split()), entry
    assert "wsd" in py["--lr-schedule"] and "wsd" in binary
