"""Benchmark: sharding throughput (tokens/s) and data-loader throughput (batches/s).

    python dev/bench/tokenize_shards.py                 # 50 MB corpus, 1 and 2 workers, loader at B=64, T=1024
    python dev/bench/tokenize_shards.py --mb 10 --repeats 1

Sharding. The corpus is tiny Shakespeare (from the data cache) repeated to at least ``--mb``
MB, cut into documents at blank lines. Each run reads the file, tokenizes and writes the
same shards (32,768-token val shard, then train shards of ``--shard-size`` tokens):

* baseline: one process, a plain ``tiktoken`` ``encode_ordinary`` loop, then ``write_shard``;
* ceiling: llmpy's worker function in 2 independent processes on half the documents each,
  with no data exchanged and nothing written: the best a 2-process pool could do here;
* llmpy: ``llmpy.data.text.prepare`` with 0 (in-process), 1 and 2 worker processes.

Every llmpy run must produce files byte-identical to the baseline's. The figure of merit is
the speed-up of 2 workers over the baseline (target >= 1.8x on 2 cores).

Loader. ``llmpy.data.DataLoader`` (the C loader, ``csrc/data/dataloader.c``) on the
train shards just written, with and without shuffling, against the rate at which one GPU could
possibly consume batches: GPT-2 124M needs ~6N + 12*L*C*T FLOPs per token, so an H100 at its
dense BF16 peak (989 TFLOP/s, i.e. 100% MFU) eats at most ~1.15M tokens/s = ~17.5 batches/s of
64 x 1024. The loader must be > 100x faster than that.

Best of ``--repeats`` runs for each figure. Writes nothing outside ``--work-dir`` (a temporary
folder by default).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from llmpy.data import DataLoader, tinyshakespeare
from llmpy.data.sharding import ShardSpec, _context, _encode_batch, default_workers
from llmpy.data.shards import write_shard
from llmpy.data.text import prepare, split_blank_lines
from llmpy.tokenizer import gpt2

VAL_TOKENS = 32768
H100_BF16_PEAK = 989e12  # dense FLOP/s


def gpt2_flops_per_token(T: int = 1024, L: int = 12, C: int = 768, N: float = 124.4e6) -> float:
    """Training FLOPs per token (PaLM appendix B / llm.c): 6N + 12 L C T."""
    return 6 * N + 12 * L * C * T


# ----------------------------------------------------------------------------
# sharding


def baseline(corpus: Path, out: Path, shard_size: int) -> int:
    """Single process: tiktoken encode_ordinary loop, then the same shards as llmpy writes."""
    enc = gpt2()
    docs = split_blank_lines(corpus.read_text(encoding="utf-8"))
    toks: list = []
    for d in docs:
        toks.append(enc.eot_token)
        toks.extend(enc.encode_ordinary(d))
    arr = np.array(toks, dtype=np.uint16)
    spec = ShardSpec(out, corpus.stem, val_tokens=VAL_TOKENS, shard_size=shard_size)
    bounds = [0, VAL_TOKENS] + list(range(VAL_TOKENS + shard_size, arr.size, shard_size)) + [arr.size]
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        write_shard(out / spec.name(i), arr[a:b])
    return int(arr.size)


def _encode_half(args) -> int:
    corpus, part = args
    docs = split_blank_lines(Path(corpus).read_text(encoding="utf-8"))
    half = len(docs) // 2
    docs = docs[half:] if part else docs[:half]
    return sum(_encode_batch(docs[i : i + 2000])[0].size for i in range(0, len(docs), 2000))


def ceiling(corpus: Path, out: Path) -> int:
    """Perfect parallelism for the pool: 2 independent processes, each running llmpy's worker
    function on half of the documents (no data exchanged, nothing written)."""
    with _context(None).Pool(2) as pool:  # started like llmpy's workers
        return sum(pool.map(_encode_half, [(str(corpus), 0), (str(corpus), 1)]))


def ours(corpus: Path, out: Path, shard_size: int, workers: int) -> int:
    res = prepare(
        [corpus],
        out_dir=out,
        shard_size=shard_size,
        val_tokens=VAL_TOKENS,
        txt_split="blank-lines",
        workers=workers,
        progress=False,
    )
    return res.total_tokens


def timed(fn, out: Path, repeats: int):
    best = float("inf")
    for _ in range(repeats):
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        t0 = time.perf_counter()
        n = fn(out)
        best = min(best, time.perf_counter() - t0)
    return n, best


def same_files(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.glob("*.bin"))
    return names == sorted(p.name for p in b.glob("*.bin")) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names
    )


# ----------------------------------------------------------------------------
# loader


def loader_rate(make, steps: int, repeats: int) -> float:
    best = 0.0
    for _ in range(repeats):
        dl = make()
        dl.next_batch()  # open the first shard
        t0 = time.perf_counter()
        for _ in range(steps):
            dl.next_batch()
        best = max(best, steps / (time.perf_counter() - t0))
    return best


# ----------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=50.0, help="corpus size in MB (default 50)")
    ap.add_argument("--shard-size", type=int, default=10_000_000, help="train shard size in tokens")
    ap.add_argument("--repeats", type=int, default=3, help="runs per figure; the best is reported")
    ap.add_argument("--loader-steps", type=int, default=2000, help="batches per loader measurement")
    ap.add_argument("--work-dir", help="scratch folder (default: a temporary one, removed afterwards)")
    args = ap.parse_args(argv)

    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="llmpy-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        src = tinyshakespeare.fetch(progress=False).read_text(encoding="utf-8")
        copies = int(np.ceil(args.mb * 1e6 / len(src.encode("utf-8"))))
        corpus = work / "shakespeare_x.txt"
        corpus.write_text(src * copies, encoding="utf-8")
        mb = corpus.stat().st_size / 1e6
        print(
            f"# llmpy data benchmark — {platform.processor() or platform.machine()}, "
            f"{default_workers()} cores, Python {platform.python_version()}"
        )
        print(f"corpus: tiny Shakespeare x {copies} = {mb:.1f} MB, documents split at blank lines\n")

        n, t_base = timed(lambda o: baseline(corpus, o, args.shard_size), work / "base", args.repeats)
        rate = n / t_base
        print("| sharding | seconds | tokens/s | vs baseline | identical files |")
        print("|---|---:|---:|---:|---|")
        print(
            f"| baseline: 1 process, tiktoken encode_ordinary loop | {t_base:.2f} | {rate / 1e6:.2f}M | 1.00x | - |"
        )
        m, t = timed(lambda o: ceiling(corpus, o), work / "ceiling", args.repeats)
        print(
            f"| ceiling: llmpy's worker function in 2 independent processes, half the documents "
            f"each, nothing exchanged or written | {t:.2f} | {m / t / 1e6:.2f}M | {t_base / t:.2f}x | - |"
        )
        for w in (0, 1, 2):
            m, t = timed(lambda o, w=w: ours(corpus, o, args.shard_size, w), work / f"w{w}", args.repeats)
            same = m == n and same_files(work / "base", work / f"w{w}")
            label = "in-process (workers=0)" if w == 0 else f"{w} worker process{'es' if w > 1 else ''}"
            print(f"| llmpy.data text, {label} | {t:.2f} | {m / t / 1e6:.2f}M | {t_base / t:.2f}x | {same} |")
        print(f"\n{n:,} tokens per run; best of {args.repeats}.\n")

        B, T = 64, 1024
        gpu = H100_BF16_PEAK / gpt2_flops_per_token(T) / (B * T)
        pattern = str(work / "base" / f"{corpus.stem}_train_*.bin")
        rows = [
            ("llmpy.data.DataLoader", False, lambda: DataLoader(pattern, B, T)),
            ("llmpy.data.DataLoader", True, lambda: DataLoader(pattern, B, T, shuffle=True, seed=1)),
        ]
        print(f"| loader, B={B}, T={T} | shuffle | batches/s | x H100 upper bound ({gpu:.1f} steps/s) |")
        print("|---|---|---:|---:|")
        for name, shuffle, make in rows:
            r = loader_rate(make, args.loader_steps, args.repeats)
            print(f"| {name} | {shuffle} | {r:,.0f} | {r / gpu:,.0f}x |")
        print(
            f"\nGPU bound: GPT-2 124M, {gpt2_flops_per_token(T) / 1e9:.2f} GFLOP/token at 100% of an H100's "
            f"989 TFLOP/s dense BF16 = {H100_BF16_PEAK / gpt2_flops_per_token(T) / 1e6:.2f}M tokens/s."
        )
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if "TIKTOKEN_CACHE_DIR" not in os.environ:
        shared = Path(__file__).resolve().parents[3] / "shared" / "tiktoken_cache"
        if shared.is_dir():
            os.environ["TIKTOKEN_CACHE_DIR"] = str(shared)
    sys.exit(main())
