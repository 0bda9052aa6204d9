"""Thin wrapper: `python dev/data/text.py ARGS` = `python -m llmpy.data text ARGS` (see --help)."""

import sys

from llmpy.data.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["text", *sys.argv[1:]]))
