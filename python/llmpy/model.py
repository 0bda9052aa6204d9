"""The GPT-2 model: a Python handle on the C engine (csrc/core/gpt2.c).

Python checks what numpy can check cheaply (array rank, dtype, contiguity) and turns friendly
inputs into what the C API takes; the C core checks everything again (token ranges, sizes) and
does all the math. Errors come back as ValueError (bad input, bad file contents, calls out of
order), OSError (files), MemoryError or NotImplementedError (backend not built).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from os import PathLike
from pathlib import Path
from typing import Optional, Union

import numpy as np

from . import _C, hf
from .checks import integer, number
from .extras import require
from .config import GPT2Config
from .generate import Generator

__all__ = ["GPT2", "TENSOR_NAMES", "GPT2Config"]

TENSOR_NAMES: tuple = tuple(_C.TENSOR_NAMES)


def _core_device(device: str) -> str:
    """The core's backend name for a device string (llmpy.device's rules: 'auto', 'cpu', 'cuda',
    'cuda:N'); a CUDA device initialises the CUDA backend on its GPU, which registers itself in
    the one core (llmpy._C) of the process."""
    from .device import resolve

    dev = resolve(device)
    if dev == "cpu":
        return "cpu"
    from . import cuda

    cuda.module(dev)
    return "cuda"


def _tokens(x, name: str, vocab_size: int) -> np.ndarray:
    """Validates a (B, T) integer array and returns it as C-contiguous int32 (no copy if it is)."""
    a = x if isinstance(x, np.ndarray) else np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (B, T) array of token ids, got shape {a.shape}")
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integer token ids, got dtype {a.dtype}")
    if a.size == 0:
        raise ValueError(f"{name} is an empty batch (shape {a.shape})")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name})")
    if a.dtype != np.int32:
        bad = np.flatnonzero((a < 0) | (a >= vocab_size))
        if bad.size:  # same message as the C core gives for int32 input (gpt2.c: check_tokens)
            i, T = int(bad[0]), a.shape[1]
            raise ValueError(f"{name}[{i}] = {int(a.reshape(-1)[i])} is out of range [0, {vocab_size}) "
                             f"(row {i // T}, position {i % T}): token ids must be below the model's "
                             "vocab_size")
        a = a.astype(np.int32)
    return a


def _is_main() -> bool:
    from . import dist

    return dist.is_main


class GPT2:
    """GPT-2 with its parameters, gradients, activations and AdamW state held by the C engine.

    >>> cfg = GPT2Config(n_layer=2, n_head=3, n_embd=48, vocab_size=101, block_size=32)
    >>> m = GPT2(cfg, device="cpu", seed=0)
    >>> x = np.random.default_rng(0).integers(0, 101, size=(3, 17))
    >>> loss = m.forward(x[:, :-1].copy(), x[:, 1:].copy())
    >>> m.zero_grad(); m.backward(); norm = m.step(lr=1e-3, weight_decay=0.1, grad_clip=1.0)

    Devices and precision: ``device="cpu"`` (fp32), ``"cuda"`` / ``"cuda:N"`` (when llmpy was
    built with the CUDA backend) or ``"auto"`` (a GPU when one is usable); ``llmpy.device``
    states the rules (``cuda`` is the GPU of this rank under mpirun). On CUDA ``precision="bf16"``
    is the default and the fast path — bf16 parameters and activations with fp32 master weights
    and AdamW state; ``"fp32"`` there exists for parity checks against the CPU and PyTorch, not
    for speed (no tensor cores: several times slower than bf16).

    Views: on the CPU, ``parameters()``, ``gradients()``, ``logits()`` and ``losses()`` return
    numpy arrays that share memory with the engine (no copies). Parameter and gradient views are
    valid as long as the model (they keep it alive); writing into ``parameters()`` changes the
    model. ``logits()``/``losses()`` show the last forward's results and are overwritten by the
    next ``forward()`` with the same or a smaller batch; after a larger batch they keep showing
    the old (still valid, no longer updated) memory. Copy them to keep values across forwards.
    On CUDA the same methods return float32 host copies (parameters from the fp32 master
    weights); ``load_parameters()`` writes values on every device.
    """

    def __init__(self, config: GPT2Config, device: str = "cpu", seed: int = 0, *,
                 precision: Optional[str] = None, _handle=None):
        if _handle is None:
            if not isinstance(config, GPT2Config):
                raise TypeError(f"config must be a GPT2Config, got {type(config).__name__}")
            seed = integer(seed, "seed", min=0, max=2**64 - 1)
            _handle = _C.Model.create(**asdict(config), device=_core_device(device), seed=seed,
                                      precision=precision)
        self._m = _handle
        c = _handle.config
        self.config = GPT2Config(c["n_layer"], c["n_head"], c["n_embd"], c["vocab_size"], c["block_size"])

    # -- files -----------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, path: Union[str, PathLike], device: str = "cpu",
                        precision: Optional[str] = None) -> "GPT2":
        """Loads an llm.c model file (version 3 = fp32 or 5 = bf16), verifying its checksums.

        A damaged file raises ValueError ("checksum mismatch: the file is damaged"); a file without
        checksums (written by llm.c or an older llmpy) loads with nothing to verify. A missing file
        raises FileNotFoundError, a directory OSError.
        """
        return cls(None, _handle=_C.Model.load(str(path), _core_device(device), precision))

    @classmethod
    def from_pretrained(cls, name_or_dir: Union[str, PathLike], device: str = "cpu", *,
                        cache_dir: Optional[Union[str, PathLike]] = None, local_files_only: bool = False,
                        progress: Optional[bool] = None) -> "GPT2":
        """Loads Hugging Face GPT-2 weights: a directory or a hub name.

        The directory holds ``config.json`` and ``model.safetensors`` (or a sharded
        ``model.safetensors.index.json``, or ``pytorch_model.bin``, which needs torch). A hub name
        (``gpt2``, ``gpt2-medium``, ``gpt2-large``, ``gpt2-xl`` or ``owner/name``) is fetched with
        ``huggingface_hub`` into its cache, or read from that cache offline (``local_files_only``
        never touches the network). Configs llmpy cannot run exactly (another architecture,
        activation, attention scaling, layernorm epsilon, untied head, ...) raise ValueError.
        ``progress``: None shows a bar on a terminal for models of 100M+ parameters.

        >>> m = GPT2.from_pretrained("gpt2")                  # doctest: +SKIP
        >>> m.generate([50256], max_new_tokens=8, top_k=40, seed=0)  # doctest: +SKIP
        """
        p = Path(name_or_dir).expanduser()
        if p.is_file():
            raise ValueError(f"{p} is a file; from_pretrained takes a Hugging Face directory or hub name "
                             "(use GPT2.from_checkpoint for llm.c model files)")
        src = hf.open_source(name_or_dir, cache_dir=cache_dir, local_files_only=local_files_only)
        return cls._from_source(src, device, progress)

    @classmethod
    def load(cls, spec: str | PathLike, device: str = "cpu", progress: bool | None = None) -> GPT2:
        """An llm.c model file, a Hugging Face directory or a hub name (``--init-from``).

        A file goes to ``from_checkpoint``, anything else to ``from_pretrained``.

        >>> m = GPT2.load("gpt2_124M.bin")                    # doctest: +SKIP
        >>> m = GPT2.load("gpt2-medium", device="cuda")       # doctest: +SKIP
        """
        if Path(spec).expanduser().is_file():
            return cls.from_checkpoint(Path(spec).expanduser(), device=device)
        return cls.from_pretrained(spec, device=device, progress=progress)

    @classmethod
    def _from_source(cls, src: hf.Source, device: str, progress: bool | None) -> GPT2:
        """A model with the weights of an ``hf`` source, loaded one stacked tensor at a time."""
        model = cls(src.config, device=device, seed=0)
        stack: dict = {}
        with src.progress("loading", progress) as bar:
            for name, layer, a in src.chunks():
                if layer is None:
                    model.load_parameters({name: a})
                else:  # one stacked tensor at a time
                    stack.setdefault(name, []).append(a)
                    if len(stack[name]) == src.config.n_layer:
                        model.load_parameters({name: np.stack(stack.pop(name))})
                bar.update(a.size)
        return model

    def save_pretrained(self, directory: Union[str, PathLike], dtype: str = "fp32",
                        progress: Optional[bool] = None) -> None:
        """Writes ``config.json`` + ``model.safetensors`` (fp32 or bf16) for ``transformers``.

        >>> m.save_pretrained("out/my-gpt2")                  # doctest: +SKIP
        >>> transformers.GPT2LMHeadModel.from_pretrained("out/my-gpt2")  # doctest: +SKIP
        """
        hf.save_pretrained(self, directory, dtype=dtype, progress=progress)

    def save(self, path: Union[str, PathLike]) -> None:
        """Writes an llm.c fp32 model file (version 3) with checksums, atomically and durably (temp
        file, fsync, rename, fsync of the folder): ``path`` is the old file or the whole new one.

        After ``distribute()`` only rank 0 writes (every rank may call it).
        """
        if self._distributed and not _is_main():
            return
        self._m.save(str(path))

    def save_state(self, path: Union[str, PathLike], extra: Optional[dict] = None, *,
                   model_path: Union[str, PathLike, None] = None, step: Optional[int] = None,
                   run_id: str = "") -> None:
        """Writes the AdamW state (moments, step) and ``extra`` (JSON-serialisable) atomically,
        with checksums.

        Together with ``save()`` this is everything an exact resume needs; the training loop puts
        its schedule position, RNG states and data position in ``extra``. ``model_path`` (the file
        ``save()`` just wrote), ``step`` and ``run_id`` (at most 31 of ``A-Za-z0-9._-``) tie the
        state to its checkpoint: a model loaded from another file refuses it. After
        ``distribute()`` every rank must call it (with ZeRO-1 the moment shards are gathered) and
        rank 0 writes the full state, which resumes on any number of ranks.

        >>> m.save("run/ckpt_000100.bin")                                       # doctest: +SKIP
        >>> m.save_state("run/ckpt_000100.state", {"step": 100}, model_path="run/ckpt_000100.bin",
        ...              step=100, run_id="a1b2")                                # doctest: +SKIP
        """
        text = json.dumps(extra if extra is not None else {}, sort_keys=True)
        tag = {"model_path": "" if model_path is None else str(model_path),
               "step": -1 if step is None else int(step), "run_id": run_id or ""}
        if self._distributed:
            _C.dist.save_state(self._m, str(path), text, **tag)  # collective; rank 0 writes
        else:
            self._m.save_state(str(path), text, **tag)

    def load_state(self, path: Union[str, PathLike]) -> dict:
        """Restores the AdamW state written by ``save_state()`` and returns its ``extra`` dict.

        The file's checksums are verified first (ValueError "checksum mismatch" when it is
        damaged); a state saved with another model file than the one this model was loaded from
        is refused (ValueError "not one checkpoint"). A failure changes nothing.
        """
        text = self._m.load_state(str(path))
        try:
            return json.loads(text) if text else {}
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: training state holds invalid JSON ({e})") from None

    # -- training --------------------------------------------------------------

    def forward(self, idx, targets=None) -> Optional[float]:
        """Runs the model on idx (B, T); returns the mean cross-entropy loss when targets are given."""
        V = self.config.vocab_size
        idx = _tokens(idx, "idx", V)
        if targets is not None:
            targets = _tokens(targets, "targets", V)
            if targets.shape != idx.shape:
                raise ValueError(f"targets shape {targets.shape} must equal idx shape {idx.shape}")
        return self._m.forward(idx, targets)

    __call__ = forward

    def logits(self) -> np.ndarray:
        """float32 (B, T, vocab_size) logits of the last forward (a view, see the class docstring)."""
        return self._m.logits()

    def losses(self) -> np.ndarray:
        """float32 (B, T) per-position losses of the last forward with targets (a view)."""
        return self._m.losses()

    def zero_grad(self) -> None:
        """Sets all gradients to zero. Gradients otherwise accumulate across backward() calls (one
        backward per forward: on a GPU the backward overwrites the logits, so a second backward
        needs a new forward).

        Lazily, like PyTorch's ``zero_grad(set_to_none=True)``: the next backward writes the
        gradients instead of adding to them, which spares a pass over their memory each step.
        ``gradients()`` called after zero_grad() shows zeros; views taken before it keep the old
        values until that backward."""
        self._m.zero_grad()

    def backward(self, loss_scale: float = 1.0, *, sync: bool = False) -> None:
        """Adds the gradient of ``loss_scale * loss`` (of the last forward) to the gradients.

        ``sync`` matters after ``distribute()``: pass ``sync=True`` on the last micro-step before
        ``step()`` and the gradients travel to the other ranks layer by layer while the backward
        goes on (the communication hides behind the computation). Without it ``step()`` moves
        them all at once — the same result, bit for bit, only later. With gradient accumulation,
        sync the last micro-step only (a second backward after a synced one raises ValueError).
        """
        self._m.backward(number(loss_scale, "loss_scale", finite=False), bool(sync))

    def step(self, lr: float, beta1: float = 0.9, beta2: float = 0.95, eps: float = 1e-8,
             weight_decay: float = 0.0, grad_clip: Optional[float] = None) -> float:
        """One AdamW step (PyTorch semantics); weight decay on 2-D tensors only.

        Gradients are first clipped to a global norm of ``grad_clip`` when it is given.
        Returns the global gradient norm before clipping. Every argument is a number (TypeError
        otherwise); the core refuses NaN and out-of-range values (ValueError naming the argument).
        """
        clip = 0.0
        if grad_clip is not None:
            clip = number(grad_clip, "grad_clip (None: no clipping)", finite=False)
            if not clip > 0.0:
                raise ValueError(f"grad_clip must be > 0 or None (no clipping), got {grad_clip}")
        args = {"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps, "weight_decay": weight_decay}
        v = {k: number(x, k, finite=False) for k, x in args.items()}  # the core says which ranges
        return self._m.step(v["lr"], v["beta1"], v["beta2"], v["eps"], v["weight_decay"], clip)

    # -- data parallelism (llmpy.dist) -------------------------------------------

    def distribute(self, zero_stage: int = 0, overlap: bool = True) -> "GPT2":
        """Makes this model one replica of a data-parallel model (collective: every rank calls it).

        Checks that every rank holds the same model, device, ``zero_stage`` and ``overlap``
        (ValueError naming the rank that differs), copies rank 0's parameters to every rank and
        sets up the collective plan (csrc/dist/dist_plan.c) over MPI (CPU) or NCCL (CUDA). From then on
        ``step()`` averages the gradients over the ranks before AdamW; with ``zero_stage=1``
        (ZeRO-1) each rank keeps only its shard of the AdamW moments — its 1/world_size of every
        tensor slice —, updates that shard and all-gathers the parameters. With ``overlap``, a
        ``backward(sync=True)`` starts each layer's reduction as soon as its gradients are final
        (the results do not depend on it). ``save()``/``save_state()`` then write on rank 0 only;
        the state file holds the full moments and resumes on any number of ranks. With one
        process this changes nothing. Returns ``self``.

        >>> m = GPT2(cfg).distribute(zero_stage=1)
        """
        from . import dist

        if zero_stage not in (0, 1):
            raise ValueError(f"zero_stage must be 0 or 1, got {zero_stage}")
        dist.init()
        _C.dist.attach(self._m, int(zero_stage), bool(overlap))  # again: the same plan, or ValueError
        return self

    @property
    def _distributed(self) -> bool:
        return self.zero_stage is not None

    @property
    def zero_stage(self) -> Optional[int]:
        """None before ``distribute()``, else 0 or 1."""
        stage = _C.dist.zero_stage(self._m)
        return None if stage < 0 else stage

    def generate(self, prompts, max_new_tokens: int, *, temperature: float = 1.0, top_k: Optional[int] = None,
                 top_p: Optional[float] = None, seed: Optional[int] = None, stop_tokens=None,
                 num_samples: int = 1, rng: Optional[np.random.Generator] = None,
                 weights: Optional[str] = None):
        """Continues ``prompts`` with the C core's KV cache (``llmpy.generate.Generator.generate``).

        One prompt (a sequence of token ids) gives an int64 array (num_samples, len(prompt) + new);
        several (a list of sequences, any lengths) give a list of 1-D arrays. ``temperature`` 0 is
        greedy; otherwise temperature, top-k, top-p as in Hugging Face's ``generate``. Random
        numbers come from ``rng`` or a generator seeded with ``seed``, never a global one.
        Sequences stop after ``max_new_tokens`` or right after one of ``stop_tokens``.
        ``weights="bf16"`` decodes with a bf16 copy of the weights made for this call (to convert
        once for many calls, use ``generator("bf16")``). The forward state (``logits()``) is left
        as it was.

        >>> m.generate([50256], max_new_tokens=5, temperature=0).shape
        (1, 6)
        """
        return Generator(self, weights).generate(prompts, max_new_tokens, temperature=temperature,
                                                 top_k=top_k, top_p=top_p, seed=seed, stop_tokens=stop_tokens,
                                                 num_samples=num_samples, rng=rng)

    def stream(self, prompts, max_new_tokens: int, *, temperature: float = 1.0, top_k: Optional[int] = None,
               top_p: Optional[float] = None, seed: Optional[int] = None, stop_tokens=None,
               num_samples: int = 1, rng: Optional[np.random.Generator] = None,
               weights: Optional[str] = None):
        """``generate`` a step at a time (``llmpy.generate.Generator.stream``): for one prompt and one
        sample each new token id, else an array per step (-1 for sequences that have stopped).

        >>> for tok in m.stream(enc.encode("Hello"), 20, top_k=40, seed=0):   # doctest: +SKIP
        ...     print(enc.decode([tok]), end="", flush=True)
        """
        return Generator(self, weights).stream(prompts, max_new_tokens, temperature=temperature, top_k=top_k,
                                               top_p=top_p, seed=seed, stop_tokens=stop_tokens,
                                               num_samples=num_samples, rng=rng)

    def generator(self, weights: Optional[str] = None) -> Generator:
        """A ``Generator`` to call many times: bf16 weights converted once, the cache reused.

        >>> gen = m.generator("bf16"); gen.generate([50256], 20, seed=0)   # doctest: +SKIP
        """
        return Generator(self, weights)

    # -- tensors ---------------------------------------------------------------

    def parameters(self, torch: bool = False) -> dict:
        """name -> float32 array of each of the 16 tensors (llm.c names and shapes): views of the
        model's memory on the CPU, copies (of the fp32 master weights) on CUDA.

        ``torch=True`` gives torch tensors sharing the same memory (``torch.from_numpy``), so
        PyTorch code reads and writes the model's parameters in place. On the CPU only for now;
        device memory through DLPack is still to come (load_parameters() writes on any device).
        """
        return self._views(self._m.tensor, torch)

    def gradients(self, torch: bool = False) -> dict:
        """name -> float32 array of each gradient, same names and shapes as parameters().

        On the CPU these are views that may be written (step() sees the change). Once they have
        been taken, the gradient norm is always computed by a pass over the gradients rather than
        summed by the backward as it writes them (~1.5 % of a GPT-2 124M step).
        """
        return self._views(self._m.grad, torch)

    def _views(self, get, as_torch: bool) -> dict:
        if as_torch and self.device != "cpu":
            raise NotImplementedError(f"torch views of {self.device} tensors come with the CUDA backend "
                                      "(through DLPack); use a CPU model, or parameters() copies for now")
        views = {name: get(i) for i, name in enumerate(TENSOR_NAMES)}
        if as_torch:
            torch = require("torch", "chapters", "parameters(torch=True)")
            views = {name: torch.from_numpy(v) for name, v in views.items()}
        return views

    def load_parameters(self, values: dict) -> None:
        """Sets parameters from ``name -> array`` (any subset of the 16 names, shapes as
        ``parameters()`` shows them), on any device.

        >>> m.load_parameters({"lnfw": np.ones(m.config.n_embd, np.float32)})
        """
        if not hasattr(values, "items"):
            raise TypeError(f"load_parameters takes a dict name -> array, got {type(values).__name__}")
        index = {name: i for i, name in enumerate(TENSOR_NAMES)}
        for name, value in values.items():
            if name not in index:
                raise KeyError(f"unknown tensor {name!r}; expected one of {', '.join(TENSOR_NAMES)}")
            a = np.asarray(value)
            if a.dtype == np.bool_ or a.dtype.kind not in "iuf":
                raise TypeError(f"{name}: values must be real numbers (a float or integer array), "
                                f"got dtype {a.dtype}")
            a = a.astype(np.float32, copy=False)
            want = self._m.shape(index[name])
            if a.shape != want:
                raise ValueError(f"{name}: shape {a.shape} does not match the model's {want}")
            self._m.write_tensor(index[name], np.ascontiguousarray(a))

    @property
    def num_parameters(self) -> int:
        """Number of parameters (vocabulary padding excluded), as PyTorch counts them."""
        return self._m.num_parameters

    @property
    def device(self) -> str:
        return self._m.device

    @property
    def precision(self) -> str:
        """'fp32', or 'bf16' (mixed precision, CUDA)."""
        return self._m.precision

    @property
    def steps(self) -> int:
        """AdamW steps taken so far."""
        return self._m.steps

    def __repr__(self) -> str:
        c = self.config
        return (f"GPT2(n_layer={c.n_layer}, n_head={c.n_head}, n_embd={c.n_embd}, vocab_size={c.vocab_size}, "
                f"block_size={c.block_size}, params={self.num_parameters:,}, device='{self.device}')")
