"""python -m llmpy.micrograd: train a micrograd MLP on two moons and save the decision boundary."""

from __future__ import annotations

import argparse
import json
import sys
import time

from .moons import save_decision_boundary, train_moons


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m llmpy.micrograd",
        description="Train MLP(2, [16, 16, 1]) built from scalar Values on a two-moons dataset "
        "(SVM max-margin loss + L2, full-batch gradient descent) and save a decision-boundary PNG.",
    )
    p.add_argument("--samples", type=int, default=100, help="number of points (default 100)")
    p.add_argument("--steps", type=int, default=100, help="gradient-descent steps (default 100)")
    p.add_argument(
        "--hidden", type=int, nargs="+", default=[16, 16], help="hidden layer sizes (default 16 16)"
    )
    p.add_argument("--alpha", type=float, default=1e-4, help="L2 regularisation strength (default 1e-4)")
    p.add_argument(
        "--noise", type=float, default=0.1, help="std of the noise added to the moons (default 0.1)"
    )
    p.add_argument("--seed", type=int, default=1337, help="seed of the data and the weights")
    p.add_argument("--png", default="micrograd_moons.png", help="where to save the plot ('' to skip)")
    p.add_argument("--json", action="store_true", help="print only the final metrics as JSON")
    args = p.parse_args(argv)

    t0 = time.time()
    log = None if args.json else print
    r = train_moons(
        n_samples=args.samples,
        steps=args.steps,
        hidden=args.hidden,
        alpha=args.alpha,
        noise=args.noise,
        seed=args.seed,
        log=log,
    )
    png = save_decision_boundary(r, args.png) if args.png else None
    metrics = {
        "final_loss": r.losses[-1],
        "train_accuracy": r.accuracy,
        "steps": len(r.losses),
        "parameters": len(r.model.parameters()),
        "png": str(png) if png else None,
        "seconds": round(time.time() - t0, 2),
    }
    if args.json:
        print(json.dumps(metrics))
    else:
        print(
            f"final training accuracy {r.accuracy * 100:.0f}% ({metrics['parameters']} parameters, "
            f"{metrics['seconds']} s)"
        )
        if png:
            print(f"decision boundary saved to {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
