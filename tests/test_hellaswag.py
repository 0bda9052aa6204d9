"""HellaSwag (llmpy.hellaswag, train_gpt2 --hellaswag): rendering, scoring against a PyTorch
oracle, packing, ranks, bad input, llm.c's eval file and the binary's evaluator.

No network: the examples are synthetic, in the official jsonl schema.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import llmpy
from llmpy import hellaswag as hs
from llmpy.data import write_shard

from data_helpers import TIKTOKEN_CACHE, tiktoken_cache  # noqa: F401 (fixture)

CONTEXTS = [
    "A man is sitting on a roof. He",
    "A woman walks into the kitchen and opens the fridge. She takes out a carton of eggs and",
    "Two kids are playing with a ball in the garden.",
    "The camera pans over a snowy mountain while a skier prepares to descend the steep slope. The skier",
    "A chef slices onions",
    "People are gathered around a table playing cards. One of them",
    "A dog runs across the field chasing a frisbee thrown by its owner, and then",
    "Someone is tuning a guitar on a small stage in front of a quiet audience; the lights dim and",
    "A boy climbs a tree.",
    "The instructor demonstrates how to fold the paper into a crane, step by step, slowly.",
    "A man holds a bowling ball. He",
    "A large crowd is watching a parade go by, cheering loudly as the floats pass. A marching band",
]
ENDINGS = [
    "starts pulling up roofing on a roof.",
    "is using wrap to wrap a pair of skis.",
    "cracks them into a bowl",
    "laughs.",
    "falls down and cries while everyone around them keeps laughing at the very silly joke they told.",
    "jumps.",
    "the water is very cold today and nobody wants to swim in the lake anymore",
    "then he puts it away.",
    "plays a song.",
    "and the crowd cheers",
    "throws it down the lane and knocks over all of the pins.",
    "sits.",
]


def synthetic(n: int, seed: int = 0) -> list:
    """n examples in the official schema, with endings of different lengths."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        ctx = CONTEXTS[i % len(CONTEXTS)]
        a, _, b = ctx.partition(". ")
        endings = [ENDINGS[k] for k in rng.choice(len(ENDINGS), size=4, replace=False)]
        out.append({"ind": i, "activity_label": "Synthetic", "ctx_a": a, "ctx_b": b, "ctx": ctx,
                    "endings": endings, "label": int(rng.integers(4)), "source_id": f"synthetic~{i}",
                    "split": "val", "split_type": "indomain"})
    return out


def write_jsonl(path: Path, examples: list) -> Path:
    path.write_text("".join(json.dumps(ex) + "\n" for ex in examples))
    return path


@pytest.fixture(scope="module")
def enc():
    """The oracle tokenizer: tiktoken's GPT-2 encoding, loaded directly from the shared cache."""
    import tiktoken

    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))
    return tiktoken.get_encoding("gpt2")


@pytest.fixture(scope="module")
def gpt2_tok():
    """llmpy's GPT-2 tokenizer, from the shared tiktoken cache (no download)."""
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))
    from llmpy.tokenizer import gpt2

    return gpt2()


def make_pair(oracle, tmp_path, block_size: int = 64, seed: int = 0):
    """A small random oracle model and llmpy's copy, loaded from the oracle's file."""
    torch.manual_seed(seed)
    cfg = oracle.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=50257, block_size=block_size)
    ref = oracle.GPT(cfg)
    path = tmp_path / "model.bin"
    oracle.write_model(ref, path)
    return ref, llmpy.GPT2.from_checkpoint(path), path


def oracle_scores(ref, examples: list, enc, block_size: int) -> tuple:
    """(total, mean) ending losses (N, 4) from the oracle in float64, one candidate at a time.

    Contexts longer than the model can take keep their last block_size + 1 - (longest ending)
    tokens — the rule hellaswag.py documents.
    """
    ref64 = copy.deepcopy(ref).double()
    total = np.zeros((len(examples), 4))
    count = np.zeros((len(examples), 4))
    with torch.no_grad():
        for i, ex in enumerate(examples):
            ctx = enc.encode(ex["ctx"])
            ends = [enc.encode(" " + e) for e in ex["endings"]]
            ctx = ctx[-(block_size + 1 - max(map(len, ends))):]
            for j, e in enumerate(ends):
                row = torch.tensor([ctx + e])
                logits, _ = ref64(row[:, :-1])
                logp = torch.log_softmax(logits[0], dim=-1)
                targets = row[0, 1:]
                nll = -logp[torch.arange(len(targets)), targets]
                total[i, j] = float(nll[len(ctx) - 1:].sum())
                count[i, j] = len(e)
    return total, total / count


# ----------------------------------------------------------------------------
# rendering


def test_render_tokens_and_masks(gpt2_tok, enc):
    examples = synthetic(6)
    for ex in examples:
        r = hs.render(ex, gpt2_tok)
        ctx = enc.encode(ex["ctx"])
        ends = [enc.encode(" " + e) for e in ex["endings"]]
        L = len(ctx) + max(map(len, ends))
        assert r.label == ex["label"]
        assert r.ctx.tolist() == ctx
        assert r.tokens.shape == (4, L) and r.mask.shape == (4, L)
        for j, e in enumerate(ends):
            want = ctx + e + [0] * (L - len(ctx) - len(e))
            want_mask = [0] * len(ctx) + [1] * len(e) + [0] * (L - len(ctx) - len(e))
            assert r.tokens[j].tolist() == want, f"row {j}: {r.tokens[j].tolist()} != {want}"
            assert r.mask[j].tolist() == want_mask, f"mask {j}: {r.mask[j].tolist()} != {want_mask}"
    # the endings really differ in length (padding and masks are exercised)
    assert len({int(n) for n in hs.render(examples[0], gpt2_tok).ending_lengths}) > 1
    # the leading space: " laughs." is how GPT-2 sees the ending after the context
    r = hs.render({"ctx": "He", "endings": ["laughs.", "a", "b", "c"], "label": 0}, gpt2_tok)
    assert r.tokens[0, 1:3].tolist() == enc.encode(" laughs.")
    assert enc.encode(" laughs.") != enc.encode("laughs.")


# ----------------------------------------------------------------------------
# scoring


@pytest.mark.parametrize("block_size", [64, 24], ids=["fits", "cropped-context"])
def test_scores_match_oracle(oracle, tmp_path, gpt2_tok, enc, block_size):
    examples = synthetic(12, seed=1)
    ref, m, _ = make_pair(oracle, tmp_path, block_size)
    rendered = hs.render_all(examples, gpt2_tok)
    if block_size == 24:
        assert any(r.tokens.shape[1] - 1 > block_size for r in rendered), "no example needs cropping"
    s = hs.score(m, rendered)
    ref_total, ref_mean = oracle_scores(ref, examples, enc, block_size)
    rel = np.abs(s.total - ref_total) / np.abs(ref_total)
    assert rel.max() <= 1e-5, f"per-candidate loss: max relative error {rel.max():.3e} (limit 1e-5)"
    assert np.array_equal(s.pred, np.argmin(ref_total, axis=1)), f"acc: {s.pred} vs {np.argmin(ref_total, 1)}"
    assert np.array_equal(s.pred_norm, np.argmin(ref_mean, axis=1)), \
        f"acc_norm: {s.pred_norm} vs {np.argmin(ref_mean, 1)}"
    res = hs.evaluate(m, rendered)
    labels = np.array([ex["label"] for ex in examples])
    assert res.n == 12 and res.predictions == np.argmin(ref_mean, axis=1).tolist()
    assert res.correct == int((np.argmin(ref_total, 1) == labels).sum())
    assert res.correct_norm == int((np.argmin(ref_mean, 1) == labels).sum())


def test_packed_equals_one_at_a_time(oracle, tmp_path, gpt2_tok):
    _, m, _ = make_pair(oracle, tmp_path)
    rendered = hs.render_all(synthetic(12, seed=2), gpt2_tok)
    calls = []
    packed = hs.score(m, rendered, max_tokens=1024, on_pack=lambda idx, s: calls.append(len(idx)))
    assert max(calls) > 1 and sum(calls) == 12, f"pack sizes {calls}: nothing was packed"
    single = hs.Scores(np.zeros((12, 4)), np.zeros((12, 4), dtype=np.int64))
    for i, r in enumerate(rendered):
        one = hs.score(m, [r], max_tokens=1)
        single.total[i], single.count[i] = one.total[0], one.count[0]
    rel = np.abs(packed.total - single.total) / np.abs(single.total)
    assert rel.max() <= 1e-6, f"packed vs one at a time: max relative error {rel.max():.3e}"
    assert np.array_equal(packed.count, single.count)
    assert np.array_equal(packed.pred, single.pred) and np.array_equal(packed.pred_norm, single.pred_norm)


def test_two_ranks_equal_one_process(oracle, tmp_path, gpt2_tok):
    _, _, path = make_pair(oracle, tmp_path)
    rendered = hs.render_all(synthetic(11, seed=3), gpt2_tok)  # odd: the ranks get 6 and 5
    whole = hs.evaluate(llmpy.GPT2.from_checkpoint(path), rendered)

    # two ranks in two threads, each with its own model; reduce = an all-reduce (sum) via a barrier
    barrier, parts, results = threading.Barrier(2), [None, None], [None, None]

    def all_reduce(rank):
        def reduce(buf):
            parts[rank] = buf.copy()
            barrier.wait()
            return parts[0] + parts[1]
        return reduce

    def run(rank):
        m = llmpy.GPT2.from_checkpoint(path)
        results[rank] = hs.evaluate(m, rendered, rank=rank, world_size=2, reduce=all_reduce(rank))

    threads = [threading.Thread(target=run, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert parts[0][0] == 6 and parts[1][0] == 5, f"examples per rank: {parts[0][0]}, {parts[1][0]}"
    for r in results:
        assert r is not None and r.to_dict() == whole.to_dict(), f"rank result {r} != single process {whole}"


# ----------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    "line,match",
    [
        ('{"ctx": "A man", "endings": ["a", "b", "c", "d"], "label": 1', "not valid JSON"),
        ('{"ctx": "A man", "endings": ["a", "b", "c", "d"], "label": 4}', "an integer in [0, 4), got 4"),
        ('{"ctx": "A man", "endings": ["a", "b", "c", "d"], "label": -1}', "got -1"),
        ('{"ctx": "A man", "endings": ["a", "b", "c"], "label": 0}', "list of 4 strings, got 3"),
        ('{"endings": ["a", "b", "c", "d"], "label": 0}', "'ctx' must be a non-empty string"),
    ],
    ids=["malformed", "label-4", "label-neg", "3-endings", "no-ctx"],
)
def test_bad_input_names_the_line(tmp_path, line, match):
    good = json.dumps(synthetic(1)[0])
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{good}\n{good}\n{line}\n{good}\n")
    with pytest.raises(hs.HellaSwagFormatError) as e:
        hs.load_examples(path)
    assert f"{path}:3:" in str(e.value) and match in str(e.value), str(e.value)
    assert len(hs.load_examples(path, limit=2)) == 2  # the lines before it are fine


def test_download_into_cache_and_offline_error(tmp_path, monkeypatch):
    from llmpy.data import DownloadError

    src = write_jsonl(tmp_path / "official.jsonl", synthetic(3))
    monkeypatch.setenv("LLMPY_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(hs, "HELLASWAG_URL", src.as_uri())  # file:// stands in for the server
    assert hs.load_examples() == synthetic(3)
    assert (tmp_path / "cache" / "hellaswag" / "hellaswag_val.jsonl").read_bytes() == src.read_bytes()
    monkeypatch.setenv("LLMPY_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(hs, "HELLASWAG_URL", (tmp_path / "unreachable.jsonl").as_uri())
    with pytest.raises(DownloadError) as e:
        hs.load_examples()
    msg = str(e.value)
    assert "hellaswag_val.jsonl" in msg and "--data FILE.jsonl" in msg, msg


# ----------------------------------------------------------------------------
# the CLI


def test_cli_json(oracle, tmp_path, capsys, monkeypatch, gpt2_tok):
    monkeypatch.setenv("LLMPY_PROGRESS", "0")
    _, m, path = make_pair(oracle, tmp_path)
    examples = synthetic(12, seed=4)
    data = write_jsonl(tmp_path / "val.jsonl", examples)
    assert hs.main(["--checkpoint", str(path), "--data", str(data), "--limit", "7", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    want = hs.evaluate(m, hs.render_all(examples[:7], gpt2_tok)).to_dict()
    assert got == want and got["n"] == 7 and len(got["predictions"]) == 7
    assert hs.main(["--checkpoint", str(path), "--data", str(tmp_path / "nope.jsonl")]) == 1
    assert "HellaSwag data" in capsys.readouterr().err


# ----------------------------------------------------------------------------
# llm.c's eval file and the binary


def read_eval_file(path) -> tuple:
    """(header, examples) read with plain numpy from the format's description (llm.c's dev/data)."""
    data = Path(path).read_bytes()
    header = np.frombuffer(data[:1024], dtype="<i4")
    s = np.frombuffer(data[1024:], dtype="<u2").astype(np.int64)
    out, p = [], 0
    for _ in range(header[2]):
        assert s[p] == 65535
        nbytes, idx, label, k = s[p + 1:p + 5]
        q = p + 5
        ctx_len = s[q]
        ctx = s[q + 1:q + 1 + ctx_len].tolist()
        q += 1 + ctx_len
        ends = []
        for _ in range(k):
            ends.append(s[q + 1:q + 1 + s[q]].tolist())
            q += 1 + s[q]
        assert 2 * (q - p) == nbytes
        out.append({"index": int(idx), "label": int(label), "ctx": ctx, "endings": ends,
                    "bytes": int(nbytes)})
        p = q
    assert p == len(s)
    return header, out


def test_eval_file_layout(tmp_path, gpt2_tok, enc):
    examples = synthetic(5)
    path = hs.write_eval_file(tmp_path / "hs.bin", hs.render_all(examples, gpt2_tok))
    header, got = read_eval_file(path)
    assert header[:4].tolist() == [20240522, 1, 5, max(e["bytes"] for e in got)]
    for i, (ex, g) in enumerate(zip(examples, got)):
        assert g["index"] == i and g["label"] == ex["label"]
        assert g["ctx"] == enc.encode(ex["ctx"])
        assert g["endings"] == [enc.encode(" " + e) for e in ex["endings"]]


def find_binary() -> str:
    import shutil
    import sysconfig

    found = shutil.which("train_gpt2") or shutil.which("train_gpt2", path=sysconfig.get_path("scripts"))
    assert found, "the train_gpt2 binary is not installed (pip install . builds and installs it)"
    return found


def read_log(path) -> list:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_binary_matches_python(oracle, tmp_path, monkeypatch, gpt2_tok):
    """train_gpt2 --hellaswag scores like llmpy.hellaswag, prediction for prediction; and the
    training hooks of both log the same record."""
    monkeypatch.setenv("LLMPY_PROGRESS", "0")
    monkeypatch.chdir(tmp_path)
    _, m, model = make_pair(oracle, tmp_path, block_size=24)  # some contexts get cropped
    examples = synthetic(24, seed=5)
    rendered = hs.render_all(examples, gpt2_tok)
    res = hs.evaluate(m, rendered)
    assert 0 < res.correct_norm < res.n, "degenerate test: all or no predictions right"
    data = write_jsonl(tmp_path / "val.jsonl", examples)
    tokens = np.random.default_rng(0).integers(0, 50257, size=4096).astype(np.uint16)
    write_shard(tmp_path / "d_train.bin", tokens)
    write_shard(tmp_path / "d_val.bin", tokens)
    # lr 0: the step leaves the weights as they are, so the binary evaluates the model above
    flags = ["--init-from", str(model), "--batch-size", "2", "--seq-len", "16", "--max-steps", "1",
             "--lr", "0", "--eval-every", "0", "--sample-every", "0", "--checkpoint-every", "0",
             "--hellaswag-every", "1"]

    def binary(eval_file, out):
        r = subprocess.run([find_binary(), *flags, "--data", str(tmp_path / "d_train.bin"), "--hellaswag",
                            str(eval_file), "--out-dir", str(tmp_path / out)], capture_output=True, text=True,
                           timeout=120, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        return [rec for rec in read_log(tmp_path / out / "log.jsonl") if "hellaswag_acc_norm" in rec]

    recs = binary(hs.write_eval_file(tmp_path / "hs.bin", rendered), "bin")
    assert recs == [{"step": 1, "hellaswag_acc_norm": res.acc_norm}], f"binary {recs} vs {res.acc_norm}"
    # every prediction: labels set to Python's choices must give 1.0, one off must give 0.0
    for shift, want in ((0, 1.0), (1, 0.0)):
        relabelled = [hs.Rendered(r.ctx, r.tokens, r.mask, (p + shift) % 4)
                      for r, p in zip(rendered, res.predictions)]
        recs = binary(hs.write_eval_file(tmp_path / f"hs{shift}.bin", relabelled), f"bin{shift}")
        assert recs[0]["hellaswag_acc_norm"] == want, f"binary and Python disagree on predictions: {recs}"
    # the Python training hook logs the same record
    from llmpy.train import main

    assert main([*flags, "--data", str(tmp_path / "d_train.bin"), "--hellaswag-data", str(data),
                 "--out-dir", str(tmp_path / "py")]) == 0
    py = [rec for rec in read_log(tmp_path / "py" / "log.jsonl") if "hellaswag_acc_norm" in rec]
    assert py == [{"step": 1, "hellaswag_acc_norm": res.acc_norm}], f"training hook {py} vs {res.acc_norm}"


@pytest.mark.parametrize(
    "damage,match",
    [
        ("magic", "is not a HellaSwag eval file"),
        ("truncated", "example 2"),
        ("label", "example 0 has label 7"),
        ("no-every", "--hellaswag FILE.bin and --hellaswag-every N (> 0) go together"),
    ],
)
def test_binary_rejects_bad_eval_file(oracle, tmp_path, gpt2_tok, damage, match):
    _, _, model = make_pair(oracle, tmp_path)
    write_shard(tmp_path / "d_train.bin", np.zeros(1024, dtype=np.uint16))
    write_shard(tmp_path / "d_val.bin", np.zeros(1024, dtype=np.uint16))
    path = hs.write_eval_file(tmp_path / "hs.bin", hs.render_all(synthetic(3), gpt2_tok))
    data = bytearray(path.read_bytes())
    if damage == "magic":
        data[0:4] = np.array([20240520], dtype="<i4").tobytes()
    elif damage == "truncated":
        data = data[:-6]
    elif damage == "label":
        data[1024 + 6:1024 + 8] = np.array([7], dtype="<u2").tobytes()  # word 3 of example 0
    path.write_bytes(bytes(data))
    every = [] if damage == "no-every" else ["--hellaswag-every", "1"]
    cmd = [find_binary(), "--init-from", str(model), "--data", str(tmp_path / "d_train.bin"), "--hellaswag",
           str(path), *every, "--max-steps", "1", "--seq-len", "16", "--out-dir", str(tmp_path / "o")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1 and match in r.stderr, r.stderr
