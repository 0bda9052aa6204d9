"""Train GPT-2: ``python -m llmpy.train``.

With no flags it trains a small GPT on tiny Shakespeare (GPT-2 tokens) on the CPU, in a few
minutes on two cores, printing the loss per step, the val loss and a sample now and then, and
saving checkpoints, a JSONL log and a loss plot under ``runs/``. Flags scale it up to a GPT-2
reproduction on FineWeb; ``--resume latest`` continues a run bit-for-bit.

The loop is policy only (data order, schedule, accumulation, evaluation, checkpoints); every
forward, backward and AdamW step is the C engine's (``llmpy.GPT2``).

Data parallel: ``mpirun -np N python -m llmpy.train ...`` runs N ranks (``llmpy.dist``). Each
reads its own slice of every global batch (``--batch-size`` is per rank, so a step sees
``N x B x T x accumulation`` tokens), gradients are averaged over the ranks (``--zero-stage 1``
shards the AdamW moments instead), and only rank 0 prints and writes files. Resuming needs the
run folder on a file system every rank can read.

Run folders follow the core's rules, which train_gpt2 follows too (csrc/core/run.c): one run at a
time holds a folder (``<out-dir>/.lock``, taken by rank 0), a new run refuses a folder that holds
another run, a start that fails removes the folder it created, and ``--resume`` takes the run's
flags from its checkpoint: given again, the flags that say what to do next (``--max-steps``, the
learning rates, evaluation, samples, checkpoints, threads) change, the ones that define the run
(model, batch, sequence length, data, seed, shuffling) are refused. Flags are checked by the
core's rules (csrc/core/schedule.c) before the first step, with the same messages as train_gpt2.

llm.c's training flags have the same names and semantics in both programs, each rule once in the
core: ``--lr-schedule wsd``, ``--skip-update-loss-z`` / ``--skip-update-grad-z`` (skip the update
of an outlier step: z-score over the last 128 steps, windows saved in the checkpoints),
``--overfit-single-batch``, ``--major-checkpoint-every`` (never deleted by
``--keep-checkpoints``), and MFU in the log (null where the device's peak is unknown).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from . import _C, checkpoint, dist
from .cli import HelpFormatter
from .device import HELP as DEVICE_HELP
from .device import arg as device_arg
from .extras import install_hint
from .model import GPT2, GPT2Config

# GPT-2 shapes by depth (the paper's 124M, 350M, 774M, 1558M): the core's table, which
# train_gpt2 --model reads too
PRESETS = {name: dict(shape) for name, shape in _C.PRESETS.items()}
# The default run: small enough for a 2-core CPU to show learning in about 5 minutes.
DEFAULT_SHAPE = dict(n_layer=4, n_head=4, n_embd=128)
GPT2_VOCAB = 50257
STATE_VERSION = 1


# ----------------------------------------------------------------------------
# schedule


def lr_at(step: int, max_steps: int, lr: float, warmup_steps: int, schedule: str, min_lr_frac: float) -> float:
    """Learning rate of (0-based) ``step``: linear warmup over ``warmup_steps``, then the schedule
    decays from ``lr`` to ``lr * min_lr_frac`` at ``max_steps``. The rule is the core's
    (``llm_lr_at``, csrc/core/schedule.c), which train_gpt2 follows too; ValueError names the
    flag of an invalid setting.

    >>> lr_at(0, 100, 1e-3, 10, "cosine", 0.1)
    0.0001
    >>> lr_at(99, 100, 1e-3, 10, "constant", 0.1)
    0.001
    """
    return _C.lr_at(step, max_steps, lr, warmup_steps, schedule, min_lr_frac)


# ----------------------------------------------------------------------------
# arguments


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``error: argument --max-steps: ...``), as train_gpt2 prints them."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see --help)\n")


def _int(text: str) -> int:
    """An integer flag: a C int, as train_gpt2 and the core take it."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not -(2**31) <= value < 2**31:
        raise argparse.ArgumentTypeError(f"bad value '{text}'")
    return value


def _seed(text: str) -> int:
    """--seed: an unsigned 64-bit integer."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"bad value '{text}'")
    return value


# Value names in --help, those of train_gpt2 --help.
_METAVARS = {"n_layer": "N", "n_head": "N", "n_embd": "N", "init_from": "PATH", "device": "D", "threads": "N",
             "data": "GLOB", "val_data": "GLOB", "batch_size": "B", "seq_len": "T", "total_batch_size": "TOKENS",
             "max_steps": "N", "lr": "LR", "warmup_steps": "N", "lr_schedule": "S", "min_lr_frac": "F",
             "beta1": "B1", "beta2": "B2", "weight_decay": "WD", "grad_clip": "G", "seed": "S", "zero_stage": "0|1",
             "eval_every": "N", "val_steps": "N", "sample_every": "N", "sample_tokens": "N", "hellaswag_every": "N",
             "hellaswag_limit": "N", "checkpoint_every": "N", "keep_checkpoints": "K", "out_dir": "DIR",
             "log_file": "PATH"}


class _Toggle(argparse.BooleanOptionalAction):
    """``--x`` / ``--no-x``, with the help as written (argparse would add "(default: True)")."""

    def __init__(self, *args, help: Optional[str] = None, **kw):
        super().__init__(*args, help=help, **kw)
        self.help = help


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m llmpy.train",
        description="Train a GPT-2 with llmpy. With no flags: a small GPT on tiny Shakespeare, on the CPU. "
        "train_gpt2 takes the same flags with the same defaults; [llm.c: -x] names llm.c's train_gpt2cu flag.",
        formatter_class=HelpFormatter,
    )
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=sorted(PRESETS), help="GPT-2 shape preset (d12 = 124M, ...) (default: a "
                   "small model, 4 layers, 4 heads, 128 channels)")
    g.add_argument("--n-layer", type=_int, help="override the number of layers (default: the preset's)")
    g.add_argument("--n-head", type=_int, help="override the number of heads (default: the preset's)")
    g.add_argument("--n-embd", type=_int, help="override the number of channels (default: the preset's)")
    g.add_argument("--init-from", default="scratch",
                   help="'scratch', an llm.c model file, a Hugging Face directory (config.json + "
                   "model.safetensors) or a hub name (gpt2, gpt2-medium, gpt2-large, gpt2-xl) [llm.c: -e]")
    g.add_argument("--device", default="auto", type=device_arg, help=DEVICE_HELP)
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="auto: fp32 on the CPU, bf16 on a GPU; fp32 on a GPU is the parity path (exact "
                   "against PyTorch, no tensor cores: several times slower), not for speed")
    g.add_argument("--threads", type=_int, default=0, help="CPU threads; 0: all cores")
    g = p.add_argument_group("data")
    g.add_argument("--data", default="tinyshakespeare",
                   help="'tinyshakespeare', or a glob of train shards (e.g. 'dir/fineweb_train_*.bin') [llm.c: -i]")
    g.add_argument("--val-data", default=None,
                   help="glob of val shards (default: --data with 'train' replaced by 'val') [llm.c: -j]")
    g.add_argument("--batch-size", type=_int, default=8,
                   help="micro-batch size B (sequences per forward, per rank) [llm.c: -b]")
    g.add_argument("--seq-len", type=_int, default=128, help="sequence length T [llm.c: -t]")
    g.add_argument("--total-batch-size", type=_int, default=0,
                   help="tokens per optimizer step over all ranks, a multiple of B*T*ranks (more: gradient "
                        "accumulation) (default: 0, i.e. B*T*ranks) [llm.c: -d]")
    g.add_argument("--shuffle", action=_Toggle, default=True,
                   help="permute shards and sequences every epoch (default: --shuffle)")
    g.add_argument("--overfit-single-batch", action=_Toggle, default=False,
                   help="debugging: every step trains on the run's first batch (the first --total-batch-size "
                        "tokens of the train data), so the loss should fall towards 0 (default: "
                        "--no-overfit-single-batch) [llm.c: -a 1]")
    g = p.add_argument_group("optimisation")
    g.add_argument("--max-steps", type=_int, default=300, help="optimizer steps [llm.c: -x]")
    g.add_argument("--lr", type=float, default=2e-3, help="peak learning rate [llm.c: -l]")
    g.add_argument("--warmup-steps", type=_int, default=20, help="linear warmup steps [llm.c: -u]")
    g.add_argument("--lr-schedule", default="cosine",
                   help="the learning rate after the warmup: cosine or linear decay to --min-lr-frac x --lr at "
                        "--max-steps, constant, or wsd (warmup-stable-decay: --lr until 80%% of --max-steps, then "
                        "1 - sqrt decay to --min-lr-frac x --lr) [llm.c: -k]")
    g.add_argument("--min-lr-frac", type=float, default=0.1,
                   help="final lr as a fraction of --lr (cosine, linear, wsd) [llm.c: -q]")
    g.add_argument("--beta1", type=float, default=0.9, help="AdamW beta1, in [0, 1)")
    g.add_argument("--beta2", type=float, default=0.95, help="AdamW beta2, in [0, 1)")
    g.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay on 2-D tensors [llm.c: -c]")
    g.add_argument("--grad-clip", type=float, default=1.0, help="clip the global gradient norm; 0: off")
    g.add_argument("--seed", type=_seed, default=1337, help="seed of the init, data order and samples")
    g.add_argument("--zero-stage", type=_int, default=0,
                   help="with several ranks (mpirun): 1 shards the AdamW moments across ranks (ZeRO-1) [llm.c: -z]")
    g.add_argument("--skip-update-loss-z", type=float, default=0.0, metavar="Z",
                   help=f"skip the update of a step whose loss has a z-score above Z over the last "
                        f"{_C.OUTLIER_WINDOW} steps' losses (the step counts; its gradients are dropped); 0: off "
                        f"[llm.c: -sl]")
    g.add_argument("--skip-update-grad-z", type=float, default=0.0, metavar="Z",
                   help=f"the same for the gradient norm over the last {_C.OUTLIER_WINDOW} steps; 0: off "
                        f"[llm.c: -sg]")
    g = p.add_argument_group("evaluation, checkpoints and logs (every '--...-every' = 0 disables)")
    g.add_argument("--eval-every", type=_int, default=50, help="steps between val-loss evaluations [llm.c: -v]")
    g.add_argument("--val-steps", type=_int, default=10, help="val batches per evaluation [llm.c: -m]")
    g.add_argument("--sample-every", type=_int, default=100, help="steps between samples [llm.c: -s]")
    g.add_argument("--sample-tokens", type=_int, default=64, help="tokens per sample [llm.c: -g]")
    g.add_argument("--hellaswag-every", type=_int, default=0,
                   help="steps between HellaSwag evaluations [llm.c: -h 1 evaluates at every -v]")
    g.add_argument("--hellaswag-data", default=None, metavar="FILE.jsonl",
                   help="HellaSwag jsonl (default: the validation set in the data cache, downloaded once)")
    g.add_argument("--hellaswag-limit", type=_int, default=0,
                   help="evaluate the first N HellaSwag examples; 0: all 10,042 (a few hundred keep small runs quick)")
    g.add_argument("--checkpoint-every", type=_int, default=100, help="steps between checkpoints [llm.c: -n]")
    g.add_argument("--keep-checkpoints", type=_int, default=3,
                   help="keep the newest K checkpoints (and the major ones); 0: all [llm.c: -nk]")
    g.add_argument("--major-checkpoint-every", type=_int, default=0, metavar="M",
                   help="checkpoints at steps that are multiples of M are major: --keep-checkpoints never "
                        "deletes them; 0: none [llm.c: -nm]")
    g.add_argument("--out-dir", default=None,
                   help="run folder (default: runs/<data>-<date>-<time>); one run at a time holds it, "
                        "and a new run refuses a folder that holds another run [llm.c: -o]")
    g.add_argument("--resume", default=None, metavar="PATH|latest",
                   help="continue from a checkpoint ('latest' = newest good one in --out-dir, or in the "
                        "newest folder under runs/) with the run's saved flags; given again, --max-steps, "
                        "the learning rates and the eval/sample/checkpoint/thread flags change them, while "
                        "the model, batch, sequence length, data, seed and shuffling cannot change "
                        "(default: a new run) [llm.c: -y 1]")
    g.add_argument("--log-file", default=None, help="JSONL log (default: <out-dir>/log.jsonl)")
    g.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout "
                   "(progress goes to stderr) (default: off)")
    for action in p._actions:  # the value names of train_gpt2 --help
        if action.metavar is None and action.choices is None and action.dest in _METAVARS:
            action.metavar = _METAVARS[action.dest]
    return p


_UNSET = object()


def explicit_flags(argv: list) -> frozenset:
    """The flags (argparse dests) given on the command line ``argv``, as opposed to defaults.

    >>> sorted(explicit_flags(["--max-steps", "20", "--no-shuffle"]))
    ['max_steps', 'shuffle']
    """
    p = build_parser()
    p.set_defaults(**dict.fromkeys(vars(p.parse_args([])), _UNSET))
    return frozenset(k for k, v in vars(p.parse_args(argv)).items() if v is not _UNSET)


# Flags of one invocation (where the run is, which checkpoint, how to print, which device): a
# resumed run does not take them from its checkpoint.
PER_INVOCATION = ("resume", "out_dir", "json", "device")
# Model-shape flags: when the saved run left one unset, its model's configuration says the value.
SHAPE_FLAGS = ("n_layer", "n_head", "n_embd")


def _flag_text(value) -> str | None:
    """A flag's value as both programs print it: "8", "0.003" (shortest, no ".0"), "true"; None unset."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value).removesuffix(".0")
    return str(value)


# How long the other ranks wait while one rank per machine downloads and tokenizes the data
# (FineWeb's 10B tokens take hours); bounded, so that a rank that died meanwhile ends the job.
DATA_PREP_TIMEOUT = 24 * 3600.0


class Stop(Exception):
    """A run ends early for a reason the user must see (bad flags, NaN loss, ...)."""


# ----------------------------------------------------------------------------
# helpers


def _resolve_device(device: str) -> str:
    """--device through llmpy.device (auto / cpu / cuda / cuda:N; cuda is this rank's GPU)."""
    from .device import resolve

    try:
        return resolve(device)
    except (ValueError, NotImplementedError) as e:
        raise Stop(f"--device {device}: {e}") from None


def _data_patterns(args) -> tuple:
    """(train pattern, val pattern or None, description) for --data / --val-data."""
    if args.data == "tinyshakespeare":
        from .data import tinyshakespeare

        res = tinyshakespeare.prepare(progress=None)  # a no-op when the shards exist
        val = [str(f) for f in res.files if "_val" in Path(f).name]
        train = [str(f) for f in res.files if "_val" not in Path(f).name]
        return train, val, "tiny Shakespeare"
    train = args.data
    val = args.val_data
    if val is None and "train" in Path(train).name:
        val = str(Path(train).parent / Path(train).name.replace("train", "val"))
    return train, val, train  # val None: not given, and not derived from --data


def _check_inputs(args) -> None:
    """The files and names the flags give, checked before anything is downloaded."""
    from .hf import check_source

    if not args.resume and args.init_from != "scratch":
        try:
            check_source(args.init_from)  # a local file or folder is opened; a hub name needs the hf extra
        except (OSError, ValueError) as e:
            raise Stop(f"--init-from: {e}") from None
    if args.hellaswag_every and args.hellaswag_data is not None and not Path(args.hellaswag_data).is_file():
        raise Stop(f"--hellaswag-data {args.hellaswag_data}: no such file (leave it out to download the "
                   "validation set into the data cache)")


def _model_config(args, vocab_size: int) -> GPT2Config:
    shape = dict(PRESETS[args.model]) if args.model else dict(DEFAULT_SHAPE)
    for k in ("n_layer", "n_head", "n_embd"):
        if getattr(args, k) is not None:
            shape[k] = getattr(args, k)
    block = 1024 if args.model else max(args.seq_len, 128)
    return GPT2Config(vocab_size=vocab_size, block_size=max(block, args.seq_len), **shape)


def _finite(x: float) -> Optional[float]:
    """x, or None for NaN and infinities (the log is JSON: null, as train_gpt2 writes it)."""
    return x if math.isfinite(x) else None


def _fmt_time(s: float) -> str:
    s = int(max(s, 0))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _newest_run(root: Path = Path("runs")) -> Optional[Path]:
    runs = [p for p in root.glob("*") if p.is_dir() and checkpoint.steps(p)] if root.is_dir() else []
    return max(runs, key=lambda p: p.stat().st_mtime) if runs else None


def _plot(log_path: Path, png: Path) -> bool:
    """Redraws the loss curve from the JSONL log; False (no plot) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    train, val = [], []
    for line in log_path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:  # not a record (kept in the log as it was): nothing to draw
            continue
        if not isinstance(rec, dict) or "step" not in rec:
            continue
        if "loss" in rec:
            train.append((rec["step"], rec["loss"]))
        if "val_loss" in rec:
            val.append((rec["step"], rec["val_loss"]))
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train", lw=1)
    if val:
        ax.plot(*zip(*val), "o-", label="val")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = png.with_name(png.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png)
    return True


# ----------------------------------------------------------------------------
# the run


class Run:
    """One training run: holds the model, loaders, RNGs and log, and executes the loop."""

    def __init__(self, args, explicit: frozenset = frozenset()):
        self.args = args
        self.explicit = explicit  # flags given on the command line (a resumed run compares them)
        self.lock = None  # rank 0's lock on the run folder (_C.run.Lock)
        self.started = False  # past setup: a failure no longer removes the folder it created
        self.complete = False  # a resumed run that had nothing left to do
        self.changes: list = []  # "--max-steps 8 -> 20": flags a resumed run changed
        # the device first: ranks launched without MPI talk through NCCL, which needs the GPU set up
        self.device = _resolve_device(args.device)
        if self.device.startswith("cuda"):
            from . import cuda

            cuda.module(self.device)
        info = dist.init()
        self.rank, self.world = info["rank"], info["world_size"]
        self.main = self.rank == 0  # only rank 0 prints and writes files
        if not self.main:
            self.say = lambda msg: None
        elif args.json:
            self.say = lambda msg: print(msg, file=sys.stderr, flush=True)
        else:
            self.say = lambda msg: print(msg, flush=True)
        self.stop_signal = None

    # -- setup ------------------------------------------------------------------

    def _check_flags(self) -> None:
        """The flags' rules (the core's, shared with train_gpt2), before the first step."""
        a = self.args
        if a.hellaswag_limit < 0:
            raise Stop(f"--hellaswag-limit must be >= 0 (0: all), got {a.hellaswag_limit}")
        on_gpu = self.device.startswith("cuda")
        precision = a.precision if a.precision != "auto" else ("bf16" if on_gpu else "fp32")
        if precision != "fp32" and not on_gpu:
            raise Stop(f"--precision {precision} needs the CUDA backend; the CPU computes in fp32")
        self.precision = precision
        try:
            _C.check_schedule(a.max_steps, a.lr, a.warmup_steps, a.lr_schedule, a.min_lr_frac)
            _C.check_train_flags(
                batch_size=a.batch_size, seq_len=a.seq_len, val_steps=a.val_steps, eval_every=a.eval_every,
                sample_every=a.sample_every, sample_tokens=a.sample_tokens,
                checkpoint_every=a.checkpoint_every, hellaswag_every=a.hellaswag_every,
                keep_checkpoints=a.keep_checkpoints, threads=a.threads, zero_stage=a.zero_stage, beta1=a.beta1,
                beta2=a.beta2, weight_decay=a.weight_decay, grad_clip=a.grad_clip,
                major_checkpoint_every=a.major_checkpoint_every, skip_update_loss_z=a.skip_update_loss_z,
                skip_update_grad_z=a.skip_update_grad_z)
            self.accum = _C.grad_accumulation(a.total_batch_size, a.batch_size, a.seq_len, self.world)
        except ValueError as e:
            raise Stop(str(e)) from None

    def _restore_flags(self, extra: dict) -> list:
        """A resumed run's flags: the saved ones, except those given again that a resumed run may
        change (the core's rule, llm_resume_check_flag); returns the changes ("--lr 0.001 -> 0.0005")."""
        a, changes = self.args, []
        saved = dict(extra.get("args") or {})
        for key in SHAPE_FLAGS:  # a run of the default shape saved None: its model says the value
            if saved.get(key) is None and key in (extra.get("config") or {}):
                saved[key] = extra["config"][key]
        for key in list(vars(a)):  # in the order of the flags (--help's)
            if key in PER_INVOCATION or key not in saved:
                continue
            value = saved[key]
            if key not in self.explicit:
                setattr(a, key, value)
                continue
            flag, was, now = "--" + key.replace("_", "-"), _flag_text(value), _flag_text(getattr(a, key))
            if was == now:
                continue
            try:
                _C.run.resume_check_flag(flag, was, now)
            except ValueError as e:
                raise Stop(str(e)) from None
            changes.append(f"{flag} {'none' if was is None else was} -> {'none' if now is None else now}")
        return changes

    def setup(self) -> None:
        import llmpy
        from .data import DataLoader
        from .tokenizer import gpt2

        a = self.args
        if not a.resume:
            self._check_flags()  # before the folder is touched
        # every rank must run the same command: compare with rank 0's flags
        mine = dict(vars(a))
        ref = dist.broadcast_object(mine)
        if ref != mine:
            diff = sorted(k for k in mine if mine[k] != ref.get(k))
            raise Stop(f"rank {self.rank} was started with other flags than rank 0 ({', '.join(diff)}); "
                       f"start every rank with the same command")

        # the run folder: found (resume) or named (new run), then locked by rank 0 for the whole run
        pair = None
        if a.resume == "latest":
            out_dir = Path(a.out_dir) if a.out_dir else _newest_run()
            if out_dir is None:
                raise Stop("--resume latest: no run with checkpoints under runs/ (give --out-dir)")
        elif a.resume:
            pair = checkpoint.resolve(a.resume, a.out_dir or ".")
            out_dir = Path(a.out_dir) if a.out_dir else pair[0].parent
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            name = a.data if a.data == "tinyshakespeare" else "run"
            out_dir = Path(a.out_dir) if a.out_dir else Path("runs") / f"{name}-{stamp}"
            out_dir = Path(dist.broadcast_object(str(out_dir)))  # rank 0's clock names it
        self.out_dir = out_dir
        if self.main:
            self.lock = _C.run.Lock(str(out_dir), "python -m llmpy.train")
            if self.lock.note:
                self.say(f"note: {self.lock.note}")
            if not a.resume:
                _C.run.check_new(str(out_dir), str(Path(a.log_file) if a.log_file else out_dir / "log.jsonl"))
            removed = checkpoint.clean_temp(out_dir)  # temp files of a save that was killed
            if removed:
                self.say(f"note: removed {removed} temp file{'s' if removed > 1 else ''} of an interrupted save "
                         f"in {out_dir}")

        # resume: the checkpoint, then the run's flags from it
        resume = None
        if a.resume:
            if pair is None:
                resume = checkpoint.find_latest(out_dir, self.device, self.say)
                if resume is None:
                    raise Stop(f"--resume latest: no loadable checkpoint in {out_dir}")
                pair = checkpoint.paths(out_dir, resume[2])
            else:
                model, extra = checkpoint.load(*pair, self.device)
                resume = (model, extra, extra.get("step", 0))
            if resume[1].get("version") != STATE_VERSION:
                raise Stop(f"{pair[1]}: checkpoint state version {resume[1].get('version')} is not "
                           f"{STATE_VERSION}")
            self.changes = self._restore_flags(resume[1])
            self._check_flags()
            if resume[2] >= a.max_steps:  # nothing to train: run() says so, nothing is written
                self.complete, self.step, self.model = True, resume[2], resume[0]
                self.log_path = Path(a.log_file) if a.log_file else out_dir / "log.jsonl"
                self.started = True
                return
            if resume[0].precision != self.precision:  # the run's --precision, not the device's default
                model = GPT2.from_checkpoint(pair[0], device=self.device, precision=self.precision)
                model.load_state(pair[1])
                resume = (model, resume[1], resume[2])
        if a.threads:
            llmpy.set_num_threads(a.threads)
        B, T, W = a.batch_size, a.seq_len, self.world
        _check_inputs(a)  # before anything is downloaded (data, tokenizer, weights, HellaSwag)
        self.log_path = Path(a.log_file) if a.log_file else self.out_dir / "log.jsonl"
        self.png_path = self.out_dir / "loss.png"

        # one rank per machine prepares the data (download, tokenize) while the others wait
        first_on_machine = dist.local_rank == 0
        if not first_on_machine:
            dist.barrier(timeout=DATA_PREP_TIMEOUT)  # preparing the data may take hours
        train_pattern, val_pattern, self.data_name = _data_patterns(a)
        if first_on_machine and W > 1:
            dist.barrier(timeout=DATA_PREP_TIMEOUT)
        try:  # the train shards first, so that a --data matching nothing says so
            self.train_loader = DataLoader(train_pattern, B, T, rank=self.rank, world_size=W,
                                           shuffle=a.shuffle, seed=a.seed)
        except (OSError, ValueError) as e:
            raise Stop(f"--data: {e}") from None
        if val_pattern is None:
            raise Stop("--val-data is needed when the --data pattern has no 'train' in its file name")
        try:
            self.val_loader = DataLoader(val_pattern, B, T, rank=self.rank, world_size=W, shuffle=False)
        except (OSError, ValueError) as e:
            raise Stop(f"--val-data: {e}") from None
        self.enc = gpt2()  # after the shards: a --data matching nothing fails before tiktoken's download
        self.sample_rng = np.random.default_rng([a.seed, 1])
        # the outlier windows (--skip-update-loss-z / --skip-update-grad-z), kept whether or not
        # skipping is on, so that a resumed run that turns it on knows the run's recent steps
        self.loss_window, self.norm_window = _C.OutlierWindow(), _C.OutlierWindow()

        if resume is not None:
            self.model, extra, self.step = resume
            self._restore(extra)
            self.run_id = extra.get("run_id") or checkpoint.new_run_id()  # the same run goes on
        else:
            self.step = 0
            self.run_id = checkpoint.new_run_id()  # recorded in every checkpoint of this run
            if a.init_from == "scratch":
                self.model = GPT2(_model_config(a, GPT2_VOCAB), device=self.device, seed=a.seed,
                                  precision=self.precision)
            else:
                self.model = GPT2.load(a.init_from, device=self.device)  # llm.c file, HF dir or hub name
        # the same model on every rank (checked), rank 0's parameters, gradients averaged by step()
        self.model.distribute(zero_stage=a.zero_stage)
        cfg = self.model.config
        if T > cfg.block_size:
            raise Stop(f"--seq-len {T} exceeds the model's block size {cfg.block_size}")
        if cfg.vocab_size < self.enc.n_vocab:
            raise Stop(f"the model's vocabulary ({cfg.vocab_size}) is smaller than GPT-2's ({self.enc.n_vocab})")
        for loader in (self.train_loader, self.val_loader):  # a token id >= V names its shard and offset
            loader.vocab_size = cfg.vocab_size
        self.hellaswag = None
        if a.hellaswag_every:  # rendered once, before the first step, so bad data fails early
            from . import hellaswag

            examples = hellaswag.load_examples(a.hellaswag_data, limit=a.hellaswag_limit or None)
            self.hellaswag = hellaswag.render_all(examples, self.enc)

        # the log, last: a new run starts it; a resumed one cuts the records after its step
        if self.main and resume is not None:
            info = _C.run.log_rewind(str(self.log_path), self.step, a.max_steps)
            if info["warning"]:
                self.say(f"warning: {info['warning']}")
            if info["note"]:
                self.say(f"note: {info['note']}")
        elif self.main:
            try:
                self.log_path.write_text("")
            except OSError as e:
                raise Stop(f"cannot write {self.log_path}: {e.strerror or e}") from None
        if resume is not None:
            self.say(f"resumed from step {self.step} of {self.out_dir}"
                     + (f"; {', '.join(self.changes)}" if self.changes else ""))
        self.started = True

    def close(self) -> None:
        """Releases the run folder (rank 0); a start that failed also removes the folder it created."""
        if self.lock is not None:
            self.lock.release(discard=not self.started)
            self.lock = None

    def _extra(self) -> dict:
        """Everything besides the model and AdamW state that an exact resume needs."""
        a = self.args
        return {
            "version": STATE_VERSION,
            "step": self.step,
            "run_id": self.run_id,
            "train_loader": self.train_loader.state_dict(),
            "sample_rng": self.sample_rng.bit_generator.state,
            "outlier": {"loss": self.loss_window.values(), "grad_norm": self.norm_window.values()},
            "args": vars(a),
            "command": shlex.join([sys.executable, "-m", "llmpy.train", *sys.argv[1:]]),
            "config": self.model.config.__dict__,
        }

    def _restore(self, extra: dict) -> None:
        self.train_loader.load_state_dict(extra["train_loader"])
        self.sample_rng.bit_generator.state = extra["sample_rng"]
        # a checkpoint of an older llmpy has no windows: they fill again over the next steps
        windows = extra.get("outlier") or {}
        self.loss_window = _C.OutlierWindow(windows.get("loss", []))
        self.norm_window = _C.OutlierWindow(windows.get("grad_norm", []))

    def _stopping(self) -> bool:
        """A signal reached this rank (or, with several ranks, any rank): stop at this step boundary."""
        if self.world == 1:
            return self.stop_signal is not None
        flags = dist.all_reduce_sum([1.0 if self.stop_signal is not None else 0.0])
        if flags[0] > 0 and self.stop_signal is None:
            self.stop_signal = "SIGTERM (another rank)"
        return flags[0] > 0

    # -- pieces of the loop -----------------------------------------------------------

    def log(self, record: dict) -> None:
        if not self.main:
            return
        try:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:  # a full disk: stop, naming the file (the checkpoints stay as they are)
            raise Stop(f"cannot write {self.log_path}: {e.strerror or e}; the checkpoints in {self.out_dir} "
                       f"are intact") from None

    def evaluate(self) -> float:
        self.val_loader.reset()
        losses = [self.model.forward(*self.val_loader.next_batch()) for _ in range(self.args.val_steps)]
        return dist.all_reduce_mean(float(np.mean(losses)))

    def evaluate_hellaswag(self) -> float:
        """Collective: each rank scores its share of the examples; the counts are summed."""
        from . import hellaswag

        def reduce(counts):  # int64 counts summed exactly in float64 (< 2^53)
            return np.rint(np.asarray(dist.all_reduce_sum(counts.tolist()))).astype(np.int64)

        world = dist.world_size
        return hellaswag.evaluate(self.model, self.hellaswag, rank=dist.rank, world_size=world,
                                  reduce=reduce if world > 1 else None).acc_norm

    def sample(self) -> str:
        eot = self.enc.eot_token
        # a sample is one document: it ends at the first <|endoftext|>, which is not printed
        out = self.model.generate([eot], self.args.sample_tokens, top_k=50, rng=self.sample_rng,
                                  stop_tokens=[eot])[0, 1:]
        text = self.enc.decode([int(t) for t in out if t < eot])  # drop EOT (and padding ids)
        return text or "(empty: the model ended the document at once with <|endoftext|>)"

    def save(self) -> Path:
        """Collective: every rank calls it (ZeRO-1 gathers the moments), rank 0 writes."""
        a = self.args
        keep = a.keep_checkpoints if self.main else 0
        return checkpoint.save(self.out_dir, self.step, self.model, self._extra(), keep, run_id=self.run_id,
                               major_every=a.major_checkpoint_every)

    def banner(self) -> None:
        import llmpy

        a, cfg = self.args, self.model.config
        tokens = a.batch_size * a.seq_len * self.accum * self.world
        ranks = f" | {self.world} ranks" + (" (ZeRO-1)" if a.zero_stage else "") if self.world > 1 else ""
        self.say(f"llmpy {llmpy.__version__} | device {self.device} | threads {llmpy.get_num_threads()}{ranks}")
        self.say(f"model: {cfg.n_layer} layers, {cfg.n_head} heads, {cfg.n_embd} channels, "
                 f"{self.model.num_parameters / 1e6:.2f}M parameters")
        self.say(f"data: {self.data_name}: {self.train_loader.num_tokens:,} train tokens, "
                 f"{self.val_loader.num_tokens:,} val tokens")
        per_rank = f" x {self.world} ranks" if self.world > 1 else ""
        self.say(f"batch: {a.batch_size} x {a.seq_len} tokens x {self.accum} accumulation{per_rank} = {tokens:,} "
                 f"tokens/step; "
                 f"{a.max_steps} steps, lr {a.lr:g} ({a.lr_schedule}, warmup {a.warmup_steps})")
        if a.overfit_single_batch:
            self.say("overfitting a single batch: every step trains on the first batch (--overfit-single-batch)")
        self.say(f"output: {self.out_dir}")

    def _mfu_rule(self):
        """seconds of a step -> its model FLOPs utilisation, or None where the device's peak is unknown
        (the CPU, GPUs outside the core's table: llm_peak_flops)."""
        a, cfg = self.args, self.model.config
        peak = 0.0
        if self.device.startswith("cuda"):
            from . import cuda

            peak = _C.peak_flops(cuda.module(self.device).device_name(), self.precision)
        per_token = _C.flops_per_token(cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab_size, cfg.block_size,
                                       a.seq_len)
        tokens = a.batch_size * a.seq_len * self.accum  # one rank's tokens against one device's peak

        def mfu(seconds: float) -> Optional[float]:
            return _finite(_C.mfu(per_token, tokens, seconds, peak))

        return mfu

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> dict:
        a, m = self.args, self.model
        if self.complete:
            self.say(f"{self.out_dir} is complete: step {self.step} of --max-steps {a.max_steps} is done; "
                     f"resume with a larger --max-steps to train further")
            model_path = checkpoint.paths(self.out_dir, self.step)[0]
            return {"steps": self.step, "complete": True, "train_loss": None, "val_loss": None,
                    "interrupted": False, "out_dir": str(self.out_dir),
                    "checkpoint": str(model_path) if model_path.exists() else None, "log": str(self.log_path),
                    "plot": None, "tokens_per_s": None}
        self.banner()
        tokens_per_step = a.batch_size * a.seq_len * self.accum * self.world
        mfu_of = self._mfu_rule()
        guard = a.skip_update_loss_z > 0 or a.skip_update_grad_z > 0
        val_loss = None
        last_loss = None
        t_start = time.time()
        steps_timed = 0
        time_timed = 0.0
        prev = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def on_signal(signum, frame):
            self.stop_signal = signal.Signals(signum).name

        for sig in prev:
            signal.signal(sig, on_signal)
        try:
            while self.step < a.max_steps and not self._stopping():
                t0 = time.perf_counter()
                lr = lr_at(self.step, a.max_steps, a.lr, a.warmup_steps, a.lr_schedule, a.min_lr_frac)
                if a.overfit_single_batch:  # the same first batch(es) every step
                    self.train_loader.reset()
                m.zero_grad()
                loss = 0.0
                for micro in range(self.accum):
                    x, y = self.train_loader.next_batch()
                    loss += m.forward(x, y) / self.accum
                    # the last micro-step's gradients travel to the other ranks layer by layer
                    m.backward(loss_scale=1.0 / self.accum, sync=micro == self.accum - 1)
                loss = dist.all_reduce_mean(loss)  # the same on every rank, so they all stop together
                if not math.isfinite(loss):
                    raise Stop(f"loss is {loss} at step {self.step + 1}: stopping; the last good checkpoint "
                               f"in {self.out_dir} is untouched (try a lower --lr)")
                loss_z = self.loss_window.update(loss)
                skipped = None
                if guard:  # the norm first, then the decision (the core's rule, as in train_gpt2)
                    norm = m._m.grad_norm()  # _m: the core model of a GPT2; collective, as step() is
                    grad_z = self.norm_window.update(norm)
                    skipped = _C.outlier_skip(loss_z, grad_z, a.skip_update_loss_z, a.skip_update_grad_z)
                    if skipped is None:
                        m.step(lr, a.beta1, a.beta2, 1e-8, a.weight_decay, a.grad_clip or None)
                else:
                    norm = m.step(lr, a.beta1, a.beta2, 1e-8, a.weight_decay, a.grad_clip or None)
                    grad_z = self.norm_window.update(norm)
                self.step += 1
                ms = (time.perf_counter() - t0) * 1000.0
                if self.step > 1:  # the first step warms caches and allocates
                    steps_timed += 1
                    time_timed += ms / 1000.0
                last_loss = loss
                tps = tokens_per_step / (ms / 1000.0)
                mfu = mfu_of(ms / 1000.0)
                record = {"step": self.step, "loss": loss, "lr": lr, "grad_norm": norm, "ms": ms,
                          "tokens_per_s": tps, "mfu": mfu}
                if guard:
                    record.update(loss_z=_finite(loss_z), grad_norm_z=_finite(grad_z), skipped=skipped)
                self.log(record)
                eta = (a.max_steps - self.step) * (time_timed / steps_timed if steps_timed else ms / 1000.0)
                zs = f" | z loss {loss_z:+.2f} norm {grad_z:+.2f}" if guard else ""
                self.say(f"step {self.step:5d}/{a.max_steps} | loss {loss:.4f} | lr {lr:.2e} | norm {norm:.3f}{zs} | "
                         f"{ms:7.1f} ms | {tps:8.0f} tok/s" + (f" | MFU {100 * mfu:.1f}%" if mfu is not None else "")
                         + f" | eta {_fmt_time(eta)}")
                if skipped:
                    z, flag = (loss_z, "--skip-update-loss-z") if skipped == "loss" else (grad_z, "--skip-update-grad-z")
                    limit = getattr(a, flag[2:].replace("-", "_"))
                    self.say(f"step {self.step:5d} | update skipped: the {skipped.replace('_', ' ')}'s z-score "
                             f"{z:.2f} is above {flag} {limit:g}")
                last = self.step == a.max_steps
                if a.eval_every and (self.step % a.eval_every == 0 or last):
                    val_loss = self.evaluate()
                    self.log({"step": self.step, "val_loss": val_loss})
                    self.say(f"step {self.step:5d} | val loss {val_loss:.4f}")
                    if self.main:
                        _plot(self.log_path, self.png_path)
                if a.hellaswag_every and (self.step % a.hellaswag_every == 0 or last):
                    acc_norm = self.evaluate_hellaswag()
                    self.log({"step": self.step, "hellaswag_acc_norm": acc_norm})
                    self.say(f"step {self.step:5d} | hellaswag acc_norm {acc_norm:.4f}")
                if a.sample_every and (self.step % a.sample_every == 0 or last) and self.main:
                    self.say(f"--- sample at step {self.step}:\n{self.sample()}\n---")
                if a.checkpoint_every and (self.step % a.checkpoint_every == 0 or last):
                    self.save()
        finally:
            for sig, handler in prev.items():
                signal.signal(sig, handler)
        interrupted = self.stop_signal is not None
        saved = None
        if interrupted:
            saved = self.save()
            self.say(f"{self.stop_signal}: saved a checkpoint of step {self.step} ({saved}); "
                     f"continue with --resume latest --out-dir {self.out_dir}")
        elif a.checkpoint_every:
            saved = checkpoint.paths(self.out_dir, self.step)[0]
        plotted = _plot(self.log_path, self.png_path) if self.main else False
        self.say(f"done: {self.step} steps in {_fmt_time(time.time() - t_start)}"
                 + (f", val loss {val_loss:.4f}" if val_loss is not None else ""))
        self.say(f"checkpoint: {saved or 'none (--checkpoint-every 0)'}")
        self.say(f"log: {self.log_path}")
        self.say(f"loss plot: {self.png_path}" if plotted
                     else f"loss plot: skipped, matplotlib is not installed ({install_hint('matplotlib', 'plot')})")
        return {
            "steps": self.step,
            "train_loss": last_loss,
            "val_loss": val_loss,
            "interrupted": interrupted,
            "out_dir": str(self.out_dir),
            "checkpoint": str(saved) if saved else None,
            "log": str(self.log_path),
            "plot": str(self.png_path) if plotted else None,
            "tokens_per_s": (tokens_per_step * steps_timed / time_timed) if time_timed else None,
        }


def main(argv: Optional[list] = None) -> int:
    argv = sys.argv[1:] if argv is None else [str(x) for x in argv]
    args = build_parser().parse_args(argv)
    run = None
    try:
        run = Run(args, explicit_flags(argv))
        run.setup()
        summary = run.run()
        run.close()
    # bad flags, files, data, build; a collective that timed out: a message, not a traceback
    except (Stop, OSError, ValueError, NotImplementedError, ImportError, RuntimeError, MemoryError) as e:
        if run is not None:
            run.close()
        world = dist.world_size if _dist_ready() else 1
        where = f"rank {dist.rank}: " if world > 1 else ""
        print(f"error: {where}{e}", file=sys.stderr, flush=True)
        if world > 1:
            dist.abort(1)  # the other ranks may be waiting in a collective: end them all
        return 1
    if args.json and run.main:
        print(json.dumps(summary))
    if run.world > 1:
        dist.barrier()  # rank 0 may still be sampling or plotting; then leave together
        dist.finalize()
    return 0


def _dist_ready() -> bool:
    """The process group was joined (dist.init() succeeded)."""
    return dist._info is not None


if __name__ == "__main__":
    sys.exit(main())
