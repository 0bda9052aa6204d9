"""The README's commands, run as written, in order, the way a new user would run them.

Every command of the README's ```bash blocks and every ```python block is either run here or
named in ``NOT_RUN`` with the reason (it needs the network, or installs packages: CI's own steps
do that). A command added to the README that this file does not know fails
``test_every_readme_command_is_known`` until it is run here or listed with its reason.

The run itself (``test_readme_commands_run_as_written``, slow) works in a fresh folder with a
fresh data cache holding only tiny Shakespeare's text and makemore's names (the downloads the
quick start and makemore would make), the user's ``notes.txt`` and the offline tiktoken cache; one
command after the other shares that folder, so the quick look's checkpoint is the one the sample,
convert and API commands read.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# command (as written, continuation lines joined) -> why it is not run here
NOT_RUN = {
    "pip install . && python -m llmpy.train":
        "installs the package (CI's install step); python -m llmpy.train itself runs below",
    "pip install -e \".[test]\" && pytest": "this test suite itself (CI's README test step)",
    "python -m llmpy.convert gpt2 gpt2_124M.bin": "downloads GPT-2 from the Hugging Face hub (network)",
    "python -m llmpy.hellaswag --checkpoint runs/quick/ckpt_000050.bin --limit 100":
        "downloads the HellaSwag validation set (network)",
}

# commands that are run as a part of another line above: the quick start's training run
EXTRA_RUNS = ["python -m llmpy.train"]


def readme_blocks(text: str) -> list:
    """(language, body) of each fenced block of the README, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)]


def bash_commands(body: str) -> list:
    """The commands of a bash block: continuation lines joined, trailing '# comments' dropped."""
    out, cur = [], ""
    for line in body.splitlines():
        if cur:
            line = line.strip()
        if line.endswith("\\"):
            cur += line[:-1].rstrip() + " "
            continue
        cur += line
        cmd = re.sub(r"\s{2,}#.*$", "", cur).strip()
        cur = ""
        if cmd and not cmd.startswith("#"):
            out.append(cmd)
    return out


def readme_steps() -> list:
    """('bash', command) and ('python', source) in README order."""
    steps = []
    for lang, body in readme_blocks(README.read_text(encoding="utf-8")):
        if lang == "bash":
            steps += [("bash", c) for c in bash_commands(body)]
        elif lang == "python":
            steps.append(("python", body))
    return steps


def test_every_readme_command_is_known():
    steps = readme_steps()
    cmds = [c for kind, c in steps if kind == "bash"]
    assert len(cmds) >= 15 and any(kind == "python" for kind, _ in steps), "README parsing found too little"
    stale = [c for c in NOT_RUN if c not in cmds]
    assert not stale, f"NOT_RUN names commands the README no longer shows: {stale}"
    for c in cmds:  # every other command is run by the slow test; it must be a command we can run here
        if c in NOT_RUN:
            continue
        assert not re.search(r"\bsudo\b|\bpip install\b|--device cuda|\bcurl\b|\bwget\b", c), (
            f"README command {c!r} needs root, the network or a GPU: list it in NOT_RUN with the reason")
        assert "<" not in c.replace("<<", ""), f"README command {c!r} has a placeholder: write a runnable one"


def _env(home: Path) -> dict:
    env = dict(os.environ)
    env.update(LLMPY_DATA_DIR=str(home / "cache"), HOME=str(home), PYTHONUNBUFFERED="1",
               # mpirun as root (CI) refuses to start without these; they change nothing else
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               # and on a machine whose 2 CPUs are one core's hyperthreads, without this one
               OMPI_MCA_rmaps_base_oversubscribe="1")
    # python, pytest and train_gpt2 of the interpreter running the tests come first on PATH
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@pytest.mark.slow
def test_readme_commands_run_as_written(tmp_path):
    cache = Path(os.environ.get("LLMPY_DATA_DIR", Path.home() / ".cache/llmpy"))
    shakespeare = cache / "tinyshakespeare/input.txt"
    names = cache / "makemore/names.txt"
    work = tmp_path / "user"
    for src, rel in [(shakespeare, "tinyshakespeare/input.txt"), (names, "makemore/names.txt")]:
        # what the quick start and makemore download (no network here)
        assert src.is_file(), f"{src} is missing: the offline data (CI: ../shared/data)"
        (work / "cache" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, work / "cache" / rel)
    (work / "notes.txt").write_text(shakespeare.read_text(encoding="utf-8")[:200_000], encoding="utf-8")
    env = _env(work)
    has_mpi = shutil.which("mpirun") is not None

    ran = []
    steps = [("bash", c) for c in EXTRA_RUNS] + readme_steps()
    for kind, src in steps:
        if kind == "bash" and src in NOT_RUN:
            continue
        if kind == "bash" and src.startswith("mpirun") and not has_mpi:
            continue  # the one optional tool; every other command runs
        argv = ["bash", "-e", "-o", "pipefail", "-c", src] if kind == "bash" else [sys.executable, "-c", src]
        p = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, (f"README {kind} step failed (rc {p.returncode}):\n{src}\n--- stdout\n"
                                   f"{p.stdout[-3000:]}\n--- stderr\n{p.stderr[-3000:]}")
        assert "Traceback" not in p.stderr, f"README step printed a traceback:\n{src}\n{p.stderr[-3000:]}"
        ran.append(src)
    assert len(ran) >= 15
    # what the commands promise, checked after them
    assert (work / "runs/quick/ckpt_000100.bin").is_file(), "--resume latest did not extend runs/quick to 100"
    assert (work / "hf/quick/config.json").is_file() and (work / "quick_bf16.bin").is_file()
    assert (work / "my_tok.model").is_file() and (work / "model.bin").is_file()
    assert (work / "cache/gpt2_tokenizer.bin").is_file()
