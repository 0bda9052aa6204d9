"""Generation benchmark (issue 22): llmpy's KV-cache decoding against Hugging Face transformers.

GPT-2 124M with random weights — llmpy's, written with ``GPT2.save_pretrained`` and read by
``transformers.GPT2LMHeadModel.from_pretrained``, so both run the same model. Prompts of
``--prompt-len`` random tokens, ``--new-tokens`` greedy tokens each (no stop token), at every
batch size of ``--batches``; ``--threads`` threads for both (OpenMP for llmpy,
``torch.set_num_threads`` for torch). Contenders, interleaved within each round:

  - llmpy fp32: ``Generator("fp32").generate`` (the model's own parameters);
  - llmpy bf16: ``Generator("bf16").generate`` (a bf16 copy of the matrices, converted once before
    timing; AVX-512 BF16 where the CPU has it: the path is printed);
  - transformers: ``generate(use_cache=True, do_sample=False)`` under ``torch.no_grad``;
  - with ``--recompute``, llmpy's old way (one full forward per token, no cache) at batch 1.

Timed end to end (prefill, every decode step, the argmax): tokens/s = batch x new tokens / s.
The bound: decoding reads every weight once per step, so steps/s <= read bandwidth / weight
bytes per step (``Generator.info["step_bytes"]``: the matrices in the decode weights' type plus
biases and LayerNorm parameters; the KV cache, <3 % here, is left out). The read bandwidth is
measured in the same run, in every round, by summing a 1 GiB float32 array split over
``--threads`` Python threads (numpy and torch; numpy releases the GIL) and taking the faster;
"of bound" = achieved weight bytes/s / that bandwidth. The machine's load average is printed
before and after: other processes share the cores, so every figure is a median over rounds.
On a shared machine, ``--omp-wait-policy passive`` (for both libraries) keeps a thread that waits
at a barrier from spinning away the time slice its partner needs; decoding has ~60 barriers per
token, and with the default policy two threads can be several times slower than one there.

Usage::

    python dev/bench/generate.py                      # 3 rounds, batches 1 and 8, 2 threads
    python dev/bench/generate.py --rounds 5 --markdown
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time

import numpy as np

# issue 22's targets
TARGET_VS_HF = 1.5  # llmpy fp32 tokens/s / transformers tokens/s at batch 1
TARGET_OF_BOUND = 0.60  # llmpy fp32 at batch 1: fraction of the bandwidth bound
TARGET_BF16 = 1.7  # llmpy bf16 / llmpy fp32 tokens/s at batch 1
TARGET_BATCH = 4.0  # tokens/s at batch 8 / tokens/s at batch 1 (llmpy fp32)


def read_bandwidth(threads: int, gib: float = 1.0) -> float:
    """Bytes/s of the faster of numpy and torch summing a float32 array split over `threads` threads."""
    import torch

    a = np.ones(int(gib * 2**30) // 4, dtype=np.float32)
    best = 0.0
    for reduce in (np.sum, lambda x: torch.from_numpy(x).sum()):
        parts = np.array_split(a, threads)
        for _ in range(3):
            t0 = time.perf_counter()
            ts = [threading.Thread(target=reduce, args=(p,)) for p in parts]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            best = max(best, a.nbytes / (time.perf_counter() - t0))
    return best


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--recompute", action="store_true",
                    help="also time the old per-token full forward (batch 1)")
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown")
    ap.add_argument("--omp-wait-policy", choices=["default", "passive", "active"], default="default",
                    help="OMP_WAIT_POLICY for llmpy and torch alike (set before either loads OpenMP): on a "
                         "machine shared with other work, passive threads sleep at barriers instead of "
                         "spinning away the time slice their partner needs")
    args = ap.parse_args(argv)
    if args.omp_wait_policy != "default":
        if "torch" in sys.modules or "llmpy" in sys.modules:
            ap.error("--omp-wait-policy must be set before torch or llmpy is imported")
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()

    import llmpy
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    llmpy.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    load0 = os.getloadavg()

    cfg = llmpy.GPT2Config(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, block_size=1024)
    model = llmpy.GPT2(cfg, seed=0)
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d, progress=False)
        hf = transformers.GPT2LMHeadModel.from_pretrained(d).eval()
    hf.generation_config.eos_token_id = None  # never stop early: every contender makes new_tokens tokens
    hf.generation_config.pad_token_id = 0
    gens = {"llmpy fp32": model.generator("fp32"), "llmpy bf16": model.generator("bf16")}
    rng = np.random.default_rng(0)
    prompts = {b: rng.integers(0, cfg.vocab_size, size=(b, args.prompt_len)) for b in batches}
    n_new = args.new_tokens

    def run_llmpy(gen, b):
        return gen.generate(list(prompts[b]), n_new, temperature=0)

    def run_hf(b):
        x = torch.from_numpy(prompts[b])
        with torch.no_grad():
            return hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n_new,
                               min_new_tokens=n_new, do_sample=False, use_cache=True)

    def run_recompute(b):
        seq = prompts[b].astype(np.int32)
        for _ in range(n_new):
            model.forward(np.ascontiguousarray(seq[:, -cfg.block_size:]))
            seq = np.concatenate([seq, model.logits()[:, -1].argmax(-1)[:, None].astype(np.int32)], axis=1)
        return seq

    contenders = [(name, b, (lambda g=g, b=b: run_llmpy(g, b))) for b in batches for name, g in gens.items()]
    contenders += [("transformers", b, (lambda b=b: run_hf(b))) for b in batches]
    if args.recompute:
        contenders.append(("llmpy no cache", 1, lambda: run_recompute(1)))

    # agreement: greedy continuations, llmpy fp32 against transformers (first batch size)
    b0 = batches[0]
    ours = np.array(run_llmpy(gens["llmpy fp32"], b0))
    theirs = run_hf(b0).numpy()
    agree = float(np.mean(ours[:, args.prompt_len:] == theirs[:, args.prompt_len:]))

    times: dict = {(name, b): [] for name, b, _ in contenders}
    bandwidths = []
    for r in range(args.rounds):
        order = contenders if r % 2 == 0 else contenders[::-1]
        for name, b, fn in order:
            t0 = time.perf_counter()
            fn()
            times[(name, b)].append(time.perf_counter() - t0)
        bandwidths.append(read_bandwidth(args.threads))
        load = os.getloadavg()[0]
        print(f"round {r + 1}/{args.rounds} done (load {load:.1f})", file=sys.stderr, flush=True)
    load1 = os.getloadavg()
    bw = statistics.median(bandwidths)

    rows = []
    tps: dict = {}
    for name, b, _ in contenders:
        med = statistics.median(times[(name, b)])
        tps[(name, b)] = b * n_new / med
        if name.startswith("llmpy") and name != "llmpy no cache":
            step_bytes = gens[name].info["step_bytes"]
            steps_per_s = n_new / med
            frac = f"{steps_per_s * step_bytes / bw:.0%}"
            mb = f"{step_bytes / 1e6:.0f}"
        else:
            frac, mb = "-", "-"
        rows.append((name, b, tps[(name, b)], b * n_new / min(times[(name, b)]), mb, frac))

    info = llmpy.build_info()
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs, cpu_isa {info['cpu_isa']}, bf16 path "
          f"{llmpy._C.cpu_bf16_path()}; torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"load average before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, "
          f"after {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; "
          f"read bandwidth ({args.threads} threads) median {bw / 1e9:.1f} GB/s "
          f"(rounds: {', '.join(f'{x / 1e9:.1f}' for x in bandwidths)})")
    print(f"GPT-2 124M, prompts {args.prompt_len} tokens, {n_new} new tokens greedy, {args.threads} threads "
          f"(OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}), {args.rounds} rounds; "
          f"greedy agreement llmpy fp32 vs transformers at batch {b0}: {agree:.1%}")
    if args.markdown:
        print("\n| contender | batch | tokens/s (median) | best | weight MB/step | of bandwidth bound |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, b, med, best, mb, frac in rows:
            print(f"| {name} | {b} | {med:.1f} | {best:.1f} | {mb} | {frac} |")
    else:
        print(f"\n{'contender':<16} {'batch':>5} {'tok/s':>8} {'best':>8} {'MB/step':>8} {'of bound':>9}")
        for name, b, med, best, mb, frac in rows:
            print(f"{name:<16} {b:>5} {med:>8.1f} {best:>8.1f} {mb:>8} {frac:>9}")

    print()
    checks = []
    if 1 in batches:
        fp32, bf16, ref = tps[("llmpy fp32", 1)], tps[("llmpy bf16", 1)], tps[("transformers", 1)]
        frac1 = fp32 * gens["llmpy fp32"].info["step_bytes"] / bw  # batch 1: one step per token
        checks += [("batch 1 fp32 vs transformers", fp32 / ref, TARGET_VS_HF, "x"),
                   ("batch 1 fp32 of the bandwidth bound", frac1, TARGET_OF_BOUND, ""),
                   ("batch 1 bf16 vs fp32", bf16 / fp32, TARGET_BF16, "x")]
        if 8 in batches:
            checks.append(("batch 8 vs batch 1 (fp32)", tps[("llmpy fp32", 8)] / fp32, TARGET_BATCH, "x"))
    for what, got, want, unit in checks:
        shown = f"{got:.2f}{unit}" if unit else f"{got:.0%}"
        target = f"{want:.2f}{unit}" if unit else f"{want:.0%}"
        print(f"{'PASS' if got >= want else 'FAIL'}  {what}: {shown} (target >= {target})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
