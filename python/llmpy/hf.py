"""Hugging Face GPT-2 checkpoints and llm.c model files, in and out.

Three kinds of weights hold the same 16 llm.c tensors (``_C.TENSOR_NAMES``):

* a Hugging Face directory: ``config.json`` + ``model.safetensors`` (or a sharded
  ``model.safetensors.index.json``, or ``pytorch_model.bin``), as ``transformers`` writes it;
  a hub name (``gpt2``, ``gpt2-medium``, ``gpt2-large``, ``gpt2-xl``, ``owner/name``) resolves
  to such a directory in the ``huggingface_hub`` cache;
* an llm.c model file: 256 x int32 header, then the tensors in fp32 (version 3) or bf16 (5),
  wte padded with zero rows to a multiple of 128 (``csrc/core/formats.h``), read and written
  by the core's one model-file reader/writer (``_C.ModelFile``, ``csrc/core/model_file.c``);
* a live model: an ``llmpy.GPT2``, or anything with its ``config`` and ``parameters()``.

This module sits below ``llmpy.model`` and never imports it: the functions that make a GPT2
from these weights are ``GPT2.from_pretrained`` and ``GPT2.load``.

Differences handled here: Hugging Face stores one tensor per layer (``h.{l}.attn.c_attn.weight``)
where llm.c stacks layers (``qkvw`` is (L, 3C, C)); its ``Conv1D`` layers keep weights as
(in, out), llm.c as (out, in), so the four matmul weights are transposed; the output head is
tied to wte (``lm_head.weight`` is absent or equal to wte); the vocabulary is not padded.

Every conversion is a stream of chunks ``(name, layer, array)`` — one layer of one tensor at a
time, float32 in llm.c orientation — from a *source* to a *sink*, so memory stays at one tensor
while converting gpt2-xl. The safetensors files are read (memory-mapped) and written here with
numpy; ``torch`` is needed only for ``pytorch_model.bin`` and ``huggingface_hub`` only for hub names.

>>> m = GPT2.from_pretrained("gpt2")                 # doctest: +SKIP
>>> m.save_pretrained("out/gpt2-copy")               # doctest: +SKIP
>>> convert("out/gpt2-copy", "gpt2_124M_bf16.bin", dtype="bf16")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from dataclasses import asdict
from os import PathLike
from pathlib import Path
from typing import Iterator, Optional, Protocol, Union

import numpy as np

from . import _C
from .config import GPT2Config
from .progress import Progress

__all__ = ["HUB_MODELS", "LiveModel", "Source", "config_from_hf", "config_to_hf", "convert", "open_source",
           "save_pretrained", "to_bf16_bits", "writes_llmc"]

PathType = Union[str, PathLike]


class LiveModel(Protocol):
    """What this module needs of a live model (``llmpy.GPT2`` is one): its config, and its
    parameters as ``name -> float32 array`` in llm.c names and shapes (wte without padding)."""

    config: GPT2Config

    def parameters(self) -> dict: ...


#: OpenAI's GPT-2 checkpoints on the hub and their llm.c-style depth names.
HUB_MODELS = {"gpt2": "d12", "gpt2-medium": "d24", "gpt2-large": "d36", "gpt2-xl": "d48"}

# Per-layer tensors: llm.c name -> (Hugging Face name after "h.{l}.", stored transposed?)
_LAYER = {
    "ln1w": ("ln_1.weight", False), "ln1b": ("ln_1.bias", False),
    "qkvw": ("attn.c_attn.weight", True), "qkvb": ("attn.c_attn.bias", False),
    "attprojw": ("attn.c_proj.weight", True), "attprojb": ("attn.c_proj.bias", False),
    "ln2w": ("ln_2.weight", False), "ln2b": ("ln_2.bias", False),
    "fcw": ("mlp.c_fc.weight", True), "fcb": ("mlp.c_fc.bias", False),
    "fcprojw": ("mlp.c_proj.weight", True), "fcprojb": ("mlp.c_proj.bias", False),
}  # fmt: skip
_GLOBAL = {"wte": "wte.weight", "wpe": "wpe.weight", "lnfw": "ln_f.weight", "lnfb": "ln_f.bias"}
# Causal-mask buffers that old checkpoints carry per layer; they are not weights.
_BUFFERS = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")
_PREFIX = "transformer."
_LAYER_NORM_EPS = 1e-5  # csrc/cpu/layernorm.c
_SAFETENSORS_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "F64": np.dtype("<f8"),
                       "BF16": np.dtype("<u2")}
_DTYPES = ("fp32", "bf16")


def _fm() -> dict:
    return dict(_C.formats)


# ----------------------------------------------------------------------------
# shapes and names


def _chunk_shapes(cfg: GPT2Config) -> list:
    """[(llm.c name, layer or None, shape of the chunk)] in llm.c file order; wte unpadded.

    From the core's tensor table (``_C.TENSORS``, ``_C.tensor_shapes``): a tensor whose first
    dimension is the layer comes one layer at a time; the padded-vocabulary rows are hidden.
    """
    shapes = _C.tensor_shapes(cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab_size, cfg.block_size)
    out = []
    for spec, shape in zip(_C.TENSORS, shapes):
        if spec["dims"][0] == "Vp":
            shape = (cfg.vocab_size, *shape[1:])
        if spec["per_layer"]:
            out.extend((spec["name"], layer, tuple(shape[1:])) for layer in range(cfg.n_layer))
        else:
            out.append((spec["name"], None, tuple(shape)))
    return out


def _hf_name(name: str, layer: Optional[int]) -> tuple:
    """(Hugging Face tensor name without the "transformer." prefix, transposed?)."""
    if layer is None:
        return _GLOBAL[name], False
    suffix, transposed = _LAYER[name]
    return f"h.{layer}.{suffix}", transposed


def _num_floats(cfg: GPT2Config) -> int:
    return sum(math.prod(s) for _, _, s in _chunk_shapes(cfg))


# ----------------------------------------------------------------------------
# config.json


def config_from_hf(hf: dict, where: str = "config.json") -> GPT2Config:
    """The llmpy config of a Hugging Face GPT-2 ``config.json``; ValueError if llmpy cannot run it.

    >>> config_from_hf({"model_type": "gpt2", "n_layer": 2, "n_head": 3, "n_embd": 48,
    ...                 "vocab_size": 101, "n_positions": 32})
    GPT2Config(n_layer=2, n_head=3, n_embd=48, vocab_size=101, block_size=32)
    """
    def refuse(why: str) -> ValueError:
        return ValueError(f"{where}: {why}; llmpy runs the original GPT-2 architecture only "
                          "(model_type 'gpt2', GPT2LMHeadModel with its default attention and MLP)")

    model_type = hf.get("model_type")
    if model_type != "gpt2":
        raise refuse(f"model_type is {model_type!r}, not 'gpt2'")
    archs = hf.get("architectures") or ["GPT2LMHeadModel"]
    bad = [a for a in archs if a not in ("GPT2LMHeadModel", "GPT2Model")]
    if bad:
        raise refuse(f"architecture {bad[0]} is not GPT2LMHeadModel (its extra heads would be lost)")
    act = hf.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):  # both are the tanh approximation llmpy uses
        raise refuse(f"activation_function {act!r} is not the tanh-approximated GELU ('gelu_new')")
    if hf.get("scale_attn_by_inverse_layer_idx", False):
        raise refuse("scale_attn_by_inverse_layer_idx is true (attention scaled by 1/layer)")
    if not hf.get("scale_attn_weights", True):
        raise refuse("scale_attn_weights is false (unscaled attention)")
    if hf.get("add_cross_attention", False):
        raise refuse("add_cross_attention is true (an encoder-decoder model)")
    if not hf.get("tie_word_embeddings", True):
        raise refuse("tie_word_embeddings is false (an output head separate from wte)")
    # reorder_and_upcast_attn only changes the order and precision of the same attention math,
    # which llmpy computes in float32 anyway, so it is accepted.
    eps = float(hf.get("layer_norm_epsilon", _LAYER_NORM_EPS))
    if abs(eps - _LAYER_NORM_EPS) > 1e-12:
        raise refuse(f"layer_norm_epsilon is {eps:g}, llmpy's layernorm uses {_LAYER_NORM_EPS:g}")
    try:
        sizes = dict(n_layer=int(hf["n_layer"]), n_head=int(hf["n_head"]), n_embd=int(hf["n_embd"]),
                     vocab_size=int(hf["vocab_size"]), block_size=int(hf.get("n_positions", hf.get("n_ctx"))))
    except (KeyError, TypeError) as e:
        raise ValueError(f"{where}: missing or invalid GPT-2 size field {e} "
                         "(need n_layer, n_head, n_embd, vocab_size, n_positions)") from None
    n_inner = hf.get("n_inner")
    if n_inner is not None and int(n_inner) != 4 * sizes["n_embd"]:
        raise refuse(f"n_inner is {n_inner}, not 4 * n_embd = {4 * sizes['n_embd']}")
    if min(sizes.values()) < 1:
        raise ValueError(f"{where}: sizes must be positive, got {sizes}")
    if sizes["n_embd"] % sizes["n_head"]:
        raise ValueError(f"{where}: n_embd {sizes['n_embd']} is not divisible by n_head {sizes['n_head']}")
    try:
        return GPT2Config(**sizes)  # the core's limits
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def config_to_hf(cfg: GPT2Config, dtype: str = "fp32") -> dict:
    """A ``config.json`` that ``transformers.GPT2LMHeadModel`` reads as this model.

    Dropout is 0, as llmpy trains without dropout; the GPT-2 end-of-text id 50256 is recorded
    as bos/eos when the vocabulary has it.
    """
    eot = 50256 if cfg.vocab_size > 50256 else None
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": cfg.vocab_size, "n_positions": cfg.block_size, "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_inner": None,
        "activation_function": "gelu_new", "layer_norm_epsilon": _LAYER_NORM_EPS,
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "initializer_range": 0.02,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False, "add_cross_attention": False, "tie_word_embeddings": True,
        "bos_token_id": eot, "eos_token_id": eot, "use_cache": True,
        "torch_dtype": "float32" if dtype == "fp32" else "bfloat16",
    }  # fmt: skip


# ----------------------------------------------------------------------------
# bf16


def to_bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), rounding to nearest, ties to even; a NaN stays a
    quiet NaN. The core's conversion (``llm_f32_to_bf16``), the one the llm.c files get too.

    >>> to_bf16_bits(np.array([1.0, 1.00390625, 1.01171875], dtype=np.float32))  # ties: down, up
    array([16256, 16256, 16258], dtype=uint16)
    """
    return _C.to_bf16_bits(a)


def _from_bf16_bits(a: np.ndarray) -> np.ndarray:
    return (a.astype(np.uint32) << 16).view(np.float32)


# ----------------------------------------------------------------------------
# safetensors (format: u64 little-endian header length N, N bytes of JSON
# {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data)


def _read_safetensors_index(path: Path) -> dict:
    """name -> zero-copy numpy array (memory-mapped) of one .safetensors file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        n = struct.unpack("<Q", raw)[0] if len(raw) == 8 else -1
        if n < 2 or 8 + n > size:
            raise ValueError(f"{path}: not a safetensors file (bad header length); re-download or re-save it")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a safetensors file (header is not JSON: {e})") from None
    nbuf = size - 8 - n
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n, shape=(nbuf,)) if nbuf else None
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = _SAFETENSORS_DTYPES.get(info.get("dtype"))
        if dt is None:
            raise ValueError(f"{path}: tensor {name} has dtype {info.get('dtype')}; "
                             "llmpy reads F32, F16, BF16 and F64")
        shape = tuple(int(s) for s in info["shape"])
        begin, end = (int(x) for x in info["data_offsets"])
        if end - begin != math.prod(shape) * dt.itemsize or begin < 0 or end > nbuf:
            raise ValueError(f"{path}: tensor {name} lies outside the file or has the wrong size; "
                             "the file is truncated or corrupt")
        arr = data[begin:end].view(dt).reshape(shape)
        out[name] = _from_bf16_bits(arr) if info["dtype"] == "BF16" else arr
    return out


def _write_safetensors(path: Path, entries: list, chunks: Iterator, progress: Progress) -> None:
    """Writes ``entries`` [(name, dtype "F32"/"BF16", shape)] with data from ``chunks`` (in order)."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, dt, shape in entries:
        nbytes = math.prod(shape) * (4 if dt == "F32" else 2)
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned

    def write(f):
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for (name, dt, shape), a in zip(entries, chunks):
            assert a.shape == tuple(shape), (name, a.shape, shape)  # our own bookkeeping
            f.write((to_bf16_bits(a) if dt == "BF16" else np.ascontiguousarray(a, dtype="<f4")).tobytes())
            progress.update(a.size)

    _atomic_write(path, write)


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # same directory: the rename is atomic
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------
# sources: anything that yields the chunks of a model


class Source:
    """A model's weights as a stream of (name, layer, float32 chunk in llm.c orientation):
    ``layer`` is None for a whole tensor, else the layer of a per-layer tensor; file order."""

    config: GPT2Config
    where: str

    def chunks(self) -> Iterator:
        raise NotImplementedError

    def progress(self, desc: str, enabled: Optional[bool] = None) -> Progress:
        """A progress bar counting this model's parameters (None: shown only for 100M+ parameters,
        which take long enough to want one)."""
        total = _num_floats(self.config)
        if enabled is None and total < 100_000_000:
            enabled = False
        return Progress(total=total, unit="param", desc=desc, enabled=enabled)


class _HFSource(Source):
    """A Hugging Face directory; shapes and names are all checked when it is opened."""

    def __init__(self, directory: Path):
        self.where = str(directory)
        cfg_path = directory / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{directory}: no config.json; a Hugging Face model directory holds "
                                    "config.json and model.safetensors (or pytorch_model.bin)")
        try:
            hf_cfg = json.loads(cfg_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{cfg_path}: invalid JSON ({e})") from None
        if not isinstance(hf_cfg, dict):
            raise ValueError(f"{cfg_path}: holds a JSON {type(hf_cfg).__name__}, not a model config object")
        self.config = config_from_hf(hf_cfg, str(cfg_path))
        self.tensors, files = self._open(directory)
        self._check(", ".join(files))

    @staticmethod
    def _open(directory: Path) -> tuple:
        single, index = directory / "model.safetensors", directory / "model.safetensors.index.json"
        if single.is_file():
            files = [single]
        elif index.is_file():
            try:
                names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (json.JSONDecodeError, KeyError, AttributeError) as e:
                raise ValueError(f"{index}: not a safetensors index ({e!r})") from None
            files = [directory / n for n in names]
            missing = [str(p) for p in files if not p.is_file()]
            if missing:
                raise FileNotFoundError(f"{index} lists shards that are missing: {', '.join(missing)}")
        elif (directory / "pytorch_model.bin").is_file():
            return _read_torch_bin(directory / "pytorch_model.bin"), ["pytorch_model.bin"]
        else:
            raise FileNotFoundError(f"{directory}: no model.safetensors, model.safetensors.index.json or "
                                    "pytorch_model.bin next to config.json; copy the weights file there")
        tensors = {}
        for p in files:
            tensors.update(_read_safetensors_index(p))
        return tensors, [p.name for p in files]

    def _check(self, files: str) -> None:
        names = {(k[len(_PREFIX):] if k.startswith(_PREFIX) else k): v for k, v in self.tensors.items()}
        self.lm_head = names.pop("lm_head.weight", None)
        expected = {}
        for name, layer, shape in _chunk_shapes(self.config):
            key, transposed = _hf_name(name, layer)
            expected[key] = shape[::-1] if transposed else shape
        missing = [k for k in expected if k not in names]
        extra = [k for k in names if k not in expected and not _BUFFERS.match(k)]
        where = f"{self.where} ({files})"
        if missing:
            raise ValueError(f"{where}: tensors missing: {', '.join(missing[:5])}"
                             f"{' ...' if len(missing) > 5 else ''}; the file does not match config.json")
        if extra:
            more = " ..." if len(extra) > 5 else ""
            raise ValueError(f"{where}: unexpected tensors {', '.join(extra[:5])}{more}; "
                             "not a GPT2LMHeadModel checkpoint")
        for key, shape in expected.items():
            got = tuple(names[key].shape)
            if got != shape:
                raise ValueError(f"{where}: {key} has shape {got}, config.json implies {shape}; "
                                 "the weights do not match the config")
        if self.lm_head is not None and tuple(self.lm_head.shape) != expected["wte.weight"]:
            raise ValueError(f"{where}: lm_head.weight has shape {tuple(self.lm_head.shape)}, "
                             f"wte is {expected['wte.weight']}; llmpy needs the output head tied to wte")
        self.names = names

    def chunks(self) -> Iterator:
        for name, layer, _ in _chunk_shapes(self.config):
            key, transposed = _hf_name(name, layer)
            a = np.asarray(self.names[key])
            if name == "wte" and self.lm_head is not None and not np.array_equal(self.lm_head, a):
                raise ValueError(f"{self.where}: lm_head.weight differs from wte; llmpy supports only "
                                 "GPT-2's tied output head")
            a = a.T if transposed else a
            yield name, layer, np.ascontiguousarray(a, dtype=np.float32)


def _read_torch_bin(path: Path) -> dict:
    try:
        import torch
    except ImportError:
        raise ImportError(f"{path}: reading pytorch_model.bin needs PyTorch (pip install torch); "
                          "or use a directory with model.safetensors") from None
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"{path}: cannot read it as a PyTorch state dict ({e})") from None
    except Exception as e:
        raise ValueError(f"{path}: cannot read it as a PyTorch state dict ({e})") from None
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: holds a {type(sd).__name__}, not a state dict of tensors")
    return {k: v.detach().float().numpy() for k, v in sd.items() if isinstance(v, torch.Tensor)}


class _LlmcSource(Source):
    """An llm.c model file (version 3 or 5), read by the core (``_C.ModelFile``: header and size
    checked when it opens, bf16 widened, wte's padding rows skipped)."""

    def __init__(self, path: Path):
        self.where = str(path)
        self.file = _C.ModelFile.open(str(path))
        self.bf16 = self.file.bf16
        c = self.file.config
        self.config = GPT2Config(n_layer=c["n_layer"], n_head=c["n_head"], n_embd=c["n_embd"],
                                 vocab_size=c["vocab_size"], block_size=c["block_size"])

    def chunks(self) -> Iterator:
        for name, layer, _ in _chunk_shapes(self.config):
            yield name, layer, self.file.read(name, -1 if layer is None else layer)


class _ModelSource(Source):
    """A live model, read through its parameters() (views on the CPU)."""

    def __init__(self, model: LiveModel):
        self.config, self.where, self.model = model.config, repr(model), model

    def chunks(self) -> Iterator:
        params = self.model.parameters()
        for name, layer, _ in _chunk_shapes(self.config):
            yield name, layer, params[name] if layer is None else params[name][layer]


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def _is_llmc_file(path: Path) -> bool:
    """An llm.c model file, or a file of llmpy's (its integrity block: a damaged model file goes to
    the core's reader, which says what is wrong)."""
    fm = _fm()
    with open(path, "rb") as f:
        head = f.read(4 * fm["HEADER_INTS"])
    if len(head) < 4:
        return False
    at = 4 * fm["INTEGRITY_AT"]
    ours = len(head) >= at + 4 and struct.unpack_from("<i", head, at)[0] == fm["INTEGRITY_MAGIC"]
    return struct.unpack_from("<i", head)[0] == fm["MODEL_MAGIC"] or ours


def open_source(spec: Union[PathType, LiveModel], *, cache_dir: Optional[PathType] = None,
                local_files_only: bool = False) -> Source:
    """The weights meant by ``spec``: a live model, an llm.c file, a Hugging Face directory or a hub name.

    >>> src = open_source("gpt2_124M.bin")                      # doctest: +SKIP
    >>> src.config, next(src.chunks())[0]                       # doctest: +SKIP
    (GPT2Config(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, block_size=1024), 'wte')
    """
    if not isinstance(spec, (str, PathLike)):
        if hasattr(spec, "config") and hasattr(spec, "parameters"):
            return _ModelSource(spec)
        raise TypeError(f"expected a path, a hub name or a model (with .config and .parameters()), "
                        f"got {type(spec).__name__}")
    p = Path(spec).expanduser()
    if p.is_dir():
        return _HFSource(p)
    if p.is_file():
        if _is_llmc_file(p):
            return _LlmcSource(p)
        raise ValueError(f"{p}: neither an llm.c model file nor a Hugging Face directory; pass the directory "
                         "that holds config.json and model.safetensors")
    s = str(spec)
    if not _HUB_ID.match(s) or s.endswith((".bin", ".safetensors", ".json")) or ".." in s:
        raise FileNotFoundError(f"{s}: no such llm.c model file or Hugging Face directory")
    return _HFSource(_hub_snapshot(s, cache_dir, local_files_only))


def _hub_snapshot(name: str, cache_dir: Optional[PathType], local_files_only: bool) -> Path:
    """The local directory of hub model ``name``: downloaded (online) or from the cache (offline)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ImportError(f"{name!r} is not a local file or directory; to fetch it from the Hugging Face hub "
                          "install huggingface_hub (pip install 'llmpy[hf]')") from None
    kw = dict(cache_dir=None if cache_dir is None else str(cache_dir), local_files_only=local_files_only)
    try:
        patterns = ["config.json", "model.safetensors", "model.safetensors.index.json", "model-*.safetensors"]
        d = Path(snapshot_download(name, allow_patterns=patterns, **kw))
        if not any(d.glob("*.safetensors")):  # older repositories have only the PyTorch pickle
            d = Path(snapshot_download(name, allow_patterns=["config.json", "pytorch_model.bin"], **kw))
    except Exception as e:  # huggingface_hub raises many kinds: offline, not found, gated, network
        raise FileNotFoundError(
            f"{name!r} is not a local directory, and the Hugging Face hub or its cache could not provide it "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). Check the name (e.g. "
            f"{', '.join(HUB_MODELS)}); offline, download it first where there is network "
            f"(hf download {name} config.json model.safetensors) and point HF_HUB_CACHE at "
            "that cache, or pass the directory holding config.json and model.safetensors") from None
    return d


# ----------------------------------------------------------------------------
# sinks


def _write_llmc(src: Source, path: Path, dtype: str, progress: Optional[bool]) -> None:
    """Streams ``src`` into the core's model-file writer (temp file, renamed when complete)."""
    with _C.ModelFile.create(str(path), **asdict(src.config), bf16=dtype == "bf16") as f, \
            src.progress(f"writing {path.name}", progress) as bar:
        for name, layer, a in src.chunks():
            f.write(name, a, -1 if layer is None else layer)
            bar.update(a.size)
        f.commit()  # leaving the block without it (an exception) removes the temp file


def _write_hf(src: Source, directory: Path, dtype: str, progress: Optional[bool]) -> None:
    cfg = src.config
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{directory} exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    st = "BF16" if dtype == "bf16" else "F32"
    entries = []
    for name, layer, shape in _chunk_shapes(cfg):
        key, transposed = _hf_name(name, layer)
        entries.append((_PREFIX + key, st, shape[::-1] if transposed else shape))

    def hf_chunks():
        for name, layer, a in src.chunks():
            yield a.T if _hf_name(name, layer)[1] else a

    # model.safetensors first: a directory whose config.json exists is complete
    (directory / "config.json").unlink(missing_ok=True)
    with src.progress(f"writing {directory.name}/model.safetensors", progress) as bar:
        _write_safetensors(directory / "model.safetensors", entries, hf_chunks(), bar)
    text = json.dumps(config_to_hf(cfg, dtype), indent=2) + "\n"
    _atomic_write(directory / "config.json", lambda f: f.write(text.encode()))


# ----------------------------------------------------------------------------
# public entry points


def _check_dtype(dtype: str) -> str:
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    return dtype


def save_pretrained(model: LiveModel, directory: PathType, dtype: str = "fp32",
                    progress: Optional[bool] = None) -> None:
    """Writes ``config.json`` + ``model.safetensors`` (see ``GPT2.save_pretrained``)."""
    _write_hf(_ModelSource(model), Path(directory), _check_dtype(dtype), progress)


def writes_llmc(dst: PathType) -> bool:
    """Whether ``convert`` writes ``dst`` as an llm.c model file (``*.bin``) or a Hugging Face directory."""
    out = Path(dst).expanduser()
    return out.suffix == ".bin" and not out.is_dir()


def convert(src: Union[PathType, LiveModel], dst: PathType, dtype: str = "fp32", *,
            progress: Optional[bool] = None, cache_dir: Optional[PathType] = None,
            local_files_only: bool = False) -> GPT2Config:
    """Converts between Hugging Face directories (or hub names) and llm.c model files.

    ``dst`` ending in ``.bin`` is an llm.c model file (version 3 for ``dtype="fp32"``, 5 for
    ``"bf16"``, rounded to nearest even); anything else is a Hugging Face directory (config.json
    + model.safetensors in float32 or bfloat16). ``src`` may also be a live model. Returns the config
    of the converted model.

    >>> convert("gpt2", "gpt2_124M.bin")                       # doctest: +SKIP
    GPT2Config(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, block_size=1024)
    >>> convert("gpt2_124M.bin", "gpt2-hf", dtype="bf16")      # doctest: +SKIP
    """
    _check_dtype(dtype)
    source = open_source(src, cache_dir=cache_dir, local_files_only=local_files_only)
    out = Path(dst).expanduser()
    if isinstance(src, (str, PathLike)) and out.resolve() == Path(src).expanduser().resolve():
        raise ValueError(f"{dst}: the destination is the source; write to another path")
    if writes_llmc(out):
        if not out.parent.is_dir():
            raise FileNotFoundError(f"{out.parent}: no such directory for the llm.c file {out.name}")
        _write_llmc(source, out, dtype, progress)
    else:
        _write_hf(source, out, dtype, progress)
    return source.config
