"""Conformance: the official ``segments-ai`` SDK drives the Segments.ai sandbox.

The SDK validates every reply with its own pydantic models (strict checking
is hard-coded on), so each call below that returns proves the reply parses.
The SDK checks neither status codes nor ordering: those are asserted here
over raw HTTP (docs/platforms/segments.md, "Sandbox").
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import httpx
import pytest
from segments import SegmentsClient, SegmentsDataset
from segments.exceptions import AlreadyExistsError, AuthenticationError, NotFoundError
from segments.typing import Dataset, File, Label, LabelSummary, Release, Sample
from segments.utils import load_release

from syncd_sandbox import run_in_thread
from tests.conftest import TOKEN

CATEGORIES = {
    "format_version": "0.1",
    "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "bus"}],
}


def box(i: int, cat: int = 1) -> dict[str, object]:
    return {"id": i, "category_id": cat, "type": "bbox", "points": [[1.0, 2.0], [30.0, 40.0]]}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_in_thread("segments", token=TOKEN, data_dir=tmp_path_factory.mktemp("seg")) as u:
        yield u


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[SegmentsClient]:
    c = SegmentsClient(api_key=TOKEN, api_url=url)
    yield c
    c.close()


def raw(url: str, path: str) -> httpx.Response:
    return httpx.get(f"{url}{path}", headers={"Authorization": f"APIKey {TOKEN}"}, timeout=10)


def test_a_wrong_key_fails_at_construction(url: str) -> None:
    with pytest.raises(AuthenticationError):
        SegmentsClient(api_key="wrong", api_url=url)


def test_datasets_create_read_list_and_errors(client: SegmentsClient, url: str) -> None:
    ds = client.add_dataset(
        "flowers", "Some flowers.", task_type="vector", task_attributes=CATEGORIES
    )
    assert isinstance(ds, Dataset) and ds.full_name == "sandbox-user/flowers"
    assert ds.task_type == "vector" and ds.task_attributes is not None
    assert [c.name for c in ds.task_attributes.categories or []] == ["car", "bus"]
    got = client.get_dataset("sandbox-user/flowers")
    assert got.description == "Some flowers." and got.label_stats.TOTAL == 0
    assert "sandbox-user/flowers" in [d.full_name for d in client.get_datasets()]
    with pytest.raises(AlreadyExistsError):
        client.add_dataset("flowers")
    with pytest.raises(NotFoundError):
        client.get_dataset("sandbox-user/absent")
    org = client.add_dataset("org-set", organization="sandbox-org", task_type="pointcloud-cuboid")
    assert org.owner.username == "sandbox-org"
    updated = client.update_dataset("sandbox-user/flowers", description="Changed.")
    assert updated.description == "Changed."
    assert client.add_labelset("sandbox-user/flowers", "predictions").name == "predictions"
    assert {ls.name for ls in client.get_labelsets("sandbox-user/flowers")} == {
        "ground-truth",
        "predictions",
    }
    r = httpx.post(
        f"{url}/user/datasets/",
        json={"name": "raw-one"},
        headers={"Authorization": f"APIKey {TOKEN}"},
        timeout=10,
    )
    assert r.status_code == 201


def test_assets_samples_labels_and_listing(client: SegmentsClient, url: str) -> None:
    ds = client.add_dataset("cats", task_type="vector", task_attributes=CATEGORIES).full_name
    asset = client.upload_asset(io.BytesIO(b"\x89PNG-cat-1"), "cat1.png")
    assert isinstance(asset, File)
    assert httpx.get(asset.url, timeout=10).content == b"\x89PNG-cat-1"
    one = client.add_sample(
        ds, "cat1.png", {"image": {"url": asset.url}}, metadata={"city": "Ghent"}
    )
    assert isinstance(one, Sample) and one.metadata == {"city": "Ghent"}
    more = client.add_samples(
        ds,
        [
            {
                "name": f"cat{i}.png",
                "attributes": {"image": {"url": asset.url}},
                "metadata": {"city": "Leuven"},
            }
            for i in range(2, 6)
        ],
    )
    assert [s.name for s in more] == [f"cat{i}.png" for i in range(2, 6)]
    # bulk creation again: the same samples back, nothing new
    again = client.add_samples(
        ds, [{"name": "cat2.png", "attributes": {"image": {"url": asset.url}}}]
    )
    assert again[0].uuid == more[0].uuid
    with pytest.raises(AlreadyExistsError):
        client.add_sample(ds, "cat1.png", {"image": {"url": asset.url}})
    assert client.get_sample(one.uuid).name == "cat1.png"
    assert client.update_sample(one.uuid, priority=5).priority == 5

    # labels: add (PUT, gzip), read, update (PATCH)
    with pytest.raises(NotFoundError):
        client.get_label(one.uuid, "ground-truth")
    lab = client.add_label(
        one.uuid, "ground-truth", {"format_version": "0.1", "annotations": [box(1)]}, score=0.8
    )
    assert isinstance(lab, Label) and lab.label_status == "PRELABELED" and lab.score == 0.8
    client.add_label(
        more[1].uuid, "ground-truth", {"annotations": [box(1, 2)]}, label_status="LABELED"
    )
    read = client.get_label(one.uuid, "ground-truth")
    assert read.labelset == "ground-truth" and read.attributes is not None
    assert read.attributes.annotations[0].category_id == 1  # type: ignore[union-attr]
    upd = client.update_label(one.uuid, "ground-truth", label_status="REVIEWED")
    assert upd.label_status == "REVIEWED" and upd.score == 0.8 and upd.updated_at > lab.updated_at

    # listing: filters, sorts and pages; every item parses as Sample
    page1 = client.get_samples(ds, per_page=2, page=1, sort="name")
    page2 = client.get_samples(ds, per_page=2, page=2, sort="name")
    page3 = client.get_samples(ds, per_page=2, page=3, sort="name")
    names = [s.name for s in page1 + page2 + page3]
    assert names == [f"cat{i}.png" for i in range(1, 6)]
    with pytest.raises(NotFoundError):
        client.get_samples(ds, per_page=2, page=4)
    assert [s.name for s in client.get_samples(ds, name="cat3")] == ["cat3.png"]
    leuven = client.get_samples(ds, metadata="city:Leuven")
    assert len(leuven) == 4
    labelled = client.get_samples(ds, labelset="ground-truth", label_status=["REVIEWED", "LABELED"])
    assert {s.name for s in labelled} == {"cat1.png", "cat3.png"}
    assert all(isinstance(s.label, LabelSummary) for s in labelled)
    full = client.get_samples(
        ds,
        labelset="ground-truth",
        include_full_label=True,
        sort="gt_label__updated_at",
        direction="desc",
    )
    with_label = [s for s in full if s.label is not None]
    assert [s.name for s in with_label] == ["cat1.png", "cat3.png"]  # newest change first
    assert all(isinstance(s.label, Label) for s in with_label)
    newest = client.get_samples(ds, sort="created_at", direction="desc", per_page=1)
    assert newest[0].name == "cat5.png"

    # raw checks the SDK cannot make: codes and order on the wire
    r = raw(url, f"/datasets/{ds}/samples/?per_page=2&page=2&sort=-name")
    assert r.status_code == 200 and [s["name"] for s in r.json()] == ["cat3.png", "cat2.png"]
    assert raw(url, f"/datasets/{ds}/samples/?per_page=2&page=9&sort=name").status_code == 404

    # deletions
    assert (
        client.delete_samples(
            ds, [more[3].uuid, "00000000-0000-0000-0000-000000000000"]
        ).deleted_count
        == 1
    )
    client.delete_sample(more[2].uuid)
    with pytest.raises(NotFoundError):
        client.get_sample(more[2].uuid)
    client.delete_label(one.uuid, "ground-truth")
    with pytest.raises(NotFoundError):
        client.get_label(one.uuid, "ground-truth")


def test_point_cloud_and_multisensor_samples_and_labels(client: SegmentsClient) -> None:
    cats = {"format_version": "0.1", "categories": [{"id": 1, "name": "car"}]}
    ds = client.add_dataset(
        "drives", task_type="multisensor-sequence", task_attributes=cats
    ).full_name
    pcd = client.upload_asset(io.BytesIO(b"# .PCD v0.7"), "f1.pcd").url
    img = client.upload_asset(io.BytesIO(b"\x89PNG"), "f1.png").url
    attrs = {
        "sensors": [
            {
                "name": "lidar",
                "task_type": "pointcloud-cuboid-sequence",
                "attributes": {"frames": [{"pcd": {"url": pcd, "type": "pcd"}, "name": "f1"}]},
            },
            {
                "name": "camera_image_0",
                "task_type": "image-vector-sequence",
                "attributes": {"frames": [{"image": {"url": img}, "name": "f1"}]},
            },
        ]
    }
    s = client.add_sample(ds, "drive-1", attrs)
    cuboid = {
        "id": 1,
        "category_id": 1,
        "type": "cuboid",
        "position": {"x": 1, "y": 2, "z": 0.5},
        "dimensions": {"x": 4, "y": 2, "z": 1.5},
        "yaw": 0.1,
        "track_id": 1,
        "is_keyframe": True,
    }
    label = {
        "sensors": [
            {
                "name": "lidar",
                "task_type": "pointcloud-cuboid-sequence",
                "attributes": {"format_version": "0.2", "frames": [{"annotations": [cuboid]}]},
            }
        ]
    }
    lab = client.add_label(s.uuid, "ground-truth", label, label_status="LABELED")
    assert lab.label_type == "multisensor-sequence"
    assert client.get_sample(s.uuid).attributes is not None


def test_releases_pending_then_loaded_by_the_sdk(client: SegmentsClient) -> None:
    ds = client.add_dataset("rel", task_type="vector", task_attributes=CATEGORIES).full_name
    url = client.upload_asset(io.BytesIO(b"\x89PNG"), "r.png").url
    s = client.add_sample(ds, "r.png", {"image": {"url": url}})
    client.add_label(s.uuid, "ground-truth", {"annotations": [box(1)]}, label_status="LABELED")
    rel = client.add_release(ds, "v0.1", "first")
    assert isinstance(rel, Release) and rel.status == "PENDING" and rel.attributes.url is None
    deadline = time.monotonic() + 10
    while rel.status == "PENDING" and time.monotonic() < deadline:
        time.sleep(0.1)
        rel = client.get_release(ds, "v0.1")
    assert rel.status == "SUCCEEDED" and rel.samples_count == 1
    assert [r.name for r in client.get_releases(ds)] == ["v0.1"]
    doc = load_release(rel)
    assert doc["dataset"]["samples"][0]["labels"]["ground-truth"]["label_status"] == "LABELED"
    dataset = SegmentsDataset(rel, labelset="ground-truth", segments_dir=None, load_images=False)
    assert len(dataset) == 1
    with pytest.raises(AlreadyExistsError):
        client.add_release(ds, "v0.1")
    client.delete_release(ds, "v0.1")
    with pytest.raises(NotFoundError):
        client.get_release(ds, "v0.1")


def test_sdk_sends_gzip_bodies_the_sandbox_inflates(client: SegmentsClient) -> None:
    # add_sample and add_label compress by default: metadata arriving intact proves inflation
    ds = client.add_dataset("gz", task_type="vector", task_attributes=CATEGORIES).full_name
    url = client.upload_asset(io.BytesIO(b"\x89PNG"), "g.png").url
    s = client.add_sample(ds, "g.png", {"image": {"url": url}}, metadata={"nested": {"a": [1, 2]}})
    assert client.get_sample(s.uuid).metadata == {"nested": {"a": [1, 2]}}
