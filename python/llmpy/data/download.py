"""The data cache and the one download helper every dataset goes through.

Cache layout (root: ``$LLMPY_DATA_DIR``, default ``~/.cache/llmpy``), one folder per dataset::

    tinyshakespeare/input.txt    makemore/names.txt    hellaswag/...    fineweb10B/...

:func:`download` streams a URL to ``<dest>.part`` with a progress bar, resumes a partial
``.part`` with an HTTP Range request, verifies the SHA-256 when it is known, and only then
renames the file into place (atomic: a reader never sees a half-written file). Without a
network it raises :class:`DownloadError` saying where to put the file by hand.

>>> dataset_dir("tinyshakespeare").name
'tinyshakespeare'
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Union

from ..progress import Progress

__all__ = ["ChecksumError", "DownloadError", "data_dir", "dataset_dir", "download", "sha256_file"]

PathLike = Union[str, "os.PathLike[str]"]

_CHUNK = 1 << 20


class DownloadError(OSError):
    """A file could not be downloaded (offline, HTTP error); the message says what to do."""


class ChecksumError(DownloadError):
    """A downloaded file does not have the expected SHA-256."""


# ----------------------------------------------------------------------------
# the cache


def data_dir() -> Path:
    """Root of the data cache: ``$LLMPY_DATA_DIR`` or ``~/.cache/llmpy`` (not created here)."""
    env = os.environ.get("LLMPY_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "llmpy"


def dataset_dir(name: str) -> Path:
    """Folder of one dataset in the cache, e.g. ``dataset_dir("tinyshakespeare")`` (not created)."""
    return data_dir() / name


def sha256_file(path: PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------
# download


def _offline_hint(url: str, dest: Path, hint: str | None) -> str:
    extra = f" {hint}" if hint else ""
    return (
        f"If this machine is offline, fetch {url} elsewhere and put it at {dest} "
        f"(or point LLMPY_DATA_DIR at a folder that has {dest.parent.name}/{dest.name}).{extra}"
    )


def download(
    url: str,
    dest: PathLike,
    *,
    sha256: str | None = None,
    progress: bool | None = None,
    timeout: float = 30.0,
    hint: str | None = None,
) -> Path:
    """Downloads ``url`` to ``dest`` unless ``dest`` already exists; returns ``dest``.

    Args:
        url: http(s) or file URL.
        dest: final path; its folder is created. A partial download lives at ``dest + ".part"``
            and is resumed (HTTP Range) by the next call.
        sha256: expected hex digest; checked before the file is moved into place. A mismatch
            deletes the partial file and raises :class:`ChecksumError`.
        progress: draw a progress bar (None: only on a terminal).
        timeout: seconds to wait for the server.
        hint: extra sentence appended to error messages.

    Example::

        path = download("https://example.com/input.txt", dataset_dir("mine") / "input.txt")
    """
    dest = Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0

    req = urllib.request.Request(url, headers={"User-Agent": "llmpy"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the partial file is complete
            resp = None
        else:
            raise DownloadError(
                f"cannot download {url}: HTTP {e.code} {e.reason}. " + _offline_hint(url, dest, hint)
            ) from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"cannot download {url}: {reason}. " + _offline_hint(url, dest, hint)) from e

    if resp is not None:
        with resp:
            status = getattr(resp, "status", None) or resp.getcode()
            if have and status != 206:  # server ignored the Range request: start over
                have = 0
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length and length.isdigit() else None
            try:
                with (
                    open(part, "ab" if have else "wb") as f,
                    Progress(total, unit="B", desc=f"downloading {dest.name}", enabled=progress) as bar,
                ):
                    bar.update(have)
                    for chunk in iter(lambda: resp.read(_CHUNK), b""):
                        f.write(chunk)
                        bar.update(len(chunk))
                    f.flush()
                    os.fsync(f.fileno())
            except (OSError, ValueError) as e:  # connection dropped: keep .part for the next call
                raise DownloadError(
                    f"download of {url} was interrupted ({e}); {part} holds {part.stat().st_size} bytes and "
                    "the next call resumes from there. " + _offline_hint(url, dest, hint)
                ) from e
            if total is not None and part.stat().st_size != total:
                raise DownloadError(
                    f"download of {url} ended early: {part.stat().st_size} of {total} bytes in {part}; "
                    "call again to resume. " + _offline_hint(url, dest, hint)
                )

    if sha256 is not None:
        got = sha256_file(part)
        if got.lower() != sha256.lower():
            part.unlink()
            raise ChecksumError(
                f"{url}: downloaded file has SHA-256 {got}, expected {sha256}; the partial file was "
                f"deleted, call again to retry. " + _offline_hint(url, dest, hint)
            )
    os.replace(part, dest)
    return dest
