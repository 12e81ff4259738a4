"""Download helper against a local HTTP server on loopback: checksum, resume with Range, atomic result."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from clip.download import ChecksumError, download, sha256_file

PAYLOAD = bytes(range(256)) * 1200  # 300 KiB, several chunks
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Server:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.range_headers: list[str | None] = []
        self.honour_range = True
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                data = server.files.get(self.path)
                range_header = self.headers.get("Range")
                server.range_headers.append(range_header)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if range_header and server.honour_range:
                    start = int(range_header.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    srv = _Server()
    srv.files["/abc123/ViT-T-1.pt"] = PAYLOAD
    yield srv
    srv.close()


def test_download_checks_sha256_and_writes_atomically(server: _Server, tmp_path: Path) -> None:
    path = download(f"{server.url}/abc123/ViT-T-1.pt", tmp_path / "cache", PAYLOAD_SHA, progress=False)
    assert path == tmp_path / "cache" / "ViT-T-1.pt"
    assert path.read_bytes() == PAYLOAD and sha256_file(path) == PAYLOAD_SHA
    assert not list((tmp_path / "cache").glob("*.part"))
    server.range_headers.clear()
    assert download(f"{server.url}/abc123/ViT-T-1.pt", tmp_path / "cache", PAYLOAD_SHA, progress=False) == path
    assert server.range_headers == []  # a verified cached file is reused without a request


def test_tampered_download_fails_checksum_and_leaves_nothing(server: _Server, tmp_path: Path) -> None:
    tampered = bytearray(PAYLOAD)
    tampered[1000] ^= 0xFF
    server.files["/abc123/ViT-T-1.pt"] = bytes(tampered)
    with pytest.raises(ChecksumError, match=PAYLOAD_SHA):
        download(f"{server.url}/abc123/ViT-T-1.pt", tmp_path, PAYLOAD_SHA, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_partial_download_resumes_with_range(server: _Server, tmp_path: Path) -> None:
    (tmp_path / "ViT-T-1.pt.part").write_bytes(PAYLOAD[:100_000])
    path = download(f"{server.url}/abc123/ViT-T-1.pt", tmp_path, PAYLOAD_SHA, progress=True)
    assert server.range_headers == ["bytes=100000-"]
    assert path.read_bytes() == PAYLOAD


def test_server_without_range_support_restarts_from_zero(server: _Server, tmp_path: Path) -> None:
    server.honour_range = False
    (tmp_path / "ViT-T-1.pt.part").write_bytes(b"x" * 5000)  # stale bytes must not survive
    path = download(f"{server.url}/abc123/ViT-T-1.pt", tmp_path, PAYLOAD_SHA, progress=False)
    assert path.read_bytes() == PAYLOAD


def test_complete_partial_file_is_finished_without_refetch(server: _Server, tmp_path: Path) -> None:
    (tmp_path / "ViT-T-1.pt.part").write_bytes(PAYLOAD)
    path = download(f"{server.url}/abc123/ViT-T-1.pt", tmp_path, PAYLOAD_SHA, progress=False)
    assert server.range_headers == [f"bytes={len(PAYLOAD)}-"] and path.read_bytes() == PAYLOAD


def test_corrupt_cached_file_is_downloaded_again(server: _Server, tmp_path: Path) -> None:
    (tmp_path / "ViT-T-1.pt").write_bytes(b"corrupt")
    path = download(f"{server.url}/abc123/ViT-T-1.pt", tmp_path, PAYLOAD_SHA, progress=False)
    assert path.read_bytes() == PAYLOAD


def test_target_that_is_a_directory_is_an_error(server: _Server, tmp_path: Path) -> None:
    (tmp_path / "ViT-T-1.pt").mkdir()
    with pytest.raises(RuntimeError, match="not a regular file"):
        download(f"{server.url}/abc123/ViT-T-1.pt", tmp_path, PAYLOAD_SHA, progress=False)
