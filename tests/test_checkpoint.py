"""llm.c model files: round trips, the oracle's files in llmpy and llmpy's in the oracle, bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import llmpy

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
    _, path = saved
    data = bytearray(path.read_bytes())
    h = np.frombuffer(data, dtype=np.int32, count=256).copy()
    for i, v in (header_edits or {}).items():
        h[i] = v
    data[:HEADER_BYTES] = h.tobytes()
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
