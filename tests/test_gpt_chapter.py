"""The char-level GPT chapter: causal averaging three ways, attention vs torch's SDPA, training."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

import torch  # a test dependency: a missing torch must fail, not skip
import torch.nn.functional as F
from llmpy.gpt import (
    CONFIGS,
    GPT,
    CharTokenizer,
    GPTConfig,
    Head,
    average_loops,
    average_matmul,
    average_softmax,
    get_batch,
    load_data,
    train,
)
from llmpy.gpt.__main__ import main

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: extra threads only add synchronisation on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shakespeare():
    """(tokenizer, train, val) of tiny Shakespeare from LLMPY_DATA_DIR (or the shared data)."""
    with pytest.MonkeyPatch.context() as mp:
        if not os.environ.get("LLMPY_DATA_DIR"):
            mp.setenv("LLMPY_DATA_DIR", str(SHARED_DATA))
        from llmpy.data.tinyshakespeare import input_path

        if not input_path().exists():
            pytest.fail(f"{input_path()} is missing (tests never download); set LLMPY_DATA_DIR")
        yield load_data(input_path())


def test_three_ways_to_average_agree():
    g = torch.Generator().manual_seed(1337)
    x = torch.randn(4, 8, 2, generator=g, dtype=torch.float64)
    loops = average_loops(x)
    for name, other in [("matmul", average_matmul(x)), ("softmax", average_softmax(x))]:
        diff = (loops - other).abs().max().item()
        assert diff <= 1e-12, f"loops vs {name}: max abs diff {diff:.3e}"
    assert torch.equal(loops[:, 0], x[:, 0])  # the first position sees only itself
    assert torch.allclose(loops[:, -1], x.mean(1), atol=1e-12, rtol=0)  # the last one sees everything


def test_head_equals_scaled_dot_product_attention():
    """Our Head (dropout off) against torch's fused causal attention, float64."""
    torch.manual_seed(0)
    head = Head(n_embd=16, head_size=8, block_size=10, dropout=0.0).double()
    x = torch.randn(3, 10, 16, dtype=torch.float64)
    q, k, v = head.query(x), head.key(x), head.value(x)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    diff = (head(x) - ref).abs().max().item()
    assert diff <= 1e-12, f"max abs diff {diff:.3e}"


def test_gpt_is_causal_and_has_the_lecture_size():
    cfg = CONFIGS["tiny"].replace(vocab_size=65)
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    idx = torch.randint(0, 65, (2, 16))
    idx2 = idx.clone()
    idx2[:, 10:] = torch.randint(0, 65, (2, 6))
    a, b = model(idx)[0], model(idx2)[0]
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-6), "changing the future changed the past"
    assert not torch.allclose(a[:, 10:], b[:, 10:])
    # the lecture's model prints 10.788929 M parameters for the 65-character vocabulary
    assert GPT(CONFIGS["lecture"].replace(vocab_size=65)).num_parameters() == 10_788_929
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_tokenizer_and_batches(shakespeare):
    tok, train_data, val_data = shakespeare
    assert len(tok) == 65 and tok.chars[0] == "\n"
    assert len(train_data) == 1_003_854 and len(val_data) == 111_540
    assert tok.decode(tok.encode("First Citizen:")) == "First Citizen:"
    x, y = get_batch(train_data, 4, 8, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 8) and torch.equal(x[:, 1:], y[:, :-1])
    assert CharTokenizer.from_text("ba").encode("ab") == [0, 1]


def test_tiny_config_loss_falls(shakespeare):
    tok, train_data, val_data = shakespeare
    cfg = CONFIGS["tiny"].replace(vocab_size=len(tok), eval_interval=150, eval_iters=10)
    r = train(cfg, train_data, val_data, steps=150, seed=1337, log=None)
    first, last = r.history[0], r.history[-1]
    assert abs(first["val"] - math.log(65)) < 0.15, f"initial val loss {first['val']:.3f}, expected ~ln 65"
    assert last["val"] < 2.9, f"val loss {first['val']:.3f} -> {last['val']:.3f} after 150 steps"
    assert len(r.train_losses) == 150
    r.model.eval()
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    start = torch.zeros((1, 1), dtype=torch.long)
    out1 = r.model.generate(start, 40, g1)  # longer than block_size (16): the context is cropped
    out2 = r.model.generate(start, 40, g2)
    assert out1.shape == (1, 41) and torch.equal(out1, out2)


def test_cli_json(shakespeare, capsys, monkeypatch):
    if not os.environ.get("LLMPY_DATA_DIR"):
        monkeypatch.setenv("LLMPY_DATA_DIR", str(SHARED_DATA))
    assert main(["--config", "tiny", "--steps", "10", "--eval-iters", "2", "--sample-tokens", "20",
                 "--device", "cpu", "--json"]) == 0  # fmt: skip
    m = json.loads(capsys.readouterr().out)
    assert m["config"] == "tiny" and m["steps"] == 10 and len(m["sample"]) == 21
    assert m["val_loss"] < math.log(65) + 0.2


def test_config_replace():
    cfg = GPTConfig().replace(n_layer=2)
    assert cfg.n_layer == 2 and cfg.n_embd == 384
