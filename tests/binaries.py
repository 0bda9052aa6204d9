"""Where the tests find the ``train_gpt2`` binary."""

from __future__ import annotations

import shutil
import sysconfig


def find_train_gpt2() -> str:
    """The train_gpt2 installed beside this interpreter's llmpy, else the one on PATH.

    The interpreter's own scripts folder comes first: a train_gpt2 on PATH may belong to another
    installation (another checkout or venv), whose core is not the one under test.
    """
    found = shutil.which("train_gpt2", path=sysconfig.get_path("scripts")) or shutil.which("train_gpt2")
    assert found, "the train_gpt2 binary is not installed (pip install . builds and installs it)"
    return found
