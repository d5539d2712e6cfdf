"""The upload benchmarks' receiver (bench/receiver.py) frames HTTP/1.1 bodies as a server must."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from bench.receiver import Receiver


@pytest.fixture(scope="module")
def sink() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def test_content_length_and_chunked_bodies_are_read_whole_on_one_connection(
    sink: Receiver,
) -> None:
    before = sink.stats()
    with httpx.Client() as c:
        r = c.put(f"{sink.url}/minio/b/k?X-Amz-Signature=x", content=b"a" * 5_000_000)
        assert r.status_code == 200 and r.headers["ETag"] and r.content == b""
        # an iterator without a length is sent chunked
        r = c.put(f"{sink.url}/b/k2", content=iter([b"x" * 70_000, b"", b"y" * 3]))
        assert r.status_code == 200
        r = c.post(f"{sink.url}/form", content=b"")
        assert r.status_code == 200
    after = sink.stats()
    assert after["requests"] - before["requests"] == 3
    assert after["bytes"] - before["bytes"] == 5_000_000 + 70_003
    assert after["last"] == 0


def test_chunk_extensions_and_trailers_are_parsed(sink: Receiver) -> None:
    host, port = urlsplit(sink.url).hostname, urlsplit(sink.url).port
    assert host and port
    with socket.create_connection((host, port)) as s:
        s.sendall(
            b"PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"
            b"PUT /y HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        )
        replies = b""
        while chunk := s.recv(65536):
            replies += chunk
    assert replies.count(b"HTTP/1.1 200 OK") == 2
    assert sink.stats()["last"] == 2


def test_a_broken_chunk_is_answered_400(sink: Receiver) -> None:
    host, port = urlsplit(sink.url).hostname, urlsplit(sink.url).port
    assert host and port
    with socket.create_connection((host, port)) as s:
        s.sendall(b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 400")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_upload_with_expect_100_continue(sink: Receiver, tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(b"z" * 2_000_000)
    subprocess.run(
        [
            "curl",
            "-sS",
            "-f",
            "-o",
            "/dev/null",
            "-H",
            "Expect: 100-continue",
            "-T",
            str(f),
            f"{sink.url}/minio/a",
        ],
        check=True,
        timeout=30,
    )
    assert sink.stats()["last"] == 2_000_000
