"""Thin wrapper: `python dev/data/tinyshakespeare.py ARGS` = `python -m llmpy.data tinyshakespeare ARGS` (see --help)."""

import sys

from llmpy.data.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["tinyshakespeare", *sys.argv[1:]]))
