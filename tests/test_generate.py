"""Generation with the C core's KV cache (issue 22): csrc/core/generate.c through llmpy.generate.

Oracles: the model's full forward (itself checked against PyTorch in test_parity.py) for the
logits at every position (fp32: 1e-5 relative, bf16 decode weights: 1e-2), one-by-one runs for
batches of ragged prompts, Hugging Face transformers' greedy ``generate`` on the same weights,
transformers' logits warpers for the sampling distribution, and closed forms for the cache size.
CUDA cases skip with "no CUDA device" where there is none.
"""

from __future__ import annotations

import io
import json

import llmpy
import numpy as np
import pytest
from conftest import assert_close
from llmpy import _C
from llmpy.sampling import probabilities, sample_next

CFG = llmpy.GPT2Config(n_layer=2, n_head=4, n_embd=64, vocab_size=101, block_size=48)
CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not llmpy.cuda_available(), reason="no CUDA device"))


@pytest.fixture(scope="module")
def model():
    return llmpy.GPT2(CFG, seed=3)


def full_logits(model, seq) -> np.ndarray:
    """(T, V) logits of one sequence by the ordinary forward (the oracle)."""
    model.forward(np.asarray(seq, dtype=np.int32)[None])
    return np.array(model.logits()[0])


def rel(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))


# ----------------------------------------------------------------------------
# the cache against the full forward


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("prompt_len", [1, 3, 20])  # 20 rows: the prefill runs through the GEMM
def test_decode_logits_equal_full_forward(device, prompt_len):
    m = llmpy.GPT2(CFG, seed=3, device=device, precision="fp32" if device == "cuda" else None)
    seq = np.random.default_rng(1).integers(0, CFG.vocab_size, size=CFG.block_size)
    ref = full_logits(m, seq)
    g = _C.Generator(m._m, None)
    g.reserve(1, CFG.block_size)
    one, zero = np.array([prompt_len], np.int32), np.array([0], np.int32)
    got = [g.prefill(seq[:prompt_len].astype(np.int32), one, zero)[0]]
    for t in range(prompt_len, CFG.block_size):
        got.append(g.decode(seq[t : t + 1].astype(np.int32), np.array([0], np.int32))[0])
    err = rel(np.array(got), ref[prompt_len - 1 :])
    assert err <= 1e-5, f"decode vs full forward: max abs diff / max |logit| = {err:.2e}"
    assert g.length(0) == CFG.block_size


def test_ragged_batch_prefill_in_chunks_equals_full_forward(model):
    """30 prompts of 1..48 tokens: 1440 rows, more than one prefill chunk (1024 rows), so later
    chunks read earlier ones back from the cache; each prompt's logits equal its own forward."""
    rng = np.random.default_rng(2)
    lengths = rng.integers(1, CFG.block_size + 1, size=30)
    lengths[0] = CFG.block_size
    prompts = [rng.integers(0, CFG.vocab_size, size=n) for n in lengths]
    g = _C.Generator(model._m, None)
    g.reserve(32, CFG.block_size)
    rows = np.arange(2, 32, dtype=np.int32)[::-1].copy()  # any slots, in any order
    got = g.prefill(np.concatenate(prompts).astype(np.int32), lengths.astype(np.int32), rows)
    for i, p in enumerate(prompts):
        err = rel(got[i], full_logits(model, p)[-1])
        assert err <= 1e-5, f"prompt {i} ({len(p)} tokens): relative error {err:.2e}"
        assert g.length(int(rows[i])) == len(p)


def test_ragged_batch_equals_one_by_one(model):
    prompts = [[7], [1, 2, 3, 4, 5], list(range(10, 27)), [9, 8, 7, 6, 5, 4, 3, 2, 1]]
    batched = model.generate(prompts, 12, temperature=0)
    for p, b in zip(prompts, batched):
        alone = model.generate(p, 12, temperature=0)
        np.testing.assert_array_equal(b, alone[0])
    # and the logits step by step, through the generator directly
    g = _C.Generator(model._m, None)
    g.reserve(4, 40)
    rows = np.arange(4, dtype=np.int32)
    flat = np.concatenate([np.asarray(p) for p in prompts]).astype(np.int32)
    lb = g.prefill(flat, np.array([len(p) for p in prompts], np.int32), rows)
    for i, p in enumerate(prompts):
        one = _C.Generator(model._m, None)
        one.reserve(1, 40)
        la = one.prefill(np.asarray(p, np.int32), np.array([len(p)], np.int32), np.array([0], np.int32))
        assert_close(f"prefill logits of prompt {i}", lb[i], la[0], max_abs=1e-5)
    nxt = lb.argmax(-1).astype(np.int32)
    lb2 = g.decode(nxt, rows)
    for i, p in enumerate(prompts):
        want = full_logits(model, list(p) + [int(nxt[i])])[-1]
        assert_close(f"decode logits of sequence {i}", lb2[i], want, max_abs=1e-5)


def test_decode_of_a_subset_of_slots_leaves_the_others(model):
    g = _C.Generator(model._m, None)
    g.reserve(3, 20)
    a, b = [3, 4, 5], [6, 7]
    g.prefill(np.array(a + b, np.int32), np.array([3, 2], np.int32), np.array([0, 2], np.int32))
    g.decode(np.array([9], np.int32), np.array([2], np.int32))  # slot 2 only
    got = g.decode(np.array([11, 12], np.int32), np.array([0, 2], np.int32))
    assert_close("slot 0", got[0], full_logits(model, a + [11])[-1], max_abs=1e-5)
    assert_close("slot 2", got[1], full_logits(model, b + [9, 12])[-1], max_abs=1e-5)
    assert [g.length(i) for i in range(3)] == [4, 0, 4]


def test_generation_leaves_the_forward_state(model):
    x = np.arange(10, dtype=np.int32)[None]
    model.forward(x)
    before = np.array(model.logits())
    model.generate([1, 2], 5, temperature=0)
    np.testing.assert_array_equal(model.logits(), before)


def test_cache_memory_is_reported(model):
    gen = model.generator()
    gen.generate([[1, 2, 3], [4]], 5, temperature=0)
    info = gen.info
    L, C = CFG.n_layer, CFG.n_embd
    assert (info["slots"], info["max_len"]) == (2, 3 + 5 - 1)
    assert info["cache_bytes"] == 2 * L * 2 * 7 * C * 4
    assert info["copy_bytes"] == 0 and info["weights"] == "fp32"
    matrices = L * 12 * C * C + CFG.vocab_size * C
    assert info["step_bytes"] >= matrices * 4
    # the cache grows to the largest call and is kept for smaller ones (the same tokens either way)
    small = gen.generate([[1, 2, 3], [4]], 5, temperature=0)
    gen.generate([[1], [2], [3]], 3, temperature=0)
    assert (gen.info["slots"], gen.info["max_len"]) == (3, 7)
    gen.generate([9] * 20, 10, temperature=0)
    assert (gen.info["slots"], gen.info["max_len"]) == (3, 29)
    assert gen.info["cache_bytes"] == 2 * L * 3 * 29 * C * 4
    again = gen.generate([[1, 2, 3], [4]], 5, temperature=0)
    assert all(np.array_equal(a, b) for a, b in zip(small, again))


# ----------------------------------------------------------------------------
# bf16 decode weights


@pytest.mark.parametrize("device,isa", [("cpu", "auto"), ("cpu", "avx2"),
                                        pytest.param("cuda", None, marks=CUDA.marks)])
def test_bf16_weights_logits_within_1e_2(device, isa):
    """cpu/auto: VDPBF16PS where the CPU has avx512_bf16; cpu/avx2: bf16 widened to fp32; cuda:
    the bf16 copy under the fp32 table."""
    if isa not in (None, "auto") and isa not in llmpy.build_info()["cpu_isas"]:
        pytest.skip(f"CPU ISA {isa} not built")
    old = llmpy.build_info()["cpu_isa"]
    try:
        if isa not in (None, "auto"):
            try:
                llmpy.set_cpu_isa(isa)
            except NotImplementedError:
                pytest.skip(f"this CPU cannot run {isa}")
        cfg = llmpy.GPT2Config(n_layer=2, n_head=4, n_embd=96, vocab_size=300, block_size=40)
        ref = llmpy.GPT2(cfg, seed=5)
        m = ref if device == "cpu" else llmpy.GPT2(cfg, seed=5, device=device, precision="fp32")
        seq = np.random.default_rng(4).integers(0, 300, size=40)
        want = full_logits(ref, seq)
        gen = m.generator("bf16")
        assert gen.weights == "bf16" and gen.info["copy_bytes"] > 0
        g = gen._g
        g.reserve(1, 40)
        got = [g.prefill(seq[:2].astype(np.int32), np.array([2], np.int32), np.array([0], np.int32))[0]]
        for t in range(2, 40):
            got.append(g.decode(seq[t : t + 1].astype(np.int32), np.array([0], np.int32))[0])
        got = np.array(got)
        scale = max(1.0, float(np.max(np.abs(want))))
        err = float(np.max(np.abs(got - want[1:])))
        assert err <= 1e-2 * scale, f"bf16 ({device}, {_C.cpu_bf16_path()}): max abs diff {err:.3e}"
        assert err > 0  # really the bf16 copy
        assert gen.info["step_bytes"] < m.generator().info["step_bytes"] * 0.55
    finally:
        llmpy.set_cpu_isa(old)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_generates_what_the_cpu_does(model, precision):
    if not llmpy.cuda_available():
        pytest.skip("no CUDA device")
    gpu = llmpy.GPT2(CFG, seed=3, device="cuda", precision=precision)
    prompts = [[7], [1, 2, 3, 4, 5], list(range(10, 27))]
    if precision == "fp32":  # the same greedy tokens, logits to 1e-4
        for a, b in zip(gpu.generate(prompts, 20, temperature=0), model.generate(prompts, 20, temperature=0)):
            np.testing.assert_array_equal(a, b)
    g = _C.Generator(gpu._m, None)
    g.reserve(3, 40)
    flat = np.concatenate([np.asarray(p) for p in prompts]).astype(np.int32)
    got = g.prefill(flat, np.array([len(p) for p in prompts], np.int32), np.arange(3, dtype=np.int32))
    nxt = got.argmax(-1).astype(np.int32)
    got2 = g.decode(nxt, np.arange(3, dtype=np.int32))
    tol = 1e-4 if precision == "fp32" else 5e-2
    for i, p in enumerate(prompts):
        want = full_logits(model, list(p) + [int(nxt[i])])
        scale = max(1.0, float(np.max(np.abs(want))))
        assert_close(f"prefill logits {i}", got[i] / scale, want[-2] / scale, max_abs=tol)
        assert_close(f"decode logits {i}", got2[i] / scale, want[-1] / scale, max_abs=tol)


def test_bf16_greedy_mostly_agrees_with_fp32(model):
    a = model.generate([[1, 2, 3], [50, 60]], 20, temperature=0)
    b = model.generate([[1, 2, 3], [50, 60]], 20, temperature=0, weights="bf16")
    assert all(len(x) == len(y) for x, y in zip(a, b))
    assert np.array_equal(a[0][:6], b[0][:6]) or np.array_equal(a[1][:5], b[1][:5])


# ----------------------------------------------------------------------------
# Hugging Face transformers: greedy continuations and the sampling distribution


def test_greedy_equals_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    cfg = llmpy.GPT2Config(n_layer=3, n_head=4, n_embd=64, vocab_size=500, block_size=64)
    m = llmpy.GPT2(cfg, seed=11)
    # sharper than the initialisation, so that the greedy choices are far from ties
    m.load_parameters({"wte": m.parameters()["wte"] * 20})
    m.save_pretrained(tmp_path / "hf")
    ref = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    prompts = [[5, 17, 33], [100], list(range(200, 216))]
    ours = m.generate(prompts, 24, temperature=0)
    for p, got in zip(prompts, ours):
        x = torch.tensor([p])
        with torch.no_grad():
            out = ref.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=24, do_sample=False,
                               pad_token_id=0, output_scores=True, return_dict_in_generate=True)
        want = out.sequences[0].numpy()
        # compare up to the first step whose top-2 margin is within rounding of a tie
        n = len(p)
        for step, scores in enumerate(out.scores):
            top2 = torch.topk(scores[0], 2).values
            if float(top2[0] - top2[1]) < 1e-4:
                break
            n += 1
        assert n > len(p) + 12, "degenerate test: near-ties early"
        np.testing.assert_array_equal(got[:n], want[:n])


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, None, 0.9), (0.7, 20, 0.8), (1.5, 5, 0.5),
                                                     (0.3, None, 0.95), (2.0, 50, None), (1.0, None, 0.01)])
def test_distribution_equals_transformers_warpers(temperature, top_k, top_p):
    """transformers applies temperature, top-k, top-p in that order (generation/utils.py); the
    distribution we sample from equals the softmax of its processed scores."""
    torch = pytest.importorskip("torch")
    lp = pytest.importorskip("transformers.generation.logits_process")
    logits = np.random.default_rng(7).normal(0, 3, size=(6, 300)).astype(np.float32)
    scores = torch.from_numpy(logits.astype(np.float64))
    warpers = [lp.TemperatureLogitsWarper(temperature)] if temperature != 1.0 else []
    if top_k is not None:
        warpers.append(lp.TopKLogitsWarper(top_k))
    if top_p is not None and top_p < 1.0:
        warpers.append(lp.TopPLogitsWarper(top_p))
    for w in warpers:
        scores = w(None, scores)
    want = torch.softmax(scores, dim=-1).numpy()
    got = probabilities(logits, temperature, top_k, top_p)
    np.testing.assert_array_equal(got > 0, want > 0)
    assert_close("probabilities", got, want, max_abs=1e-12)


def test_sampling_frequencies_follow_the_distribution():
    logits = np.tile(np.linspace(0.0, 4.0, 12), (40000, 1))
    picks = sample_next(logits, np.random.default_rng(0), top_k=6, temperature=0.8, top_p=0.7)
    want = probabilities(logits[:1], 0.8, 6, 0.7)[0]
    got = np.bincount(picks, minlength=12) / len(picks)
    assert set(np.flatnonzero(got)) == set(np.flatnonzero(want))
    np.testing.assert_allclose(got, want, atol=0.01)


# ----------------------------------------------------------------------------
# the Python API


def test_seeds_reproduce_and_stream_equals_generate(model):
    kw = dict(temperature=0.9, top_k=20, top_p=0.9)
    a = model.generate([[1, 2], [3]], 15, seed=4, num_samples=2, **kw)
    b = model.generate([[1, 2], [3]], 15, seed=4, num_samples=2, **kw)
    c = model.generate([[1, 2], [3]], 15, seed=5, num_samples=2, **kw)
    assert len(a) == 4 and all(len(x) == len(y) for x, y in zip(a, b))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    steps = list(model.stream([[1, 2], [3]], 15, seed=4, num_samples=2, **kw))
    assert len(steps) == 15
    np.testing.assert_array_equal(np.array(steps).T, np.array([x[-15:] for x in a]))
    one = model.generate([1, 2], 15, seed=4, **kw)
    assert list(model.stream([1, 2], 15, seed=4, **kw)) == one[0, 2:].tolist()
    # a caller's generator gives the same as its seed
    np.testing.assert_array_equal(model.generate([1, 2], 15, rng=np.random.default_rng(4), **kw), one)


def test_stop_tokens(model):
    prompts = [[1], [2], [3]]
    free = model.generate(prompts, 30, temperature=0)
    stop = int(free[0][5])  # the 5th new token of sequence 0
    out = model.generate(prompts, 30, temperature=0, stop_tokens=[stop, 1000])
    ends = []
    for f, o in zip(free, out):
        hits = np.flatnonzero(f[1:] == stop)
        ends.append(1 + (hits[0] + 1 if hits.size else 30))
        np.testing.assert_array_equal(o, f[: ends[-1]])  # up to and with the stop token
    assert ends[0] <= 6
    steps = list(model.stream(prompts, 30, temperature=0, stop_tokens=[stop]))
    assert len(steps) == max(ends) - 1
    for i, e in enumerate(ends):
        col = [int(s[i]) for s in steps]
        assert col[: e - 1] == out[i][1:].tolist() and set(col[e - 1 :]) <= {-1}
    # one prompt, several samples: an array, rows that stopped padded with their stop token
    arr = model.generate([1], 30, temperature=0, num_samples=2, stop_tokens=[stop])
    assert arr.shape == (2, ends[0]) and arr[0, -1] == stop


def test_runs_past_the_block_from_the_last_block_tokens(model):
    """Beyond block_size each token is predicted from the last block_size tokens (as before the cache)."""
    out = model.generate([[5], [6, 7]], CFG.block_size + 6, temperature=0)
    for o, p in zip(out, [[5], [6, 7]]):
        seq = list(p)
        while len(seq) < len(o):
            seq.append(int(np.argmax(full_logits(model, seq[-CFG.block_size :])[-1])))
        np.testing.assert_array_equal(o, seq)


@pytest.mark.parametrize("kwargs,match", [
    (dict(temperature=-1.0), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(temperature=float("inf")), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_p=float("nan")), "top_p"),
    (dict(top_k=0), "top_k"),
    (dict(num_samples=0), "num_samples"),
    (dict(weights="fp16"), "weights"),
])
def test_bad_arguments(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        model.generate([1, 2], 3, **kwargs)


def test_bad_prompts(model):
    with pytest.raises(ValueError, match="prompt.*empty"):
        model.generate([], 3)
    with pytest.raises(ValueError, match=r"prompts\[1\] is empty"):
        model.generate([[1], []], 3)
    with pytest.raises(ValueError, match="empty list"):
        model.generate(np.zeros((0, 3), np.int64), 3)
    with pytest.raises(ValueError, match=r"prompt has 49 tokens, more than the model's block_size 48"):
        model.generate(list(range(49)), 3)
    with pytest.raises(ValueError, match="out of range"):
        model.generate([100, 101], 3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate([1], -1)
    with pytest.raises(TypeError, match="token ids, not text"):
        model.generate("hello", 3)
    assert model.generate([1, 2], 0).tolist() == [[1, 2]]
    with pytest.raises(ValueError, match="temperature"):  # checked on the first next()
        next(model.stream([1], 3, temperature=-1))


def test_core_refuses_bad_calls(model):
    g = _C.Generator(model._m, None)
    one = np.array([1], np.int32)
    with pytest.raises(ValueError, match="no cache"):
        g.decode(one, np.array([0], np.int32))
    with pytest.raises(ValueError, match="max_len"):
        g.reserve(1, CFG.block_size + 1)
    g.reserve(2, 4)
    with pytest.raises(ValueError, match="empty"):
        g.decode(one, np.array([0], np.int32))
    with pytest.raises(ValueError, match="twice"):
        g.prefill(np.array([1, 2], np.int32), np.array([1, 1], np.int32), np.array([1, 1], np.int32))
    with pytest.raises(ValueError, match="out of range"):
        g.prefill(one, one, np.array([2], np.int32))
    with pytest.raises(ValueError, match="max_len=4"):
        g.prefill(np.arange(5, dtype=np.int32), np.array([5], np.int32), np.array([0], np.int32))
    g.prefill(np.arange(4, dtype=np.int32), np.array([4], np.int32), np.array([0], np.int32))
    with pytest.raises(ValueError, match="full"):
        g.decode(one, np.array([0], np.int32))
    with pytest.raises(ValueError, match="fp32"):
        _C.Generator(model._m, "fp16")


# ----------------------------------------------------------------------------
# python -m llmpy.sample


@pytest.fixture(scope="module")
def gpt2_checkpoint(tmp_path_factory):
    pytest.importorskip("tiktoken")
    from llmpy.tokenizer import gpt2

    try:
        gpt2()
    except Exception as e:  # no tokenizer files offline
        pytest.skip(f"GPT-2 tokenizer unavailable: {e}")
    m = llmpy.GPT2(llmpy.GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=50257, block_size=64), seed=0)
    path = tmp_path_factory.mktemp("ckpt") / "model.bin"
    m.save(path)
    return path


def test_sample_cli_streams_what_generate_returns(gpt2_checkpoint, capsys):
    from llmpy.sample import main
    from llmpy.tokenizer import gpt2

    args = ["--checkpoint", str(gpt2_checkpoint), "--prompt", "Hello", "--max-new-tokens", "12",
            "--num-samples", "2", "--seed", "3", "--device", "cpu"]
    assert main([*args, "--json"]) == 0
    texts = json.loads(capsys.readouterr().out)
    enc = gpt2()
    m = llmpy.GPT2.from_checkpoint(gpt2_checkpoint)
    out = m.generate(enc.encode("Hello"), 12, top_k=50, temperature=1.0, num_samples=2, seed=3)
    assert texts == [enc.decode(row.tolist()) for row in out]
    assert main(args) == 0
    shown = capsys.readouterr().out
    for t in texts:
        assert t in shown


def test_sample_cli_interactive(gpt2_checkpoint, capsys, monkeypatch):
    from llmpy.sample import main

    monkeypatch.setattr("sys.stdin", io.StringIO("Hello\nThe\n"))
    assert main(["--checkpoint", str(gpt2_checkpoint), "--interactive", "--max-new-tokens", "5",
                 "--temperature", "0", "--device", "cpu", "--weights", "bf16"]) == 0
    out = capsys.readouterr().out
    assert out.count("Hello") >= 1 and out.count("The") >= 1

