"""A tiny, dependency-free progress bar for long loops (downloads, tokenization, training).

Writes one carriage-return-refreshed line to stderr, at most every ``min_interval`` seconds.
It draws nothing when the stream is not a terminal (CI logs, pipes), when ``enabled=False``,
or when the environment sets ``LLMPY_PROGRESS=0``; counting still works, so callers can read
``n``, ``elapsed`` and ``rate`` either way.

>>> with Progress(total=3_000_000, unit="tok", desc="tokenizing", enabled=False) as bar:
...     for _ in range(3):
...         bar.update(1_000_000)
>>> bar.n
3000000

Drawn, the line looks like::

    tokenizing  45%|█████████           | 1.35M/3.00M tok [00:03<00:04, 412k tok/s]
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO


__all__ = ["Progress", "format_count", "format_time"]

_BAR_WIDTH = 20
_BLOCKS = " ▏▎▍▌▋▊▉█"


def format_count(x: float) -> str:
    """Compact count with an SI suffix: ``format_count(1_350_000) == '1.35M'``."""
    x = float(x)
    for suffix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.0f}" if x == int(x) else f"{x:.3g}"


def format_time(seconds: float) -> str:
    """``mm:ss`` (or ``h:mm:ss``): ``format_time(75) == '01:15'``."""
    s = int(max(seconds, 0))
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _auto_enabled(stream: IO[str]) -> bool:
    if os.environ.get("LLMPY_PROGRESS", "").strip().lower() in ("0", "false", "no", "off"):
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed stream
        return False


class Progress:
    """Counts work done and, on a terminal, shows a bar with rate and time left.

    Args:
        total: expected final count (None when unknown: no percentage or ETA is shown).
        unit: unit shown after counts and rates ("tok", "B", "it", ...).
        desc: label at the start of the line.
        enabled: True/False forces drawing on/off; None (default) draws only on a TTY and
            unless ``LLMPY_PROGRESS=0``.
        file: stream to draw on (default ``sys.stderr``).
        min_interval: minimum seconds between redraws.

    ``update(n)`` adds ``n``; ``close()`` draws the final line and a newline (idempotent).
    Use it as a context manager so the line is closed on errors too.
    """

    def __init__(
        self,
        total: float | None = None,
        unit: str = "it",
        desc: str = "",
        enabled: bool | None = None,
        file: IO[str] | None = None,
        min_interval: float = 0.2,
    ) -> None:
        self.total = total
        self.unit = unit
        self.desc = desc
        self.file = file if file is not None else sys.stderr
        self.enabled = _auto_enabled(self.file) if enabled is None else bool(enabled)
        self.min_interval = float(min_interval)
        self.n = 0
        self.start = time.monotonic()
        self._last_draw = 0.0
        self._closed = False
        self._width = 0

    # ---------------------------------------------------------------- counting

    @property
    def elapsed(self) -> float:
        """Seconds since the bar was created."""
        return time.monotonic() - self.start

    @property
    def rate(self) -> float:
        """Average units per second so far (0 before any time has passed)."""
        dt = self.elapsed
        return self.n / dt if dt > 0 else 0.0

    def update(self, n: float = 1) -> None:
        """Adds ``n`` units of work and redraws if ``min_interval`` has passed."""
        self.n += n
        if self.enabled and not self._closed:
            now = time.monotonic()
            if now - self._last_draw >= self.min_interval:
                self._last_draw = now
                self._draw()

    def set_description(self, desc: str) -> None:
        """Changes the label (shown at the next redraw)."""
        self.desc = desc

    def close(self) -> None:
        """Draws the final state and ends the line. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self.enabled:
            self._draw()
            self.file.write("\n")
            self.file.flush()

    def __enter__(self) -> Progress:  # noqa: PYI034 (typing.Self needs Python 3.11)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- drawing

    def render(self) -> str:
        """The current line (without the carriage return)."""
        u = f" {self.unit}" if self.unit else ""
        rate = f"{format_count(self.rate)}{u}/s"
        head = f"{self.desc} " if self.desc else ""
        if self.total:
            frac = min(max(self.n / self.total, 0.0), 1.0)
            cells = frac * _BAR_WIDTH
            full = int(cells)
            part = _BLOCKS[int((cells - full) * (len(_BLOCKS) - 1))] if full < _BAR_WIDTH else ""
            bar = ("█" * full + part).ljust(_BAR_WIDTH)
            left = (self.total - self.n) / self.rate if self.rate > 0 else 0.0
            return (
                f"{head}{frac * 100:3.0f}%|{bar}| {format_count(self.n)}/{format_count(self.total)}{u} "
                f"[{format_time(self.elapsed)}<{format_time(left)}, {rate}]"
            )
        return f"{head}{format_count(self.n)}{u} [{format_time(self.elapsed)}, {rate}]"

    def _draw(self) -> None:
        line = self.render()
        pad = " " * max(self._width - len(line), 0)  # erase leftovers of a longer previous line
        self._width = len(line)
        try:
            self.file.write("\r" + line + pad)
            self.file.flush()
        except (OSError, ValueError):  # a closed or broken stream must never break the work
            self.enabled = False
