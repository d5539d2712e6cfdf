"""The Segments.ai backend: error mapping, idempotent registration, the cursors, paging cost."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from segments import SegmentsClient

from syncd.config import SegmentsConfig, load_config
from syncd.errors import (
    AuthError,
    ConfigError,
    NotFoundError,
    PermanentError,
    RateLimited,
    RemoteRejected,
)
from syncd.remotes.base import ChangedLabels, PushData, PushFile
from syncd.remotes.segments import SegmentsRemote, classify, micros
from syncd.remotes.segments_wire import Frame, camera_pose, sample_attributes
from syncd_sandbox import run_in_thread
from tests.conftest import TOKEN, admin_call, write_config

_names = itertools.count(1)
CUBE = {
    "type": "3D_BOX",
    "className": "Car",
    "trackId": "a",
    "contour": {
        "center3D": {"x": 1, "y": 2, "z": 0.5},
        "size3D": {"x": 4, "y": 2, "z": 1.5},
        "rotation3D": {"x": 0, "y": 0, "z": 0.3},
    },
}


def reply(status: int, content: str, headers: dict[str, str] | None = None) -> httpx.Response:
    req = httpx.Request("GET", "http://x/datasets/o/d/samples/?page=1")
    return httpx.Response(
        status,
        content=content.encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        request=req,
    )


@pytest.mark.parametrize(
    ("status", "body", "error", "code"),
    [
        (401, '{"detail":"Invalid API key."}', AuthError, "401"),
        (403, '{"detail":"You do not have permission."}', AuthError, "403"),
        (404, '{"detail":"Not found."}', NotFoundError, "404"),
        (
            400,
            '{"name":["A sample with this name already exists."]}',
            RemoteRejected,
            "NAME_DUPLICATED",
        ),
        (400, '{"attributes":["bad"]}', RemoteRejected, "400"),
        (429, '{"detail":"Request was throttled."}', RateLimited, "429"),
        (200, '{"detail":"Request was throttled."}', RateLimited, "200"),
    ],
)
def test_replies_map_to_our_errors(
    status: int, body: str, error: type[Exception], code: str
) -> None:
    with pytest.raises(error) as info:
        classify(reply(status, body))
    assert getattr(info.value, "code", None) == code


def test_success_bodies_and_timestamps() -> None:
    assert classify(reply(204, "")) is None
    assert classify(reply(201, '[{"uuid":"u"}]')) == [{"uuid": "u"}]
    assert micros("2026-12-01T01:00:00.000001Z") - micros("2026-12-01T01:00:00Z") == 1


def test_camera_pose_inverts_the_lidar_to_camera_matrix() -> None:
    # a camera 1 m ahead of the LiDAR, looking forward (x): OpenCV axes x right, y down, z ahead
    m = [0.0, -1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 1.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0]
    pose = camera_pose(m)
    assert pose["translation"] == pytest.approx({"x": 1.0, "y": 0.0, "z": 0.0})
    q = pose["rotation"]
    assert sum(v * v for v in q.values()) == pytest.approx(1.0)
    # the camera's axes in the LiDAR frame: z (viewing) forward, x right (-y), y down (-z)
    assert rotate(q, (0, 0, 1)) == pytest.approx((1, 0, 0))
    assert rotate(q, (1, 0, 0)) == pytest.approx((0, -1, 0))
    assert rotate(q, (0, 1, 0)) == pytest.approx((0, 0, -1))


def rotate(q: dict[str, float], v: tuple[float, float, float]) -> tuple[float, ...]:
    w, x, y, z = q["qw"], q["qx"], q["qy"], q["qz"]
    m = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return tuple(sum(m[i][k] * v[k] for k in range(3)) for i in range(3))


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_in_thread("segments", token=TOKEN, data_dir=tmp_path_factory.mktemp("seg")) as u:
        yield u


def remote(url: str, **extra: Any) -> SegmentsRemote:
    cfg = SegmentsConfig(platform="segments", url=url, token=TOKEN, max_retries=1, **extra)
    return SegmentsRemote("sb", cfg, TOKEN)


def push_file(key: str, device: str, data: bytes) -> PushFile:
    return PushFile(
        key=key, device=device, filename=key.rsplit("/", 1)[-1], size=len(data), body=lambda: [data]
    )


def frame_files(name: str, prelabel: bool = True) -> list[PushFile]:
    files = [
        push_file(f"lidar_point_cloud_0/{name}.pcd", "lidar_point_cloud_0", b"# .PCD v0.7\n"),
        push_file(f"camera_image_0/{name}.png", "camera_image_0", b"\x89PNG" + name.encode()),
    ]
    if prelabel:
        files.append(
            push_file(
                f"result/{name}.json",
                "result",
                b'{"objects": [%s]}' % str(CUBE).replace("'", '"').encode(),
            )
        )
    return files


def test_a_crash_between_sample_and_label_ends_with_both_once(url: str) -> None:
    r = remote(url)
    try:
        ds, _ = r.ensure_dataset(f"crash-{next(_names)}", "LIDAR_FUSION")
        r.bind_classes(ds.id, {"Car": "CUBOID"})
        refs = r.upload_files(ds.id, frame_files("f1"))
        assert [ref["kind"] for ref in refs] == ["asset", "asset", "prelabel"]
        # the label PUT fails after the sample was created (the process "dies" there)
        admin_call(
            url,
            "POST",
            "/faults",
            json={"method": "PUT", "path": "^/labels/", "status": 500, "times": None},
        )
        try:
            with pytest.raises(Exception, match="HTTP 500"):
                r.register(ds.id, [PushData("f1", refs)], scene=None)
        finally:
            admin_call(url, "DELETE", "/faults")
        # the sample exists but waits for its label: not reported as registered
        assert r.existing_names(ds.id, ["f1"]) == {"f1"}
        assert r.find_names(ds.id, ["f1"]) == {}
        ids = r.register(ds.id, [PushData("f1", refs)], scene=None)
        assert r.find_names(ds.id, ["f1"]) == ids
        samples = admin_call(url, "GET", f"/datasets/{ds.id}/samples")["samples"]
        assert [s["name"] for s in samples] == ["f1"]
        label = samples[0]["labels"]["ground-truth"]
        assert label["label_status"] == "PRELABELED"
        (sensor,) = label["attributes"]["sensors"]
        (ann,) = sensor["attributes"]["frames"][0]["annotations"]
        assert ann["position"] == {"x": 1.0, "y": 2.0, "z": 0.5} and ann["yaw"] == 0.3
        # registering again (another crash later) creates nothing
        assert r.register(ds.id, [PushData("f1", refs)], scene=None) == ids
        assert len(admin_call(url, "GET", f"/datasets/{ds.id}/samples")["samples"]) == 1
    finally:
        r.close()


def test_samples_of_every_shape_parse_with_the_sdk(url: str) -> None:
    """Point-cloud sequences with calibrated cameras, single point clouds, images: the SDK
    reads back what the remote created, pre-labels included."""
    cases = [
        ("pointcloud-cuboid-sequence", "LIDAR_BASIC", True),
        ("pointcloud-cuboid", "LIDAR_BASIC", False),
        ("multisensor-sequence", "LIDAR_FUSION", True),
    ]
    client = SegmentsClient(api_key=TOKEN, api_url=url)
    try:
        for task, dtype, scene in cases:
            r = remote(url, task_type=task, categories=("Car",))
            try:
                ds, created = r.ensure_dataset(f"shape-{next(_names)}", dtype)
                assert created
                frames = ["f1", "f2"] if scene else ["f1"]
                data = [PushData(n, r.upload_files(ds.id, frame_files(n))) for n in frames]
                ids = r.register(ds.id, data, scene="scene_x" if scene else None)
                (uuid,) = ids.values()
                sample = client.get_sample(uuid, labelset="ground-truth")
                assert sample.attributes is not None
                label = client.get_label(uuid, "ground-truth")
                assert label.label_type == task and label.label_status == "PRELABELED"
                items = [i for page in r.new_items(ds.id, None) for i in page.items]
                assert [i.name for i in items] == (["scene_x", "f1", "f2"] if scene else ["f1"])
                labels = r.labels(ds.id, [i.id for i in items if i.kind != "SCENE"])
                assert {lab.item_id for lab in labels} == {i.id for i in items if i.kind != "SCENE"}
                for lab in labels:
                    assert [(o.class_name, o.shape_type) for o in lab.objects] == [
                        ("Car", "3D_BOX")
                    ]
            finally:
                r.close()
    finally:
        client.close()


def test_a_scene_in_a_single_frame_task_type_is_refused_naming_the_setting(url: str) -> None:
    r = remote(url, task_type="pointcloud-cuboid", categories=("Car",))
    try:
        ds, _ = r.ensure_dataset(f"refuse-{next(_names)}", "LIDAR_BASIC")
        data = [PushData(n, r.upload_files(ds.id, frame_files(n, False))) for n in ("a", "b")]
        with pytest.raises(PermanentError, match="task_type"):
            r.register(ds.id, data, scene="scene_a")
    finally:
        r.close()


def test_paging_cursors_and_request_counts(url: str) -> None:
    r = remote(url, task_type="pointcloud-cuboid-sequence", categories=("Car",))
    r.per_page = 3
    assert isinstance(r, ChangedLabels)
    try:
        ds, _ = r.ensure_dataset(f"paging-{next(_names)}", "LIDAR_BASIC")
        names = [f"n{i:02d}" for i in range(8)]
        data = [PushData(n, r.upload_files(ds.id, frame_files(n, False))) for n in names]
        r.register(ds.id, data, scene=None)
        pages = list(r.new_items(ds.id, None))
        assert [i.name for p in pages for i in p.items] == names
        cursors = [int(p.cursor) for p in pages]
        assert cursors == sorted(cursors) and len(pages) == 3
        # nothing new: one request, the cursor stays
        before = r.http.requests_sent
        again = [i.name for p in r.new_items(ds.id, pages[-1].cursor) for i in p.items]
        assert again == [names[-1]]  # the newest is read again (equal times), then skipped
        assert r.http.requests_sent - before == 1
        # two more: found at the head of the newest-first listing, yielded oldest first
        more = [PushData(n, r.upload_files(ds.id, frame_files(n, False))) for n in ("x1", "x2")]
        r.register(ds.id, more, scene=None)
        fresh = [i.name for p in r.new_items(ds.id, pages[-1].cursor) for i in p.items]
        assert fresh == [names[-1], "x1", "x2"]
        # labels cursor: the first cycle marks "now", changes after it are found
        (mark,) = list(r.changed_items(ds.id, None))
        assert mark.items == [] and mark.cursor == "0"
        uuids = {i.name: i.id for p in r.new_items(ds.id, None) for i in p.items}
        for n in ("n03", "n01"):
            body = {"sample_uuid": uuids[n], "attributes": {"frames": [{"annotations": []}]}}
            admin_call(url, "POST", "/annotate", json=body)
        changed = list(r.changed_items(ds.id, mark.cursor))
        assert [i.name for p in changed for i in p.items] == ["n03", "n01"]
        states = r.item_states(ds.id, [uuids["n03"], uuids["n05"]])
        assert states[uuids["n03"]].annotation_status == "ANNOTATED"
        assert states[uuids["n05"]].status == "UNLABELED"
        # from the last cursor, only the overlap is read again: one request
        before = r.http.requests_sent
        again = list(r.changed_items(ds.id, changed[-1].cursor))
        assert r.http.requests_sent - before == 1
        assert {i.name for p in again for i in p.items} <= {"n03", "n01"}
        assert int(again[-1].cursor) >= int(changed[-1].cursor)
    finally:
        r.close()


def test_config_keys_are_validated_naming_key_and_value(tmp_path: Path) -> None:
    base = {"name": "s", "dataset": "d", "folder": tmp_path}
    for extra, words in (
        ('task_type = "cuboids"', ("task_type", "cuboids")),
        ('categories = ["Car", "Car"]', ("categories", "Car")),
        ('labelset = "bad/name"', ("labelset", "bad/name")),
    ):
        path = write_config(
            tmp_path / "c.toml", "http://x", [base], platform="segments", remote_extra=extra
        )
        with pytest.raises(ConfigError) as info:
            load_config(path)
        for w in words:
            assert w in str(info.value)


def _asset(device: str, filename: str) -> dict[str, Any]:
    return {"kind": "asset", "device": device, "filename": filename, "url": f"u://{filename}"}


def test_every_sensor_holds_every_frame_or_the_item_is_refused() -> None:
    full = [
        Frame(n, [_asset("lidar_point_cloud_0", f"{n}.pcd"), _asset("camera_image_0", f"{n}.png")])
        for n in ("a", "b")
    ]
    attrs = sample_attributes("multisensor-sequence", "scene_x", full, True)
    assert [s["name"] for s in attrs["sensors"]] == ["lidar", "camera_image_0"]
    assert all(len(s["attributes"]["frames"]) == 2 for s in attrs["sensors"])
    gap = [full[0], Frame("b", [_asset("lidar_point_cloud_0", "b.pcd")])]
    with pytest.raises(PermanentError, match="camera_image_0 lacks some frames"):
        sample_attributes("multisensor-sequence", "scene_x", gap, True)
    two = [
        Frame("a", [_asset("lidar_point_cloud_0", "a.pcd"), _asset("lidar_point_cloud_1", "a.bin")])
    ]
    with pytest.raises(PermanentError, match="2 point clouds"):
        sample_attributes("pointcloud-cuboid-sequence", "a", two, False)
    both = sample_attributes("multisensor-sequence", "a", two, False)
    assert [s["name"] for s in both["sensors"]] == ["lidar", "lidar_point_cloud_1"]
    assert both["sensors"][1]["attributes"]["frames"][0]["pcd"]["type"] == "binary-xyzi"


def test_transient_failures_are_retried_and_the_form_is_sent_whole_again(url: str) -> None:
    r = remote(url, task_type="pointcloud-cuboid-sequence", categories=("Car",))
    try:
        ds, _ = r.ensure_dataset(f"faults-{next(_names)}", "LIDAR_BASIC")
        admin_call(url, "POST", "/faults", json={"method": "POST", "path": "^/s3/", "status": 503})
        admin_call(
            url,
            "POST",
            "/faults",
            json={
                "method": "GET",
                "path": "/samples/$",
                "status": 429,
                "headers": {"Retry-After": "0"},
                "body": '{"detail":"Request was throttled. Expected available in 0 seconds."}',
            },
        )
        refs = r.upload_files(ds.id, frame_files("f1", prelabel=False))
        ids = r.register(ds.id, [PushData("f1", refs)], scene=None)
        assert r.find_names(ds.id, ["f1"]) == ids
        uploads = admin_call(url, "GET", "/counters")["uploads"]
        for ref in refs:
            key = ref["url"].split("/segmentsai-sandbox/", 1)[1]
            assert uploads[key] == 1
            assert httpx.get(ref["url"]).content.startswith((b"# .PCD", b"\x89PNG"))
        # a refused upload is permanent and names the store's code
        admin_call(
            url,
            "POST",
            "/faults",
            json={
                "method": "POST",
                "path": "^/s3/",
                "status": 403,
                "body": "<Error><Code>AccessDenied</Code></Error>",
            },
        )
        with pytest.raises(PermanentError, match="AccessDenied"):
            r.upload_files(ds.id, frame_files("f2", prelabel=False))
    finally:
        admin_call(url, "DELETE", "/faults")
        r.close()


def test_segments_keys_on_another_platform_are_an_error(tmp_path: Path) -> None:
    base = {"name": "s", "dataset": "d", "folder": tmp_path}
    path = write_config(
        tmp_path / "c.toml",
        "http://x",
        [base],
        platform="basicai",
        remote_extra='task_type = "vector"',
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(
        'remotes.sb.task_type: not a key of platform "basicai" (it belongs to segments)'
    )
    assert TOKEN not in str(info.value)  # the section is not echoed


def test_a_dataset_of_another_kind_is_a_config_error(url: str) -> None:
    name = f"kind-{next(_names)}"
    r = httpx.post(
        f"{url}/user/datasets/",
        json={"name": name, "task_type": "vector"},
        headers={"Authorization": f"APIKey {TOKEN}"},
    )
    assert r.status_code == 201
    rem = remote(url)
    try:
        with pytest.raises(ConfigError, match=r"dataset_type: 'LIDAR_FUSION'.*'vector'"):
            rem.ensure_dataset(name, "LIDAR_FUSION")
        ds, created = rem.ensure_dataset(name, "IMAGE")
        assert not created and ds.id == f"sandbox-user/{name}"
    finally:
        rem.close()


def test_an_organisation_owns_the_dataset_and_prelabels_go_to_their_labelset(url: str) -> None:
    r = remote(
        url,
        organization="sandbox-org",
        prelabel_labelset="predictions",
        task_type="pointcloud-cuboid-sequence",
        categories=("Car",),
    )
    try:
        ds, created = r.ensure_dataset(f"org-{next(_names)}", "LIDAR_BASIC")
        assert created and ds.id.startswith("sandbox-org/")
        labelsets = {ls["name"] for ls in r._dataset(ds.id, fresh=True)["labelsets"]}
        assert labelsets == {"ground-truth", "predictions"}
        refs = r.upload_files(ds.id, frame_files("f1"))
        ids = r.register(ds.id, [PushData("f1", refs)], scene=None)
        assert r.find_names(ds.id, ["f1"]) == ids
        (sample,) = admin_call(url, "GET", f"/datasets/{ds.id}/samples")["samples"]
        assert set(sample["labels"]) == {"predictions"}
        assert sample["labels"]["predictions"]["label_status"] == "PRELABELED"
        # the pulled labelset (ground-truth) has nothing yet: the item is unlabelled
        items = [i for p in r.new_items(ds.id, None) for i in p.items]
        assert [i.status for i in items] == ["UNLABELED"]
        assert r.labels(ds.id, [items[0].id]) == []
    finally:
        r.close()
