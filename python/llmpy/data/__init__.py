"""Datasets as GPT-2 token shards, and the loader that batches them.

* :mod:`~llmpy.data.download` — the cache (``$LLMPY_DATA_DIR``, default ``~/.cache/llmpy``)
  and the one download helper (progress, resume, checksum, atomic placement).
* :mod:`~llmpy.data.shards` — the llm.c shard format: read, validate, write atomically.
* :mod:`~llmpy.data.sharding` — documents -> tokens (process pool) -> shards, resumable.
* :mod:`~llmpy.data.tinyshakespeare`, :mod:`~llmpy.data.fineweb`, :mod:`~llmpy.data.text`
  — the datasets; ``python -m llmpy.data --help`` lists their command lines.
* :class:`DataLoader` — rank-aware, resumable, optionally shuffled ``(x, y)`` batches.

>>> from llmpy.data import DataLoader
>>> # loader = DataLoader(data_dir() / "tinyshakespeare/tiny_shakespeare_train.bin", 4, 64)
"""

from .download import ChecksumError, DownloadError, data_dir, dataset_dir, download
from .loader import DataLoader
from .sharding import ShardResult, ShardSpec, write_shards
from .shards import MissingShardError, ShardError, read_header, read_shard, write_shard

__all__ = [
    "ChecksumError",
    "DataLoader",
    "DownloadError",
    "MissingShardError",
    "ShardError",
    "ShardResult",
    "ShardSpec",
    "data_dir",
    "dataset_dir",
    "download",
    "read_header",
    "read_shard",
    "write_shard",
    "write_shards",
]
