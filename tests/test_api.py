"""The Python API: construction, initialisation, views, threads, build info, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import llmpy

CFG = llmpy.GPT2Config(n_layer=2, n_head=3, n_embd=48, vocab_size=101, block_size=32)


@pytest.fixture
def model():
    return llmpy.GPT2(CFG, device="cpu", seed=0)


def tokens(B=2, T=8, V=101, seed=0, dtype=np.int32):
    return np.random.default_rng(seed).integers(0, V, size=(B, T)).astype(dtype)


# ---------------------------------------------------------------------------
# build and runtime


def test_build_info_reports_backends_and_threads():
    info = llmpy.build_info()
    assert info["version"] == llmpy.__version__
    assert "cpu" in info["backends"]
    assert info["num_threads"] >= 1
    assert isinstance(info["compiler"], str) and info["compiler"]
    assert info["cuda"] == ("cuda" in info["backends"])


def test_set_num_threads_round_trip():
    before = llmpy.get_num_threads()
    try:
        llmpy.set_num_threads(1)
        assert llmpy.get_num_threads() == 1
    finally:
        llmpy.set_num_threads(before)
    with pytest.raises(ValueError, match="threads"):
        llmpy.set_num_threads(0)


def test_formats_come_from_formats_h():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "csrc" / "core" / "formats.h").read_text()
    defined = {k: int(v) for k, v in re.findall(r"#define LLM_(\w+) (\d+)", text)}
    assert llmpy.formats == defined


# ---------------------------------------------------------------------------
# initialisation (closed-form oracle: the GPT-2 recipe)


def test_gpt2_initialisation_statistics():
    cfg = llmpy.GPT2Config(n_layer=4, n_head=4, n_embd=128, vocab_size=1000, block_size=64)
    p = llmpy.GPT2(cfg, seed=1).parameters()
    for name in ("wte", "wpe", "qkvw", "fcw"):
        assert abs(p[name].mean()) < 1e-3 and abs(p[name].std() - 0.02) < 1e-3, name
    for name in ("attprojw", "fcprojw"):
        assert abs(p[name].std() - 0.02 / np.sqrt(2 * 4)) < 1e-3, name
    for name in ("ln1w", "ln2w", "lnfw"):
        assert np.all(p[name] == 1.0), name
    for name in ("ln1b", "ln2b", "lnfb", "qkvb", "attprojb", "fcb", "fcprojb"):
        assert np.all(p[name] == 0.0), name


def test_init_is_deterministic_per_seed():
    a = llmpy.GPT2(CFG, seed=7).parameters()
    b = llmpy.GPT2(CFG, seed=7).parameters()
    c = llmpy.GPT2(CFG, seed=8).parameters()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["wte"], c["wte"])


def test_init_loss_is_log_vocab(model):
    # at init the logits are near zero, so the loss is close to ln(V) (closed form)
    # (targets independent of the inputs: with the tied head, target == input scores higher)
    x, y = tokens(4, 16, seed=1), tokens(4, 16, seed=2)
    assert abs(model.forward(x, y) - np.log(101)) < 0.1


def test_shapes_config_and_count(model):
    C, L, V = 48, 2, 101
    expect = {
        "wte": (V, C), "wpe": (32, C), "ln1w": (L, C), "ln1b": (L, C), "qkvw": (L, 3 * C, C), "qkvb": (L, 3 * C),
        "attprojw": (L, C, C), "attprojb": (L, C), "ln2w": (L, C), "ln2b": (L, C), "fcw": (L, 4 * C, C),
        "fcb": (L, 4 * C), "fcprojw": (L, C, 4 * C), "fcprojb": (L, C), "lnfw": (C,), "lnfb": (C,),
    }  # fmt: skip
    params, grads = model.parameters(), model.gradients()
    assert list(params) == list(expect)
    for name, shape in expect.items():
        assert params[name].shape == shape and grads[name].shape == shape
        assert params[name].dtype == np.float32
    assert model.num_parameters == sum(int(np.prod(s)) for s in expect.values())
    assert model.config == CFG


# ---------------------------------------------------------------------------
# zero-copy views


def test_parameter_views_write_through(model):
    x = tokens()
    before = model.forward(x, x)
    model.parameters()["lnfw"][:] = 0.0  # all logits become lnfb @ wte^T = 0
    after = model.forward(x, x)
    assert before != after
    np.testing.assert_allclose(model.logits(), 0.0, atol=1e-6)


def test_views_outlive_model_and_reallocation():
    m = llmpy.GPT2(CFG, seed=0)
    wte = m.parameters()["wte"]
    m.forward(tokens(1, 4))
    small = m.logits()
    kept = small.copy()
    m.forward(tokens(4, 32, seed=3))  # larger batch: activations are re-allocated
    np.testing.assert_array_equal(small, kept)  # still readable, unchanged
    del m
    assert np.isfinite(wte).all() and np.isfinite(small).all()


def test_int64_and_list_inputs_are_accepted(model):
    x = tokens(dtype=np.int64)
    a = model.forward(x, x)
    b = model.forward(x.astype(np.int32).tolist(), x.astype(np.int32))
    assert a == b


# ---------------------------------------------------------------------------
# bad input: a clear exception, never a crash or a silent wrong answer


@pytest.mark.parametrize(
    "idx,match",
    [
        (np.full((2, 4), -1, dtype=np.int32), r"out of range|outside"),
        (np.full((2, 4), 101, dtype=np.int32), r"out of range|outside"),
        (np.full((2, 4), 101, dtype=np.int64), r"idx\[0\] = 101 is out of range"),
        (np.zeros((2, 33), dtype=np.int32), r"exceeds block_size"),
        (np.zeros((0, 4), dtype=np.int32), r"empty"),
        (np.zeros((2, 0), dtype=np.int32), r"empty"),
        (np.zeros((8,), dtype=np.int32), r"2-D"),
        (np.zeros((2, 2, 2), dtype=np.int32), r"2-D"),
        (np.zeros((2, 4), dtype=np.float32), r"integer"),
        (np.zeros((2, 4), dtype=bool), r"integer"),
        (np.zeros((4, 8), dtype=np.int32)[:, ::2], r"contiguous"),
        (np.zeros((4, 8), dtype=np.int32).T, r"contiguous"),
    ],
)
def test_bad_idx(model, idx, match):
    with pytest.raises(ValueError, match=match):
        model.forward(idx)


def test_bad_token_in_the_middle_names_its_position(model):
    x = tokens(2, 8)
    x[1, 3] = 5000
    with pytest.raises(ValueError, match=r"idx\[11\] = 5000"):
        model.forward(x)
    y = tokens(2, 8)
    y[0, 0] = -3
    with pytest.raises(ValueError, match=r"targets\[0\] = -3"):
        model.forward(tokens(2, 8), y)


def test_bad_targets(model):
    x = tokens(2, 8)
    with pytest.raises(ValueError, match="shape"):
        model.forward(x, tokens(2, 7))
    with pytest.raises(ValueError, match="integer"):
        model.forward(x, x.astype(np.float64))
    with pytest.raises(ValueError, match="contiguous"):
        model.forward(x, np.asfortranarray(tokens(2, 8)))


def test_calls_out_of_order(model):
    with pytest.raises(ValueError, match="backward"):
        model.step(1e-3)
    with pytest.raises(ValueError, match="forward"):
        model.backward()
    with pytest.raises(ValueError, match="forward"):
        model.logits()
    model.forward(tokens())
    with pytest.raises(ValueError, match="targets"):
        model.backward()
    with pytest.raises(ValueError, match="targets"):
        model.losses()


def test_rejected_forward_changes_nothing(model):
    x, y = tokens(seed=1), tokens(seed=2)
    loss = model.forward(x, y)
    logits = model.logits().copy()
    with pytest.raises(ValueError):
        model.forward(np.full((2, 4), 500, dtype=np.int32), np.zeros((2, 4), dtype=np.int32))
    np.testing.assert_array_equal(model.logits(), logits)
    model.backward()  # still the gradient of the accepted forward
    g = model.gradients()["wte"].copy()
    model.zero_grad()
    assert model.forward(x, y) == loss
    model.backward()
    np.testing.assert_array_equal(model.gradients()["wte"], g)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(n_embd=50, n_head=3), "divisible"),
        (dict(n_layer=0), "n_layer"),
        (dict(vocab_size=0), "vocab_size"),
        (dict(block_size=-1), "block_size"),
    ],
)
def test_bad_config(kwargs, match):
    base = dict(n_layer=2, n_head=2, n_embd=48, vocab_size=101, block_size=32)
    with pytest.raises(ValueError, match=match):
        llmpy.GPT2(llmpy.GPT2Config(**{**base, **kwargs}))


def test_bad_device_and_step_arguments(model):
    with pytest.raises(ValueError, match="unknown device"):
        llmpy.GPT2(CFG, device="tpu")
    if not llmpy.build_info()["cuda"]:
        with pytest.raises(NotImplementedError, match="CUDA is not available \\(not built"):
            llmpy.GPT2(CFG, device="cuda")
    x = tokens()
    model.forward(x, x)
    model.backward()
    with pytest.raises(ValueError, match="grad_clip"):
        model.step(1e-3, grad_clip=0.0)
    with pytest.raises(ValueError, match="betas"):
        model.step(1e-3, beta1=1.0)
    with pytest.raises(ValueError, match="lr"):
        model.step(float("nan"))


def test_precision_and_load_parameters(model):
    assert model.precision == "fp32"
    with pytest.raises(NotImplementedError, match="CPU backend computes in fp32"):
        llmpy.GPT2(CFG, precision="bf16")
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        llmpy.GPT2(CFG, precision="fp16")
    assert not llmpy.cuda_available() or llmpy.build_info()["cuda"]
    new = np.linspace(-1, 1, CFG.n_embd, dtype=np.float32)
    model.load_parameters({"lnfb": new, "lnfw": new.tolist()})
    np.testing.assert_array_equal(model.parameters()["lnfb"], new)
    np.testing.assert_array_equal(model.parameters()["lnfw"], new)
    wte = np.full((CFG.vocab_size, CFG.n_embd), 0.5, np.float32)
    model.load_parameters({"wte": wte})  # the visible rows only; padding rows stay zero
    np.testing.assert_array_equal(model.parameters()["wte"], wte)
    with pytest.raises(KeyError, match="unknown tensor 'nope'"):
        model.load_parameters({"nope": new})
    with pytest.raises(ValueError, match=r"lnfb: shape \(3,\) does not match"):
        model.load_parameters({"lnfb": np.zeros(3, np.float32)})
