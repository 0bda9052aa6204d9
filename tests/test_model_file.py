"""The core's llm.c model-file reader/writer (csrc/core/model_file.c, bound as _C.ModelFile).

Oracles: an independent numpy reader of the format (header ints at offset 0, payload at 1024,
tensor layout from llm.c's train_gpt2.c written out below), a bf16 round-to-nearest-even written
here with integer arithmetic (plus torch for the non-NaN values), and the file system (no temp
files left, old files untouched).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import llmpy
from ckpt_helpers import AT, check_block, reseal
from llmpy import _C, hf

CFG = llmpy.GPT2Config(n_layer=2, n_head=3, n_embd=48, vocab_size=101, block_size=32)
VP = 128  # 101 rounded up to a multiple of 128
FM = llmpy.formats
HEADER_BYTES = 4 * FM["HEADER_INTS"]


def llmc_layout(L: int, C: int, V: int, Vp: int, maxT: int) -> list:
    """[(name, shape)] in file order, as llm.c's train_gpt2.c lays the parameters out."""
    return [("wte", (Vp, C)), ("wpe", (maxT, C)), ("ln1w", (L, C)), ("ln1b", (L, C)),
            ("qkvw", (L, 3 * C, C)), ("qkvb", (L, 3 * C)), ("attprojw", (L, C, C)), ("attprojb", (L, C)),
            ("ln2w", (L, C)), ("ln2b", (L, C)), ("fcw", (L, 4 * C, C)), ("fcb", (L, 4 * C)),
            ("fcprojw", (L, C, 4 * C)), ("fcprojb", (L, C)), ("lnfw", (C,)), ("lnfb", (C,))]  # fmt: skip


LAYOUT = llmc_layout(CFG.n_layer, CFG.n_embd, CFG.vocab_size, VP, CFG.block_size)
PER_LAYER = {"ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb", "ln2w", "ln2b", "fcw", "fcb", "fcprojw",
             "fcprojb"}


def read_numpy(path, dtype: str) -> tuple:
    """(header ints, {name: array in the file's layout}) read with numpy alone."""
    header = np.fromfile(path, dtype="<i4", count=FM["HEADER_INTS"])
    payload = np.fromfile(path, dtype=dtype, offset=HEADER_BYTES)
    out, pos = {}, 0
    for name, shape in LAYOUT:
        n = int(np.prod(shape))
        out[name] = payload[pos:pos + n].reshape(shape)
        pos += n
    assert pos == payload.size, f"payload holds {payload.size} elements, the layout {pos}"
    return header, out


def bf16_rne(a: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bits: keep the high half, add one when the low half is above 0x8000, or is
    0x8000 and the kept half is odd; a NaN becomes (high half | 0x40), a quiet NaN."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.int64)
    hi, lo = bits >> 16, bits & 0xFFFF
    out = hi + ((lo > 0x8000) | ((lo == 0x8000) & (hi % 2 == 1)))
    nan = np.isnan(a)
    out[nan] = hi[nan] | 0x40
    return out.astype(np.uint16)


def widen(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def special_values() -> np.ndarray:
    """Numbers across the whole range plus the cases rounding gets wrong: exact ties with an even
    and an odd kept half, ties that carry into the exponent or into infinity, subnormals, signed
    zeros, infinities and NaNs (quiet, signalling, negative, payload in the low half only)."""
    rng = np.random.default_rng(0)
    scale = 10.0 ** rng.integers(-44, 38, 3000)  # subnormals to near the largest float32
    wide = (rng.standard_normal(3000) * scale).astype(np.float32)
    bits = np.array([0x3F808000, 0x3F818000, 0xBF808000, 0xBF818000, 0x3F80FFFF, 0x3F807FFF, 0x3FFF8000,
                     0x7F7F8000, 0x7F7F7FFF, 0x7F7FFFFF, 0x00008000, 0x00018000, 0x00000001, 0x807FFFFF,
                     0x7FC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0xFFC12345, 0x7F80FFFF],
                    dtype=np.uint32).view(np.float32)  # fmt: skip
    rest = np.array([0.0, -0.0, np.inf, -np.inf, 3.0e38, -3.4e38, 1.0, -2.5], dtype=np.float32)
    out = np.concatenate([wide, bits, rest])
    assert out.dtype == np.float32  # a float64 detour would quieten the signalling NaN
    return out


def random_tensors(seed: int = 0, fill=None) -> dict:
    """name -> float32 values in the visible shapes (wte: V rows); `fill` cycles special values in."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in LAYOUT:
        shape = (CFG.vocab_size, *shape[1:]) if name == "wte" else shape
        a = rng.standard_normal(shape).astype(np.float32)
        if fill is not None:
            flat = a.reshape(-1)
            flat[: min(flat.size, fill.size)] = fill[: flat.size]
            fill = np.roll(fill, 7)
        out[name] = a
    return out


def write_file(path, tensors: dict, bf16: bool = False, whole=frozenset({"qkvw", "fcb"})) -> None:
    """Writes through _C.ModelFile in file order: per-layer tensors layer by layer, `whole` at once."""
    with _C.ModelFile.create(str(path), **vars(CFG), bf16=bf16) as f:
        for name, _ in LAYOUT:
            if name in PER_LAYER and name not in whole:
                for layer in range(CFG.n_layer):
                    f.write(name, tensors[name][layer], layer)
            else:
                f.write(name, tensors[name])
        f.commit()


def listing(d) -> list:
    return sorted(p.name for p in d.iterdir())


# ----------------------------------------------------------------------------
# round trips against the numpy reader


def test_fp32_file_matches_numpy_reader(tmp_path):
    want = random_tensors(0)
    path = tmp_path / "m.bin"
    write_file(path, want)
    header, got = read_numpy(path, "<f4")
    assert header[:8].tolist() == [FM["MODEL_MAGIC"], FM["MODEL_VERSION_FP32"], 32, 101, 2, 3, 48, VP]
    assert not header[8:AT].any() and not header[AT + 4:].any(), \
        "header ints beyond the eighth must be zero, but for the integrity block (formats.h)"
    check_block(path)  # CRC32C of the payload and of the header, by an independent implementation
    for name, a in want.items():
        np.testing.assert_array_equal(got[name][: len(a)] if name == "wte" else got[name], a, err_msg=name)
    assert not got["wte"][CFG.vocab_size:].any(), "wte's padding rows must be zero"
    assert listing(tmp_path) == ["m.bin"], "temp files left behind"

    f = _C.ModelFile.open(str(path))
    assert f.config == {**vars(CFG), "padded_vocab_size": VP} and not f.bf16
    for name, a in want.items():
        np.testing.assert_array_equal(f.read(name), a, err_msg=name)  # whole tensors
        if name in PER_LAYER:
            np.testing.assert_array_equal(f.read(name, 1), a[1], err_msg=f"{name} layer 1")
            assert f.shape(name, 1) == a.shape[1:]
    # the core's own loader reads the same values, and its saver writes the same bytes
    m = llmpy.GPT2.from_checkpoint(path)
    for name, a in m.parameters().items():
        np.testing.assert_array_equal(a, want[name], err_msg=name)
    m.save(tmp_path / "again.bin")
    assert (tmp_path / "again.bin").read_bytes() == path.read_bytes()


def test_bf16_file_rounds_to_nearest_even(tmp_path):
    special = special_values()
    want = random_tensors(1, fill=special)
    path = tmp_path / "m16.bin"
    write_file(path, want, bf16=True)
    header, got = read_numpy(path, "<u2")
    assert header[:8].tolist() == [FM["MODEL_MAGIC"], FM["MODEL_VERSION_BF16"], 32, 101, 2, 3, 48, VP]
    f = _C.ModelFile.open(str(path))
    assert f.bf16
    for name, a in want.items():
        bits = got[name][: len(a)] if name == "wte" else got[name]
        ref = bf16_rne(a)
        bad = np.flatnonzero(bits.reshape(-1) != ref.reshape(-1))
        i = bad[:3]
        assert bad.size == 0, (f"{name}: {bad.size} bf16 values differ, e.g. {a.reshape(-1)[i]}: "
                               f"{bits.reshape(-1)[i]} vs {ref.reshape(-1)[i]}")
        # reading widens exactly (compared bit for bit: NaNs included)
        back = f.read(name)
        np.testing.assert_array_equal(back.view(np.uint32), widen(ref).view(np.uint32), err_msg=name)
    assert not got["wte"][CFG.vocab_size:].any(), "wte's padding rows must be zero"
    # the special values really were in the file, and the oracle agrees with torch away from NaN
    ref = bf16_rne(special)
    assert np.isnan(widen(ref)).sum() == np.isnan(special).sum() > 0
    ok = ~np.isnan(special)
    torch_bits = torch.from_numpy(special[ok]).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(ref[ok], torch_bits)
    # the conversion the safetensors writer uses is the same one
    np.testing.assert_array_equal(hf.to_bf16_bits(special), ref)
    # and the core's loader widens the same way
    m = llmpy.GPT2.from_checkpoint(path)
    for name, a in m.parameters().items():
        ref = widen(bf16_rne(want[name]))
        np.testing.assert_array_equal(a.view(np.uint32), ref.view(np.uint32), err_msg=name)


def test_model_save_and_streamed_writer_agree(tmp_path):
    """llm_model_save (whole block) and the slice writer behind hf.convert write the same bytes."""
    m = llmpy.GPT2(CFG, seed=3)
    m.save(tmp_path / "a.bin")
    hf.convert(m, tmp_path / "b.bin")
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()
    hf.convert(tmp_path / "a.bin", tmp_path / "c.bin", dtype="bf16")
    _, got = read_numpy(tmp_path / "c.bin", "<u2")
    for name, a in m.parameters().items():
        bits = got[name][: len(a)] if name == "wte" else got[name]
        np.testing.assert_array_equal(bits, bf16_rne(a), err_msg=name)


# ----------------------------------------------------------------------------
# bad files


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.bin"
    write_file(path, random_tensors(2))
    return path


@pytest.mark.parametrize("damage, error", [
    (lambda b: np.int32(12345).tobytes() + b[4:], "not an llm.c model file"),
    (lambda b: b[:4] + np.int32(4).tobytes() + b[8:], "unsupported model file version 4"),
    (lambda b: b[:-4], "file is truncated: header .* implies 258304 bytes, file has 258300"),
    (lambda b: b[:100], "file is truncated: 100 bytes, smaller than the 1024-byte header"),
    (lambda b: b + b"\0" * 4, "header does not match the file size"),
    (lambda b: b[:24] + np.int32(50).tobytes() + b[28:],
     "header holds an invalid configuration: n_embd \\(50\\) must be divisible by n_head \\(3\\)"),
])  # fmt: skip
def test_bad_files_are_refused_naming_the_file(good, tmp_path, damage, error):
    bad = tmp_path / "bad.bin"
    data = bytearray(damage(good.read_bytes()))
    if len(data) >= HEADER_BYTES:  # header checksum recomputed: the checks behind it are tested here
        reseal(data)
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=re.escape(str(bad)) + ": " + error):
        _C.ModelFile.open(str(bad))
    with pytest.raises(ValueError, match=re.escape(str(bad)) + ": " + error):
        llmpy.GPT2.from_checkpoint(bad)  # the same checks: one reader
    with pytest.raises(OSError, match="cannot open model file .*nope.bin"):
        _C.ModelFile.open(str(tmp_path / "nope.bin"))


# ----------------------------------------------------------------------------
# atomic writes


def test_abandoned_write_leaves_nothing_and_keeps_the_old_file(good, tmp_path):
    old = good.read_bytes()
    before = listing(tmp_path)
    t = random_tensors(3)
    # closed without commit
    f = _C.ModelFile.create(str(good), **vars(CFG))
    f.write("wte", t["wte"])
    assert any(n.startswith("good.bin.tmp") for n in listing(tmp_path)), "no temp file beside the target"
    f.close()
    assert listing(tmp_path) == before and good.read_bytes() == old
    # an exception inside the with-block
    with pytest.raises(RuntimeError, match="boom"), _C.ModelFile.create(str(good), **vars(CFG)) as f:
        f.write("wte", t["wte"])
        raise RuntimeError("boom")
    assert listing(tmp_path) == before and good.read_bytes() == old
    # dropped without close
    f = _C.ModelFile.create(str(good), **vars(CFG))
    f.write("wte", t["wte"])
    del f
    assert listing(tmp_path) == before and good.read_bytes() == old

    # a converter whose source fails half-way (a duck-typed model missing a tensor)
    class Broken:
        config = CFG

        def parameters(self):
            return {k: v for k, v in t.items() if k != "fcw"}

    with pytest.raises(KeyError, match="fcw"):
        hf.convert(Broken(), good)
    assert listing(tmp_path) == before and good.read_bytes() == old
    with pytest.raises(ValueError, match="is closed"):
        f = _C.ModelFile.open(str(good))
        f.close()
        f.read("wte")


def test_out_of_order_and_incomplete_writes_are_refused(tmp_path):
    path = tmp_path / "m.bin"
    t = random_tensors(4)
    f = _C.ModelFile.create(str(path), **vars(CFG))
    with pytest.raises(ValueError, match=re.escape(str(path)) + ": wpe written out of order; .* wte next"):
        f.write("wpe", t["wpe"])
    with pytest.raises(ValueError, match="wte has shape \\(101, 48\\), got \\(128, 48\\)"):
        f.write("wte", np.zeros((VP, 48), np.float32))  # the padding rows are the writer's job
    f.write("wte", t["wte"])
    f.write("wpe", t["wpe"])
    with pytest.raises(ValueError, match="ln1w layer 1 written out of order; .* ln1w layer 0 next"):
        f.write("ln1w", t["ln1w"][1], 1)
    with pytest.raises(ValueError, match="wpe written out of order"):
        f.write("wpe", t["wpe"])  # twice
    with pytest.raises(ValueError, match="lnfw has no layer 0"):
        f.write("lnfw", t["lnfw"], 0)
    with pytest.raises(KeyError, match="unknown tensor 'lm_head'"):
        f.write("lm_head", t["wte"])
    with pytest.raises(ValueError, match="opened for writing"):
        f.read("wte")
    with pytest.raises(ValueError, match=re.escape(str(path)) + ": incomplete: .* ln1w layer 0 next"):
        f.commit()
    assert not path.exists()
    # a refused write or commit changes nothing: the file can still be finished
    f.write("ln1w", t["ln1w"][0], 0)
    f.write("ln1w", t["ln1w"][1], 1)
    for name, _ in LAYOUT[3:]:
        f.write(name, t[name])
    f.commit()
    with pytest.raises(ValueError, match="already committed"):
        f.write("lnfb", t["lnfb"])
    f.close()
    assert listing(tmp_path) == ["m.bin"]
    _, got = read_numpy(path, "<f4")
    np.testing.assert_array_equal(got["ln1w"], t["ln1w"])
    np.testing.assert_array_equal(got["lnfb"], t["lnfb"])


def test_foreign_file_is_named_as_such_not_as_damaged(tmp_path):
    """A file that is not a model file at all (wrong magic, no integrity block of ours) is reported
    as 'not an llm.c model file' / 'not an llmpy training-state file', not as a damaged checkpoint."""
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"x" * 4096)
    with pytest.raises(ValueError, match="junk.bin: not an llm.c model file"):
        llmpy.GPT2.from_checkpoint(junk)
    m = llmpy.GPT2(llmpy.GPT2Config(n_layer=1, n_head=1, n_embd=8, vocab_size=16, block_size=4))
    with pytest.raises(ValueError, match="junk.bin: not an llmpy training-state file"):
        m.load_state(junk)
