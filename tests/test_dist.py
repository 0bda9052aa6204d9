"""Data parallelism (csrc/dist/dist.c, llmpy.dist): several ranks under mpirun against one process.

The oracle of every multi-rank test is llmpy itself in one process: 2 ranks with micro-batch B
must reproduce 1 rank accumulating the same 2*B sequences (gradients and parameters within 1e-6
relative, the same logged losses), with and without ZeRO-1; a ZeRO-1 checkpoint must resume
bit for bit; a failing or killed rank must end the job with a non-zero exit code within 60 s.
The multi-rank tests start Open MPI's ``mpirun`` (``--oversubscribe``, ``--allow-run-as-root``
as root) and skip only when MPI is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import llmpy
from llmpy import GPT2, GPT2Config, dist

from conftest import assert_close, rel_err
from data_helpers import TIKTOKEN_CACHE
from binaries import find_train_gpt2

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "dist_worker.py"
TOL = 1e-6  # relative (norm-wise), gradients and parameters


def _mpi_missing() -> str:
    if shutil.which("mpirun") is None:
        return "MPI not available (mpirun/libmpi missing): mpirun is not installed"
    if not llmpy.build_info()["mpi"]:
        return "MPI not available (mpirun/libmpi missing): llmpy was built without MPI"
    return ""


needs_mpi = pytest.mark.skipif(bool(_mpi_missing()), reason=_mpi_missing() or "MPI available")


def mpirun(n: int) -> list:
    cmd = ["mpirun", "-np", str(n), "--oversubscribe", "--bind-to", "none"]
    if os.geteuid() == 0:
        cmd.insert(1, "--allow-run-as-root")
    return cmd


@pytest.fixture
def env(tmp_path, monkeypatch):
    """One thread per rank (2 ranks share the 2 cores), no progress bars, the shared tiktoken cache."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("LLMPY_PROGRESS", "0")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(cmd: list, timeout: float = 180) -> subprocess.CompletedProcess:
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    return res


def worker(out: Path, ranks: int, *flags) -> list:
    """Runs tests/dist_worker.py on `ranks` ranks (1: plain python, no mpirun); returns each rank's npz."""
    out.mkdir(parents=True, exist_ok=True)
    prefix = mpirun(ranks) if ranks > 1 else []
    run([*prefix, sys.executable, WORKER, "--out", out, *flags])
    return [dict(np.load(out / f"rank{r}.npz")) for r in range(ranks)]


def mean_grads(ranks: list) -> np.ndarray:
    """The averaged gradients: each rank contributes the slice it holds the mean of (ZeRO-1: its shard)."""
    g = ranks[0]["grads"].copy()
    for r in ranks[1:]:
        g[r["mean_grads"]] = r["grads"][r["mean_grads"]]
    assert np.logical_or.reduce([r["mean_grads"] for r in ranks]).all()
    return g


def state_moments(path: Path) -> tuple:
    """(m, v) from a training-state file (csrc/core/formats.h: a 256 x int32 header whose ints 4-5 hold
    the element count and 6 the moments flag, then m and v as float32)."""
    header = np.fromfile(path, dtype="<i4", count=256)
    assert header[6] == 1, f"{path} holds no AdamW moments"
    n = int(header[4]) | (int(header[5]) << 32)
    data = np.fromfile(path, dtype="<f4", offset=1024, count=2 * n)
    return data[:n], data[n:]


# ----------------------------------------------------------------------------
# one process: llmpy.dist is the identity and distribute() changes nothing


def test_single_process_is_rank_0_of_1():
    assert (dist.rank, dist.world_size, dist.local_rank, dist.is_main) == (0, 1, 0, True)
    assert dist.all_reduce_mean(2.5) == 2.5
    assert dist.all_reduce_sum([1.0, 2.0]) == [1.0, 2.0]
    assert dist.broadcast_object({"a": [1, 2]}) == {"a": [1, 2]}
    dist.barrier()
    with pytest.raises(AttributeError):
        dist.no_such_thing  # noqa: B018


@pytest.mark.parametrize("zero_stage", [0, 1])
def test_distribute_on_one_rank_matches_plain_training(tmp_path, zero_stage):
    cfg = GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=64, block_size=16)
    plain, dp = GPT2(cfg, seed=5), GPT2(cfg, seed=5).distribute(zero_stage=zero_stage)
    assert dp.zero_stage == zero_stage and plain.zero_stage is None
    data = np.random.default_rng(0).integers(0, 64, size=(4, 3, 17))
    for batch in data:
        for m in (plain, dp):
            m.zero_grad()
            m.forward(batch[:, :-1].copy(), batch[:, 1:].copy())
            m.backward()
        assert dp.step(1e-2, weight_decay=0.1, grad_clip=1.0) == plain.step(1e-2, weight_decay=0.1, grad_clip=1.0)
    for name, p in plain.parameters().items():
        np.testing.assert_array_equal(dp.parameters()[name], p, err_msg=name)
    # the state file of a ZeRO-1 model holds the full moments: it equals the plain model's
    plain.save_state(tmp_path / "plain.state", {"k": 1})
    dp.save_state(tmp_path / "dp.state", {"k": 1})
    assert (tmp_path / "plain.state").read_bytes() == (tmp_path / "dp.state").read_bytes()
    # and a model loading it then steps as the plain model does
    dp2 = GPT2(cfg, seed=5)
    for name, p in dp.parameters().items():
        dp2.parameters()[name][...] = p
    assert dp2.load_state(tmp_path / "dp.state") == {"k": 1}
    dp2.distribute(zero_stage=zero_stage)
    for m in (plain, dp2):
        m.zero_grad()
        m.forward(data[0][:, :-1].copy(), data[0][:, 1:].copy())
        m.backward()
        m.step(1e-2)
    for name, p in plain.parameters().items():
        np.testing.assert_array_equal(dp2.parameters()[name], p, err_msg=name)


def test_distribute_rejects_bad_zero_stage():
    m = GPT2(GPT2Config(n_layer=1, n_head=1, n_embd=8, vocab_size=16, block_size=8))
    with pytest.raises(ValueError, match="zero_stage must be 0 or 1"):
        m.distribute(zero_stage=3)
    assert m.distribute(zero_stage=1) is m and m.distribute(zero_stage=1) is m
    with pytest.raises(ValueError, match="already distributed with zero_stage=1"):
        m.distribute(zero_stage=0)


# ----------------------------------------------------------------------------
# 2 ranks = 1 rank accumulating


@needs_mpi
@pytest.mark.parametrize("zero_stage", [0, 1])
def test_two_ranks_equal_one_rank_accumulating(env, zero_stage):
    one = worker(env / "one", 1, "--accum", "2", "--steps", "5")[0]
    two = worker(env / "two", 2, "--accum", "1", "--steps", "5", "--zero", str(zero_stage))
    for r in two:  # every rank holds the same parameters (rank 1 started from another seed)
        np.testing.assert_array_equal(r["params"], two[0]["params"])
    e_params, e_grads = rel_err(two[0]["params"], one["params"]), rel_err(mean_grads(two), one["grads"])
    e_loss = float(np.max(np.abs(two[0]["losses"] - one["losses"]) / one["losses"]))
    print(f"zero_stage {zero_stage}: params rel {e_params:.3e}, grads rel {e_grads:.3e}, losses rel {e_loss:.3e}")
    assert_close("parameters after 5 steps", two[0]["params"], one["params"], rel=TOL)
    assert_close("gradients of step 5", mean_grads(two), one["grads"], rel=TOL)
    assert_close("logged losses", two[0]["losses"], one["losses"], rel=1e-6)
    assert_close("gradient norms", two[0]["norms"], one["norms"], rel=1e-6)


@needs_mpi
@pytest.mark.parametrize("zero_stage", [0, 1])
def test_four_ranks_equal_one_rank_accumulating(env, zero_stage):
    """4 ranks x B against 1 rank accumulating 4 micro-batches: the same global batch. The sums
    over 4 ranks are added in another order than the accumulation (dividing by 4 is exact), so
    the tolerance is the 3-rank test's."""
    one = worker(env / "one", 1, "--accum", "4", "--steps", "4")[0]
    four = worker(env / "four", 4, "--steps", "4", "--zero", str(zero_stage))
    for r in four:
        np.testing.assert_array_equal(r["params"], four[0]["params"])
    print(f"4 ranks, zero_stage {zero_stage}: params rel {rel_err(four[0]['params'], one['params']):.3e}")
    assert_close("parameters after 4 steps", four[0]["params"], one["params"], rel=1e-5)
    assert_close("gradients of step 4", mean_grads(four), one["grads"], rel=1e-5)
    assert_close("logged losses", four[0]["losses"], one["losses"], rel=1e-6)


@needs_mpi
@pytest.mark.parametrize("zero_stage", [0, 1])
def test_overlap_changes_no_bit(env, zero_stage, monkeypatch):
    """The plan starts each layer's reduction during the backward (sync on the last micro-step) or
    all of them in step(): the same collectives in the same order, so the same bits."""
    flags = ["--accum", "2", "--steps", "4", "--zero", str(zero_stage)]
    on = worker(env / "on", 2, *flags)
    off = worker(env / "off", 2, *flags, "--no-overlap")
    for r in range(2):
        for key in ("params", "losses", "norms"):
            np.testing.assert_array_equal(on[r][key], off[r][key], err_msg=f"rank {r} {key}")
    np.testing.assert_array_equal(mean_grads(on), mean_grads(off))
    # the MPI transport without its communication thread (non-blocking MPI calls): with 2 ranks a
    # sum has one order, so the same bits again
    monkeypatch.setenv("LLMPY_MPI_THREAD", "0")
    nbc = worker(env / "nbc", 2, *flags)
    for r in range(2):
        np.testing.assert_array_equal(nbc[r]["params"], on[r]["params"], err_msg=f"rank {r} params (no thread)")


@needs_mpi
def test_resume_with_another_rank_count_and_stage(env):
    """A checkpoint of 2 ranks with ZeRO-1 holds the full moments: 4 ranks without ZeRO (and 1
    rank) continue the run as the 2 ranks would have (the global batch is the same: 2 x 2
    micro-batches, 4 x 1, or 1 x 4)."""
    full = worker(env / "full", 2, "--zero", "1", "--accum", "2", "--steps", "5", "--save-at", "3")
    ckpt = env / "full" / "ckpt"
    four = worker(env / "four", 4, "--resume", ckpt, "--first-step", "3", "--steps", "2")
    one = worker(env / "one", 1, "--accum", "4", "--resume", ckpt, "--first-step", "3", "--steps", "2")[0]
    assert_close("4 ranks resumed vs 2 ranks", four[0]["params"], full[0]["params"], rel=1e-5)
    assert_close("1 rank resumed vs 2 ranks", one["params"], full[0]["params"], rel=1e-5)
    assert_close("logged losses", four[0]["losses"], full[0]["losses"][3:], rel=1e-6)


@needs_mpi
@pytest.mark.parametrize("zero_stage", [0, 1])
def test_mpirun_one_rank_runs_the_plan_as_the_plain_step(env, zero_stage):
    """Under mpirun -np 1 the model goes through the plan and the MPI transport with one rank (as one
    GPU checks NCCL): the plain process's result. zero_stage 0 is the same code as the plain step
    around an identity reduction (bit for bit); zero_stage 1 sums the gradient norm over its parts
    (another grouping of the same squares), so the clipping may differ in the last bit."""
    plain = worker(env / "plain", 1, "--accum", "2", "--steps", "3")[0]
    out = env / "mpi1"
    out.mkdir()
    run([*mpirun(1), sys.executable, WORKER, "--out", out, "--accum", "2", "--steps", "3", "--zero", str(zero_stage)])
    one = dict(np.load(out / "rank0.npz"))
    if zero_stage == 0:
        np.testing.assert_array_equal(one["params"], plain["params"])
    else:
        assert_close("parameters", one["params"], plain["params"], rel=1e-6)
    assert_close("gradient norms", one["norms"], plain["norms"], rel=1e-6)


@needs_mpi
def test_three_ranks_zero1_with_several_chunks(env):
    """5.0M parameters = 2 chunks of 2^22 floats, split 3 ways (uneven parts, tensors across parts).

    ZeRO-1 must give bit for bit what the plain all-reduce gives (the same reduce-scatter, AdamW
    is element-wise). Against 1 rank accumulating 3 micro-batches the tolerance is looser than
    for 2 ranks: dividing by 3 is not exact, and AdamW turns the last-bit differences of
    gradients near its eps (rows of tokens absent from the batch) into visible ones.
    """
    big = ["--n-embd", "96", "--vocab", "50257", "--steps", "3"]
    one = worker(env / "one", 1, *big, "--accum", "3")[0]
    plain = worker(env / "plain", 3, *big)
    zero = worker(env / "zero", 3, *big, "--zero", "1")
    assert one["params"].size > 4_300_000
    for r in range(3):
        np.testing.assert_array_equal(zero[r]["params"], plain[0]["params"], err_msg=f"rank {r}")
        np.testing.assert_array_equal(zero[r]["losses"], plain[0]["losses"], err_msg=f"rank {r}")
    g_zero, g_plain = mean_grads(zero), plain[0]["grads"]
    np.testing.assert_array_equal(g_zero, g_plain)
    print(f"3 ranks vs 1: params rel {rel_err(zero[0]['params'], one['params']):.3e}, "
          f"grads rel {rel_err(g_zero, one['grads']):.3e}")
    assert_close("parameters after 3 steps", zero[0]["params"], one["params"], rel=1e-5)
    assert_close("logged losses", zero[0]["losses"], one["losses"], rel=1e-6)


@needs_mpi
def test_zero1_checkpoint_resumes_exactly(env):
    full = worker(env / "full", 2, "--zero", "1", "--steps", "5", "--save-at", "3")
    ckpt = env / "full" / "ckpt"
    resumed = worker(env / "resumed", 2, "--zero", "1", "--resume", ckpt, "--first-step", "3", "--steps", "2")
    for r in range(2):
        np.testing.assert_array_equal(resumed[r]["params"], full[r]["params"])
        np.testing.assert_array_equal(resumed[r]["losses"], full[r]["losses"][3:])
    # the file holds the full moments: those of one process (no ZeRO) after the same 3 steps
    worker(env / "ref", 1, "--accum", "2", "--steps", "3", "--save-at", "3")
    m2, v2 = state_moments(env / "full" / "ckpt.state")
    m1, v1 = state_moments(env / "ref" / "ckpt.state")
    assert_close("AdamW m", m2, m1, rel=TOL)
    assert_close("AdamW v", v2, v1, rel=TOL)


# ----------------------------------------------------------------------------
# the training CLI and the binary under mpirun


def _shards(root: Path, vocab: int = 50257) -> str:
    from llmpy.data.shards import write_shard

    rng = np.random.default_rng(0)
    write_shard(root / "toy_train_000000.bin", rng.integers(0, vocab, size=40_000), fsync=False)
    write_shard(root / "toy_val_000000.bin", rng.integers(0, vocab, size=10_000), fsync=False)
    return str(root / "toy_train_*.bin")


def _log(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


CLI = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--batch-size", "4", "--seq-len", "32",
       "--max-steps", "6", "--lr", "1e-3", "--eval-every", "3", "--val-steps", "2", "--sample-every", "0",
       "--checkpoint-every", "3", "--keep-checkpoints", "0", "--threads", "1"]


@needs_mpi
def test_cli_two_ranks_equal_one_rank_and_zero1_resumes(env):
    from test_hellaswag import synthetic, write_jsonl

    data = _shards(env)
    hs = write_jsonl(env / "hellaswag.jsonl", synthetic(7))  # 7: the ranks get 4 and 3 examples
    train = [sys.executable, "-m", "llmpy.train", *CLI, "--data", data, "--hellaswag-every", "3",
             "--hellaswag-data", hs]
    run([*train, "--total-batch-size", "256", "--out-dir", env / "one"])
    res = run([*mpirun(2), *train, "--zero-stage", "1", "--out-dir", env / "two"])
    assert res.stdout.count("llmpy ") == 1 and "2 ranks (ZeRO-1)" in res.stdout  # only rank 0 prints
    one, two = _log(env / "one" / "log.jsonl"), _log(env / "two" / "log.jsonl")
    assert [r["step"] for r in one] == [r["step"] for r in two]
    l1 = [r["loss"] for r in one if "loss" in r]
    l2 = [r["loss"] for r in two if "loss" in r]
    assert_close("logged losses", l2, l1, rel=1e-6)
    h1 = [r["hellaswag_acc_norm"] for r in one if "hellaswag_acc_norm" in r]
    h2 = [r["hellaswag_acc_norm"] for r in two if "hellaswag_acc_norm" in r]
    assert len(h1) == 2 and h2 == h1, f"HellaSwag over 2 ranks {h2} != one process {h1}"
    p1 = GPT2.from_checkpoint(env / "one" / "ckpt_000006.bin").parameters()
    p2 = GPT2.from_checkpoint(env / "two" / "ckpt_000006.bin").parameters()
    assert_close("parameters after 6 steps", np.concatenate([p.ravel() for p in p2.values()]),
                 np.concatenate([p.ravel() for p in p1.values()]), rel=TOL)
    # resume the ZeRO-1 run from its step-3 checkpoint on 2 ranks: bit for bit the same run
    final = (env / "two" / "ckpt_000006.bin").read_bytes()
    for p in (env / "two" / "ckpt_000006.bin", env / "two" / "ckpt_000006.state"):
        p.unlink()
    res = run([*mpirun(2), *train, "--zero-stage", "1", "--out-dir", env / "two", "--resume", "latest"])
    assert "resumed from step 3" in res.stdout
    assert (env / "two" / "ckpt_000006.bin").read_bytes() == final
    assert [r.get("loss") for r in _log(env / "two" / "log.jsonl")] == [r.get("loss") for r in two]




@needs_mpi
def test_binary_two_ranks_equal_one_rank(env):
    data = _shards(env)
    GPT2(GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=50257, block_size=64), seed=3).save(env / "init.bin")
    flags = [find_train_gpt2(), "--init-from", env / "init.bin", "--data", data, *CLI[6:]]
    run([*flags, "--total-batch-size", "256", "--out-dir", env / "one"])
    res = run([*mpirun(2), *flags, "--zero-stage", "1", "--out-dir", env / "two"])
    assert res.stdout.count("train_gpt2 |") == 1 and "ranks 2 (ZeRO-1)" in res.stdout
    l1 = [r["loss"] for r in _log(env / "one" / "log.jsonl") if "loss" in r]
    l2 = [r["loss"] for r in _log(env / "two" / "log.jsonl") if "loss" in r]
    assert len(l1) == 6
    assert_close("logged losses (binary)", l2, l1, rel=1e-6)


@needs_mpi
@pytest.mark.parametrize("program", ["python", "binary"])
def test_spike_skipped_on_two_zero1_ranks_as_on_one(env, program):
    """--skip-update-grad-z under mpirun: the norm ahead of the step (llm_grad_norm) is collective,
    every rank decides alike, and the spike's update is skipped as on one process."""
    import test_train_flags as flags

    data = [str(f) for f in flags.spike_data(env)]
    data[data.index("--batch-size") + 1] = "1"  # per rank: 2 ranks x 1 = one rank's batch of 2
    cmd = [sys.executable, "-m", "llmpy.train"] if program == "python" else [find_train_gpt2()]
    common = [*cmd, *data, "--max-steps", flags.SPIKE_STEP, "--checkpoint-every", flags.SPIKE_STEP - 1,
              "--skip-update-grad-z", "5", "--threads", "1"]
    run([*common, "--total-batch-size", 2 * flags.T_SPIKE, "--out-dir", env / "one"])
    run([*mpirun(2), *common, "--zero-stage", "1", "--out-dir", env / "two"])
    one = [r for r in _log(env / "one" / "log.jsonl") if "loss" in r]
    two = [r for r in _log(env / "two" / "log.jsonl") if "loss" in r]
    assert [r["step"] for r in two if r["skipped"]] == [r["step"] for r in one if r["skipped"]] == [flags.SPIKE_STEP]
    assert_close("logged losses", [r["loss"] for r in two], [r["loss"] for r in one], rel=1e-4)
    before = GPT2.from_checkpoint(env / "two" / f"ckpt_{flags.SPIKE_STEP - 1:06d}.bin").parameters()
    after = GPT2.from_checkpoint(env / "two" / f"ckpt_{flags.SPIKE_STEP:06d}.bin").parameters()
    assert all(np.array_equal(before[k], after[k]) for k in before), "the skipped update changed a parameter"


# ----------------------------------------------------------------------------
# failures end the job


@needs_mpi
@pytest.mark.parametrize("fail", ["raise", "kill", "stop", "config", "exit"])
def test_failing_rank_ends_the_job(env, fail, monkeypatch):
    monkeypatch.setenv("LLMPY_DIST_SHUTDOWN_TIMEOUT", "5")  # "exit": how long rank 1 waits for rank 0
    monkeypatch.setenv("LLMPY_DIST_TIMEOUT", "10")  # "stop": how long rank 0 waits in a collective
    t0 = time.monotonic()
    res = subprocess.run([*mpirun(2), sys.executable, str(WORKER), "--out", str(env), "--steps", "5", "--fail", fail],
                         capture_output=True, text=True, timeout=150)
    took = time.monotonic() - t0
    print(f"{fail}: exit code {res.returncode} after {took:.1f} s")
    assert res.returncode != 0, res.stdout + res.stderr
    assert took < 60, f"the job took {took:.1f} s to end after a rank failed"
    if fail == "stop":  # rank 0 names itself and the collective it was left waiting in
        assert "rank 0 of 2: waited 1" in res.stderr and " s in " in res.stderr, res.stderr
    if fail == "config":
        assert "the ranks disagree on the model" in res.stderr
    if fail == "raise":
        assert "rank 1 fails on purpose" in res.stderr
    if fail == "exit":
        assert "did not reach the end within 5 s" in res.stderr
    assert not (env / "rank0.npz").exists()  # rank 0 did not finish on its own


@needs_mpi
def test_cli_ranks_with_different_flags_fail(env):
    data = _shards(env)
    script = ("import os, sys; from llmpy.train import main; r = os.environ.get('OMPI_COMM_WORLD_RANK', os.environ.get('PMI_RANK')); "
              f"sys.exit(main(['--data', {data!r}, '--max-steps', '1', '--lr', '1e-3' if r == '0' else '2e-3']))")
    t0 = time.monotonic()
    res = subprocess.run([*mpirun(2), sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "other flags than rank 0 (lr)" in res.stderr, res.stdout + res.stderr
    assert time.monotonic() - t0 < 60


@pytest.mark.slow
def test_build_without_mpi_refuses_several_ranks(tmp_path):
    """A build with LLMPY_MPI=OFF, launched as one of several ranks, says so and fails (no MPI needed)."""
    if shutil.which("cmake") is None:
        pytest.fail("cmake is needed to build the binary without MPI (pip install cmake)")
    build = tmp_path / "build"
    run(["cmake", "-S", ROOT, "-B", build, "-DLLMPY_MPI=OFF", "-DLLMPY_NATIVE=OFF", "-DLLMPY_BUILD_TESTS=OFF"], 300)
    run(["cmake", "--build", build, "--target", "train_gpt2", "-j2"], 600)
    for var, value in [("OMPI_COMM_WORLD_SIZE", "2"), ("PMI_SIZE", "4"), ("PMIX_RANK", "1")]:
        res = subprocess.run([str(build / "train_gpt2"), "--init-from", "x.bin", "--data", "x_train.bin"],
                             capture_output=True, text=True, timeout=60, env={**os.environ, var: value})
        assert res.returncode == 1 and "built without MPI" in res.stderr and var in res.stderr, res.stderr


# ----------------------------------------------------------------------------
# launches without MPI (GPUs only: the ranks talk through NCCL)


def _launch(env_extra: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_", "PMI", "MV2_", "LLMPY_RANK", "LLMPY_WORLD", "TORCHELASTIC"))}
    env.update(env_extra)
    code = "from llmpy import dist; print(dist.init())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_launch_without_mpi_needs_the_gpu_transport():
    """LLMPY_RANK/LLMPY_WORLD_SIZE (or torchrun's variables) start a process group without MPI; its
    only transport is NCCL, so a process without an initialised CUDA backend is refused, saying why."""
    for extra, how in [({"LLMPY_RANK": "0", "LLMPY_WORLD_SIZE": "2"}, "LLMPY_RANK/LLMPY_WORLD_SIZE"),
                       ({"TORCHELASTIC_RUN_ID": "x", "RANK": "1", "WORLD_SIZE": "2"}, "torchrun's RANK/WORLD_SIZE")]:
        res = _launch(extra)
        assert res.returncode != 0
        assert "without MPI: such ranks talk through NCCL" in res.stderr and how in res.stderr, res.stderr
    res = _launch({"LLMPY_RANK": "2", "LLMPY_WORLD_SIZE": "2"})
    assert res.returncode != 0 and "announce rank 2 of 2: need 0 <= rank < world size" in res.stderr, res.stderr


def test_stray_rank_variables_do_not_start_a_group():
    """RANK/WORLD_SIZE without torchrun's TORCHELASTIC_RUN_ID (a shell that happens to set them) leave
    a single process alone, and LOCAL_RANK then picks no GPU."""
    res = _launch({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "3"})
    assert res.returncode == 0, res.stderr
    assert "'rank': 0, 'world_size': 1" in res.stdout
    code = "from llmpy import dist; print(dist.launched_local_rank())"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "TORCHELASTIC"))}
    out = subprocess.run([sys.executable, "-c", code], env={**env, "LOCAL_RANK": "3"}, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == "0", out.stdout + out.stderr
    out = subprocess.run([sys.executable, "-c", code], env={**env, "LOCAL_RANK": "3", "TORCHELASTIC_RUN_ID": "r"},
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "3", out.stdout + out.stderr


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan"])
def test_bad_dist_timeout_is_refused(value):
    res = _launch({"LLMPY_DIST_TIMEOUT": value})
    assert res.returncode != 0 and f"LLMPY_DIST_TIMEOUT must be a number of seconds > 0, got '{value}'" in res.stderr
