"""A missing optional dependency is one line naming the extra that brings it, never a traceback.

The environment is real: a fresh virtual environment (``python -m venv``, no system packages)
that sees only llmpy and its own dependencies (numpy, tiktoken, regex and theirs), linked from
the environment running the tests — no torch, matplotlib, graphviz, datasets, pyarrow or
huggingface_hub. The oracle is the absence itself: each test first checks that the venv's
interpreter cannot import the package in question.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

OPTIONAL = ("torch", "matplotlib", "graphviz", "datasets", "pyarrow", "huggingface_hub")
CLIS = ("train", "sample", "hellaswag", "convert", "data", "tokenizer", "micrograd", "makemore", "gpt")


def _closure(dist: str, seen: set) -> None:
    """dist and every distribution it requires (extras left out), by normalised name."""
    key = re.sub(r"[-_.]+", "-", dist).lower()
    if key in seen:
        return
    seen.add(key)
    for req in md.requires(dist) or []:
        if "extra ==" not in req:
            _closure(re.match(r"[A-Za-z0-9_.-]+", req).group(0), seen)


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    """The interpreter of a venv holding llmpy and its required dependencies only."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    here = Path(sysconfig.get_path("purelib"))
    dists: set = set()
    _closure("llmpy", dists)
    for dist in dists:
        for f in md.files(dist) or []:
            top = Path(str(f)).parts[0]
            src = Path(md.distribution(dist).locate_file(top))
            dst = site / top
            if top in ("..", "__pycache__") or dst.exists() or not src.exists():
                continue
            assert src.parent == here or src.parent.resolve() == here.resolve(), f"{dist}: {src} outside {here}"
            dst.symlink_to(src, target_is_directory=src.is_dir())
    return python


def run(python: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    return subprocess.run([str(python), *args], check=False, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def one_error_line(p: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in p.stderr, f"a traceback instead of one error line:\n{p.stderr}"
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), \
        f"rc {p.returncode}, expected one 'error:' line:\n{p.stderr}"
    return lines[0]


def test_the_venv_lacks_every_optional_dependency(bare_python):
    code = f"import importlib.util as u; print([m for m in {OPTIONAL!r} if u.find_spec(m)])"
    p = run(bare_python, "-c", code)
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stdout + p.stderr
    p = run(bare_python, "-c", "import llmpy, tiktoken, regex, numpy; print(llmpy.GPT2)")
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("cli", CLIS)
def test_help_works_without_optional_dependencies(bare_python, cli):
    p = run(bare_python, "-m", f"llmpy.{cli}", "--help")
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert "usage:" in p.stdout


@pytest.mark.parametrize("cli", ["makemore", "gpt"])
def test_chapters_without_torch_say_which_extra(bare_python, cli, tmp_path):
    p = run(bare_python, "-m", f"llmpy.{cli}", "--steps", "1", cwd=tmp_path)
    line = one_error_line(p)
    assert f"python -m llmpy.{cli} needs torch" in line and 'pip install ".[chapters]"' in line, line


def test_api_without_torch_says_which_extra(bare_python):
    code = ("from llmpy.extras import MissingDependency\n"
            "for name in ('llmpy.gpt', 'llmpy.makemore'):\n"
            "    m = __import__(name, fromlist=['x'])\n"
            "    try:\n"
            "        m.GPT if name == 'llmpy.gpt' else m.MLP\n"
            "    except MissingDependency as e:\n"
            "        print(e)\n"
            "    try:\n"
            "        m.no_such_name\n"
            "    except AttributeError:\n"
            "        print('AttributeError')\n")
    p = run(bare_python, "-c", code)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 4 and lines[1] == lines[3] == "AttributeError", p.stdout
    for line in (lines[0], lines[2]):
        assert "needs torch, which is not installed" in line and '".[chapters]"' in line, line


def test_torch_views_without_torch_say_which_extra(bare_python):
    code = ("import llmpy\nfrom llmpy.extras import MissingDependency\n"
            "m = llmpy.GPT2(llmpy.GPT2Config(n_layer=1, n_head=1, n_embd=8, vocab_size=16, block_size=4))\n"
            "try:\n    m.parameters(torch=True)\nexcept MissingDependency as e:\n    print(e)\n")
    p = run(bare_python, "-c", code)
    assert p.returncode == 0, p.stderr
    assert "parameters(torch=True) needs torch, which is not installed" in p.stdout, p.stdout
    assert '".[chapters]"' in p.stdout, p.stdout


def test_draw_dot_without_graphviz_says_which_extra(bare_python):
    code = ("from llmpy.extras import MissingDependency\nfrom llmpy.micrograd import Value, draw_dot\n"
            "try:\n    draw_dot(Value(1.0) * 2)\nexcept MissingDependency as e:\n    print(e)\n")
    p = run(bare_python, "-c", code)
    assert p.returncode == 0 and "draw_dot needs graphviz" in p.stdout and '".[chapters]"' in p.stdout, \
        p.stdout + p.stderr


def test_data_without_the_data_extra_says_which(bare_python, tmp_path):
    pq = tmp_path / "docs.parquet"
    pq.write_bytes(b"PAR1")
    line = one_error_line(run(bare_python, "-m", "llmpy.data", "text", str(pq), "--out-dir", str(tmp_path / "o"),
                              "--workers", "0", "--no-progress", cwd=tmp_path))
    assert "needs pyarrow" in line and '".[data]"' in line, line
    line = one_error_line(run(bare_python, "-m", "llmpy.data", "fineweb", "--out-dir", str(tmp_path / "f"),
                              "--workers", "0", "--no-progress", cwd=tmp_path))
    assert "needs datasets" in line and '".[data]"' in line, line


def test_hub_names_without_the_hf_extra_say_which(bare_python, tmp_path):
    line = one_error_line(run(bare_python, "-m", "llmpy.convert", "gpt2", str(tmp_path / "gpt2.bin"),
                              cwd=tmp_path))
    assert "needs huggingface_hub" in line and '".[hf]"' in line, line
