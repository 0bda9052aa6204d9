"""PyTorch oracle for llmpy: a small, readable GPT-2 plus the llm.c file formats.

The C engine is checked against this file. It holds
  - a nanoGPT-style GPT-2 (``GPT2Config``, ``GPT``) in float32 or float64,
  - converters between the torch modules and the 16 llm.c tensors
    (``params_llmc``, ``load_params_llmc``, ``grads_llmc``, ``llmc_shapes``),
  - writers/readers for the llm.c model file and the debug-state file
    (``write_model``, ``load_model``, ``write_state``, ``read_state``),
  - ``configure_adamw`` (weight decay on 2-D tensors only, as the C engine does),
  - a CLI that builds a seeded random model and batch, runs one forward/backward and
    writes ``model.bin`` + ``state.bin`` for ``tests/c/test_gpt2`` and the pytest parity tests.

Magic numbers and versions are parsed from ``csrc/core/formats.h`` (the one source of truth), so
this file works without the compiled ``llmpy`` package.

Example::

    python dev/train_gpt2.py --n-layer 2 --n-head 3 --n-embd 48 --vocab-size 101 \\
        --block-size 32 --batch 3 --seq 17 --seed 0 --model-out m.bin --state-out s.bin

References: Radford et al. 2019 (GPT-2); Karpathy's nanoGPT and llm.c for the file layout.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FORMATS_H = Path(__file__).resolve().parents[1] / "csrc" / "core" / "formats.h"

# The 16 llm.c tensors in file order. Per-layer tensors are stacked over the L layers.
LLMC_NAMES = (
    "wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
    "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb",
)  # fmt: skip
_GLOBAL_NAMES = ("wte", "wpe", "lnfw", "lnfb")


# ----------------------------------------------------------------------------
# file-format constants (from csrc/core/formats.h)


@functools.lru_cache(maxsize=1)
def formats() -> dict[str, int]:
    """Return the integer ``#define LLM_*`` constants of ``csrc/core/formats.h``, prefix stripped.

    Example: ``formats()["MODEL_MAGIC"] == 20240326``.
    """
    try:
        text = FORMATS_H.read_text()
    except OSError as e:
        raise FileNotFoundError(
            f"cannot read {FORMATS_H} (the file-format constants); run from an llmpy checkout"
        ) from e
    found = dict(re.findall(r"^#define\s+LLM_(\w+)\s+(\d+)\b", text, flags=re.MULTILINE))
    need = (
        "HEADER_INTS",
        "MODEL_MAGIC",
        "MODEL_VERSION_FP32",
        "MODEL_VERSION_BF16",
        "STATE_MAGIC",
        "STATE_VERSION",
        "VOCAB_PAD",
    )
    missing = [k for k in need if k not in found]
    if missing:
        raise ValueError(f"{FORMATS_H} does not define LLM_{', LLM_'.join(missing)}")
    return {k: int(v) for k, v in found.items()}


def pad_vocab(vocab_size: int) -> int:
    """Round the vocabulary up to the llm.c padding multiple.

    Example: ``pad_vocab(50257) == 50304``.
    """
    m = formats()["VOCAB_PAD"]
    return (vocab_size + m - 1) // m * m


# ----------------------------------------------------------------------------
# the model


@dataclass
class GPT2Config:
    """GPT-2 hyperparameters.

    Example: ``GPT2Config(n_layer=2, n_head=3, n_embd=48, vocab_size=101, block_size=32)``.
    """

    block_size: int = 1024
    vocab_size: int = 50257
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768

    def __post_init__(self) -> None:
        for k in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, k) <= 0:
                raise ValueError(f"GPT2Config.{k} must be positive, got {getattr(self, k)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")

    @property
    def padded_vocab_size(self) -> int:
        """Vocabulary rounded up to a multiple of 128 (the wte rows stored in llm.c files)."""
        return pad_vocab(self.vocab_size)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: one fused qkv projection, softmax(QK^T/sqrt(hs))V."""

    def __init__(self, config: GPT2Config, attn: str = "sdpa") -> None:
        super().__init__()
        if attn not in ("sdpa", "math"):
            raise ValueError(f"attn must be 'sdpa' or 'math', got {attn!r}")
        self.n_head = config.n_head
        self.attn = attn
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.c_proj.residual_scale = True  # marks the residual projection for init scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, hs).transpose(1, 2) for t in (q, k, v))  # (B,NH,T,hs)
        if self.attn == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    """Position-wise feed-forward: C -> 4C -> GELU(tanh) -> C."""

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.c_proj.residual_scale = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPT2Config, attn: str = "sdpa") -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=1e-5)
        self.attn = CausalSelfAttention(config, attn)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=1e-5)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """GPT-2 with tied token embedding / lm_head.

    ``attn="sdpa"`` uses ``F.scaled_dot_product_attention`` (fast); ``attn="math"`` spells the
    softmax out (slow, transparent). Both agree to rounding in float64.

    Example::

        torch.manual_seed(0)
        model = GPT(GPT2Config(n_layer=2, n_head=3, n_embd=48, vocab_size=101, block_size=32))
        idx = torch.randint(0, 101, (3, 17))
        logits, loss = model(idx, idx)   # logits (3, 17, 101); loss ~ ln(101) = 4.6 at init
    """

    def __init__(self, config: GPT2Config, attn: str = "sdpa") -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(config.vocab_size, config.n_embd),
                "wpe": nn.Embedding(config.block_size, config.n_embd),
                "h": nn.ModuleList([Block(config, attn) for _ in range(config.n_layer)]),
                "ln_f": nn.LayerNorm(config.n_embd, eps=1e-5),
            }
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2 init: N(0, 0.02), residual projections N(0, 0.02/sqrt(2L)), biases 0, LN (1, 0)."""
        std = 0.02
        if isinstance(module, nn.Linear):
            if module is self.lm_head:
                return  # tied to wte, initialised as an embedding
            if getattr(module, "residual_scale", False):
                std = std / math.sqrt(2 * self.config.n_layer)
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        """Number of distinct parameters (wte counted once, unpadded)."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx, targets: (B,T) integer tokens -> logits (B,T,V) and the mean CE loss (or None)."""
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        idx = idx.long()
        pos = torch.arange(T, device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(B * T, -1), targets.long().reshape(B * T))
        return logits, loss


# ----------------------------------------------------------------------------
# torch modules <-> llm.c tensors


def llmc_shapes(config: GPT2Config, padded: bool = False) -> dict[str, tuple[int, ...]]:
    """Shapes of the 16 llm.c tensors in file order; ``padded=True`` gives wte Vp rows.

    Example: ``llmc_shapes(cfg)["qkvw"] == (cfg.n_layer, 3 * cfg.n_embd, cfg.n_embd)``.
    """
    L, C = config.n_layer, config.n_embd
    V = config.padded_vocab_size if padded else config.vocab_size
    return {
        "wte": (V, C), "wpe": (config.block_size, C),
        "ln1w": (L, C), "ln1b": (L, C),
        "qkvw": (L, 3 * C, C), "qkvb": (L, 3 * C),
        "attprojw": (L, C, C), "attprojb": (L, C),
        "ln2w": (L, C), "ln2b": (L, C),
        "fcw": (L, 4 * C, C), "fcb": (L, 4 * C),
        "fcprojw": (L, C, 4 * C), "fcprojb": (L, C),
        "lnfw": (C,), "lnfb": (C,),
    }  # fmt: skip


def _llmc_parameters(model: GPT) -> dict[str, list[nn.Parameter]]:
    """Map each llm.c name to the torch parameter(s) behind it (one per layer when stacked)."""
    t = model.transformer
    hs = list(t.h)
    return {
        "wte": [t.wte.weight],
        "wpe": [t.wpe.weight],
        "ln1w": [b.ln_1.weight for b in hs],
        "ln1b": [b.ln_1.bias for b in hs],
        "qkvw": [b.attn.c_attn.weight for b in hs],
        "qkvb": [b.attn.c_attn.bias for b in hs],
        "attprojw": [b.attn.c_proj.weight for b in hs],
        "attprojb": [b.attn.c_proj.bias for b in hs],
        "ln2w": [b.ln_2.weight for b in hs],
        "ln2b": [b.ln_2.bias for b in hs],
        "fcw": [b.mlp.c_fc.weight for b in hs],
        "fcb": [b.mlp.c_fc.bias for b in hs],
        "fcprojw": [b.mlp.c_proj.weight for b in hs],
        "fcprojb": [b.mlp.c_proj.bias for b in hs],
        "lnfw": [t.ln_f.weight],
        "lnfb": [t.ln_f.bias],
    }


def _gather(model: GPT, grads: bool) -> dict[str, np.ndarray]:
    out = {}
    for name, params in _llmc_parameters(model).items():
        ts = []
        for p in params:
            if grads:
                ts.append(p.grad if p.grad is not None else torch.zeros_like(p))
            else:
                ts.append(p)
        t = ts[0] if name in _GLOBAL_NAMES else torch.stack(ts)
        out[name] = t.detach().to("cpu", torch.float32).numpy().copy()
    return out


def params_llmc(model: GPT) -> dict[str, np.ndarray]:
    """Parameters as float32 arrays under llm.c names and shapes (wte unpadded, (V,C)).

    Example: ``params_llmc(model)["fcw"].shape == (L, 4*C, C)``.
    """
    return _gather(model, grads=False)


def grads_llmc(model: GPT) -> dict[str, np.ndarray]:
    """Gradients (after ``loss.backward()``) like :func:`params_llmc`; missing grads are zeros."""
    return _gather(model, grads=True)


@torch.no_grad()
def load_params_llmc(model: GPT, params: dict[str, np.ndarray]) -> None:
    """Copy llm.c-named arrays into ``model`` (in place, keeping its dtype).

    wte may be given with V or padded Vp rows (the padding rows are dropped). Example::

        load_params_llmc(model, llmpy_model.parameters())
    """
    cfg = model.config
    shapes = llmc_shapes(cfg)
    missing = [n for n in LLMC_NAMES if n not in params]
    if missing:
        raise KeyError(f"load_params_llmc: missing tensors {missing}")
    for name, ps in _llmc_parameters(model).items():
        a = np.asarray(params[name])
        if name == "wte" and a.ndim == 2 and a.shape[0] == cfg.padded_vocab_size:
            a = a[: cfg.vocab_size]
        if tuple(a.shape) != shapes[name]:
            raise ValueError(f"load_params_llmc: {name} has shape {a.shape}, expected {shapes[name]}")
        t = torch.from_numpy(np.array(a, dtype=np.float32))  # a private, writable copy
        if name in _GLOBAL_NAMES:
            ps[0].copy_(t)
        else:
            for i, p in enumerate(ps):
                p.copy_(t[i])


# ----------------------------------------------------------------------------
# file I/O helpers


def _atomic_write(path: str | os.PathLike, chunks: list[np.ndarray]) -> None:
    """Write arrays back to back to a temp file next to ``path``, then rename over it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # same directory: rename is atomic
    try:
        with open(tmp, "wb") as f:
            f.writelines(np.ascontiguousarray(c).tobytes() for c in chunks)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _header(*values: int) -> np.ndarray:
    h = np.zeros(formats()["HEADER_INTS"], dtype=np.int32)
    h[: len(values)] = values
    return h


def _read_header(f, path: str | os.PathLike, what: str) -> np.ndarray:
    n = formats()["HEADER_INTS"]
    h = np.frombuffer(f.read(4 * n), dtype=np.int32)
    if h.size != n:
        raise ValueError(f"{path}: too short for a {what} header ({4 * h.size} of {4 * n} bytes)")
    return h


def _to_bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even (as torch does)."""
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(torch.bfloat16)
    return t.view(torch.int16).numpy().view(np.uint16)


def _from_bf16_bits(a: np.ndarray) -> np.ndarray:
    return (a.astype(np.uint32) << 16).view(np.float32)


def _pad_rows(a: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows, *a.shape[1:]), dtype=np.float32)
    out[: a.shape[0]] = a
    return out


# ----------------------------------------------------------------------------
# model file


def write_model(model: GPT, path: str | os.PathLike, dtype: str = "float32") -> None:
    """Write an llm.c model file: version 3 (``dtype="float32"``) or 5 (``"bfloat16"``/``"bf16"``).

    wte is stored with zero rows up to the padded vocabulary. Written atomically.
    Example: ``write_model(model, tmp_path / "m.bin")``.
    """
    fm = formats()
    if dtype in ("float32", "fp32"):
        version = fm["MODEL_VERSION_FP32"]
    elif dtype in ("bfloat16", "bf16"):
        version = fm["MODEL_VERSION_BF16"]
    else:
        raise ValueError(f"write_model: dtype must be 'float32' or 'bfloat16', got {dtype!r}")
    cfg = model.config
    Vp = cfg.padded_vocab_size
    header = _header(
        fm["MODEL_MAGIC"],
        version,
        cfg.block_size,
        cfg.vocab_size,
        cfg.n_layer,
        cfg.n_head,
        cfg.n_embd,
        Vp,
    )
    params = params_llmc(model)
    params["wte"] = _pad_rows(params["wte"], Vp)
    conv = _to_bf16_bits if version == fm["MODEL_VERSION_BF16"] else (lambda a: a)
    _atomic_write(path, [header] + [conv(params[n]) for n in LLMC_NAMES])


def read_model_header(path: str | os.PathLike) -> tuple[GPT2Config, int]:
    """Validate an llm.c model file's header and size; return its config and version."""
    fm = formats()
    with open(path, "rb") as f:
        h = _read_header(f, path, "model")
    if h[0] != fm["MODEL_MAGIC"]:
        raise ValueError(f"{path}: bad magic {h[0]} (expected {fm['MODEL_MAGIC']}); not an llm.c model file")
    versions = (fm["MODEL_VERSION_FP32"], fm["MODEL_VERSION_BF16"])
    if h[1] not in versions:
        raise ValueError(f"{path}: unsupported model version {h[1]} (expected one of {versions})")
    cfg = GPT2Config(
        block_size=int(h[2]),
        vocab_size=int(h[3]),
        n_layer=int(h[4]),
        n_head=int(h[5]),
        n_embd=int(h[6]),
    )
    if h[7] != cfg.padded_vocab_size:
        raise ValueError(
            f"{path}: padded_vocab_size {h[7]} != {cfg.padded_vocab_size} (vocab {cfg.vocab_size} "
            f"rounded up to {fm['VOCAB_PAD']})"
        )
    numel = sum(math.prod(s) for s in llmc_shapes(cfg, padded=True).values())
    itemsize = 4 if h[1] == fm["MODEL_VERSION_FP32"] else 2
    expected = 4 * fm["HEADER_INTS"] + numel * itemsize
    actual = os.path.getsize(path)
    if actual != expected:
        raise ValueError(f"{path}: size {actual} bytes, expected {expected} for {cfg}; truncated or corrupt")
    return cfg, int(h[1])


def load_model(path: str | os.PathLike, attn: str = "sdpa") -> GPT:
    """Read an llm.c model file (version 3 or 5) into a float32 :class:`GPT` (padding rows dropped).

    Example: ``model = load_model("gpt2_124M.bin")``.
    """
    fm = formats()
    cfg, version = read_model_header(path)
    bf16 = version == fm["MODEL_VERSION_BF16"]
    shapes = llmc_shapes(cfg, padded=True)
    params = {}
    with open(path, "rb") as f:
        f.seek(4 * fm["HEADER_INTS"])
        for name in LLMC_NAMES:
            n = math.prod(shapes[name])
            a = np.frombuffer(f.read(n * (2 if bf16 else 4)), dtype=np.uint16 if bf16 else np.float32)
            params[name] = (_from_bf16_bits(a) if bf16 else a).reshape(shapes[name])
    model = GPT(cfg, attn=attn)
    load_params_llmc(model, params)
    return model


# ----------------------------------------------------------------------------
# debug-state file


def _np(a: torch.Tensor | np.ndarray | float, dtype: type) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(a), dtype=dtype)


def write_state(
    model: GPT,
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    logits: torch.Tensor | np.ndarray,
    loss: torch.Tensor | float,
    path: str | os.PathLike,
) -> None:
    """Write an llm.c debug-state file after ``loss.backward()`` on ``model``.

    Layout: header [magic, version, B, T]; x, y (B*T int32); logits (B*T*V float32, unpadded);
    loss (1 float32); the 16 gradients in model-file layout (wte grad padded to Vp rows).
    Example::

        logits, loss = model(x, y)
        loss.backward()
        write_state(model, x, y, logits, loss, tmp_path / "state.bin")
    """
    fm = formats()
    cfg = model.config
    x32, y32 = _np(x, np.int32), _np(y, np.int32)
    if x32.ndim != 2 or x32.shape != y32.shape:
        raise ValueError(f"write_state: x {x32.shape} and y {y32.shape} must both be (B,T)")
    B, T = x32.shape
    lg = _np(logits, np.float32)
    if lg.shape != (B, T, cfg.vocab_size):
        raise ValueError(f"write_state: logits {lg.shape}, expected {(B, T, cfg.vocab_size)}")
    grads = grads_llmc(model)
    grads["wte"] = _pad_rows(grads["wte"], cfg.padded_vocab_size)
    header = _header(fm["STATE_MAGIC"], fm["STATE_VERSION"], B, T)
    _atomic_write(
        path,
        [header, x32, y32, lg, _np(loss, np.float32).reshape(1)] + [grads[n] for n in LLMC_NAMES],
    )


def read_state(path: str | os.PathLike, config: GPT2Config) -> dict:
    """Read a debug-state file written for ``config``.

    Returns ``{"x": (B,T) int32, "y": (B,T) int32, "logits": (B,T,V) float32, "loss": float,
    "grads": {name: float32 array}}`` with the wte grad as (Vp, C), padding rows included.
    Example: ``st = read_state(tmp_path / "s.bin", model.config); st["grads"]["qkvw"].shape``.
    """
    fm = formats()
    with open(path, "rb") as f:
        h = _read_header(f, path, "debug-state")
        if h[0] != fm["STATE_MAGIC"]:
            raise ValueError(
                f"{path}: bad magic {h[0]} (expected {fm['STATE_MAGIC']}); not a debug-state file"
            )
        if h[1] != fm["STATE_VERSION"]:
            raise ValueError(f"{path}: unsupported state version {h[1]} (expected {fm['STATE_VERSION']})")
        B, T = int(h[2]), int(h[3])
        if B <= 0 or T <= 0:
            raise ValueError(f"{path}: bad B={B}, T={T} in the header")
        shapes = llmc_shapes(config, padded=True)
        V = config.vocab_size
        numel = 2 * B * T + B * T * V + 1 + sum(math.prod(s) for s in shapes.values())
        expected = 4 * fm["HEADER_INTS"] + 4 * numel
        actual = os.path.getsize(path)
        if actual != expected:
            raise ValueError(
                f"{path}: size {actual} bytes, expected {expected} for B={B}, T={T} and {config}; "
                "was it written for a different model?"
            )

        def take(n: int, dtype: type) -> np.ndarray:
            return np.frombuffer(f.read(4 * n), dtype=dtype).copy()

        out = {
            "x": take(B * T, np.int32).reshape(B, T),
            "y": take(B * T, np.int32).reshape(B, T),
            "logits": take(B * T * V, np.float32).reshape(B, T, V),
            "loss": float(take(1, np.float32)[0]),
        }
        out["grads"] = {n: take(math.prod(shapes[n]), np.float32).reshape(shapes[n]) for n in LLMC_NAMES}
    return out


# ----------------------------------------------------------------------------
# optimizer


def configure_adamw(
    model: GPT,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW with weight decay on 2-D tensors (embeddings, matmul weights) and none on biases/LN.

    ``fused=None`` uses the fused kernel where this torch build supports it for the device.
    Example: ``opt = configure_adamw(model, 1e-4, (0.9, 0.95), 1e-8, 0.1)``.
    """
    params = [p for p in model.parameters() if p.requires_grad]  # tied wte appears once
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    if fused is None:
        try:
            return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)
        except (RuntimeError, ValueError, TypeError):
            fused = False
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused)


# ----------------------------------------------------------------------------
# CLI


def random_batch(
    config: GPT2Config, B: int, T: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random token sequence of length T+1 per row, split into inputs and next-token targets."""
    seq = torch.randint(0, config.vocab_size, (B, T + 1), generator=generator, dtype=torch.int64)
    return seq[:, :-1].contiguous(), seq[:, 1:].contiguous()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="PyTorch GPT-2 oracle: build (or load) a model, run one forward/backward on a "
        "random batch and write an llm.c model file and debug-state file."
    )
    g = p.add_argument_group("model (ignored with --init-from)")
    g.add_argument("--n-layer", type=int, default=2, help="transformer layers L (default 2)")
    g.add_argument("--n-head", type=int, default=3, help="attention heads NH (default 3)")
    g.add_argument("--n-embd", type=int, default=48, help="channels C, divisible by NH (default 48)")
    g.add_argument("--vocab-size", type=int, default=101, help="vocabulary V (default 101)")
    g.add_argument("--block-size", type=int, default=32, help="maximum sequence length (default 32)")
    p.add_argument("--init-from", type=Path, help="load this llm.c model file instead of a random init")
    p.add_argument("--batch", type=int, default=3, help="batch size B (default 3)")
    p.add_argument("--seq", type=int, default=17, help="sequence length T <= block size (default 17)")
    p.add_argument("--seed", type=int, default=0, help="seed for the init and the batch (default 0)")
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float64",
        help="compute precision of the oracle (files are always float32; default float64)",
    )
    p.add_argument(
        "--model-dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="parameter format of --model-out: version 3 (float32) or 5 (bfloat16)",
    )
    p.add_argument(
        "--attn",
        choices=("sdpa", "math"),
        default="math",
        help="attention implementation (default math: explicit softmax)",
    )
    p.add_argument("--model-out", type=Path, help="write the (initial) model here")
    p.add_argument("--state-out", type=Path, help="write the debug state of the first step here")
    p.add_argument(
        "--steps",
        type=int,
        default=0,
        help="after writing the files, train this many AdamW steps on the same batch",
    )
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default 1e-4)")
    p.add_argument("--beta1", type=float, default=0.9, help="AdamW beta1 (default 0.9)")
    p.add_argument("--beta2", type=float, default=0.999, help="AdamW beta2 (default 0.999)")
    p.add_argument("--eps", type=float, default=1e-8, help="AdamW epsilon (default 1e-8)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="decay on 2-D tensors (default 0)")
    p.add_argument("--grad-clip", type=float, default=0.0, help="clip the global grad norm; <= 0 disables")
    p.add_argument("--losses-out", type=Path, help="write the per-step losses of --steps here, one per line")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    if args.init_from is not None:
        model = load_model(args.init_from, attn=args.attn)
    else:
        cfg = GPT2Config(
            block_size=args.block_size,
            vocab_size=args.vocab_size,
            n_layer=args.n_layer,
            n_head=args.n_head,
            n_embd=args.n_embd,
        )
        model = GPT(cfg, attn=args.attn)
    cfg = model.config
    if not 0 < args.seq <= cfg.block_size:
        raise SystemExit(f"--seq {args.seq} must be in 1..block_size={cfg.block_size}")
    gen = torch.Generator().manual_seed(args.seed + 1)
    x, y = random_batch(cfg, args.batch, args.seq, gen)

    if args.model_out is not None:  # the float32 parameters, before any change of precision
        write_model(model, args.model_out, args.model_dtype)
        if args.model_dtype == "bfloat16":  # compute on exactly what the file holds
            model = load_model(args.model_out, attn=args.attn)
    if args.dtype == "float64":
        model = model.double()
    print(
        f"model: {cfg}, {model.num_parameters():,} parameters; batch B={args.batch} T={args.seq}; "
        f"compute {args.dtype}"
    )

    logits, loss = model(x, y)
    model.zero_grad(set_to_none=True)
    loss.backward()
    print(f"loss at step 0: {loss.item():.6f} (ln V = {math.log(cfg.vocab_size):.6f})")
    if args.model_out is not None:
        print(f"wrote {args.model_out}")
    if args.state_out is not None:
        write_state(model, x, y, logits, loss, args.state_out)
        print(f"wrote {args.state_out}")

    if args.steps > 0:
        opt = configure_adamw(model, args.lr, (args.beta1, args.beta2), args.eps, args.weight_decay)
        losses = []
        for step in range(args.steps):
            opt.zero_grad(set_to_none=True)
            _, loss = model(x, y)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(
                model.parameters(), args.grad_clip if args.grad_clip > 0 else float("inf")
            )
            opt.step()
            losses.append(loss.item())
            print(f"step {step}: loss {losses[-1]:.6f}, grad norm {norm.item():.6f}")
        if args.losses_out is not None:
            args.losses_out.write_text("".join(f"{v!r}\n" for v in losses))
            print(f"wrote {args.losses_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
