"""python -m llmpy.gpt: train the character-level GPT on tiny Shakespeare and print a sample."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..extras import MissingDependency, exit_missing, require

CONFIG_NAMES = ("lecture", "small", "tiny")  # gpt/model.py's CONFIGS (a test keeps them equal)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m llmpy.gpt",
        description="Train the character-level GPT of 'Let's build GPT' on tiny Shakespeare; print train/val "
        "losses and a sample. Default configuration: 'lecture' (6 layers, 6 heads, 384 channels, context 256, "
        "dropout 0.2, lr 3e-4, 5000 steps) when a GPU is available, else 'small'.",
    )
    p.add_argument("--config", choices=CONFIG_NAMES, default=None, help="lecture | small | tiny")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the configuration's)")
    p.add_argument("--eval-interval", type=int, default=None, help="steps between loss estimates")
    p.add_argument("--eval-iters", type=int, default=None, help="batches per loss estimate")
    p.add_argument(
        "--sample-tokens", type=int, default=500, help="characters to generate at the end (default 500)"
    )
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument(
        "--input", default=None, help="text file to train on (default: tiny Shakespeare from the cache)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print only the final metrics, as JSON")
    args = p.parse_args(argv)
    try:  # after parsing: --help needs no torch
        torch = require("torch", "chapters", "python -m llmpy.gpt")
    except MissingDependency as e:
        return exit_missing(e)
    from .model import CONFIGS
    from .train import load_data, train

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    name = args.config or ("lecture" if device.startswith("cuda") else "small")
    try:
        tok, train_data, val_data = load_data(args.input)
    except (OSError, ValueError) as e:  # no tiny Shakespeare offline (DownloadError), a bad --input, ...
        print(f"error: {e}", file=sys.stderr)
        return 1
    cfg = CONFIGS[name].replace(vocab_size=len(tok))
    if args.eval_interval:
        cfg = cfg.replace(eval_interval=args.eval_interval)
    if args.eval_iters:
        cfg = cfg.replace(eval_iters=args.eval_iters)
    log = None if args.json else print
    if log:
        log(f"config {name}: {cfg}")
        log(
            f"{len(train_data)} training and {len(val_data)} validation characters, vocabulary {len(tok)}, "
            f"device {device}"
        )
    t0 = time.time()
    r = train(cfg, train_data, val_data, steps=args.steps, seed=args.seed, device=device, log=log)
    r.model.eval()
    g = torch.Generator(device=device).manual_seed(args.seed)
    start = torch.zeros((1, 1), dtype=torch.long, device=device)  # token 0 is '\n' for Shakespeare
    text = tok.decode(r.model.generate(start, args.sample_tokens, g)[0].tolist())
    final = r.history[-1]
    metrics = {
        "config": name,
        "steps": final["step"],
        "train_loss": final["train"],
        "val_loss": final["val"],
        "parameters": r.model.num_parameters(),
        "seconds": round(time.time() - t0, 1),
        "history": r.history,
        "sample": text,
    }
    if args.json:
        print(json.dumps(metrics))
    else:
        print(f"final: train loss {final['train']:.4f}, val loss {final['val']:.4f}")
        print("-" * 40)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
