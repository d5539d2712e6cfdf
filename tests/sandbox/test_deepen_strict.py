"""The Deepen sandbox and its GCS-style resumable endpoint, over real loopback HTTP."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd_sandbox.deepen import CLIENT_ID
from tests.conftest import TOKEN, admin_call

KB256 = 256 * 1024
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from syncd_sandbox import run_in_thread

    with run_in_thread("deepen", token=TOKEN, data_dir=tmp_path_factory.mktemp("deepen")) as u:
        yield u


@pytest.fixture(autouse=True)
def reset(url: str) -> Iterator[None]:
    yield
    admin_call(url, "DELETE", "/faults")
    admin_call(
        url, "POST", "/config", json={"keep_fraction": None, "keep_times": None, "clock_offset": 0}
    )


def create(url: str, size: int, **extra: Any) -> dict[str, Any]:
    body = {
        "dataset_name": "t",
        "dataset_type": "3d",
        "dataset_format": "default",
        "labelling_mode": "frame_by_frame",
        "files": [{"file_size": size, "file_type": "application/zip"}],
        **extra,
    }
    r = httpx.post(f"{url}/api/v2/clients/{CLIENT_ID}/datasets", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    return dict(r.json())


def put(session: str, data: bytes, crange: str | None) -> httpx.Response:
    headers = {"Content-Range": crange} if crange else {}
    return httpx.put(session, content=data, headers=headers, timeout=30)


def test_gcs_308_semantics(url: str) -> None:
    data = os.urandom(3 * KB256 + 1000)
    total = len(data)
    session = create(url, total)["files"][0]["resumable_upload_url"]
    # nothing persisted yet: 308 WITHOUT Range (never bytes=0-0)
    r = put(session, b"", f"bytes */{total}")
    assert r.status_code == 308 and "range" not in r.headers
    r = put(session, data[:KB256], f"bytes 0-{KB256 - 1}/{total}")
    assert r.status_code == 308 and r.headers["range"] == f"bytes=0-{KB256 - 1}"
    # a gap: 503 text/plain naming what is held
    r = put(session, data[2 * KB256 : 3 * KB256], f"bytes {2 * KB256}-{3 * KB256 - 1}/{total}")
    assert r.status_code == 503 and f"exceeds already uploaded size of {KB256} byte(s)" in r.text
    assert r.headers["content-type"].startswith("text/plain")
    # a resend that starts earlier: the known bytes are skipped
    r = put(session, data[: 2 * KB256], f"bytes 0-{2 * KB256 - 1}/{total}")
    assert r.status_code == 308 and r.headers["range"] == f"bytes=0-{2 * KB256 - 1}"
    # Content-Range must match the body
    assert put(session, data[:10], f"bytes {2 * KB256}-{2 * KB256 + 20}/{total}").status_code == 400
    # the final chunk completes: 200 + object JSON with size and MD5
    r = put(session, data[2 * KB256 :], f"bytes {2 * KB256}-{total - 1}/{total}")
    assert r.status_code == 200
    obj = r.json()
    assert obj["size"] == str(total)
    assert obj["md5Hash"] == base64.b64encode(hashlib.md5(data).digest()).decode()
    # after completion a status query answers 200 with the object
    r = put(session, b"", f"bytes */{total}")
    assert r.status_code == 200 and r.json()["size"] == str(total)


def test_unknown_total_then_status_query_finalises(url: str) -> None:
    data = os.urandom(2 * KB256)
    session = create(url, len(data))["files"][0]["resumable_upload_url"]
    assert put(session, data, f"bytes 0-{len(data) - 1}/*").status_code == 308
    assert put(session, b"", "bytes */*").status_code == 308
    r = put(session, b"", f"bytes */{len(data)}")
    assert r.status_code == 200 and r.json()["size"] == str(len(data))


def test_single_put_and_wrong_sizes(url: str) -> None:
    data = os.urandom(1000)
    session = create(url, len(data))["files"][0]["resumable_upload_url"]
    assert put(session, data[:999], None).status_code == 400
    assert (
        put(session, data, "bytes 0-999/1001").status_code == 400
    )  # total differs from the object
    assert put(session, data, None).status_code == 200


def test_unaligned_chunk_keeps_only_whole_blocks_and_the_switch_keeps_less(url: str) -> None:
    data = os.urandom(4 * KB256)
    total = len(data)
    session = create(url, total)["files"][0]["resumable_upload_url"]
    r = put(session, data[: KB256 + 100], f"bytes 0-{KB256 + 99}/{total}")
    assert r.headers["range"] == f"bytes=0-{KB256 - 1}"
    admin_call(url, "POST", "/config", json={"keep_fraction": 0.5, "keep_times": 1})
    r = put(session, data[KB256:], f"bytes {KB256}-{total - 1}/{total}")  # final, but half kept
    assert r.status_code == 308 and r.headers["range"] == f"bytes=0-{KB256 + KB256 - 1}"
    r = put(session, data[2 * KB256 :], f"bytes {2 * KB256}-{total - 1}/{total}")
    assert r.status_code == 200


def test_expiry_cancel_and_unknown_sessions(url: str) -> None:
    session = create(url, 1000)["files"][0]["resumable_upload_url"]
    admin_call(url, "POST", "/config", json={"clock_offset": 7 * 86400 + 60})
    assert put(session, b"", "bytes */1000").status_code == 410
    admin_call(url, "POST", "/config", json={"clock_offset": 0})
    assert put(session, b"", "bytes */1000").status_code == 308
    assert httpx.delete(session).status_code == 499
    assert put(session, b"", "bytes */1000").status_code == 499
    other = session.replace("upload_id=", "upload_id=x")
    assert put(other, b"", "bytes */1000").status_code == 404


def test_api_is_strict(url: str) -> None:
    base = f"{url}/api/v2/clients/{CLIENT_ID}/datasets"
    good = {
        "dataset_name": "x",
        "dataset_type": "3d",
        "dataset_format": "default",
        "files": [{"file_size": 10, "file_type": "application/zip"}],
    }
    assert httpx.post(base, json=good).status_code == 401
    assert httpx.post(base, json=good, headers={"Authorization": TOKEN}).status_code == 401
    assert (
        httpx.post(f"{url}/api/v2/clients/other/datasets", json=good, headers=AUTH).status_code
        == 403
    )
    for bad in (
        {**good, "dataset_type": "lidar"},
        {**good, "dataset_format": None},
        {**good, "labelling_mode": "fast"},
        {**good, "files": []},
        {**good, "files": [{"file_size": 0, "file_type": "application/zip"}]},
        {**good, "files": [{"file_size": 10, "file_type": "application/x-tar"}]},
    ):
        r = httpx.post(base, json=bad, headers=AUTH)
        assert r.status_code == 400 and r.json()["error"], bad
    ds = httpx.post(base, json=good, headers=AUTH).json()
    assert ds["processing_status"] == "files_to_be_uploaded"
    process = f"{url}/api/v2/datasets/{ds['dataset_id']}/process_uploaded_data"
    r = httpx.post(process, json={"file_name": "3d_data.zip"}, headers=AUTH)
    assert r.status_code == 400 and "not complete" in r.json()["error"]
    assert put(ds["files"][0]["resumable_upload_url"], b"0123456789", None).status_code == 200
    assert httpx.post(process, json={"file_name": "data.zip"}, headers=AUTH).status_code == 400
    assert httpx.post(process, json={"file_name": "3d_data.zip"}, headers=AUTH).status_code == 200
    assert httpx.post(process, json={"file_name": "3d_data.zip"}, headers=AUTH).status_code == 400
    # ten bytes are not a zip: preprocessing fails with a reason
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        info = httpx.get(f"{url}/api/v2/datasets/{ds['dataset_id']}", headers=AUTH).json()
        if info["processing_status"] != "files_uploaded":
            break
        time.sleep(0.05)
    assert info["processing_status"] == "preprocessing_error"
    assert "zip" in info["processing_status_message"]
    assert httpx.get(f"{url}/api/v2/datasets/nope", headers=AUTH).status_code == 404


def test_data_dir_holds_the_object(url: str, tmp_path: Path) -> None:
    data = os.urandom(5000)
    ds = create(url, len(data))
    assert put(ds["files"][0]["resumable_upload_url"], data, None).status_code == 200
    path = Path(admin_call(url, "GET", f"/objects/{ds['dataset_id']}")["path"])
    assert path.read_bytes() == data
