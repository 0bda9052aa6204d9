"""The download helper against a local HTTP server on 127.0.0.1 (no network): resume with
Range, servers that ignore Range, checksum verification, atomic placement, offline errors;
and the progress bar it draws."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
from typing import ClassVar

import pytest
from data_helpers import tiktoken_cache  # noqa: F401
from llmpy.data import ChecksumError, DownloadError, data_dir, dataset_dir, download
from llmpy.progress import Progress, format_count, format_time

BODY = bytes(range(256)) * 4000  # 1,024,000 bytes


class _Handler(http.server.BaseHTTPRequestHandler):
    body = BODY
    honour_range = True
    seen: ClassVar[list] = []

    def do_GET(self):
        rng = self.headers.get("Range")
        type(self).seen.append(rng)
        start = 0
        if rng and self.honour_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(self.body):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(self.body) - 1}/{len(self.body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(self.body) - start))
        self.end_headers()
        self.wfile.write(self.body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    handler = type("H", (_Handler,), {"seen": [], "honour_range": True})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}/file.bin"
    httpd.shutdown()
    httpd.server_close()


SHA = hashlib.sha256(BODY).hexdigest()


def test_download_checksum_and_atomic_placement(tmp_path, server):
    handler, url = server
    dest = tmp_path / "d" / "file.bin"
    assert download(url, dest, sha256=SHA, progress=False) == dest
    assert dest.read_bytes() == BODY and not (tmp_path / "d" / "file.bin.part").exists()
    assert handler.seen == [None]
    download(url, dest, sha256=SHA)  # present: no request at all
    assert handler.seen == [None]


@pytest.mark.parametrize("honour_range", [True, False])
def test_download_resumes_a_partial_file(tmp_path, server, honour_range):
    handler, url = server
    handler.honour_range = honour_range
    dest = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(BODY[:300_000])
    download(url, dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == BODY, "resumed file differs"
    assert handler.seen == ["bytes=300000-"]


def test_download_of_a_complete_part_file(tmp_path, server):
    _handler, url = server
    (tmp_path / "file.bin.part").write_bytes(BODY)
    download(url, tmp_path / "file.bin", sha256=SHA, progress=False)  # server answers 416
    assert (tmp_path / "file.bin").read_bytes() == BODY


def test_checksum_mismatch(tmp_path, server):
    _, url = server
    dest = tmp_path / "file.bin"
    with pytest.raises(ChecksumError, match=f"expected {'0' * 64}"):
        download(url, dest, sha256="0" * 64, progress=False)
    assert not dest.exists() and not (tmp_path / "file.bin.part").exists()


def test_offline_error_is_actionable(tmp_path):
    dest = tmp_path / "tinyshakespeare" / "input.txt"
    with pytest.raises(DownloadError) as e:
        download("http://127.0.0.1:9/input.txt", dest, progress=False, timeout=5)
    assert f"put it at {dest}" in str(e.value) and "LLMPY_DATA_DIR" in str(e.value)
    assert not dest.exists()


def test_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMPY_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path and dataset_dir("makemore") == tmp_path / "makemore"
    monkeypatch.delenv("LLMPY_DATA_DIR")
    assert data_dir().parts[-2:] == (".cache", "llmpy")


# ----------------------------------------------------------------------------
# the progress bar


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_draws_on_a_tty_only(monkeypatch):
    monkeypatch.delenv("LLMPY_PROGRESS", raising=False)
    out = _Tty()
    with Progress(total=2_000_000, unit="tok", desc="tok", file=out, min_interval=0) as bar:
        bar.update(1_000_000)
    text = out.getvalue()
    assert text.startswith("\rtok  50%|") and "1M/2M tok" in text and text.endswith("\n")
    assert bar.n == 1_000_000 and bar.rate > 0

    quiet = io.StringIO()  # not a terminal
    with Progress(total=10, file=quiet, min_interval=0) as bar:
        bar.update(5)
    assert quiet.getvalue() == "" and bar.n == 5
    monkeypatch.setenv("LLMPY_PROGRESS", "0")
    with Progress(file=out, min_interval=0) as bar:
        bar.update(3)
    assert out.getvalue() == text
    out = _Tty()
    with Progress(file=out, unit="B", min_interval=0, enabled=True) as bar:  # forced on, no total
        bar.update(2048)
    assert "2.05k B [" in out.getvalue()


def test_progress_formatting():
    assert [format_count(x) for x in (0, 999, 1000, 1_350_000, 2.5e9)] == ["0", "999", "1k", "1.35M", "2.5G"]
    assert [format_time(x) for x in (0, 75, 3725)] == ["00:00", "01:15", "1:02:05"]
