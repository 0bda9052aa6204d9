"""Hugging Face interop (llmpy/hf.py, llmpy/convert.py): transformers is the oracle.

The Hugging Face side is built locally (random GPT2LMHeadModel, perturbed so that biases and
layernorms are not at their trivial init); nothing touches the network.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors
import torch
import torch.nn.functional as F
import transformers

import llmpy
import llmpy.config
import llmpy.model
from llmpy import hf
from llmpy.convert import main as convert_main

from ckpt_helpers import strip
from conftest import assert_close
from data_helpers import TIKTOKEN_CACHE

SMALL = dict(n_layer=2, n_head=3, n_embd=48, vocab_size=101, n_positions=32)
LOGITS_TOL = 1e-4


def hf_model(seed: int = 0, **shape) -> "transformers.GPT2LMHeadModel":
    """A random GPT2LMHeadModel, every parameter perturbed (biases, layernorms not 0/1)."""
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(**{**SMALL, **shape})
    m = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


def hf_logits(m, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return m(torch.from_numpy(x).long()).logits.float().numpy()


def tokens(V: int = 101, B: int = 3, T: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, size=(B, T)).astype(np.int32)


def hf_weights(m) -> dict:
    """HF state dict as float64 numpy, tied lm_head dropped, no "transformer." prefix."""
    return {k.removeprefix("transformer."): v.detach().double().numpy()
            for k, v in m.state_dict().items() if k != "lm_head.weight"}


def save_bin(m, d: Path) -> Path:
    """The legacy layout: config.json + pytorch_model.bin (a plain state dict, tied head included)."""
    d.mkdir(parents=True, exist_ok=True)
    m.config.to_json_file(d / "config.json")
    torch.save(m.state_dict(), d / "pytorch_model.bin")
    return d


@pytest.fixture
def hf_dir(tmp_path):
    m = hf_model()
    m.save_pretrained(tmp_path / "hf")
    return m, tmp_path / "hf"


def edit_config(d: Path, **changes) -> None:
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(changes)
    (d / "config.json").write_text(json.dumps(cfg))


# ----------------------------------------------------------------------------
# Hugging Face -> llmpy and back


def save_sharded(m, d: Path) -> Path:
    """config.json + two safetensors shards + model.safetensors.index.json."""
    from safetensors.torch import save_file

    d.mkdir(parents=True, exist_ok=True)
    m.config.to_json_file(d / "config.json")
    sd = {k: v.contiguous() for k, v in m.state_dict().items() if k != "lm_head.weight"}
    keys = sorted(sd)
    weight_map = {}
    for i, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2:])):
        name = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({k: sd[k] for k in part}, d / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return d


def save_hub_style(m, d: Path) -> Path:
    """As OpenAI's gpt2 repositories store it: no "transformer." prefix, causal-mask buffers per layer."""
    from safetensors.torch import save_file

    d.mkdir(parents=True, exist_ok=True)
    m.config.to_json_file(d / "config.json")
    sd = {k.removeprefix("transformer."): v.contiguous()
          for k, v in m.state_dict().items() if k != "lm_head.weight"}
    T = m.config.n_positions
    for layer in range(m.config.n_layer):
        sd[f"h.{layer}.attn.bias"] = torch.tril(torch.ones(T, T)).view(1, 1, T, T)
    save_file(sd, d / "model.safetensors", metadata={"format": "pt"})
    return d


@pytest.mark.parametrize("layout", ["safetensors", "pytorch_model.bin", "sharded", "hub-style"])
def test_from_pretrained_logits_match_transformers(tmp_path, layout):
    ref = hf_model()
    d = tmp_path / "hf"
    if layout == "safetensors":
        ref.save_pretrained(d)
        assert (d / "model.safetensors").is_file()
    elif layout == "sharded":
        save_sharded(ref, d)
    elif layout == "hub-style":
        save_hub_style(ref, d)
    else:
        save_bin(ref, d)
    m = llmpy.GPT2.from_pretrained(d)
    assert m.config == llmpy.GPT2Config(n_layer=2, n_head=3, n_embd=48, vocab_size=101, block_size=32)
    x = tokens()
    m.forward(x)
    assert_close(f"logits ({layout})", m.logits(), hf_logits(ref, x), max_abs=LOGITS_TOL)
    # the loss agrees with transformers' (shifted labels: the same next-token targets)
    y = np.roll(x, -1, axis=1)
    with torch.no_grad():
        logits = ref(torch.from_numpy(x).long()).logits
        ref_loss = F.cross_entropy(logits.reshape(-1, 101), torch.from_numpy(y).long().reshape(-1))
    assert_close("loss", m.forward(x, y), ref_loss.item(), max_abs=1e-5)


def test_save_pretrained_loads_in_transformers(tmp_path):
    m = llmpy.GPT2(llmpy.GPT2Config(n_layer=2, n_head=3, n_embd=48, vocab_size=101, block_size=32), seed=7)
    rng = np.random.default_rng(1)
    m.load_parameters({k: v + 0.05 * rng.standard_normal(v.shape) for k, v in m.parameters().items()})
    m.save_pretrained(tmp_path / "out")
    ref, info = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert ref.dtype == torch.float32
    x = tokens(seed=3)
    m.forward(x)
    assert_close("logits (llmpy -> transformers)", hf_logits(ref.eval(), x), m.logits(), max_abs=LOGITS_TOL)

    m.save_pretrained(tmp_path / "bf16", dtype="bf16")
    with safetensors.safe_open(tmp_path / "bf16" / "model.safetensors", "pt") as f:  # an independent reader
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    ref16 = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "bf16")
    want = {k: torch.from_numpy(v).to(torch.bfloat16).double().numpy() for k, v in hf_weights(ref).items()}
    for k, v in hf_weights(ref16).items():
        assert_close(f"bf16 {k}", v, want[k], max_abs=0.0)  # exactly torch's round-to-nearest-even


def test_hub_name_from_offline_cache(hf_dir, tmp_path):
    """A hub name resolves through the huggingface_hub cache layout, with no network."""
    ref, d = hf_dir
    snap = tmp_path / "cache" / "models--gpt2" / "snapshots" / "0123abc"
    snap.mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        (snap / f).write_bytes((d / f).read_bytes())
    (tmp_path / "cache" / "models--gpt2" / "refs").mkdir()
    (tmp_path / "cache" / "models--gpt2" / "refs" / "main").write_text("0123abc")
    m = llmpy.GPT2.from_pretrained("gpt2", cache_dir=tmp_path / "cache", local_files_only=True)
    x = tokens()
    m.forward(x)
    assert_close("logits (hub cache)", m.logits(), hf_logits(ref, x), max_abs=LOGITS_TOL)
    with pytest.raises(FileNotFoundError, match="gpt2-xl.*hf download gpt2-xl"):
        llmpy.GPT2.from_pretrained("gpt2-xl", cache_dir=tmp_path / "cache", local_files_only=True)


# ----------------------------------------------------------------------------
# llm.c files


def header(path: Path) -> list:
    return np.fromfile(path, dtype="<i4", count=8).tolist()


def test_round_trip_hf_llmc_bf16_llmc_fp32_hf(hf_dir, tmp_path, oracle):
    ref, d = hf_dir
    fm = llmpy.formats
    hf.convert(d, tmp_path / "a.bin", dtype="bf16")
    hf.convert(tmp_path / "a.bin", tmp_path / "b.bin", dtype="fp32")
    hf.convert(tmp_path / "b.bin", tmp_path / "back")
    assert header(tmp_path / "a.bin") == [fm["MODEL_MAGIC"], fm["MODEL_VERSION_BF16"], 32, 101, 2, 3, 48, 128]
    assert header(tmp_path / "b.bin")[:2] == [fm["MODEL_MAGIC"], fm["MODEL_VERSION_FP32"]]

    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "back")
    got, src = hf_weights(back), hf_weights(ref)
    assert sorted(got) == sorted(src)
    for k, v in src.items():
        bf16 = torch.from_numpy(v).float().to(torch.bfloat16).double().numpy()  # torch rounds to nearest even
        assert_close(f"round trip {k}", got[k], bf16, max_abs=0.0)
        assert_close(f"round trip {k} vs fp32", got[k], v, rel=2.0**-8)

    # the oracle's own llm.c reader sees the same model in the fp32 file (layout, transposes, padding)
    o = oracle.load_model(tmp_path / "b.bin")
    x = tokens()
    with torch.no_grad():
        o_logits, _ = o(torch.from_numpy(x).long())
    assert_close("oracle logits of b.bin", o_logits.numpy(), hf_logits(back, x), max_abs=LOGITS_TOL)
    # ... and its writer produces the same bytes as ours, but for our checksums (formats.h: the
    # integrity block, in header ints llm.c and the oracle do not read)
    oracle.write_model(o, tmp_path / "oracle_bf16.bin", dtype="bf16")
    ours = bytes(strip(bytearray((tmp_path / "a.bin").read_bytes())))
    assert (tmp_path / "oracle_bf16.bin").read_bytes() == ours
    padding = np.fromfile(tmp_path / "a.bin", dtype="<u2", offset=1024)[101 * 48:128 * 48]
    assert not padding.any(), "the padded vocabulary rows of wte must be zero"


def test_fp32_round_trip_is_exact_and_llmpy_reads_it(hf_dir, tmp_path):
    ref, d = hf_dir
    hf.convert(d, tmp_path / "m.bin")
    m = llmpy.GPT2.from_checkpoint(tmp_path / "m.bin")  # the C reader
    x = tokens()
    m.forward(x)
    assert_close("logits via llm.c fp32 file", m.logits(), hf_logits(ref, x), max_abs=LOGITS_TOL)
    m.save_pretrained(tmp_path / "back")
    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "back")
    got = hf_weights(back)
    for k, v in hf_weights(ref).items():
        assert_close(f"fp32 round trip {k}", got[k], v, max_abs=0.0)


def test_load_takes_llmc_files_and_hf_directories(hf_dir, tmp_path):
    """GPT2.load (--init-from): an llm.c file goes to the C loader, a directory through hf; same model."""
    ref, d = hf_dir
    hf.convert(d, tmp_path / "m.bin")
    a, b = llmpy.GPT2.load(tmp_path / "m.bin"), llmpy.GPT2.load(d)
    assert a.config == b.config == llmpy.model.GPT2Config(n_layer=2, n_head=3, n_embd=48, vocab_size=101,
                                                          block_size=32)
    for k, v in a.parameters().items():
        assert_close(f"load {k}", b.parameters()[k], v, max_abs=0.0)
    x = tokens()
    a.forward(x)
    assert_close("logits of GPT2.load", a.logits(), hf_logits(ref, x), max_abs=LOGITS_TOL)
    assert llmpy.GPT2Config is llmpy.model.GPT2Config is llmpy.config.GPT2Config


def test_to_bf16_bits_rounds_like_torch():
    rng = np.random.default_rng(0)
    a = np.concatenate([
        rng.standard_normal(10000).astype(np.float32) * 10.0 ** rng.integers(-30, 30, 10000),
        # exact ties (low 16 bits 0x8000) with even and odd kept bit, around 1 and at the top of the range
        (np.array([0x3F808000, 0x3F818000, 0xBF808000, 0x7F7F8000, 0x7F7FFFFF, 0x00008000, 0x00018000],
                  dtype=np.uint32)).view(np.float32),
        np.array([0.0, -0.0, np.inf, -np.inf, 3.0e38, -3.4e38], dtype=np.float32),
    ])
    ours = hf.to_bf16_bits(a)
    ref = torch.from_numpy(a).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    bad = np.flatnonzero(ours != ref)
    i = bad[:3]
    assert bad.size == 0, f"{bad.size} values differ, e.g. {a[i]}: {ours[i]} vs torch {ref[i]}"
    nan = hf.to_bf16_bits(np.array([np.nan, -np.nan], dtype=np.float32))
    assert np.isnan(hf._from_bf16_bits(nan)).all()


def test_convert_cli(hf_dir, tmp_path, capsys):
    ref, d = hf_dir
    rc = convert_main([str(d), str(tmp_path / "m.bin"), "--dtype", "bf16", "--no-progress", "--offline"])
    assert rc == 0
    assert "llm.c model file, bf16" in capsys.readouterr().err
    assert header(tmp_path / "m.bin")[1] == llmpy.formats["MODEL_VERSION_BF16"]
    assert convert_main([str(tmp_path / "missing"), str(tmp_path / "x.bin")]) == 1
    assert "no such llm.c model file or Hugging Face directory" in capsys.readouterr().err
    # as a module, llm.c bf16 -> Hugging Face fp32
    cmd = [sys.executable, "-m", "llmpy.convert", str(tmp_path / "m.bin"), str(tmp_path / "hf2")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    m = llmpy.GPT2.from_pretrained(tmp_path / "hf2")
    x = tokens()
    m.forward(x)
    # bf16 weights: logits to bf16 accuracy
    assert_close("logits after bf16 conversion", m.logits(), hf_logits(ref, x), max_abs=0.05, rel=1e-2)


# ----------------------------------------------------------------------------
# zero-copy torch tensors


def test_parameters_and_gradients_as_torch_share_memory(monkeypatch):
    m = llmpy.GPT2(llmpy.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50, block_size=8), seed=0)
    pt, pn = m.parameters(torch=True), m.parameters()
    assert list(pt) == list(pn)
    for k in pt:
        assert pt[k].dtype == torch.float32 and tuple(pt[k].shape) == pn[k].shape
        assert pt[k].data_ptr() == pn[k].ctypes.data, k
    x = tokens(V=50, B=2, T=8)
    before = m.forward(x, x)
    with torch.no_grad():
        pt["lnfw"].mul_(2.0)  # written through torch, seen by the engine
    assert pn["lnfw"][0] == pt["lnfw"][0].item()
    after = m.forward(x, x)
    assert after != before
    m.zero_grad()
    m.backward()
    gt, gn = m.gradients(torch=True), m.gradients()
    for k in gt:
        assert gt[k].data_ptr() == gn[k].ctypes.data, k
        assert_close(f"grad {k}", gt[k].numpy(), gn[k], max_abs=0.0)
    assert float(gt["lnfw"].abs().sum()) > 0

    monkeypatch.setattr(llmpy.GPT2, "device", property(lambda self: "cuda"))
    with pytest.raises(NotImplementedError, match="DLPack"):
        m.parameters(torch=True)


# ----------------------------------------------------------------------------
# bad input


def test_missing_files(tmp_path, hf_dir):
    _, d = hf_dir
    with pytest.raises(FileNotFoundError, match="no config.json"):
        llmpy.GPT2.from_pretrained(tmp_path)
    (d / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors, model.safetensors.index.json or"):
        llmpy.GPT2.from_pretrained(d)
    with pytest.raises(FileNotFoundError, match="no such llm.c model file or Hugging Face directory"):
        llmpy.GPT2.from_pretrained(tmp_path / "nothing" / "here")
    (tmp_path / "f.bin").write_bytes(b"\0" * 2048)
    with pytest.raises(ValueError, match="is a file.*from_checkpoint"):
        llmpy.GPT2.from_pretrained(tmp_path / "f.bin")
    with pytest.raises(ValueError, match="neither an llm.c model file nor a Hugging Face directory"):
        hf.convert(tmp_path / "f.bin", tmp_path / "out")


@pytest.mark.parametrize("changes, message", [
    ({"model_type": "llama"}, "model_type is 'llama', not 'gpt2'"),
    ({"architectures": ["GPT2ForSequenceClassification"]}, "architecture GPT2ForSequenceClassification"),
    ({"activation_function": "relu"}, "activation_function 'relu'"),
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
    ({"scale_attn_weights": False}, "scale_attn_weights"),
    ({"add_cross_attention": True}, "add_cross_attention"),
    ({"tie_word_embeddings": False}, "tie_word_embeddings"),
    ({"n_inner": 100}, "n_inner is 100, not 4 \\* n_embd = 192"),
    ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon is 1e-06"),
    ({"n_head": 5}, "not divisible by n_head 5"),
])  # fmt: skip
def test_incompatible_configs_are_refused(hf_dir, changes, message):
    _, d = hf_dir
    edit_config(d, **changes)
    with pytest.raises(ValueError, match=message):
        llmpy.GPT2.from_pretrained(d)


def test_accepts_equivalent_configs(hf_dir):
    """gelu_pytorch_tanh is gelu_new; reorder_and_upcast_attn is the same math in float32."""
    ref, d = hf_dir
    edit_config(d, activation_function="gelu_pytorch_tanh", reorder_and_upcast_attn=True, n_inner=192)
    m = llmpy.GPT2.from_pretrained(d)
    x = tokens()
    m.forward(x)
    assert_close("logits", m.logits(), hf_logits(ref, x), max_abs=LOGITS_TOL)


def test_shape_mismatch_and_damaged_files(hf_dir, tmp_path):
    ref, d = hf_dir
    edit_config(d, vocab_size=102)
    with pytest.raises(ValueError, match=r"wte.weight has shape \(101, 48\), config.json implies \(102,"):
        llmpy.GPT2.from_pretrained(d)
    edit_config(d, vocab_size=101, n_layer=3)
    with pytest.raises(ValueError, match="tensors missing: h.2.ln_1.weight"):
        llmpy.GPT2.from_pretrained(d)
    edit_config(d, n_layer=2)
    raw = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(raw[:-100])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        llmpy.GPT2.from_pretrained(d)
    (d / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a model config object"):
        llmpy.GPT2.from_pretrained(d)
    (d / "config.json").write_text(json.dumps(ref.config.to_dict()))
    (d / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="not a safetensors file"):
        llmpy.GPT2.from_pretrained(d)

    # an untied output head (a state dict whose lm_head differs from wte)
    b = save_bin(ref, tmp_path / "untied")
    sd = torch.load(b / "pytorch_model.bin", weights_only=True)
    sd["lm_head.weight"] = sd["lm_head.weight"].clone() + 1.0
    torch.save(sd, b / "pytorch_model.bin")
    with pytest.raises(ValueError, match="lm_head.weight differs from wte"):
        llmpy.GPT2.from_pretrained(b)
    sd["extra.weight"] = torch.zeros(3)
    torch.save(sd, b / "pytorch_model.bin")
    with pytest.raises(ValueError, match="unexpected tensors extra.weight"):
        llmpy.GPT2.from_pretrained(b)

    # a truncated llm.c file
    good = tmp_path / "good.bin"
    hf.convert(save_bin(ref, tmp_path / "good"), good)
    good.write_bytes(good.read_bytes()[:-4])
    with pytest.raises(ValueError, match="good.bin: file is truncated"):
        hf.convert(good, tmp_path / "y")


# ----------------------------------------------------------------------------
# --init-from in the training CLI


def test_train_init_from_hf_directory(tmp_path, monkeypatch):
    from llmpy.data import DataLoader
    from llmpy.data.shards import write_shard
    from llmpy.train import main

    ref = hf_model(seed=2, n_layer=1, n_head=2, n_embd=32, vocab_size=50257)
    ref.save_pretrained(tmp_path / "init")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        write_shard(tmp_path / f"toy_{split}_000000.bin", rng.integers(0, 50257, size=4096), fsync=False)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))
    monkeypatch.setenv("LLMPY_PROGRESS", "0")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    rc = main(["--init-from", str(tmp_path / "init"), "--data", str(tmp_path / "toy_train_*.bin"),
               "--batch-size", "4", "--seq-len", "32", "--no-shuffle", "--max-steps", "2",
               "--eval-every", "0", "--sample-every", "0", "--checkpoint-every", "0", "--out-dir", str(out)])
    assert rc == 0
    losses = [r["loss"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in r]
    # step 1's loss is the loss of the Hugging Face weights on the first batch
    x, y = DataLoader(tmp_path / "toy_train_000000.bin", 4, 32).next_batch()
    with torch.no_grad():
        logits = ref(torch.from_numpy(x).long()).logits
        want = F.cross_entropy(logits.reshape(-1, 50257), torch.from_numpy(y).long().reshape(-1))
    assert len(losses) == 2
    assert_close("step-1 loss from --init-from <HF dir>", losses[0], want.item(), max_abs=1e-4)
    # a missing path is an error message, not a traceback
    assert main(["--init-from", str(tmp_path / "nope.bin"), "--data", str(tmp_path / "toy_train_*.bin")]) == 1
