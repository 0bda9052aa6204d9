"""Sampling: reproducible per seed, greedy = argmax, top-k and temperature behave."""

from __future__ import annotations

import numpy as np
import pytest

import llmpy
import test_train
from llmpy.sample import sample_next

CFG = llmpy.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=64, block_size=16)


@pytest.fixture
def model():
    return llmpy.GPT2(CFG, seed=0)


def test_same_seed_same_samples(model):
    a = model.generate([1, 2, 3], 20, top_k=10, num_samples=3, seed=5)
    b = model.generate([1, 2, 3], 20, top_k=10, num_samples=3, seed=5)
    c = model.generate([1, 2, 3], 20, top_k=10, num_samples=3, seed=6)
    assert a.shape == (3, 23)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(a[:, :3], [[1, 2, 3]] * 3)


def test_greedy_matches_argmax_of_forward(model):
    out = model.generate([5], 25, top_k=1)[0]  # runs past block_size: the context is cropped
    seq = [5]
    for _ in range(25):
        ctx = np.array([seq[-CFG.block_size:]], dtype=np.int32)
        model.forward(ctx)
        seq.append(int(np.argmax(model.logits()[0, -1])))
    np.testing.assert_array_equal(out, seq)
    np.testing.assert_array_equal(model.generate([5], 25, temperature=0.0)[0], seq)


def test_top_k_restricts_support_and_temperature_sharpens():
    rng = np.random.default_rng(0)
    logits = np.tile(np.linspace(0.0, 3.0, 10), (20000, 1))
    picks = sample_next(logits, rng, top_k=3)
    assert set(np.unique(picks)) == {7, 8, 9}
    # with top_k=3 the probabilities are the softmax of the top 3 logits (closed form)
    z = logits[0, 7:]
    want = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    got = np.bincount(picks, minlength=10)[7:] / len(picks)
    np.testing.assert_allclose(got, want, atol=0.015)
    cold = sample_next(logits, np.random.default_rng(1), temperature=0.1)
    hot = sample_next(logits, np.random.default_rng(1), temperature=10.0)
    for picks_t, t in ((cold, 0.1), (hot, 10.0)):
        w = np.exp((logits[0] - logits[0].max()) / t)
        np.testing.assert_allclose(np.bincount(picks_t, minlength=10) / len(picks_t), w / w.sum(), atol=0.015)


def test_bad_sampling_arguments(model):
    with pytest.raises(ValueError):
        sample_next(np.zeros((1, 4)), np.random.default_rng(0), top_k=0)
    with pytest.raises(ValueError):
        sample_next(np.zeros((1, 4)), np.random.default_rng(0), temperature=-1)
    with pytest.raises(ValueError, match="prompt"):
        model.generate([], 3)
    with pytest.raises(ValueError, match="out of range"):
        model.generate([100], 3)


def _eot_loving_model(path):
    """A GPT-2-vocabulary model whose every next token is <|endoftext|> by a wide margin: the final
    layernorm outputs its bias u whatever the input (weight 0), and only wte[eot] points along u."""
    cfg = llmpy.GPT2Config(n_layer=1, n_head=1, n_embd=8, vocab_size=50257, block_size=32)
    m = llmpy.GPT2(cfg, seed=0)
    p = {k: v.copy() for k, v in m.parameters().items()}
    eot = 50256
    u = np.ones(8, np.float32)
    p["wte"][:] = np.random.default_rng(0).normal(0, 0.01, p["wte"].shape) - 0.1 * u  # all below 0 along u
    p["wte"][eot] = 3.0 * u
    p["lnfw"][:] = 0.0
    p["lnfb"][:] = u
    m.load_parameters(p)
    m.save(path)


def test_cli_samples_end_at_endoftext(tmp_path, capsys):
    # rule: python -m llmpy.sample ends a sample at <|endoftext|> and does not print it, unless
    # --no-stop-at-eot (then the token is printed as text, and generation goes on)
    from llmpy.sample import main

    _eot_loving_model(tmp_path / "m.bin")
    base = ["--checkpoint", str(tmp_path / "m.bin"), "--prompt", "Hello", "--num-samples", "1",
            "--max-new-tokens", "5", "--temperature", "0", "--device", "cpu"]
    assert main(base) == 0
    out = capsys.readouterr().out
    assert out == "Hello\n", repr(out)
    assert main([*base, "--no-stop-at-eot"]) == 0
    assert capsys.readouterr().out == "Hello" + "<|endoftext|>" * 5 + "\n"
    assert main([*base, "--json"]) == 0
    assert capsys.readouterr().out.strip() == '["Hello"]'


shakespeare_cache, env = test_train.shakespeare_cache, test_train.env  # fixtures: a tokenized data cache


def test_training_samples_end_at_endoftext_and_say_when_empty(env, capsys):
    # rule: a training-time sample is one document: it ends at <|endoftext|>; one that ends at once
    # says so instead of printing an empty sample
    from llmpy.train import main

    _eot_loving_model(env / "m.bin")
    assert main(["--init-from", str(env / "m.bin"), "--max-steps", "1", "--lr", "0", "--warmup-steps", "0",
                 "--sample-every", "1", "--eval-every", "0", "--seq-len", "16", "--batch-size", "2",
                 "--device", "cpu", "--out-dir", str(env / "run")]) == 0
    out = capsys.readouterr().out
    assert "--- sample at step 1:\n(empty: the model ended the document at once with <|endoftext|>)\n---" in out, out
