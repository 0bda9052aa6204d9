"""Thin wrapper: `python dev/data/fineweb.py ARGS` = `python -m llmpy.data fineweb ARGS` (see --help)."""

import sys

from llmpy.data.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["fineweb", *sys.argv[1:]]))
