"""What every command line of the package shares: help that states each flag's default once.

>>> import argparse
>>> p = argparse.ArgumentParser(prog="x", formatter_class=HelpFormatter)
>>> _ = p.add_argument("--limit", type=int, default=None, help="only the first N examples (default: all)")
>>> _ = p.add_argument("--json", action="store_true", help="print JSON")
>>> _ = p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
>>> text = " ".join(p.format_help().split())
>>> text[text.index("--limit LIMIT only"):]  # doctest: +NORMALIZE_WHITESPACE
'--limit LIMIT only the first N examples (default: all) --json print JSON (default: off)
 --threads THREADS CPU threads (0: all cores) (default: 0)'
"""

from __future__ import annotations

import argparse

__all__ = ["HelpFormatter"]


class HelpFormatter(argparse.HelpFormatter):
    """Every flag's help ends with its default, stated once: "(default: X)" is added unless the help
    already says what the default is in words; never "(default: None)"; an on/off flag that is off
    says "(default: off)". llm.c's flag, written " [llm.c: -x]" at the end, stays last."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS) or not action.option_strings:
            return text
        value = "off" if action.nargs == 0 and action.default is False else "%(default)s"
        head, llmc, tail = text.partition(" [llm.c:")
        return f"{head} (default: {value}){llmc}{tail}"
