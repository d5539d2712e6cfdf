"""Deepen backend pieces: the GCS resumable client, error mapping, session age, geometry, config."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd.config import parse_config
from syncd.errors import (
    AuthError,
    ConfigError,
    NotFoundError,
    PermanentError,
    RemoteRejected,
    TransientError,
    UploadSessionExpired,
)
from syncd.remotes.base import ResumableUploads, Upload
from syncd.remotes.deepen import DeepenRemote, box3d, classify, label_object
from syncd.remotes.gcs_resumable import ResumableUpload

KB256 = 256 * 1024


class FakeGcs:
    """A scripted GCS session for the client: records every request, keeps what it is told."""

    def __init__(self, total: int, *, keep: float = 1.0, first_status: int = 308) -> None:
        self.total, self.keep, self.first_status = total, keep, first_status
        self.held = bytearray()
        self.requests: list[tuple[str, int]] = []
        self.md5_override: str | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert "authorization" not in request.headers
        crange = request.headers["content-range"]
        body = request.content
        self.requests.append((crange, len(body)))
        if self.first_status != 308:
            return httpx.Response(self.first_status, text="gone")
        m = re.match(r"bytes (\d+)-(\d+)/(\d+)", crange)
        if m:
            start = int(m.group(1))
            assert start <= len(self.held)
            new = body[len(self.held) - start :]
            keep = int(len(new) * self.keep) // KB256 * KB256
            if keep == 0 and self.keep >= 0.5:
                keep = len(new)  # a short tail is kept whole (else a keep=0.5 server never ends)
            self.held += new[:keep]
        if len(self.held) == self.total:
            md5 = self.md5_override or base64.b64encode(hashlib.md5(self.held).digest()).decode()
            return httpx.Response(200, json={"size": str(self.total), "md5Hash": md5})
        headers = {"Range": f"bytes=0-{len(self.held) - 1}"} if self.held else {}
        return httpx.Response(308, headers=headers)


def source(data: bytes) -> Any:
    def body_from(offset: int) -> Iterator[bytes]:
        for i in range(offset, len(data), 100_000):
            yield data[i : i + 100_000]

    return body_from


def client(handler: Any) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def test_chunks_are_256k_multiples_and_status_without_range_means_zero() -> None:
    data = bytes(range(256)) * 4000  # 1 024 000 bytes: 3 full chunks of 256 KiB and a tail
    gcs = FakeGcs(len(data))
    up = ResumableUpload(client(gcs), "http://gcs/s", len(data), chunk_size=KB256, platform="t")
    obj = up.send(source(data))
    assert obj["size"] == str(len(data)) and bytes(gcs.held) == data
    assert gcs.requests[0] == (f"bytes */{len(data)}", 0)
    sizes = [n for _, n in gcs.requests[1:]]
    assert all(n == KB256 for n in sizes[:-1]) and sizes[-1] == len(data) - 3 * KB256
    assert up.stats.resumed_from == 0 and up.stats.bytes_sent == len(data)


def test_server_keeping_less_is_resent_from_the_buffer() -> None:
    data = bytes(range(256)) * 8192  # 2 MiB
    gcs = FakeGcs(len(data), keep=0.5)
    up = ResumableUpload(client(gcs), "http://gcs/s", len(data), chunk_size=4 * KB256, platform="t")
    up.send(source(data))
    assert bytes(gcs.held) == data
    assert up.stats.kept_less > 0
    starts = [int(c.split()[1].split("-")[0]) for c, _ in gcs.requests[1:]]
    assert starts == sorted(starts) and starts[1] == 2 * KB256  # resumed where the server stopped


def test_resumes_from_what_the_server_holds() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    gcs = FakeGcs(len(data))
    gcs.held += data[: 2 * KB256]
    up = ResumableUpload(client(gcs), "http://gcs/s", len(data), chunk_size=KB256, platform="t")
    up.send(source(data))
    assert bytes(gcs.held) == data
    assert up.stats.resumed_from == 2 * KB256 and up.stats.bytes_sent == 2 * KB256


@pytest.mark.parametrize(
    ("status", "word"), [(404, "unknown"), (410, "expired"), (499, "cancelled")]
)
def test_dead_sessions(status: int, word: str) -> None:
    up = ResumableUpload(
        client(FakeGcs(10, first_status=status)), "http://gcs/s", 10, chunk_size=KB256, platform="t"
    )
    with pytest.raises(UploadSessionExpired, match=word):
        up.send(source(b"0123456789"))


def test_md5_mismatch_and_wrong_size_are_permanent() -> None:
    data = b"x" * 1000
    gcs = FakeGcs(len(data))
    gcs.md5_override = "AAAA"
    up = ResumableUpload(client(gcs), "http://gcs/s", len(data), chunk_size=KB256, platform="t")
    with pytest.raises(PermanentError, match="MD5"):
        up.send(source(data))
    up = ResumableUpload(
        client(FakeGcs(len(data))), "http://gcs/s", len(data), chunk_size=KB256, platform="t"
    )
    with pytest.raises(PermanentError, match="ended at 999"):
        up.send(source(data[:999]))


def test_transient_failures_retry_with_a_status_query() -> None:
    data = b"y" * (2 * KB256)
    gcs = FakeGcs(len(data))
    failures = iter([503, 500])

    def flaky(request: httpx.Request) -> httpx.Response:
        if request.content and (code := next(failures, None)):
            return httpx.Response(code)
        return gcs(request)

    up = ResumableUpload(
        client(flaky), "http://gcs/s", len(data), chunk_size=KB256, platform="t", backoff_base=0.01
    )
    up.send(source(data))
    assert bytes(gcs.held) == data and up.stats.retries == 2
    never = ResumableUpload(
        client(lambda r: httpx.Response(503)),
        "http://gcs/s",
        5,
        chunk_size=KB256,
        platform="t",
        max_retries=1,
        backoff_base=0.01,
    )
    with pytest.raises(TransientError):
        never.send(source(b"12345"))


def test_chunk_size_must_be_aligned() -> None:
    with pytest.raises(ValueError):
        ResumableUpload(client(FakeGcs(1)), "u", 1, chunk_size=1000, platform="t")


def _request(method: str = "GET") -> httpx.Request:
    return httpx.Request(method, "https://tools.deepen.ai/api/v2/datasets/x?token=secret")


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, AuthError),
        (403, AuthError),
        (404, NotFoundError),
        (400, RemoteRejected),
        (503, TransientError),
        (429, TransientError),
    ],
)
def test_classify(status: int, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        classify(httpx.Response(status, json={"error": "why"}, request=_request()))
    assert "secret" not in str(info.value)
    assert classify(httpx.Response(200, json={"a": 1}, request=_request())) == {"a": 1}
    with pytest.raises(TransientError, match="not JSON"):
        classify(httpx.Response(200, text="<html>", request=_request()))


def remote(tmp_path: Path, **extra: Any) -> DeepenRemote:
    cfg = parse_config(
        {
            "remotes": {
                "dp": {
                    "platform": "deepen",
                    "url": "http://127.0.0.1:9",
                    "token": "t",
                    "client_id": "c",
                    **extra,
                }
            }
        },
        base_dir=tmp_path,
    )
    return DeepenRemote("dp", cfg.remotes["dp"], "t")


def test_a_week_old_session_is_dead_without_asking(tmp_path: Path) -> None:
    r = remote(tmp_path)
    assert isinstance(r, ResumableUploads)
    ref = {
        "deepen_dataset_id": "d",
        "upload_url": "http://127.0.0.1:9/x",
        "file_name": "3d_data.zip",
        "session_created_at": time.time() - 7 * 86400,
    }
    with pytest.raises(UploadSessionExpired, match=r"7\.0 days old"):
        r.resume_upload(Upload(ref=ref), 10, source(b"0123456789"))
    r.close()


def test_config_rules(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="client_id is required"):
        parse_config(
            {"remotes": {"dp": {"platform": "deepen", "url": "http://x", "token": "t"}}},
            base_dir=tmp_path,
        )
    with pytest.raises(
        ConfigError, match=r"remotes.dp.upload_chunk_size: must be a positive multiple of 256KiB"
    ):
        remote(tmp_path, upload_chunk_size="1000KB")
    assert remote(tmp_path).cfg.upload_chunk_size == 8 * 2**20


def test_geometry_flattening() -> None:
    assert box3d({"cx": 1, "cy": 2, "cz": 3, "l": 4, "w": 5, "h": 6, "rot_z": 0.5})[
        "rotation3D"
    ] == {"x": 0.0, "y": 0.0, "z": 0.5}
    q = box3d(
        {
            "cx": 0,
            "cy": 0,
            "cz": 0,
            "l": 1,
            "w": 1,
            "h": 1,
            "rot_z": 9.0,
            "quaternion": {"x": 0, "y": 0, "z": 0.3826834, "w": 0.9238795},
        }
    )
    assert q["rotation3D"]["z"] == pytest.approx(
        0.7853982, abs=1e-6
    )  # the quaternion wins over rot_z
    obj = label_object(
        {
            "label_id": "car: 4",
            "label_type": "box",
            "label_category_id": "car",
            "box": [1, 2, 3, 4],
            "attributes": {"b": 1, "a": 2},
        }
    )
    assert obj.shape_type == "2D_RECT" and obj.geometry == {
        "x": 1.0,
        "y": 2.0,
        "width": 3.0,
        "height": 4.0,
    }
    assert obj.attributes == [{"name": "a", "value": 2}, {"name": "b", "value": 1}]
    lane = label_object({"label_id": "l:1", "label_type": "lane", "polygons": [[[0, 0], [1, 1]]]})
    assert (lane.shape_type, lane.geometry) == ("POLYLINE", {"polygons": [[[0, 0], [1, 1]]]})
    point = label_object({"label_id": "p:1", "label_type": "3d_point", "point": [1, 2, 3]})
    assert point.geometry == {"point": [1, 2, 3]}


def test_a_server_that_keeps_nothing_is_not_fed_for_ever() -> None:
    data = b"z" * (2 * KB256)
    gcs = FakeGcs(len(data), keep=0.1)  # keeps nothing of a 256 KiB chunk
    up = ResumableUpload(
        client(gcs),
        "http://gcs/s",
        len(data),
        chunk_size=KB256,
        platform="t",
        max_retries=1,
        backoff_base=0.01,
    )
    with pytest.raises(TransientError, match="kept none"):
        up.send(source(data))
    assert len(gcs.requests) < 20
