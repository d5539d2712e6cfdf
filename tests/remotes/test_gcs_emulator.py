"""Our GCS resumable client against a second, independent implementation: gcp-storage-emulator.

The emulator is adequate for happy paths and for resuming after at least one
persisted chunk: it answers a status query
on an empty session with ``bytes=0-0`` and has no expiry, so the strict cases
run against our own sandbox instead.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gcp_storage_emulator.server import create_server

from syncd.remotes.gcs_resumable import ResumableUpload

KB256 = 256 * 1024
BUCKET = "syncd-test"


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def session(base: str, name: str, size: int) -> str:
    r = httpx.post(
        f"{base}/upload/storage/v1/b/{BUCKET}/o",
        params={"uploadType": "resumable", "name": name},
        headers={"X-Upload-Content-Length": str(size), "X-Upload-Content-Type": "application/zip"},
    )
    r.raise_for_status()
    return str(r.headers["Location"])


def source(data: bytes) -> Any:
    def body_from(offset: int) -> Iterator[bytes]:
        for i in range(offset, len(data), 70_000):
            yield data[i : i + 70_000]

    return body_from


def stored(base: str, name: str) -> bytes:
    r = httpx.get(f"{base}/download/storage/v1/b/{BUCKET}/o/{name}", params={"alt": "media"})
    r.raise_for_status()
    return r.content


@pytest.mark.parametrize("size", [1000, 3 * KB256 + 123, 4 * KB256])
def test_fresh_session_single_and_chunked(emulator: str, size: int) -> None:
    data = os.urandom(size)
    name = f"fresh-{size}.zip"
    with httpx.Client() as c:
        up = ResumableUpload(c, session(emulator, name, size), size, chunk_size=KB256, platform="t")
        obj = up.send(source(data), fresh=True)
    assert int(obj["size"]) == size
    assert up.stats.chunks == max(1, -(-size // KB256)) and up.stats.status_queries == 0
    assert hashlib.md5(stored(emulator, name)).digest() == hashlib.md5(data).digest()


def test_resume_after_a_persisted_chunk(emulator: str) -> None:
    data = os.urandom(3 * KB256 + 5)
    name = "resumed.zip"
    url = session(emulator, name, len(data))
    first = httpx.put(
        url, content=data[:KB256], headers={"Content-Range": f"bytes 0-{KB256 - 1}/{len(data)}"}
    )
    assert first.status_code == 308
    with httpx.Client() as c:
        up = ResumableUpload(c, url, len(data), chunk_size=KB256, platform="t")
        up.send(source(data))
    assert up.stats.resumed_from == KB256 and up.stats.bytes_sent == len(data) - KB256
    assert stored(emulator, name) == data
