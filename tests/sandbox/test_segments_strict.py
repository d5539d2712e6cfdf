"""The Segments.ai sandbox is as strict as the API: paths, auth, gzip, codes, paging, assets."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd_sandbox import run_in_thread
from tests.conftest import TOKEN, admin_call

AUTH = {"Authorization": f"APIKey {TOKEN}"}
CATS = {"format_version": "0.1", "categories": [{"id": 1, "name": "car"}]}


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with run_in_thread("segments", token=TOKEN, data_dir=tmp_path) as u:
        yield u


def call(url: str, method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
    headers = kw.pop("headers", AUTH)
    return httpx.request(
        method, f"{url}{path}", json=body, headers=headers, timeout=10, follow_redirects=False, **kw
    )


def dataset(url: str, name: str = "ds", task_type: str = "vector") -> str:
    r = call(
        url,
        "POST",
        "/user/datasets/",
        {"name": name, "task_type": task_type, "task_attributes": CATS},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["full_name"])


def asset(url: str, data: bytes = b"\x89PNG...", filename: str = "a.png") -> str:
    r = call(url, "POST", "/assets/", {"filename": filename})
    assert r.status_code == 201, r.text
    post = r.json()["presignedPostFields"]
    up = httpx.post(post["url"], data=post["fields"], files={"file": (filename, data)}, timeout=10)
    assert up.status_code == 204 and up.content == b"", up.text
    return str(r.json()["url"])


def image_sample(url: str, ds: str, name: str) -> dict[str, Any]:
    r = call(
        url,
        "POST",
        f"/datasets/{ds}/samples/",
        {"name": name, "attributes": {"image": {"url": asset(url)}}},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_auth_needs_the_apikey_scheme_and_the_key(url: str) -> None:
    r = call(url, "GET", "/user", headers={})
    assert r.status_code == 401 and "credentials were not provided" in r.json()["detail"]
    assert (
        call(url, "GET", "/user", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
    )
    assert (
        call(url, "GET", "/user", headers={"Authorization": f"ApiKey {TOKEN}"}).status_code == 401
    )
    assert call(url, "GET", "/user", headers={"Authorization": "APIKey nope"}).status_code == 401
    assert call(url, "GET", "/api_status/?lib_version=1.33.0").status_code == 200
    assert call(url, "GET", "/user").json()["username"] == "sandbox-user"


def test_exact_paths_with_trailing_slashes_and_no_redirects(url: str) -> None:
    ds = dataset(url)
    assert call(url, "GET", f"/datasets/{ds}/").status_code == 200
    # the docs' slash-less spelling is not served, and never redirected
    assert call(url, "GET", f"/datasets/{ds}").status_code == 404
    r = call(url, "POST", "/user/datasets", {"name": "x"})
    assert r.status_code == 404 and r.json() == {"detail": "Not found."}
    # /user and /users/{name} have no slash
    assert call(url, "GET", "/user/").status_code == 404
    assert call(url, "GET", "/users/sandbox-user").status_code == 200
    r = call(url, "PUT", f"/datasets/{ds}/")
    assert r.status_code == 405 and "not allowed" in r.json()["detail"]


def test_codes_and_bodies_of_creation_duplicates_and_absence(url: str) -> None:
    ds = dataset(url)
    r = call(url, "POST", "/user/datasets/", {"name": "ds"})
    assert r.status_code == 400 and "already exists" in json.dumps(r.json())
    assert call(url, "POST", "/user/datasets/", {"task_type": "vector"}).status_code == 400
    r = call(url, "POST", "/user/datasets/", {"name": "y", "task_type": "nonsense"})
    assert r.status_code == 400 and "task_type" in r.json()
    assert call(url, "GET", "/datasets/sandbox-user/nope/").json() == {"detail": "Not found."}
    s = image_sample(url, ds, "one")
    for key in ("uuid", "name", "metadata", "created_at", "created_by", "priority"):
        assert key in s
    r = call(
        url, "POST", f"/datasets/{ds}/samples/", {"name": "one", "attributes": s["attributes"]}
    )
    assert r.status_code == 400 and "already exists" in json.dumps(r.json())
    r = call(url, "GET", f"/labels/{s['uuid']}/ground-truth/")
    assert r.status_code == 404 and "not found" in r.json()["detail"].lower()
    body = {"label_status": "PRELABELED", "attributes": {"annotations": []}}
    assert call(url, "PUT", f"/labels/{s['uuid']}/ground-truth/", body).status_code == 201
    assert call(url, "PUT", f"/labels/{s['uuid']}/ground-truth/", body).status_code == 200
    assert call(url, "PUT", f"/labels/{s['uuid']}/no-such-set/", body).status_code == 404
    bad = {"label_status": "DONE", "attributes": {"annotations": []}}
    assert call(url, "PUT", f"/labels/{s['uuid']}/ground-truth/", bad).status_code == 400
    assert call(url, "DELETE", f"/samples/{s['uuid']}/").status_code == 204
    assert call(url, "GET", f"/samples/{s['uuid']}/").status_code == 404


def test_gzip_bodies_are_inflated_and_json_is_required(url: str) -> None:
    ds = dataset(url)
    payload = {"name": "gz", "attributes": {"image": {"url": asset(url)}}, "metadata": {"k": 1}}
    raw = gzip.compress(json.dumps(payload).encode())
    r = httpx.post(
        f"{url}/datasets/{ds}/samples/",
        content=raw,
        headers={**AUTH, "Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=10,
    )
    assert r.status_code == 201 and r.json()["metadata"] == {"k": 1}, r.text
    r = httpx.post(
        f"{url}/datasets/{ds}/samples/",
        content=b"not gzip",
        headers={**AUTH, "Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=10,
    )
    assert r.status_code == 400
    r = httpx.post(f"{url}/user/datasets/", content=b"name=x", headers=AUTH, timeout=10)
    assert r.status_code == 415


def test_sample_attributes_must_fit_the_task_type_and_point_at_uploaded_assets(url: str) -> None:
    ds = dataset(url, "pc", task_type="pointcloud-cuboid-sequence")
    img = {"image": {"url": asset(url)}}
    r = call(url, "POST", f"/datasets/{ds}/samples/", {"name": "a", "attributes": img})
    assert r.status_code == 400 and "attributes" in r.json()
    pcd = {"pcd": {"url": asset(url, b"pcd", "a.pcd"), "type": "pcd"}}
    ok = {"frames": [pcd]}
    assert (
        call(url, "POST", f"/datasets/{ds}/samples/", {"name": "a", "attributes": ok}).status_code
        == 201
    )
    ghost = {
        "frames": [
            {"pcd": {"url": f"{url}/s3/segmentsai-sandbox/assets/x/none.pcd", "type": "pcd"}}
        ]
    }
    r = call(url, "POST", f"/datasets/{ds}/samples/", {"name": "b", "attributes": ghost})
    assert r.status_code == 400 and "no uploaded asset" in json.dumps(r.json())
    # extra fields are kept as sent (the SDK would strip them; raw clients rely on it)
    extra = {"frames": [{**pcd, "name": "f0", "x-custom": {"a": [1, 2]}}]}
    r = call(url, "POST", f"/datasets/{ds}/samples/", {"name": "c", "attributes": extra})
    got = call(url, "GET", f"/samples/{r.json()['uuid']}/").json()["attributes"]
    assert got == extra


def test_bulk_create_returns_existing_samples_unchanged(url: str) -> None:
    ds = dataset(url)
    img = {"image": {"url": asset(url)}}
    r = call(url, "POST", f"/datasets/{ds}/samples_bulk/", [{"name": "a", "attributes": img}])
    assert r.status_code == 201
    first = r.json()[0]
    other = {"image": {"url": asset(url)}}
    r = call(
        url,
        "POST",
        f"/datasets/{ds}/samples_bulk/",
        [{"name": "a", "attributes": other}, {"name": "b", "attributes": img}],
    )
    assert r.status_code == 201
    assert r.json()[0] == first and r.json()[1]["name"] == "b"
    assert admin_call(url, "GET", "/counters")["created_samples"] == {ds: ["a", "b"]}


def test_paging_is_by_page_number_with_invalid_page_past_the_end(url: str) -> None:
    ds = dataset(url)
    assert call(url, "GET", f"/datasets/{ds}/samples/?per_page=2&page=1&sort=name").json() == []
    names = [f"s{i:02d}" for i in range(5)]
    for n in reversed(names):
        image_sample(url, ds, n)
    got = []
    for page in (1, 2, 3):
        r = call(url, "GET", f"/datasets/{ds}/samples/?per_page=2&page={page}&sort=name")
        assert r.status_code == 200
        got += [s["name"] for s in r.json()]
    assert got == names
    r = call(url, "GET", f"/datasets/{ds}/samples/?per_page=2&page=4&sort=name")
    assert r.status_code == 404 and r.json() == {"detail": "Invalid page."}
    by_created = call(url, "GET", f"/datasets/{ds}/samples/?sort=-created_at").json()
    assert [s["name"] for s in by_created] == names
    assert call(url, "GET", f"/datasets/{ds}/samples/?sort=colour").status_code == 400
    r = call(url, "GET", f"/datasets/{ds}/samples/?sort=name&name__contains=S0")
    assert len(r.json()) == 5


def test_label_sort_and_status_filter(url: str) -> None:
    ds = dataset(url)
    a, b, c = (image_sample(url, ds, n)["uuid"] for n in ("a", "b", "c"))
    body = {"label_status": "LABELED", "attributes": {"annotations": []}}
    for u in (b, a):
        assert call(url, "PUT", f"/labels/{u}/ground-truth/", body).status_code == 201
    q = "labelset=ground-truth&include_full_label=1&sort=-gt_label__updated_at"
    rows = call(url, "GET", f"/datasets/{ds}/samples/?{q}").json()
    # NULLs first when descending (PostgreSQL's order), then the newest label
    assert [r["uuid"] for r in rows] == [c, a, b]
    assert rows[0]["label"] is None and rows[1]["label"]["labelset"] == "ground-truth"
    rows = call(url, "GET", f"/datasets/{ds}/samples/?{q}&label_status=LABELED").json()
    assert [r["uuid"] for r in rows] == [a, b]
    rows = call(url, "GET", f"/datasets/{ds}/samples/?labelset=ground-truth&sort=name").json()
    assert [r["label"]["label_status"] for r in rows] == ["LABELED", "LABELED", "UNLABELED"]
    assert (
        call(url, "GET", f"/datasets/{ds}/samples/?label_status=DONE&sort=name").status_code == 400
    )


def test_presigned_post_checks_signature_policy_and_field_order(url: str) -> None:
    r = call(url, "POST", "/assets/", {"filename": "x.png"})
    post = r.json()["presignedPostFields"]
    fields = dict(post["fields"])
    assert set(fields) == {
        "acl",
        "Content-Type",
        "key",
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "policy",
        "x-amz-signature",
    }
    forged = {**fields, "key": fields["key"].replace(".png", "-other.png")}
    up = httpx.post(post["url"], data=forged, files={"file": ("x.png", b"1")}, timeout=10)
    assert up.status_code == 403 and b"<Code>AccessDenied</Code>" in up.content
    unsigned = {**fields, "x-amz-signature": "0" * 64}
    up = httpx.post(post["url"], data=unsigned, files={"file": ("x.png", b"1")}, timeout=10)
    assert up.status_code == 403 and b"SignatureDoesNotMatch" in up.content
    without = {k: v for k, v in fields.items() if k != "policy"}
    up = httpx.post(post["url"], data=without, files={"file": ("x.png", b"1")}, timeout=10)
    assert up.status_code == 400
    up = httpx.post(post["url"], data=fields, files={"file": ("x.png", b"payload")}, timeout=10)
    assert up.status_code == 204
    got = httpx.get(r.json()["url"], timeout=10)
    assert got.status_code == 200 and got.content == b"payload"


def test_releases_are_pending_then_succeed_with_a_release_file(url: str) -> None:
    ds = dataset(url)
    s = image_sample(url, ds, "one")
    body = {"label_status": "REVIEWED", "attributes": {"annotations": []}}
    call(url, "PUT", f"/labels/{s['uuid']}/ground-truth/", body)
    admin_call(url, "POST", "/config", json={"release_seconds": 0.2})
    r = call(url, "POST", f"/datasets/{ds}/releases/", {"name": "v1", "description": "d"})
    assert r.status_code == 201
    assert r.json()["status"] == "PENDING" and r.json()["attributes"] == {"url": None}
    assert call(url, "POST", f"/datasets/{ds}/releases/", {"name": "v1"}).status_code == 400
    time.sleep(0.3)
    rel = call(url, "GET", f"/datasets/{ds}/releases/v1/").json()
    assert rel["status"] == "SUCCEEDED" and rel["samples_count"] == 1
    doc = httpx.get(rel["attributes"]["url"], timeout=10).json()
    (sample,) = doc["dataset"]["samples"]
    assert sample["name"] == "one"
    assert sample["labels"]["ground-truth"]["label_status"] == "REVIEWED"


def test_throttling_is_drf_429_with_retry_after(url: str) -> None:
    admin_call(url, "POST", "/config", json={"rate_windows": [[2, 60]]})
    assert call(url, "GET", "/user").status_code == 200
    assert call(url, "GET", "/user").status_code == 200
    r = call(url, "GET", "/user")
    assert r.status_code == 429 and "throttled" in r.json()["detail"]
    assert int(r.headers["Retry-After"]) >= 1
