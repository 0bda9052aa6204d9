"""UTF-8 text files whose decoding errors name the file, the byte offset and the fix.

Python's own ``UnicodeDecodeError`` names neither the file nor, when a file is read in chunks,
the true offset ("position 5" is a place in some buffer). Every CLI that reads the user's text
(``python -m llmpy.data text``, ``python -m llmpy.data tinyshakespeare --input``,
``python -m llmpy.tokenizer train|encode``) goes through here instead:

>>> import os, tempfile
>>> p = os.path.join(tempfile.mkdtemp(), "latin1.txt")
>>> _ = open(p, "wb").write("caf\\u00e9\\nna\\u00efve\\n".encode("latin-1"))
>>> read_text(p)  # doctest: +ELLIPSIS
Traceback (most recent call last):
llmpy.textfile.NotUTF8Error: .../latin1.txt is not UTF-8 text: byte 3 (line 1) is 0xe9 (invalid ...
"""

from __future__ import annotations

import gzip
import os
from typing import BinaryIO, Optional, Union

__all__ = ["NotUTF8Error", "decode", "first_bad_utf8", "not_utf8", "read_text"]

PathLike = Union[str, "os.PathLike[str]"]

_CHUNK = 1 << 20


class NotUTF8Error(ValueError):
    """A text input is not valid UTF-8; the message names the file, the byte and the fix."""


def _message(name: str, offset: int, line: int, bad: bytes, reason: str, gz: bool) -> str:
    where = "of its decompressed text " if gz else ""
    if gz:
        fix = f"zcat {name} | iconv -f latin1 -t utf-8 | gzip > fixed.gz"
    elif name.startswith("<"):
        fix = "iconv -f latin1 -t utf-8 < FILE | ..."
    else:
        fix = f"iconv -f latin1 -t utf-8 {name} > {name}.utf8"
    return (
        f"{name} is not UTF-8 text: byte {offset} {where}(line {line}) is 0x{bad.hex()} ({reason}); "
        f"convert it to UTF-8 first, e.g. {fix} (use the encoding the file really has: latin1, cp1252, "
        f"utf-16, ...; `file -i` guesses it)"
    )


def first_bad_utf8(f: BinaryIO) -> Optional[tuple[int, int, bytes, str]]:
    """``(byte offset, line, first bad bytes, reason)`` of the first invalid UTF-8 in the binary
    stream ``f`` (read in chunks, so any size), or None when it is valid to the end.

    >>> import io
    >>> first_bad_utf8(io.BytesIO(b"ok\\n\\xff"))
    (3, 2, b'\\xff', 'invalid start byte')
    """
    offset, lines, carry = 0, 0, b""  # carry: a multi-byte character cut by the chunk boundary
    while True:
        chunk = f.read(_CHUNK)
        data = carry + chunk
        try:
            data.decode("utf-8")
            good, carry = len(data), b""
        except UnicodeDecodeError as e:
            if chunk and e.end == len(data) and e.reason == "unexpected end of data":
                good, carry = e.start, data[e.start :]
            else:
                return (
                    offset + e.start,
                    lines + data.count(b"\n", 0, e.start) + 1,
                    data[e.start : e.end],
                    e.reason,
                )
        lines += data.count(b"\n", 0, good)
        offset += good
        if not chunk:
            return None


def not_utf8(path: PathLike) -> NotUTF8Error:
    """The error for a file that failed to decode as UTF-8 (a ``.gz`` file: its decompressed
    text), found by scanning it again for the first bad byte."""
    name = os.fspath(path)
    gz = name.lower().endswith(".gz")
    with gzip.open(name, "rb") if gz else open(name, "rb") as f:
        found = first_bad_utf8(f)
    if found is None:  # cannot happen for a file that just failed, unless it changed meanwhile
        return NotUTF8Error(f"{name} is not UTF-8 text (it changed while it was read?)")
    return NotUTF8Error(_message(name, *found, gz))


def decode(data: bytes, name: str) -> str:
    """``data`` decoded as UTF-8, or NotUTF8Error naming ``name`` (a path, or ``<stdin>``)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise NotUTF8Error(_message(name, e.start, line, data[e.start : e.end], e.reason, False)) from None


def read_text(path: PathLike) -> str:
    """``open(path, encoding="utf-8").read()`` (universal newlines included), but a file that is
    not UTF-8 raises NotUTF8Error (a ValueError) naming it, the byte offset and the line of the
    first invalid byte, and how to convert it."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError:
        raise not_utf8(path) from None
