"""FineWeb / FineWeb-Edu (Hugging Face) -> GPT-2 token shards, as llm.c's fineweb.py.

    python -m llmpy.data fineweb                      # sample-10BT -> $LLMPY_DATA_DIR/fineweb10B/
    python -m llmpy.data fineweb --edu --sample 100BT # -> $LLMPY_DATA_DIR/edu_fineweb100B/

The dataset is streamed (library ``datasets``: ``pip install ".[data]"``), tokenized by a
process pool with an EOT before every document, and written as shards of ``--shard-size``
tokens: ``fineweb_val_000000.bin`` (the first shard is the val split), then
``fineweb_train_000001.bin``, ... An interrupted run resumes at its first incomplete shard.

The document source is injectable (``prepare(documents=...)``), which is how the tests run
this path without a network.

>>> local_dir(edu=True, sample="10BT").name
'edu_fineweb10B'
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Union

from ..extras import require
from .download import dataset_dir
from .sharding import Documents, ShardResult, ShardSpec, write_shards

__all__ = ["dataset_id", "hf_documents", "local_dir", "prefix", "prepare"]

PathLike = Union[str, "os.PathLike[str]"]

DEFAULT_SHARD_SIZE = 10**8


def _check_sample(sample: str) -> str:
    if not re.fullmatch(r"\d+BT", sample):
        raise ValueError(
            f"sample must look like '10BT' (the Hugging Face config sample-10BT), got {sample!r}"
        )
    return sample


def dataset_id(edu: bool) -> str:
    """The Hugging Face dataset: ``HuggingFaceFW/fineweb`` or ``HuggingFaceFW/fineweb-edu``."""
    return "HuggingFaceFW/fineweb-edu" if edu else "HuggingFaceFW/fineweb"


def prefix(edu: bool) -> str:
    """Shard-name prefix: ``fineweb`` or ``edu_fineweb`` (llm.c's names)."""
    return "edu_fineweb" if edu else "fineweb"


def local_dir(edu: bool = False, sample: str = "10BT") -> Path:
    """The dataset's folder in the cache: ``fineweb10B``, ``edu_fineweb100B``, ..."""
    return dataset_dir(f"{prefix(edu)}{_check_sample(sample)[:-1]}")


def _import_datasets():
    return require("datasets", "data", "streaming FineWeb (Hugging Face's datasets library)")


def hf_documents(edu: bool = False, sample: str = "10BT"):
    """A document source (``f(start) -> iterator of texts``) streaming the Hugging Face dataset.

    Imports ``datasets`` when called, with an error naming the ``data`` extra.
    """
    datasets = _import_datasets()
    name = f"sample-{_check_sample(sample)}"

    def open_from(start: int) -> Iterator[str]:
        ds = datasets.load_dataset(dataset_id(edu), name=name, split="train", streaming=True)
        if start:
            ds = ds.skip(start)
        for row in ds:
            yield row["text"]

    return open_from


def prepare(
    *,
    edu: bool = False,
    sample: str = "10BT",
    shard_size: int = DEFAULT_SHARD_SIZE,
    out_dir: PathLike | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    documents: Documents | None = None,
    mp_context: str | None = None,
    source: dict | None = None,
    batch_chars: int = 1 << 18,
) -> ShardResult:
    """Streams, tokenizes and shards FineWeb; returns the shards (val first).

    Args:
        edu: FineWeb-Edu instead of FineWeb.
        sample: the sample config (``10BT``, ``100BT``, ``350BT``).
        shard_size: tokens per shard (the val shard too).
        out_dir: default :func:`local_dir`.
        workers: tokenizer processes (None: one per core).
        documents: the document source; default the Hugging Face stream
            (:func:`hf_documents`). Tests pass a list of texts.
        source: what identifies ``documents`` for resuming (default: dataset and sample).
        batch_chars: characters of text per task sent to a worker.

    Example::

        res = prepare(edu=True, shard_size=10**8)
        res.files[0].name  # 'edu_fineweb_val_000000.bin'
    """
    _check_sample(sample)
    if source is None:
        source = {"kind": "fineweb", "dataset": dataset_id(edu), "sample": sample}
    spec = ShardSpec(  # checks the sizes before the stream is opened
        out_dir if out_dir is not None else local_dir(edu, sample),
        prefix(edu),
        val_tokens=shard_size,
        shard_size=shard_size,
    )
    if documents is None:
        documents = hf_documents(edu, sample)
    total = int(sample[:-2]) * 10**9
    return write_shards(
        documents,
        spec,
        source=source,
        workers=workers,
        progress=progress,
        total_tokens=total,
        desc=f"tokenizing {dataset_id(edu)} {sample}",
        mp_context=mp_context,
        batch_chars=batch_chars,
    )
