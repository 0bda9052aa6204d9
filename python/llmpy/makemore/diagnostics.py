"""Looking inside a network while it trains (for models built from :mod:`.layers`).

What to look at, and what healthy looks like:

* **Activations** of each Tanh layer: their histogram and the *saturation* — the share of
  units with ``|t| > 0.97``. A saturated unit passes almost no gradient (``1 - t**2 ≈ 0``);
  a few percent is fine, half is a problem. The standard deviation should stay similar from
  layer to layer (not shrink to 0, not pile up at ±1).
* **Gradients** of the same outputs: similar spreads in every layer; if they shrink or grow
  layer by layer, the earlier layers learn at a different speed than the later ones.
* **Weight gradients** and the **update-to-data ratio** ``std(lr * grad) / std(weight)`` of
  each 2-D weight over training, on a log10 scale: about -3 (updates change weights by
  ~1/1000 per step) is a good rate; far below means learning is too slow, far above too fast.

:class:`Diagnostics` plugs into :func:`~.train.train` (``before_backward`` / ``on_step``),
takes a snapshot after the first step and one after the last, records the ratios every
``every`` steps, and :meth:`Diagnostics.save_png` draws all of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..extras import install_hint
from .layers import Sequential, Tanh

__all__ = ["Diagnostics", "Snapshot"]

SATURATION = 0.97


@dataclass
class Snapshot:
    """Activations and gradients of every Tanh layer, and gradients of every 2-D weight, at one step."""

    step: int
    activations: dict[str, np.ndarray] = field(default_factory=dict)
    act_grads: dict[str, np.ndarray] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    weight_grads: dict[str, np.ndarray] = field(default_factory=dict)

    def saturation(self) -> dict[str, float]:
        """Percentage of tanh outputs with ``|t| > 0.97``, per layer."""
        return {k: float((np.abs(a) > SATURATION).mean() * 100) for k, a in self.activations.items()}

    def table(self) -> str:
        """A printable summary: one line per Tanh layer, one per weight."""
        sat = self.saturation()
        lines = [f"step {self.step}:"]
        for k, a in self.activations.items():
            g = self.act_grads.get(k)
            gs = f"grad std {g.std():.2e}" if g is not None else ""
            lines.append(f"  {k:14s} mean {a.mean():+.2f} std {a.std():.2f} saturated {sat[k]:5.2f}%  {gs}")
        for k, g in self.weight_grads.items():
            w = self.weights[k]
            lines.append(
                f"  {k:14s} {tuple(w.shape)!s:11s} grad mean {g.mean():+.2e} std {g.std():.2e} "
                f"grad:data {g.std() / w.std():.2e}"
            )
        return "\n".join(lines)


class Diagnostics:
    """Collects :class:`Snapshot` s and update-to-data ratios for a :class:`~.layers.Sequential`.

    Args:
        model: the network.
        steps: the number of training steps (the last one is snapshotted).
        every: record update-to-data ratios every this many steps.
    """

    def __init__(self, model: Sequential, steps: int, every: int = 1) -> None:
        self.model = model
        self.steps = steps
        self.every = max(1, every)
        self.tanh = {
            f"layer {i} (Tanh)": layer for i, layer in enumerate(model.layers) if isinstance(layer, Tanh)
        }
        self.weights: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(model.layers):
            for p in layer.parameters():
                if p.ndim == 2:
                    self.weights[f"layer {i} ({type(layer).__name__})"] = p
        self.snapshots: list[Snapshot] = []
        self.ud_steps: list[int] = []
        self.ud: dict[str, list[float]] = {k: [] for k in self.weights}

    def _snap_step(self, step: int) -> bool:
        return step == 0 or step == self.steps - 1

    def before_backward(self, step: int) -> None:
        if self._snap_step(step):
            for layer in self.tanh.values():
                layer.out.retain_grad()

    def on_step(self, step: int, lr: float, loss: float) -> None:
        if step % self.every == 0:
            self.ud_steps.append(step)
            for k, p in self.weights.items():
                ratio = (lr * p.grad).std() / p.data.std()
                self.ud[k].append(float(ratio.log10()))
        if self._snap_step(step):
            s = Snapshot(step)
            for k, layer in self.tanh.items():
                s.activations[k] = layer.out.detach().cpu().numpy().ravel()
                if layer.out.grad is not None:
                    s.act_grads[k] = layer.out.grad.cpu().numpy().ravel()
            for k, p in self.weights.items():
                s.weights[k] = p.detach().cpu().numpy().copy()
                s.weight_grads[k] = p.grad.cpu().numpy().ravel().copy()
            self.snapshots.append(s)

    def summary(self) -> dict:
        """Saturation (%) per Tanh layer at each snapshot and the last update-to-data ratios."""
        return {
            "saturation_percent": {f"step {s.step}": s.saturation() for s in self.snapshots},
            "update_to_data_log10_last": {k: v[-1] for k, v in self.ud.items() if v},
        }

    def save_png(self, path: str | Path, losses: list[float] | None = None) -> Path | None:
        """Draws histograms (first and last snapshot), ratios over training, saturation and
        the loss curve into one PNG.

        Returns None (after printing a note) when matplotlib is not installed.
        """
        try:
            from matplotlib.figure import Figure
        except ImportError:
            hint = install_hint("matplotlib", "chapters")
            print(f"note: matplotlib is not installed, {path} not written ({hint})")
            return None
        fig = Figure(figsize=(16, 18))
        axes = fig.subplots(4, 2)
        first_last = [self.snapshots[0], self.snapshots[-1]] if len(self.snapshots) > 1 else self.snapshots
        for col, snap in enumerate(first_last):
            sat = snap.saturation()
            ax = axes[0, col]
            for k, a in snap.activations.items():
                hy, hx = np.histogram(a, bins=50, range=(-1, 1), density=True)
                ax.plot((hx[:-1] + hx[1:]) / 2, hy, label=f"{k}: std {a.std():.2f}, saturated {sat[k]:.1f}%")
            ax.set_title(f"tanh activations, step {snap.step}")
            ax.legend(fontsize=8)
            ax = axes[1, col]
            for k, g in snap.act_grads.items():
                hy, hx = np.histogram(g, bins=50, density=True)
                ax.plot((hx[:-1] + hx[1:]) / 2, hy, label=f"{k}: std {g.std():.2e}")
            ax.set_title(f"gradients of tanh activations, step {snap.step}")
            ax.legend(fontsize=8)
        if self.snapshots:
            snap = self.snapshots[-1]
            ax = axes[2, 0]
            for k, g in snap.weight_grads.items():
                hy, hx = np.histogram(g, bins=50, density=True)
                ratio = g.std() / snap.weights[k].std()
                ax.plot(
                    (hx[:-1] + hx[1:]) / 2, hy, label=f"{k} {snap.weights[k].shape}: grad:data {ratio:.1e}"
                )
            ax.set_title(f"weight gradients, step {snap.step}")
            ax.legend(fontsize=8)
        ax = axes[2, 1]
        for k, v in self.ud.items():
            ax.plot(self.ud_steps, v, label=k)
        ax.axhline(-3, color="k", linestyle="--", label="-3 (rule of thumb)")
        ax.set_title("update-to-data ratio, log10(std(lr * grad) / std(weight))")
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
        ax = axes[3, 0]
        if losses:
            k = max(1, len(losses) // 200)
            n = len(losses) // k * k
            curve = np.log10(np.asarray(losses[:n]).reshape(-1, k).mean(1))
            ax.plot(np.arange(len(curve)) * k, curve)
        ax.set_title("log10 training loss (averaged over windows of steps)")
        ax.set_xlabel("step")
        ax = axes[3, 1]
        names = list(self.tanh)
        width = 0.8 / max(len(first_last), 1)
        for j, snap in enumerate(first_last):
            sat = snap.saturation()
            ax.bar(
                np.arange(len(names)) + j * width, [sat[n] for n in names], width, label=f"step {snap.step}"
            )
        ax.set_xticks(np.arange(len(names)) + width * (len(first_last) - 1) / 2, names, fontsize=8)
        ax.set_ylabel("% of tanh outputs with |t| > 0.97")
        ax.set_title("saturation")
        ax.legend(fontsize=8)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=80, bbox_inches="tight")
        return path


def describe(model: Sequential) -> str:
    """One line per layer with its parameter count."""
    lines = []
    for i, layer in enumerate(model.layers):
        n = sum(p.numel() for p in layer.parameters())
        lines.append(f"  {i:2d} {layer!r:32s} {n:7d}")
    lines.append(f"  total parameters: {sum(p.numel() for p in model.parameters())}")
    return "\n".join(lines)
