"""tiny Shakespeare -> GPT-2 token shards, byte-identical to llm.c's files.

    python -m llmpy.data tinyshakespeare      # -> $LLMPY_DATA_DIR/tinyshakespeare/tiny_shakespeare_{val,train}.bin

The text (``tinyshakespeare/input.txt`` in the data cache, downloaded when missing) is cut
into documents at blank lines; each document keeps its trailing ``"\\n\\n"`` (llm.c does the
same, so the documents concatenate back to the file). Every document is preceded by the EOT
token; the first 32,768 tokens are the val split, the other 305,260 the train split.

>>> docs = documents("First Citizen:\\nBefore we proceed.\\n\\nAll:\\nSpeak, speak.\\n")
>>> docs
['First Citizen:\\nBefore we proceed.\\n\\n', 'All:\\nSpeak, speak.\\n']
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from ..textfile import read_text
from .download import dataset_dir, download
from .sharding import ShardResult, ShardSpec, write_shards
from .text import split_blank_lines

__all__ = ["SHA256", "URL", "VAL_TOKENS", "documents", "fetch", "input_path", "prepare"]

PathLike = Union[str, "os.PathLike[str]"]

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"  # 1,115,394 bytes
VAL_TOKENS = 32768
PREFIX = "tiny_shakespeare"


def input_path() -> Path:
    """Where the text lives in the cache: ``$LLMPY_DATA_DIR/tinyshakespeare/input.txt``."""
    return dataset_dir("tinyshakespeare") / "input.txt"


def fetch(progress: bool | None = None) -> Path:
    """The path of ``input.txt``, downloading it (SHA-256 checked) when it is not cached."""
    path = input_path()
    return download(
        URL, path, sha256=SHA256, progress=progress, hint="Then re-run python -m llmpy.data tinyshakespeare."
    )


def documents(text: str) -> list[str]:
    """The documents of the text: blocks separated by blank lines, each but the last keeping
    its ``"\\n\\n"``."""
    return split_blank_lines(text)


def prepare(
    out_dir: PathLike | None = None,
    *,
    input: PathLike | None = None,
    workers: int = 0,
    progress: bool | None = None,
) -> ShardResult:
    """Writes ``tiny_shakespeare_val.bin`` and ``tiny_shakespeare_train.bin``; returns them.

    ``out_dir`` defaults to the folder of ``input.txt``; ``input`` to the cached text
    (fetched when missing). The text is small, so ``workers=0`` (this process) is the default.
    A re-run with the same input skips both files.
    """
    src = Path(input) if input is not None else fetch(progress)
    text = read_text(src)  # not UTF-8: an error naming the file and the byte
    spec = ShardSpec(
        out_dir if out_dir is not None else src.parent,
        PREFIX,
        val_tokens=VAL_TOKENS,
        shard_size=None,
        numbered=False,
    )
    st = src.stat()
    source = {
        "kind": "tinyshakespeare",
        "file": str(src.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
    }
    return write_shards(
        documents(text),
        spec,
        source=source,
        workers=workers,
        progress=progress,
        desc="tokenizing tiny shakespeare",
    )
