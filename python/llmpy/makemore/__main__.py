"""python -m llmpy.makemore: train one of the makemore models on names.txt and sample names."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..extras import MissingDependency, exit_missing, require

MODELS = ("bigram-counts", "bigram-nn", "mlp", "mlp-bn", "wavenet", "backprop")
LECTURE_SEED = 2147483647


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m llmpy.makemore",
        description="makemore on names.txt (80/10/10 split, shuffled with seed 42): train a model, print its "
        "train/val loss and sample names. Without --steps the lecture's full schedule is used "
        "(200,000 steps for mlp, mlp-bn and wavenet).",
    )
    p.add_argument(
        "--model",
        choices=MODELS,
        default="mlp",
        help="bigram-counts | bigram-nn | mlp | mlp-bn (diagnostics PNG) | wavenet | "
        "backprop (manual gradients vs autograd, then training with them)",
    )
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the lecture's schedule)")
    p.add_argument("--samples", type=int, default=20, help="names to sample at the end (default 20)")
    p.add_argument(
        "--seed",
        type=int,
        default=LECTURE_SEED,
        help=f"seed of init and minibatches (default {LECTURE_SEED})",
    )
    p.add_argument("--json", action="store_true", help="print only the final metrics, as JSON")
    p.add_argument(
        "--names", default=None, help="path of names.txt (default: the data cache, downloaded if missing)"
    )
    p.add_argument(
        "--init",
        choices=("lecture", "scaled"),
        default="lecture",
        help="mlp only: N(0,1) init as in the first MLP lecture, or the fixed, scaled init",
    )
    p.add_argument(
        "--layers", type=int, default=1, help="mlp-bn only: number of hidden Linear-BN-Tanh layers"
    )
    p.add_argument(
        "--png",
        default=None,
        help="mlp-bn/wavenet: where to save the diagnostics plot (default makemore_<model>.png; '' skips)",
    )
    p.add_argument("--log-every", type=int, default=10_000, help="print the training loss every N steps")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: these tensors are so small that more threads mostly "
        "add synchronisation)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:  # after parsing: --help needs no torch
        require("torch", "chapters", "python -m llmpy.makemore")
    except MissingDependency as e:
        return exit_missing(e)
    try:
        return _run(args)
    except (OSError, ValueError) as e:  # names.txt missing offline (DownloadError), unreadable, ...
        print(f"error: {e}", file=sys.stderr)
        return 1


def _run(args) -> int:
    import torch

    from .bigram import BigramCounts, BigramNN
    from .data import Vocab, build_dataset, load_words, split_words
    from .diagnostics import Diagnostics, describe
    from .models import MLP, mlp_bn, wavenet
    from .train import LECTURE_SCHEDULES, evaluate, sample, train

    if args.threads:
        torch.set_num_threads(args.threads)
    say = (lambda *a, **k: None) if args.json else print
    log_every = 0 if args.json else args.log_every
    t0 = time.time()

    words = load_words(args.names)
    vocab = Vocab.from_words(words)
    splits = split_words(words)
    g = torch.Generator().manual_seed(args.seed)
    metrics: dict = {"model": args.model, "seed": args.seed}
    say(
        f"{len(words)} names, vocabulary {''.join(vocab.itos)!r}; split {len(splits.train)}/{len(splits.val)}/"
        f"{len(splits.test)}"
    )

    if args.model == "backprop":
        return _backprop(args, splits, vocab, g, metrics, say, t0)

    if args.model == "bigram-counts":
        for s in (0, 1):
            nll = BigramCounts.fit(words, vocab, smoothing=s).nll(words)
            metrics[f"full_dataset_nll_smoothing{s}"] = nll
            say(f"counting model of the full dataset, smoothing {s}: average NLL {nll:.4f}")
        model = BigramCounts.fit(splits.train, vocab, smoothing=1)
        metrics["train_loss"], metrics["val_loss"] = model.nll(splits.train), model.nll(splits.val)
        metrics["steps"] = 0
    else:
        block = {"bigram-nn": 1, "mlp": 3, "mlp-bn": 3, "wavenet": 8}[args.model]
        Xtr, Ytr = build_dataset(splits.train, block, vocab)
        Xva, Yva = build_dataset(splits.val, block, vocab)
        diag = None
        if args.model == "bigram-nn":
            model = BigramNN(len(vocab), g)
            steps = args.steps if args.steps is not None else 200
            say(f"full-batch gradient descent on {len(Ytr)} bigrams, lr 50, L2 0.01, {steps} steps")
            losses = model.fit(
                splits.train, vocab, steps=steps, log_every=max(1, steps // 10) if log_every else 0
            )
        else:
            if args.model == "mlp":
                model = MLP(len(vocab), init=args.init, generator=g)
            elif args.model == "mlp-bn":
                model = mlp_bn(len(vocab), n_layers=args.layers, generator=g)
            else:
                model = wavenet(len(vocab), generator=g)
            schedule = LECTURE_SCHEDULES[args.model]
            if args.steps is not None:
                schedule = schedule.with_steps(args.steps)
            if hasattr(model, "layers"):
                say(describe(model))
                diag = Diagnostics(model, schedule.steps, every=max(1, schedule.steps // 1000))
            n_params = sum(p.numel() for p in model.parameters())
            metrics["parameters"] = n_params
            say(
                f"{n_params} parameters; {schedule.steps} steps of batch {schedule.batch_size}, lr {schedule.lr} "
                f"then {schedule.lr_late} from step {int(schedule.decay_at * schedule.steps)}"
            )
            losses = train(
                model,
                Xtr,
                Ytr,
                schedule,
                generator=g,
                log_every=log_every,
                on_step=diag.on_step if diag else None,
                before_backward=diag.before_backward if diag else None,
            )
        metrics["steps"] = len(losses)
        metrics["train_loss"], metrics["val_loss"] = evaluate(model, Xtr, Ytr), evaluate(model, Xva, Yva)
        if diag is not None:
            for snap in diag.snapshots:
                say(snap.table())
            metrics["diagnostics"] = diag.summary()
            png = args.png if args.png is not None else f"makemore_{args.model}.png"
            if png:
                path = diag.save_png(png, losses)
                metrics["png"] = str(path) if path else None
                if path:
                    say(f"diagnostics saved to {path}")

    say(f"train loss {metrics['train_loss']:.4f}  val loss {metrics['val_loss']:.4f}")
    metrics["samples"] = sample(model, vocab, args.samples, torch.Generator().manual_seed(args.seed + 10))
    for w in metrics["samples"]:
        say(w)
    metrics["seconds"] = round(time.time() - t0, 1)
    if args.json:
        print(json.dumps(metrics))
    return 0


def _backprop(args, splits, vocab, g, metrics, say, t0) -> int:
    """Manual gradients against autograd (float64), then SGD with the manual gradients only."""
    import torch

    from .backprop import compare, init_params, train_manual
    from .data import build_dataset

    Xtr, Ytr = build_dataset(splits.train, 3, vocab)
    p = init_params(len(vocab), generator=g, dtype=torch.float64)
    ix = torch.randint(0, Xtr.shape[0], (32,), generator=g)
    rows = compare(p, Xtr[ix], Ytr[ix])
    say(f"{'tensor':16s} exact  approx maxdiff (float64, batch of 32)")
    for r in rows:
        say(f"{r['name']:16s} {r['exact']!s:6s} {r['approx']!s:6s} {r['maxdiff']:.1e}")
    metrics["max_abs_diff"] = max(r["maxdiff"] for r in rows)
    steps = args.steps if args.steps is not None else 2000
    p = init_params(len(vocab), generator=g)
    with torch.no_grad():
        for v in p.values():
            v.requires_grad_(False)
    losses = train_manual(p, Xtr, Ytr, steps, generator=g)
    k = min(100, len(losses))
    metrics["steps"] = steps
    if losses:
        metrics["first_loss"] = sum(losses[:k]) / k
        metrics["last_loss"] = sum(losses[-k:]) / k
        say(
            f"SGD with manual gradients only, {steps} steps: mean loss of the first {k} steps "
            f"{metrics['first_loss']:.4f}, of the last {k} {metrics['last_loss']:.4f}"
        )
    metrics["seconds"] = round(time.time() - t0, 1)
    if args.json:
        print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
