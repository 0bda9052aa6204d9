"""HellaSwag (llmpy.hellaswag over the C scorer, train_gpt2 --hellaswag): rendering, per-candidate
scores against a PyTorch float64 oracle (one candidate row per forward, contexts cropped
explicitly), packing, cropping, ranks, bad input, llm.c's eval file and the binary's evaluator.

There is one scorer (csrc/data/hellaswag.c); Python renders the data and shows progress. Every
test checks it against the oracle or a closed-form rule, never against a second implementation.
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
from llmpy import _C
from llmpy import hellaswag as hs
from llmpy.data import write_shard

from data_helpers import TIKTOKEN_CACHE, tiktoken_cache  # noqa: F401 (fixture)
from binaries import find_train_gpt2

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
    """(total, count) per candidate (N, 4) from the oracle in float64, one candidate row per forward.

    Contexts longer than the model can take keep their last block_size + 1 - (longest ending)
    tokens — the rule hellaswag.h documents — cropped here before the forward.
    """
    ref64 = copy.deepcopy(ref).double()
    total = np.zeros((len(examples), 4))
    count = np.zeros((len(examples), 4), dtype=np.int64)
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
    return total, count


def assert_scores(name: str, got: hs.Scores, ref_total: np.ndarray, ref_count: np.ndarray,
                  rtol: float = 1e-5) -> None:
    """Per-candidate totals within rtol (relative, per element), counts and both predictions exact."""
    assert np.array_equal(got.count, ref_count), f"{name}: ending token counts {got.count} != {ref_count}"
    rel = np.abs(got.total - ref_total) / np.abs(ref_total)
    worst = np.unravel_index(np.argmax(rel), rel.shape)
    assert rel.max() <= rtol, (f"{name}: per-candidate loss max relative error {rel.max():.3e} (limit "
                               f"{rtol}) at example {worst[0]} ending {worst[1]}: {got.total[worst]} vs "
                               f"{ref_total[worst]}")
    ref = hs.Scores(ref_total, ref_count)
    assert np.array_equal(got.pred, ref.pred), f"{name}: acc predictions {got.pred} != oracle {ref.pred}"
    assert np.array_equal(got.pred_norm, ref.pred_norm), \
        f"{name}: acc_norm predictions {got.pred_norm} != oracle {ref.pred_norm}"


def widths(rendered: list, block_size: int) -> np.ndarray:
    """Input width of each example's rows, from the crop rule: kept context + longest ending - 1."""
    out = []
    for r in rendered:
        e_max = int(r.ending_lengths.max())
        out.append(min(r.ctx.size, block_size + 1 - e_max) + e_max - 1)
    return np.array(out)


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
    cropped = sum(r.tokens.shape[1] - 1 > block_size for r in rendered)
    assert (cropped > 0) == (block_size == 24), f"{cropped} examples need cropping at block_size {block_size}"
    ref_total, ref_count = oracle_scores(ref, examples, enc, block_size)
    assert_scores("score()", hs.score(m, rendered), ref_total, ref_count)

    res = hs.evaluate(m, rendered)
    ref = hs.Scores(ref_total, ref_count)
    labels = np.array([ex["label"] for ex in examples])
    want = (12, int((ref.pred == labels).sum()), int((ref.pred_norm == labels).sum()), ref.pred_norm.tolist())
    got = (res.n, res.correct, res.correct_norm, res.predictions)
    assert got == want, f"evaluate() (n, correct, correct_norm, predictions) {got} != oracle {want}"
    assert res.acc_norm == want[2] / 12 and res.acc == want[1] / 12


def test_crop_equals_an_explicitly_cropped_context(oracle, tmp_path, gpt2_tok):
    """A context too long for block_size scores as the same example with its first tokens removed."""
    _, m, _ = make_pair(oracle, tmp_path, block_size=24)
    rendered = hs.render_all(synthetic(12, seed=1), gpt2_tok)
    long = [r for r in rendered if r.tokens.shape[1] - 1 > 24]
    assert len(long) >= 3, "too few examples need cropping"
    short = []
    for r in long:
        drop = r.ctx.size - (25 - int(r.ending_lengths.max()))  # keep block_size + 1 - longest ending
        assert drop > 0
        short.append(hs.Rendered(r.ctx[drop:], r.tokens[:, drop:], r.mask[:, drop:], r.label))
        assert short[-1].tokens.shape[1] - 1 == 24, "the explicitly cropped rows should just fit"
    got, want = hs.score(m, long), hs.score(m, short)
    assert np.array_equal(got.count, want.count), f"counts {got.count} != {want.count}"
    assert np.array_equal(got.total, want.total), \
        f"cropped by the scorer vs by hand: max abs diff {np.abs(got.total - want.total).max():.3e}"


def test_packing_is_invisible(oracle, tmp_path, gpt2_tok, enc):
    """Any max_tokens gives the oracle's scores; the packs cover every example once."""
    examples = synthetic(12, seed=2)
    ref, m, _ = make_pair(oracle, tmp_path)
    rendered = hs.render_all(examples, gpt2_tok)
    ref_total, ref_count = oracle_scores(ref, examples, enc, 64)
    first = None
    for max_tokens in (1, 300, 1024, hs.DEFAULT_MAX_TOKENS, 1 << 40):
        packs = []
        s = hs.score(m, rendered, max_tokens=max_tokens,
                     on_pack=lambda idx, _s, packs=packs: packs.append(idx.tolist()))
        covered = sorted(i for p in packs for i in p)
        assert covered == list(range(12)), f"max_tokens {max_tokens}: packs {packs}"
        if max_tokens == 1:
            assert len(packs) == 12, f"max_tokens 1: one example per forward expected, got packs {packs}"
        if max_tokens >= 1024:
            assert max(map(len, packs)) > 1, f"max_tokens {max_tokens}: nothing was packed ({packs})"
        if max_tokens == 1 << 40:
            assert len(packs) == 1, f"everything fits one forward, got packs {packs}"
        assert_scores(f"max_tokens {max_tokens}", s, ref_total, ref_count)
        if first is None:
            first = s
        rel = np.abs(s.total - first.total) / np.abs(first.total)
        assert rel.max() <= 1e-6, f"max_tokens {max_tokens} vs 1: max relative difference {rel.max():.3e}"


@pytest.mark.parametrize("max_tokens", [1, 200, 700, 2048])
def test_packs_follow_the_rule(oracle, tmp_path, gpt2_tok, max_tokens):
    """The plan, checked against its rule: examples sorted by (width, index), greedy packs of
    4 * count * widest <= max_tokens (one example at least), each as large as the rule allows."""
    _, m, _ = make_pair(oracle, tmp_path, block_size=24)  # cropping changes some widths
    rendered = hs.render_all(synthetic(30, seed=8), gpt2_tok)
    w = widths(rendered, 24)
    order, pack_end = hs._eval_set(rendered).plan(m._m, max_tokens)
    want = sorted(range(30), key=lambda i: (w[i], i))
    assert order.tolist() == want, f"order {order.tolist()} != sorted by (width, index) {want}"
    start = 0
    for end in pack_end.tolist():
        k, widest = end - start, int(w[order[start:end]].max())
        assert k == 1 or 4 * k * widest <= max_tokens, \
            f"pack {order[start:end]} of width {widest}: more than {max_tokens} tokens"
        if end < 30:  # greedy: the next example would not have fitted
            assert 4 * (k + 1) * int(w[order[end]]) > max_tokens, f"pack ending at {end} could take one more"
        start = end
    assert start == 30, f"packs end at {pack_end.tolist()}, not at 30"


def test_rank_shares_sum_to_the_whole(oracle, tmp_path, gpt2_tok, enc):
    """Rank r scores i % world_size == r; the shares' scores and counts add up to the oracle's
    (the counts through train_gpt2's llm_hellaswag_eval, the scores through Python's path)."""
    examples = synthetic(11, seed=3)
    ref, m, _ = make_pair(oracle, tmp_path)
    rendered = hs.render_all(examples, gpt2_tok)
    ref_total, ref_count = oracle_scores(ref, examples, enc, 64)
    ref_s, labels = hs.Scores(ref_total, ref_count), np.array([ex["label"] for ex in examples])
    hset = hs._eval_set(rendered)
    for world in (1, 2, 3, 13):
        total, count, counts = np.zeros((11, 4)), np.zeros((11, 4), dtype=np.int64), np.zeros(3)
        for rank in range(world):
            mine, pack_end = hset.plan(m._m, 500, rank, world)
            assert sorted(mine.tolist()) == list(range(rank, 11, world)), f"rank {rank}/{world} got {mine}"
            s = hs._score_packs(m, hset, mine, pack_end, None)
            total += s.total
            count += s.count
            n, c, cn, p = hset.evaluate(m._m, 500, rank, world)
            counts += (n, c, cn)
            assert (p >= 0).sum() == len(mine) and all(p[i] == ref_s.pred_norm[i] for i in mine), \
                f"rank {rank}/{world}: acc_norm predictions {p} vs oracle {ref_s.pred_norm}"
        assert_scores(f"{world} ranks summed", hs.Scores(total, count), ref_total, ref_count)
        want = (11, (ref_s.pred == labels).sum(), (ref_s.pred_norm == labels).sum())
        assert tuple(counts) == want, f"{world} ranks: (n, correct, correct_norm) {tuple(counts)} != {want}"


def test_two_ranks_equal_one_process(oracle, tmp_path, gpt2_tok):
    """evaluate() on two ranks (threads, each with its own model) and an all-reduce gives the
    single-process result on every rank."""
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


def test_empty_set(oracle, tmp_path):
    _, m, _ = make_pair(oracle, tmp_path)
    s = hs.score(m, [])
    assert s.total.shape == (0, 4) and s.count.shape == (0, 4), f"empty scores have shapes {s.total.shape}"
    res = hs.evaluate(m, [])
    got = (res.n, res.acc, res.acc_norm, res.predictions)
    assert got == (0, 0.0, 0.0, []), f"empty evaluate() gave {res}"


# ----------------------------------------------------------------------------
# bad input


def test_examples_the_model_cannot_take(oracle, tmp_path, gpt2_tok):
    """ValueErrors name the example and say what to do; nothing is scored before the check."""
    _, m, _ = make_pair(oracle, tmp_path, block_size=24)
    long = ("falls down and cries while everyone around them keeps laughing at the very silly joke they told "
            "him an hour ago, before the rain started.")
    long_ending = {"ctx": "A man", "endings": ["sits.", long, "runs.", "eats."], "label": 0}
    rendered = hs.render_all([*synthetic(2), long_ending], gpt2_tok)
    assert rendered[2].ending_lengths.max() > 25 and max(widths(rendered[:2], 24)) <= 24
    calls = []
    with pytest.raises(ValueError) as e:
        hs.score(m, rendered, on_pack=lambda idx, _s: calls.append(idx))
    msg = str(e.value)
    assert "example 2" in msg and "block_size 24" in msg and "leave the example out" in msg, msg
    assert calls == [], f"{len(calls)} packs were scored before the error"
    with pytest.raises(ValueError, match="example 2: an ending of"):
        hs.evaluate(m, rendered)

    r = rendered[1]
    outside = ("token id 50300, outside the model's vocabulary of 50257; render the examples with the "
               "model's tokenizer")
    for bad, match in ((50300, outside), (-5, "negative token id -5")):
        tokens = r.tokens.copy()
        tokens[2, r.ctx.size] = bad
        with pytest.raises(ValueError) as e:
            hs.score(m, [rendered[0], hs.Rendered(r.ctx, tokens, r.mask, r.label)])
        assert "example 1" in str(e.value) and match in str(e.value), str(e.value)

    three = hs.Rendered(r.ctx, r.tokens[:3], r.mask[:3], r.label)
    with pytest.raises(ValueError, match="example 1 has 3 candidate rows, expected 4"):
        hs.score(m, [rendered[0], three])


def test_bad_arguments(oracle, tmp_path, gpt2_tok):
    _, m, _ = make_pair(oracle, tmp_path)
    rendered = hs.render_all(synthetic(3), gpt2_tok)
    for call, match in (
        (lambda: hs.score(m, rendered, max_tokens=0), "max_tokens must be >= 1, got 0"),
        (lambda: hs.evaluate(m, rendered, max_tokens=-3), "max_tokens must be >= 1, got -3"),
        (lambda: hs.evaluate(m, rendered, rank=2, world_size=2, reduce=lambda b: b),
         r"need 0 <= rank < world_size, got rank 2, world_size 2"),
        (lambda: hs.evaluate(m, rendered, world_size=2), "needs a reduce function"),
        (lambda: hs.evaluate(m, rendered, world_size=2, reduce=lambda b: b),
         "ranks scored 2 examples in total, expected 3"),
    ):
        with pytest.raises((ValueError, RuntimeError)) as e:
            call()
        assert match in str(e.value), f"{str(e.value)!r} does not say {match!r}"


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
    assert "hellaswag_val.jsonl" in msg and "llmpy.hellaswag --data FILE.jsonl" in msg, msg
    assert "llmpy.train --hellaswag-data FILE.jsonl" in msg, msg  # the training flag by its name


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
    assert "--data" in (err := capsys.readouterr().err) and "nope.jsonl: no such file" in err, err


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




def read_log(path) -> list:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_eval_file_round_trip(oracle, tmp_path, gpt2_tok):
    """Python writes llm.c's eval file, the C reader loads it: the same examples, the same scores
    as the eval set built from memory."""
    _, m, _ = make_pair(oracle, tmp_path, block_size=24)
    rendered = hs.render_all(synthetic(9, seed=6), gpt2_tok)
    loaded = _C.hellaswag.EvalSet.load(str(hs.write_eval_file(tmp_path / "hs.bin", rendered)))
    memory = hs._eval_set(rendered)
    assert len(loaded) == len(memory) == 9, f"{len(loaded)} examples loaded"
    assert loaded.labels().tolist() == [r.label for r in rendered], f"labels {loaded.labels()}"
    everything = np.arange(9)
    (t_file, c_file), (t_mem, c_mem) = loaded.score(m._m, everything), memory.score(m._m, everything)
    assert np.array_equal(c_file, c_mem), f"counts from the file {c_file} != from memory {c_mem}"
    assert np.array_equal(t_file, t_mem), f"totals: max abs diff {np.abs(t_file - t_mem).max():.3e}"
    assert np.array_equal(c_mem, [r.ending_lengths for r in rendered]), "counts are not the ending lengths"
    for what, f, mm in (("plan", loaded.plan(m._m, 300), memory.plan(m._m, 300)),
                        ("evaluate", loaded.evaluate(m._m), memory.evaluate(m._m))):
        assert all(np.array_equal(a, b) for a, b in zip(f, mm)), f"{what}: file {f} != memory {mm}"


def test_binary_and_training_hook_match_oracle(oracle, tmp_path, monkeypatch, gpt2_tok, enc):
    """train_gpt2 --hellaswag logs the oracle's acc_norm, prediction for prediction; the Python
    training hook (llmpy.train --hellaswag-every) logs the same record."""
    monkeypatch.setenv("LLMPY_PROGRESS", "0")
    monkeypatch.chdir(tmp_path)
    ref, _, model = make_pair(oracle, tmp_path, block_size=24)  # some contexts get cropped
    examples = synthetic(24, seed=5)
    rendered = hs.render_all(examples, gpt2_tok)
    ref_scores = hs.Scores(*oracle_scores(ref, examples, enc, 24))
    labels = np.array([ex["label"] for ex in examples])
    want = int((ref_scores.pred_norm == labels).sum()) / 24
    assert 0 < want < 1, "degenerate test: all or no predictions right"
    data = write_jsonl(tmp_path / "val.jsonl", examples)
    tokens = np.random.default_rng(0).integers(0, 50257, size=4096).astype(np.uint16)
    write_shard(tmp_path / "d_train.bin", tokens)
    write_shard(tmp_path / "d_val.bin", tokens)
    # lr 0: the step leaves the weights as they are, so the run evaluates the oracle's model
    flags = ["--init-from", str(model), "--batch-size", "2", "--seq-len", "16", "--max-steps", "1",
             "--lr", "0", "--eval-every", "0", "--sample-every", "0", "--checkpoint-every", "0",
             "--hellaswag-every", "1"]

    def binary(eval_file, out):
        r = subprocess.run([find_train_gpt2(), *flags, "--data", str(tmp_path / "d_train.bin"), "--hellaswag",
                            str(eval_file), "--out-dir", str(tmp_path / out)], capture_output=True, text=True,
                           timeout=120, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        return [rec for rec in read_log(tmp_path / out / "log.jsonl") if "hellaswag_acc_norm" in rec]

    recs = binary(hs.write_eval_file(tmp_path / "hs.bin", rendered), "bin")
    assert recs == [{"step": 1, "hellaswag_acc_norm": want}], f"binary {recs} vs oracle {want}"
    # every prediction: labels set to the oracle's choices must give 1.0, one off must give 0.0
    for shift, acc in ((0, 1.0), (1, 0.0)):
        relabelled = [hs.Rendered(r.ctx, r.tokens, r.mask, int(p + shift) % 4)
                      for r, p in zip(rendered, ref_scores.pred_norm)]
        recs = binary(hs.write_eval_file(tmp_path / f"hs{shift}.bin", relabelled), f"bin{shift}")
        assert recs[0]["hellaswag_acc_norm"] == acc, f"binary and oracle disagree on predictions: {recs}"
    from llmpy.train import main

    assert main([*flags, "--data", str(tmp_path / "d_train.bin"), "--hellaswag-data", str(data),
                 "--out-dir", str(tmp_path / "py")]) == 0
    py = [rec for rec in read_log(tmp_path / "py" / "log.jsonl") if "hellaswag_acc_norm" in rec]
    assert py == [{"step": 1, "hellaswag_acc_norm": want}], f"training hook {py} vs oracle {want}"


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
    cmd = [find_train_gpt2(), "--init-from", str(model), "--data", str(tmp_path / "d_train.bin"), "--hellaswag",
           str(path), *every, "--max-steps", "1", "--seq-len", "16", "--out-dir", str(tmp_path / "o")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1 and match in r.stderr, r.stderr
