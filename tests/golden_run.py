"""The fixed-seed training run whose bytes must not change when code is reorganised.

``digest(tmp_dir)`` runs ``python -m llmpy.train`` in-process on a tiny model (tiny Shakespeare,
shuffled data, two micro-batches per step, evaluation, samples and checkpoints) with the
``generic`` CPU kernels on one thread, and returns what the run wrote: the SHA-256 of every
model file, of every training-state file's binary part (header + AdamW moments, without the JSON
length, the run id and the state's own checksums, which depend on the JSON and the run), the state's
JSON (without the command line, which names this interpreter, and the run id, which is random) and
the log (without the timings). ``tests/data/golden_run.json`` holds the digest recorded before a refactoring;
``test_golden_run.py`` compares the current code with it.

Regenerate only for an intended numerical change, and say so in the commit:
    python tests/golden_run.py --write            (or --write PATH to look without replacing it)
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import tempfile
from pathlib import Path

GOLDEN = Path(__file__).with_name("data") / "golden_run.json"
FLAGS = ["--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--batch-size", "4", "--seq-len", "32",
         "--total-batch-size", "256", "--shuffle", "--max-steps", "8", "--lr", "3e-3", "--warmup-steps", "2",
         "--eval-every", "4", "--val-steps", "2", "--sample-every", "4", "--sample-tokens", "6",
         "--checkpoint-every", "4", "--keep-checkpoints", "0", "--threads", "1", "--seed", "7"]
TIMINGS = ("ms", "tokens_per_s")


def _state_parts(path: Path) -> tuple:
    raw = path.read_bytes()
    header = list(struct.unpack("<256i", raw[:1024]))
    json_len = header[7] | (header[8] << 32)
    # zeroed in the hash (csrc/core/formats.h): the JSON's length (header words 7-8), which depends
    # on the command line; the run id (words 20-27), random; the checksums of the payload and of
    # the header (integrity block + 2, + 3), which cover both
    at = 248
    for i in (7, 8, *range(20, 28), at + 2, at + 3):
        header[i] = 0
    binary = struct.pack("<256i", *header) + raw[1024 : len(raw) - json_len]
    text = raw[len(raw) - json_len :]
    extra = json.loads(text)
    extra.pop("command", None)
    extra.pop("run_id", None)
    return hashlib.sha256(binary).hexdigest(), extra


def digest(work: Path) -> dict:
    """Runs the fixed-seed training in ``work`` (the current directory is changed and restored)."""
    import llmpy
    from llmpy.train import main

    old_cwd, old_isa = os.getcwd(), llmpy.build_info()["cpu_isa"]
    os.chdir(work)
    try:
        llmpy.set_cpu_isa("generic")
        if main([*FLAGS, "--out-dir", "run"]) != 0:
            raise RuntimeError("the golden training run failed")
    finally:
        llmpy.set_cpu_isa(old_isa)
        os.chdir(old_cwd)
    run = work / "run"
    out: dict = {"flags": FLAGS, "cpu_isa": "generic", "threads": 1, "files": {}}
    for p in sorted(run.glob("ckpt_*")):
        if p.suffix == ".bin":
            out["files"][p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            binary, extra = _state_parts(p)
            out["files"][p.name] = {"binary_sha256": binary, "json": extra}
    out["log"] = [{k: v for k, v in json.loads(line).items() if k not in TIMINGS}
                  for line in (run / "log.jsonl").read_text().splitlines()]
    return out


if __name__ == "__main__":
    os.environ.setdefault("LLMPY_PROGRESS", "0")
    with tempfile.TemporaryDirectory() as d:
        result = digest(Path(d))
    if "--write" in sys.argv:  # --write [PATH]: the golden file, or PATH
        i = sys.argv.index("--write")
        path = Path(sys.argv[i + 1]) if i + 1 < len(sys.argv) else GOLDEN
        path.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        print(f"wrote {path}", file=sys.stderr)
    else:
        print("usage: python tests/golden_run.py --write [PATH]", file=sys.stderr)
