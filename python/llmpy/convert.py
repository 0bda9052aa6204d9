"""Convert GPT-2 weights: ``python -m llmpy.convert SRC DST [--dtype fp32|bf16]``.

SRC is a Hugging Face directory (config.json + model.safetensors or pytorch_model.bin), a hub
name (gpt2, gpt2-medium, gpt2-large, gpt2-xl, owner/name) or an llm.c model file. DST ending
in ``.bin`` is written as an llm.c model file (version 3 = fp32, 5 = bf16), anything else as a
Hugging Face directory (config.json + model.safetensors). bf16 rounds to nearest even.

    python -m llmpy.convert gpt2 gpt2_124M.bin                   # hub -> llm.c fp32
    python -m llmpy.convert gpt2-xl gpt2_1558M_bf16.bin --dtype bf16
    python -m llmpy.convert runs/x/ckpt_000300.bin my-gpt2       # llm.c -> transformers
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional

from .hf import convert, writes_llmc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m llmpy.convert",
        description="Convert GPT-2 weights between Hugging Face directories (or hub names) and llm.c "
                    "model files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("src", help="Hugging Face directory, hub name (e.g. gpt2-xl) or llm.c model file")
    p.add_argument("dst", help="'*.bin': an llm.c model file; otherwise a Hugging Face directory")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"],
                   help="parameter type written (llm.c version 3 or 5; safetensors F32 or BF16)")
    p.add_argument("--offline", action="store_true",
                   help="never use the network: hub names come from the huggingface_hub cache only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Optional[list] = None) -> int:
    a = build_parser().parse_args(argv)
    t0 = time.monotonic()
    try:
        c = convert(a.src, a.dst, dtype=a.dtype, progress=False if a.no_progress else None,
                    local_files_only=a.offline)
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C)", file=sys.stderr)
        return 1
    except (OSError, ValueError, TypeError, ImportError, NotImplementedError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    what = "llm.c model file" if writes_llmc(a.dst) else "Hugging Face directory"
    print(f"wrote {a.dst} ({what}, {a.dtype}): n_layer={c.n_layer} n_head={c.n_head} n_embd={c.n_embd} "
          f"vocab_size={c.vocab_size} block_size={c.block_size} in {time.monotonic() - t0:.1f} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
