"""Every command line's --help: each flag's default stated once, never "(default: None)" or
"(default: False)" (issue 23)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

CLIS = ["train", "sample", "hellaswag", "convert", "data", "data tinyshakespeare", "data fineweb", "data text",
        "tokenizer", "tokenizer train", "tokenizer encode", "tokenizer decode", "tokenizer llmc", "micrograd",
        "makemore", "gpt"]


def flag_entries(text: str) -> dict:
    """--flag -> its help text (continuation lines joined), from argparse's options section."""
    out, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"^  (-\w, )?(--[\w-]+)", line)
        if m:
            cur = m.group(2)
            out[cur] = line[m.end():].strip()
        elif cur and line.startswith("      "):
            out[cur] += " " + line.strip()
        else:
            cur = None
    return out


@pytest.mark.parametrize("cli", CLIS)
def test_help_states_defaults_once(cli):
    p = subprocess.run([sys.executable, "-m", f"llmpy.{cli.split()[0]}", *cli.split()[1:], "--help"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "(default: None)" not in p.stdout and "(default: False)" not in p.stdout, p.stdout
    entries = flag_entries(p.stdout)
    assert "--help" in entries, p.stdout
    for flag, text in entries.items():
        assert text.count("(default:") <= 1, f"python -m llmpy.{cli} {flag}: {text}"
