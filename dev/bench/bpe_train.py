"""BPE training benchmark: llmpy's trainer vs HF `tokenizers` vs the straightforward algorithm.

All three train a byte-level BPE on the same text (tiny Shakespeare by default) with the GPT-2
split pattern, in this process, one after the other:

- llmpy:           ``RegexTokenizer(GPT2_SPLIT_PATTERN).train(text, V)`` — regex split and piece
                   counting in Python, then the incremental C trainer (llmpy._C.tokenizer.train);
- HF tokenizers:   ``BpeTrainer`` on a byte-level BPE with the ByteLevel pre-tokenizer (the same
                   GPT-2 split), trained from the file; a peer in Rust (it may use every core);
- straightforward: llmpy.tokenizer.reference.train_reference — recount every pair after every
                   merge, in Python; vocab 512 only (it is slow), in two variants:
                   "lecture": every piece occurrence kept and recounted, as the tokenizer
                   lecture's RegexTokenizer.train does (the algorithm the issue names);
                   "dedup": identical pieces counted once with their frequency (our trainer's
                   first step too), so the ratio isolates the incremental merge loop.

Times are wall-clock seconds for the whole training call (regex split + count + merges), median
of --repeat runs (straightforward: one run). The regex pre-tokenization (Python ``regex``) is
also timed alone: it is most of llmpy's time and part of every Python-side trainer. Then encoding
throughput (MB/s of UTF-8 input) of ``encode`` and of ``to_tiktoken().encode`` with the 4096-token
vocabulary, beside tiktoken's gpt2 and HF's ``encode`` for reference. Targets (issue 4): llmpy
<= 1.5 x HF at 4096 and >= 50 x faster than the straightforward algorithm at 512.

Usage::

    pip install tokenizers     # the benchmark's only extra dependency
    python dev/bench/bpe_train.py                    # prints a table and the target checks
    python dev/bench/bpe_train.py --markdown         # ... as markdown for dev/bench/RESULTS.md
    python dev/bench/bpe_train.py --straightforward dedup --repeat 3   # skip the ~2 min lecture run
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys

import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken_cache"))

import numpy as np
import regex
from llmpy import _C
from llmpy.tokenizer import GPT2_SPLIT_PATTERN, RegexTokenizer, get_tiktoken_encoding
from llmpy.tokenizer.reference import train_reference


def default_input() -> Path:
    return Path(os.environ.get("LLMPY_DATA_DIR", SHARED / "data")) / "tinyshakespeare" / "input.txt"


def timed(fn, repeat: int) -> tuple[float, object]:
    """Median wall-clock seconds of fn() over `repeat` runs, and the last result."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


# ---------------------------------------------------------------------------
# the three trainers


def train_llmpy(text: str, vocab_size: int) -> RegexTokenizer:
    tok = RegexTokenizer(GPT2_SPLIT_PATTERN)
    tok.train(text, vocab_size)
    return tok


def pieces(text: str) -> list[bytes]:
    """The GPT-2 pre-tokenization, as every Python-side trainer here does it."""
    return [p.encode("utf-8") for p in regex.findall(GPT2_SPLIT_PATTERN, text)]


def train_straightforward(text: str, vocab_size: int, dedup: bool) -> tuple[list, float]:
    """Merges, and the seconds spent after pre-tokenization (the merge loop alone)."""
    split = pieces(text)
    words = Counter(split) if dedup else split
    t0 = time.perf_counter()
    merges = train_reference(words, vocab_size)
    return merges, time.perf_counter() - t0


def c_merge_loop(text: str, vocab_size: int):
    """A callable running only llmpy's C trainer on the pre-split, counted pieces."""
    counts = Counter(pieces(text))
    words = list(counts)
    offsets = np.zeros(len(words) + 1, dtype=np.uint64)
    offsets[1:] = np.cumsum([len(w) for w in words])
    freq = np.fromiter(counts.values(), dtype=np.int64, count=len(words))
    data = b"".join(words)
    return lambda: _C.tokenizer.train(data, offsets, freq, vocab_size)


def hf_available() -> bool:
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        return False
    return True


def train_hf(path: Path, vocab_size: int):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        min_frequency=0,
    )
    tok.train([str(path)], trainer)
    return tok


def byte_decoder() -> dict[str, int]:
    """GPT-2's byte <-> printable character table, inverted (HF's ByteLevel vocabulary uses it)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return {c: b for b, c in chars.items()}


def hf_token_bytes(hf_tok) -> set[bytes]:
    table = byte_decoder()
    return {bytes(table[c] for c in t) for t in hf_tok.get_vocab()}


# ---------------------------------------------------------------------------
# main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--input", type=Path, default=default_input(), help="training text (default: tiny Shakespeare)"
    )
    p.add_argument("--repeat", type=int, default=5, help="runs per measurement (median)")
    p.add_argument(
        "--straightforward",
        choices=("both", "dedup", "none"),
        default="both",
        help="which straightforward variants to run (the lecture one takes ~2 minutes)",
    )
    p.add_argument("--markdown", action="store_true", help="print the results as markdown")
    args = p.parse_args(argv)
    if not args.input.exists():
        print(f"error: {args.input} not found (set LLMPY_DATA_DIR or pass --input)", file=sys.stderr)
        return 1
    text = args.input.read_text(encoding="utf-8")
    mb = len(text.encode("utf-8")) / 1e6
    have_hf = hf_available()
    if not have_hf:
        print(
            "note: HF tokenizers is not installed (pip install tokenizers); its column is skipped",
            file=sys.stderr,
        )

    rows = []  # (vocab, llmpy s, hf s, lecture s, dedup s, common tokens)
    ours_4096 = None
    for vocab in (512, 4096):
        t_ours, ours = timed(lambda v=vocab: train_llmpy(text, v), args.repeat)
        if vocab == 4096:
            ours_4096 = ours
        t_hf = common = None
        if have_hf:
            t_hf, hf_tok = timed(lambda v=vocab: train_hf(args.input, v), args.repeat)
            mine = set(ours.vocab.values())
            common = len(mine & hf_token_bytes(hf_tok)) / len(mine)
        t_sf, t_loop = {}, {}
        variants = {"both": (False, True), "dedup": (True,), "none": ()}[args.straightforward]
        for dedup in variants if vocab == 512 else ():
            t_sf[dedup], (merges, t_loop[dedup]) = timed(
                lambda v=vocab, d=dedup: train_straightforward(text, v, d), 1
            )
            assert [tuple(m[:3]) for m in merges] == [(a, b, z) for (a, b), z in ours.merges.items()], (
                "the straightforward algorithm disagrees with the C trainer"
            )
        rows.append((vocab, t_ours, t_hf, t_sf.get(False), t_sf.get(True), common))
        if vocab == 512:
            t_c_loop, _ = timed(c_merge_loop(text, vocab), args.repeat)
            t_dedup_loop = t_loop.get(True)
    t_split, _ = timed(lambda: Counter(regex.findall(GPT2_SPLIT_PATTERN, text)), args.repeat)

    enc_rows = []  # (name, MB/s)
    tt = ours_4096.to_tiktoken("llmpy-shakespeare-4096")
    ids = ours_4096.encode(text)
    assert tt.encode(text) == ids and ours_4096.decode(ids) == text
    t, _ = timed(lambda: ours_4096.encode(text), args.repeat)
    enc_rows.append(("llmpy encode (4096 vocab)", mb / t))
    t, _ = timed(lambda: tt.encode(text), args.repeat)
    enc_rows.append(("llmpy to_tiktoken().encode (4096 vocab)", mb / t))
    gpt2 = get_tiktoken_encoding("gpt2")
    t, _ = timed(lambda: gpt2.encode(text), args.repeat)
    enc_rows.append(("tiktoken gpt2 encode (50257 vocab, reference)", mb / t))
    if have_hf:
        hf4096 = train_hf(args.input, 4096)
        t, _ = timed(lambda: hf4096.encode(text), args.repeat)
        enc_rows.append(("HF tokenizers encode (4096 vocab, reference)", mb / t))

    fmt = lambda x, unit="s": "—" if x is None else f"{x:.3f} {unit}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"input: {args.input} ({mb:.2f} MB); GPT-2 split pattern; median of {args.repeat} runs")
    print(f"machine: {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}")
    head = ["vocab", "llmpy", "HF tokenizers", "straightforward (lecture)", "straightforward (dedup)"]
    head += ["llmpy / HF", "lecture / llmpy", "dedup / llmpy", "tokens shared with HF"]
    table = []
    for vocab, t_ours, t_hf, t_lec, t_dd, common in rows:
        table.append(
            [
                str(vocab),
                fmt(t_ours),
                fmt(t_hf),
                fmt(t_lec),
                fmt(t_dd),
                "—" if t_hf is None else f"{t_ours / t_hf:.2f}",
                "—" if t_lec is None else f"{t_lec / t_ours:.0f}x",
                "—" if t_dd is None else f"{t_dd / t_ours:.0f}x",
                "—" if common is None else f"{100 * common:.1f}%",
            ]
        )
    print()
    if args.markdown:
        print("| " + " | ".join(head) + " |\n|" + "---:|" * len(head))
        for r in table:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(h), *(len(r[k]) for r in table)) for k, h in enumerate(head)]
        for r in [head, *table]:
            print("  ".join(x.rjust(w) for x, w in zip(r, widths)))
    print(
        f"\nof llmpy's time: regex pre-tokenization + piece counting (Python `regex`, as in the "
        f"straightforward trainers) {t_split:.3f} s; the C merge loop at 512 {1000 * t_c_loop:.1f} ms"
    )
    print("\n| encoding (1 thread) | MB/s |\n|---|---:|" if args.markdown else "\nencoding throughput:")
    for name, rate in enc_rows:
        print(f"| {name} | {rate:.1f} |" if args.markdown else f"  {name:<48} {rate:6.1f} MB/s")

    print()
    ok = True
    t_ours_4096, t_hf_4096 = rows[1][1], rows[1][2]
    if t_hf_4096 is not None:
        good = t_ours_4096 <= 1.5 * t_hf_4096
        ok &= good
        print(
            f"target llmpy <= 1.5 x HF at 4096: {t_ours_4096 / t_hf_4096:.2f} x -> {'met' if good else 'MISSED'}"
        )
    t_ours_512, t_lec, t_dd = rows[0][1], rows[0][3], rows[0][4]
    if t_lec is not None:
        good = t_lec / t_ours_512 >= 50
        ok &= good
        print(
            f"target >= 50 x the straightforward (lecture) algorithm at 512: {t_lec / t_ours_512:.0f} x "
            f"-> {'met' if good else 'MISSED'}"
        )
    if t_dd is not None:
        print(
            f"vs the deduplicated straightforward algorithm at 512: {t_dd / t_ours_512:.0f} x end to end; "
            f"merge loops alone (C {1000 * t_c_loop:.1f} ms vs Python {t_dedup_loop:.2f} s): "
            f"{t_dedup_loop / t_c_loop:.0f} x"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
