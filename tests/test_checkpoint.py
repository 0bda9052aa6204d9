"""llm.c model files: round trips, the oracle's files in llmpy and llmpy's in the oracle, bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import llmpy
from ckpt_helpers import reseal

CFG = llmpy.GPT2Config(n_layer=2, n_head=3, n_embd=48, vocab_size=101, block_size=32)
HEADER_BYTES = 4 * llmpy.formats["HEADER_INTS"]


@pytest.fixture
def saved(tmp_path):
    m = llmpy.GPT2(CFG, seed=5)
    path = tmp_path / "m.bin"
    m.save(path)
    return m, path


def test_round_trip_is_bit_exact(saved, tmp_path):
    m, path = saved
    m2 = llmpy.GPT2.from_checkpoint(path)
    assert m2.config == m.config
    for name, p in m.parameters().items():
        np.testing.assert_array_equal(m2.parameters()[name], p, err_msg=name)
    m2.save(tmp_path / "again.bin")
    assert (tmp_path / "again.bin").read_bytes() == path.read_bytes()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name], "temp files left behind"


def test_header_is_llmc_v3(saved):
    m, path = saved
    h = np.fromfile(path, dtype=np.int32, count=8)
    f = llmpy.formats
    Vp = 128  # 101 rounded up to a multiple of 128
    assert list(h) == [f["MODEL_MAGIC"], f["MODEL_VERSION_FP32"], 32, 101, 2, 3, 48, Vp]
    assert path.stat().st_size == HEADER_BYTES + 4 * (m.num_parameters + (Vp - 101) * 48)


def test_oracle_file_loads_in_llmpy(oracle, tmp_path):
    torch.manual_seed(0)
    ref = oracle.GPT(oracle.GPT2Config(**vars(CFG)))
    oracle.write_model(ref, tmp_path / "o.bin")
    m = llmpy.GPT2.from_checkpoint(tmp_path / "o.bin")
    want = oracle.params_llmc(ref)
    for name, p in m.parameters().items():
        np.testing.assert_array_equal(p, want[name], err_msg=name)


def test_llmpy_file_loads_in_oracle(oracle, saved):
    m, path = saved
    ref = oracle.load_model(path)
    got = oracle.params_llmc(ref)
    for name, p in m.parameters().items():
        np.testing.assert_array_equal(got[name], p, err_msg=name)
    # and it computes the same loss
    x = np.random.default_rng(0).integers(0, 101, size=(2, 9)).astype(np.int32)
    with torch.no_grad():
        _, ref_loss = ref(torch.from_numpy(x).long(), torch.from_numpy(x).long())
    assert abs(m.forward(x, x) - float(ref_loss)) < 1e-5


def test_bf16_file_loads(oracle, tmp_path):
    torch.manual_seed(1)
    ref = oracle.GPT(oracle.GPT2Config(**vars(CFG)))
    oracle.write_model(ref, tmp_path / "bf16.bin", dtype="bfloat16")
    m = llmpy.GPT2.from_checkpoint(tmp_path / "bf16.bin")
    for name, p in m.parameters().items():
        want = torch.from_numpy(oracle.params_llmc(ref)[name]).bfloat16().float().numpy()
        np.testing.assert_array_equal(p, want, err_msg=name)


# ---------------------------------------------------------------------------
# bad files: OSError for the file system, ValueError for contents


def write_variant(saved, tmp_path, header_edits=None, size=None, name="bad.bin"):
    """The saved file with header edits (its header checksum recomputed, so that the checks behind
    the checksum are what is tested: tests/test_faults.py tests the checksums) and another size."""
    _, path = saved
    data = bytearray(path.read_bytes())
    h = np.frombuffer(data, dtype=np.int32, count=256).copy()
    for i, v in (header_edits or {}).items():
        h[i] = v
    data[:HEADER_BYTES] = h.tobytes()
    reseal(data)
    if size is not None:
        data = data[:size] if size <= len(data) else data + bytes(size - len(data))
    out = tmp_path / name
    out.write_bytes(bytes(data))
    return out


def test_missing_file(tmp_path):
    with pytest.raises(OSError, match="cannot open model file"):
        llmpy.GPT2.from_checkpoint(tmp_path / "nope.bin")


@pytest.mark.parametrize(
    "edits,size,match",
    [
        ({0: 12345}, None, "not an llm.c model file"),
        ({1: 4}, None, "unsupported model file version 4"),
        ({}, HEADER_BYTES + 1000, "truncated"),
        ({}, 100, "truncated"),
        ({}, 0, "truncated"),
        ({4: 3}, None, "truncated"),  # header claims 3 layers
        ({4: 1}, None, "header does not match the file size"),  # header claims 1 layer
        ({}, "extra", "header does not match the file size"),
        ({6: 50}, None, "invalid configuration"),  # 50 channels, 3 heads
        ({7: 64}, None, "invalid configuration"),  # padded vocab < vocab
    ],
)
def test_bad_file_contents(saved, tmp_path, edits, size, match):
    if size == "extra":
        size = saved[1].stat().st_size + 4
    bad = write_variant(saved, tmp_path, edits, size)
    with pytest.raises(ValueError, match=match):
        llmpy.GPT2.from_checkpoint(bad)


def test_save_into_missing_directory(saved, tmp_path):
    m, _ = saved
    with pytest.raises(OSError, match="cannot write"):
        m.save(tmp_path / "no" / "such" / "dir" / "m.bin")


# ---------------------------------------------------------------------------
# training state: AdamW moments + step + the loop's JSON


def train(m, steps, seed=0):
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(steps):
        x = rng.integers(0, 101, size=(2, 9)).astype(np.int32)
        losses.append(m.forward(x[:, :-1].copy(), x[:, 1:].copy()))
        m.zero_grad()
        m.backward()
        m.step(1e-3, weight_decay=0.1, grad_clip=1.0)
    return losses


def test_resume_from_state_is_bit_exact(tmp_path):
    straight = llmpy.GPT2(CFG, seed=2)
    losses = train(straight, 3, seed=0) + train(straight, 3, seed=1)

    first = llmpy.GPT2(CFG, seed=2)
    head = train(first, 3, seed=0)
    first.save(tmp_path / "m.bin")
    first.save_state(tmp_path / "m.state", {"step": 3, "note": "ünïcode"})
    resumed = llmpy.GPT2.from_checkpoint(tmp_path / "m.bin")
    assert resumed.load_state(tmp_path / "m.state") == {"step": 3, "note": "ünïcode"}
    assert resumed.steps == 3
    tail = train(resumed, 3, seed=1)
    assert head + tail == losses
    for name, p in straight.parameters().items():
        np.testing.assert_array_equal(resumed.parameters()[name], p, err_msg=name)


def test_state_before_any_step_round_trips(tmp_path):
    m = llmpy.GPT2(CFG, seed=0)
    m.save_state(tmp_path / "s")
    assert m.load_state(tmp_path / "s") == {} and m.steps == 0


@pytest.fixture
def state_file(tmp_path):
    m = llmpy.GPT2(CFG, seed=0)
    train(m, 1)
    m.save_state(tmp_path / "s.state", {"k": 1})
    return m, tmp_path / "s.state"


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda b: b[:500], "truncated"),
        (lambda b: b[:-3], "truncated"),
        (lambda b: b + b"x", "header does not match the file size"),
        (lambda b: b"\0" * 4 + b[4:], "not an llmpy training-state file"),
        (lambda b: b[:4] + np.int32(9).tobytes() + b[8:], "unsupported training-state version 9"),
    ],
)
def test_bad_state_files(state_file, tmp_path, mutate, match):
    m, path = state_file
    bad = tmp_path / "bad.state"
    data = bytearray(mutate(path.read_bytes()))
    if len(data) >= HEADER_BYTES:  # header checksum recomputed: the checks behind it are tested here
        reseal(data)
    bad.write_bytes(bytes(data))
    before = m.steps
    with pytest.raises(ValueError, match=match):
        m.load_state(bad)
    assert m.steps == before  # a rejected file changes nothing


def test_state_of_another_model_is_rejected(state_file):
    _, path = state_file
    other = llmpy.GPT2(llmpy.GPT2Config(n_layer=1, n_head=3, n_embd=48, vocab_size=101, block_size=32))
    with pytest.raises(ValueError, match="another model"):
        other.load_state(path)
    with pytest.raises(OSError, match="cannot open training-state file"):
        other.load_state(path.with_name("missing"))
