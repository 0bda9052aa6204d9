"""The straightforward BPE trainer: recount every pair after every merge (pure Python).

It follows exactly the rule of the C trainer (``Tokenizer.train``): most frequent adjacent pair,
ties to the smallest (left, right) ids, merged left to right, a new id unless the merged bytes are
already a token. The tests use it as the oracle for the incremental C trainer and the benchmark
(dev/bench/bpe_train.py) as the baseline. Each merge costs a pass over every word, so it is
O(merges x text) — use it on small inputs.

>>> train_reference({b"aaabdaaabac": 1}, 256 + 3)
[(97, 97, 256, 4), (97, 98, 257, 2), (256, 257, 258, 2)]
"""

from __future__ import annotations

from collections import Counter


def train_reference(
    words: dict[bytes, int] | list[bytes], vocab_size: int
) -> list[tuple[int, int, int, int]]:
    """Merges (left, right, new id, count) learned from ``words``.

    words: piece bytes -> how often seen, or a list of pieces in text order (every occurrence kept
    and recounted separately, as in the tokenizer lecture's RegexTokenizer; same result, slower).
    """
    seqs = [list(w) for w in words]
    weights = list(words.values()) if isinstance(words, dict) else [1] * len(seqs)
    vocab = {i: bytes([i]) for i in range(256)}
    ids = {b: i for i, b in vocab.items()}
    merges = []
    while len(vocab) < vocab_size:
        stats: Counter = Counter()
        for seq, w in zip(seqs, weights):
            for pair in zip(seq, seq[1:]):
                stats[pair] += w
        if not stats:
            break
        (a, b), count = min(stats.items(), key=lambda kv: (-kv[1], kv[0]))
        merged = vocab[a] + vocab[b]
        z = ids.get(merged, len(vocab))
        vocab[z] = merged
        ids[merged] = z
        merges.append((a, b, z, count))
        for k, seq in enumerate(seqs):
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and seq[i] == a and seq[i + 1] == b:
                    out.append(z)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[k] = out
    return merges
