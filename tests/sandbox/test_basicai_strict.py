"""The BasicAI sandbox is as strict as the guide: auth, envelope, paging, lastId, limits, uploads."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd_sandbox import run_in_thread
from tests.conftest import TOKEN, admin_call

AUTH = {"Authorization": f"ApiKey {TOKEN}"}


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with run_in_thread("basicai", token=TOKEN, data_dir=tmp_path) as u:
        yield u


def get(
    url: str, path: str, headers: dict[str, str] | None = None, **params: Any
) -> httpx.Response:
    return httpx.get(
        f"{url}/api/v1{path}",
        params=params,
        headers=AUTH if headers is None else headers,
        timeout=10,
    )


def post(url: str, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1{path}", json=body, headers=AUTH if headers is None else headers, timeout=10
    )


def code(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    return str(r.json()["code"])


def dataset(url: str, name: str = "ds") -> int:
    r = post(url, "/dataset/create", {"name": name, "type": "LIDAR_FUSION"})
    return int(r.json()["data"]["id"])


def test_auth_needs_the_apikey_scheme_and_the_key(url: str) -> None:
    assert get(url, "/dataset/list", headers={}).status_code == 401
    assert (
        get(url, "/dataset/list", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
    )
    assert get(url, "/dataset/list", headers={"Authorization": "ApiKey nope"}).status_code == 401
    assert code(get(url, "/dataset/list")) == "OK"


def test_get_and_post_only_and_unknown_paths(url: str) -> None:
    r = httpx.put(f"{url}/api/v1/dataset/create", headers=AUTH, json={})
    assert r.status_code == 405
    assert get(url, "/dataset/nothing").status_code == 404


def test_business_errors_are_http_200_with_a_code(url: str) -> None:
    dataset(url, "dup")
    assert code(post(url, "/dataset/create", {"name": "DUP", "type": "IMAGE"})) == "NAME_DUPLICATED"
    assert code(post(url, "/dataset/create", {"name": "x", "type": "VIDEO"})) == "ILLEGAL_PARAM"
    assert code(get(url, "/dataset/info/999")) == "RESOURCE_NOT_FOUND"
    r = httpx.post(
        f"{url}/api/v1/dataset/create",
        content=b"{",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert code(r) == "ILLEGAL_FORMAT"


def test_license_expired_is_an_envelope_code(url: str) -> None:
    admin_call(url, "POST", "/config", json={"license_expired": True})
    assert code(get(url, "/dataset/list")) == "LICENSE_EXPIRED"


@pytest.mark.parametrize("value", ["0", "101", "-1", "ten"])
def test_paging_bounds_are_illegal_params(url: str, value: str) -> None:
    ds = dataset(url)
    assert code(get(url, f"/dataset/listItemById/{ds}", limit=value)) == "ILLEGAL_PARAM"
    assert code(get(url, "/dataset/list", pageSize=value)) == "ILLEGAL_PARAM"
    assert code(get(url, f"/dataset/listItem/{ds}", pageSize=value)) == "ILLEGAL_PARAM"


def test_total_only_on_the_first_page(url: str) -> None:
    for n in range(3):
        dataset(url, f"d{n}")
    first = get(url, "/dataset/list", pageNo=1, pageSize=2).json()["data"]
    second = get(url, "/dataset/list", pageNo=2, pageSize=2).json()["data"]
    assert first["total"] == 3 and len(first["list"]) == 2
    assert "total" not in second and len(second["list"]) == 1


def test_last_id_walks_in_id_order_and_sees_items_added_meanwhile(url: str) -> None:
    ds = dataset(url)
    admin_call(url, "POST", f"/datasets/{ds}/items", json={"names": [f"n{i}" for i in range(25)]})
    seen: list[int] = []
    last = None
    added = False
    while True:
        params: dict[str, Any] = {"limit": 10}
        if last is not None:
            params["lastId"] = last
        rows = get(url, f"/dataset/listItemById/{ds}", **params).json()["data"]["list"]
        assert "total" not in get(url, f"/dataset/listItemById/{ds}", **params).json()["data"]
        seen += [r["id"] for r in rows]
        if not added:
            admin_call(url, "POST", f"/datasets/{ds}/items", json={"names": ["late1", "late2"]})
            added = True
        if len(rows) < 10:
            break
        last = rows[-1]["id"]
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 27


def test_ids_per_query_at_most_100(url: str) -> None:
    ds = dataset(url)
    ids = ",".join(str(i) for i in range(1, 102))
    assert (
        code(get(url, f"/dataset/batchDataAnnotationResult/{ds}/", dataIds=ids)) == "ILLEGAL_PARAM"
    )
    ok = ",".join(str(i) for i in range(1, 101))
    assert code(get(url, f"/dataset/batchDataAnnotationResult/{ds}/", dataIds=ok)) == "OK"


def test_rate_windows_answer_429_with_retry_after(url: str) -> None:
    admin_call(url, "POST", "/config", json={"rate_windows": [[5, 1.0], [8, 60.0]]})
    statuses = [get(url, "/dataset/list").status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    r = get(url, "/dataset/list")
    assert r.status_code == 429 and 0 < float(r.headers["Retry-After"]) <= 1.0
    time.sleep(1.05)
    statuses = [get(url, "/dataset/list").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]  # now the minute window (8) is full
    assert float(get(url, "/dataset/list").headers["Retry-After"]) > 50


def test_presigned_upload_then_registration_checks_the_object(url: str) -> None:
    ds = dataset(url)
    files = [{"deviceName": "lidar_point_cloud_0", "filename": "000.pcd", "size": 4}]
    r = post(url, "/storage/batchGeneratePreSignedUploadUrl", files).json()
    assert r["code"] == "OK"
    put_url, path = r["data"][0]["preSignedUrl"], r["data"][0]["path"]
    entry = {"name": "000", "files": [{**files[0], "path": path}]}
    # not uploaded yet
    assert (
        code(post(url, f"/dataset/batchAddData/{ds}", {"dataList": [entry]}))
        == "RESOURCE_NOT_FOUND"
    )
    # an Authorization header beside the signature is refused, as S3 does
    assert httpx.put(put_url, content=b"abcd", headers=AUTH).status_code == 400
    assert httpx.put(put_url, content=b"abcd").status_code == 200
    wrong = {"name": "000", "files": [{**files[0], "size": 5, "path": path}]}
    assert code(post(url, f"/dataset/batchAddData/{ds}", {"dataList": [wrong]})) == "ILLEGAL_PARAM"
    r = post(url, f"/dataset/batchAddData/{ds}", {"dataList": [entry]}).json()
    assert r["code"] == "OK" and r["data"][0]["name"] == "000"
    assert (
        code(post(url, f"/dataset/batchAddData/{ds}", {"dataList": [entry]})) == "NAME_DUPLICATED"
    )


def test_presign_refuses_files_over_1gb_and_bad_bodies(url: str) -> None:
    big = [{"deviceName": "lidar_point_cloud_0", "filename": "a.pcd", "size": (1 << 30) + 1}]
    assert code(post(url, "/storage/batchGeneratePreSignedUploadUrl", big)) == "ILLEGAL_PARAM"
    assert (
        code(post(url, "/storage/batchGeneratePreSignedUploadUrl", {"filename": "a"}))
        == "ILLEGAL_PARAM"
    )
    many = [{"deviceName": "d", "filename": f"{i}.pcd", "size": 1} for i in range(101)]
    assert code(post(url, "/storage/batchGeneratePreSignedUploadUrl", many)) == "ILLEGAL_PARAM"
