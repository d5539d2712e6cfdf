"""Push behaviours: names, splitting, added files, marker, failures, platform errors."""

from __future__ import annotations

import json
import time
from collections import Counter

from syncd.sampledata import write_bulk_unit, write_fusion_unit, write_scene_unit
from syncd.status import collect, render
from tests.conftest import query
from tests.pipeline.conftest import Env


def states(env: Env) -> list[tuple[str, str]]:
    return [tuple(r) for r in query(env.db, "SELECT unit, state FROM packages ORDER BY id")]  # type: ignore[misc]


def test_colliding_names_are_renamed_never_dropped(env: Env) -> None:
    write_fusion_unit(env.folder / "u1", frames=2, cameras=1, with_result=False)
    write_fusion_unit(env.folder / "u2", frames=2, cameras=1, with_result=False)
    write_scene_unit(env.folder / "u3", scene="scene_01", frames=1)
    write_scene_unit(env.folder / "u4", scene="scene_01", frames=1)
    code, _ = env.once()
    assert code == 0
    assert [s for _, s in states(env)] == ["done"] * 4
    names = sorted(i["name"] for i in env.remote_items() if i["parentId"] == 0)
    assert names == ["000001", "000001_u2", "000002", "000002_u2", "scene_01", "scene_01_u4"]
    renamed = query(env.db, "SELECT fields FROM events WHERE event = 'package.renamed'")
    assert [json.loads(f)["renames"] for (f,) in renamed] == [
        {"000001": "000001_u2", "000002": "000002_u2"},
        {"scene_01": "scene_01_u4"},
    ]
    # the renamed item keeps all its files (camera image joined by the new base name)
    u2 = next(i for i in env.remote_items() if i["name"] == "000001_u2")
    assert sorted(d["name"] for d in u2["content"]) == [
        "camera_config",
        "camera_image_0",
        "lidar_point_cloud_0",
    ]


def test_refuse_policy_fails_the_unit_with_the_names(env: Env) -> None:
    write_fusion_unit(env.folder / "a", frames=1, cameras=0, with_result=False)
    write_fusion_unit(env.folder / "b", frames=1, cameras=0, with_result=False)
    code, _ = env.once(name_collision="refuse")
    assert code == 1
    assert states(env) == [("a", "done"), ("b", "failed")]
    (err,) = query(env.db, "SELECT last_error FROM packages WHERE unit = 'b'")[0]
    assert "000001" in err and "would silently skip" in err
    assert query(env.db, "SELECT COUNT(*) FROM events WHERE event = 'unit.refused'") == [(1,)]
    assert len(env.calls()) == 1


def test_large_unit_is_split_without_separating_items(env: Env) -> None:
    write_fusion_unit(env.folder / "big", frames=6, cameras=2, with_result=True, points=3000)
    unit_bytes = sum(f.stat().st_size for f in (env.folder / "big").rglob("*") if f.is_file())
    code, _ = env.once(max_package_bytes=unit_bytes // 3)
    assert code == 0
    rows = query(env.db, "SELECT id, part, state FROM packages ORDER BY id")
    assert len(rows) >= 3 and all(r[2] == "done" for r in rows)
    owners = query(
        env.db, "SELECT item_key, COUNT(DISTINCT package_id) FROM package_files GROUP BY item_key"
    )
    assert all(n == 1 for _, n in owners)  # every item's files in exactly one archive
    assert len(env.calls()) == len(rows)
    items = [i for i in env.remote_items() if i["type"] == "SINGLE_DATA"]
    assert sorted(i["name"] for i in items) == [f"{n:06d}" for n in range(1, 7)]
    assert all(len(i["objects"]) > 0 for i in items)  # pre-labels survived the split


def test_files_added_later_go_up_as_a_new_package(env: Env) -> None:
    write_fusion_unit(env.folder / "u", frames=2, cameras=1, with_result=False)
    assert env.once()[0] == 0
    # two more frames arrive in the same unit (other names, as a recorder continues)
    more = env.tmp / "more"
    write_fusion_unit(more, frames=4, cameras=1, with_result=False)
    for sub in ("lidar_point_cloud_0", "camera_image_0", "camera_config"):
        for f in sorted((more / sub).iterdir())[2:]:
            f.rename(env.folder / "u" / sub / f.name)
    assert env.once()[0] == 0
    rows = query(env.db, "SELECT id, state, file_count FROM packages ORDER BY id")
    assert [(r[1], r[2]) for r in rows] == [("done", 6), ("done", 6)]
    second = {
        r[0]
        for r in query(
            env.db, "SELECT rel_path FROM package_files WHERE package_id = ?", rows[1][0]
        )
    }
    assert all("000003" in p or "000004" in p for p in second)
    assert sorted(i["name"] for i in env.remote_items()) == ["000001", "000002", "000003", "000004"]


def test_ready_marker_gates_settling_and_is_not_uploaded(env: Env) -> None:
    write_fusion_unit(env.folder / "u", frames=1, cameras=1, with_result=False)
    code, _ = env.once(ready_marker="_READY", settle_seconds=3600)
    assert code == 0 and states(env) == [("u", "detected")]
    (env.folder / "u" / "_READY").write_text("")
    assert env.once(ready_marker="_READY", settle_seconds=3600)[0] == 0
    assert states(env) == [("u", "done")]
    paths = [r[0] for r in query(env.db, "SELECT rel_path FROM package_files")]
    assert "_READY" not in paths and len(paths) == 3


def test_hidden_and_temp_files_are_ignored(env: Env) -> None:
    write_fusion_unit(env.folder / "u", frames=1, cameras=0, with_result=False)
    (env.folder / "u" / ".DS_Store").write_text("x")
    (env.folder / "u" / "lidar_point_cloud_0" / "000002.pcd.part").write_text("x")
    (env.folder / ".hidden_unit").mkdir()
    assert env.once()[0] == 0
    assert [r[0] for r in query(env.db, "SELECT rel_path FROM package_files")] == [
        "lidar_point_cloud_0/000001.pcd"
    ]


def test_platform_failure_keeps_the_reason(env: Env) -> None:
    (env.folder / "bad").mkdir()
    (env.folder / "bad" / "readme.txt").write_text("no point clouds here")
    code, _ = env.once()
    assert code == 1
    (state, err) = query(env.db, "SELECT state, last_error FROM packages")[0]
    assert state == "failed" and "The format of the compressed package is incorrect" in err


def test_completed_with_errors_is_surfaced(env: Env) -> None:
    write_fusion_unit(env.folder / "u", frames=1, cameras=0, with_result=True)
    doc = json.loads((env.folder / "u" / "result" / "000001.json").read_text())
    doc["objects"].append(
        {"type": "3D_Box", "className": "Car", "contour": {}}
    )  # wrong case: rejected by the platform
    (env.folder / "u" / "result" / "000001.json").write_text(json.dumps(doc))
    assert env.once()[0] == 0
    (state, perr) = query(env.db, "SELECT state, platform_errors FROM packages")[0]
    assert state == "done" and "object type error" in perr
    assert query(env.db, "SELECT COUNT(*) FROM events WHERE event = 'package.platform_errors'") == [
        (1,)
    ]
    report = collect(env.config())
    assert "object type error" in report["syncs"]["s"]["platform_errors"][0]["platform_errors"]
    assert "platform reported errors for package" in render(report)


def test_invalid_prelabel_json_fails_with_file_name(env: Env) -> None:
    write_fusion_unit(env.folder / "u", frames=1, cameras=0, with_result=True)
    (env.folder / "u" / "result" / "000001.json").write_text("{not json")
    assert env.once()[0] == 1
    (state, err) = query(env.db, "SELECT state, last_error FROM packages")[0]
    assert state == "failed" and "result/000001.json is not valid JSON" in err
    assert env.calls() == []


def test_processing_that_never_ends_times_out(env: Env) -> None:
    write_fusion_unit(env.folder / "u", frames=1, cameras=0, with_result=False)
    env.admin("POST", "/config", json={"stall_processing": True})
    try:
        started = time.monotonic()
        code, _ = env.once(processing_timeout=2)
    finally:
        env.admin("POST", "/config", json={"stall_processing": False})
    assert code == 1 and time.monotonic() - started < 30
    (state, err) = query(env.db, "SELECT state, last_error FROM packages")[0]
    assert state == "failed" and "made no progress for 2s" in err


def test_classes_are_bound_before_upload(env: Env) -> None:
    write_fusion_unit(
        env.folder / "u", frames=2, cameras=0, with_result=True, classes=("Car", "Van")
    )
    assert env.once()[0] == 0
    classes = {c["name"]: c["id"] for c in env.api(f"/datasetClass/findAll/{env.dataset_id()}")}
    objs = [o for i in env.remote_items() for o in i["objects"]]
    assert objs and all(o.get("classId") == classes[o["className"]] for o in objs)
    assert not any("modelClass" in o for o in objs)


def test_sizes_and_counts_in_events(env: Env) -> None:
    write_bulk_unit(env.folder / "b", total_bytes=3 * 1024 * 1024, file_bytes=1024 * 1024)
    assert env.once(dataset_type="LIDAR_BASIC")[0] == 0
    (fields,) = query(env.db, "SELECT fields FROM events WHERE event = 'package.uploaded'")[0]
    f = json.loads(fields)
    assert f["archive_bytes"] > 3 * 1024 * 1024 and f["seconds"] >= 0
    names = Counter(e for (e,) in query(env.db, "SELECT event FROM events"))
    assert names["package.done"] == 1 and names["dataset.created"] == 1


def test_slow_processing_that_progresses_is_not_timed_out(env: Env) -> None:
    write_fusion_unit(env.folder / "u", frames=1, cameras=0, with_result=False)
    # four status steps of 0.6 s each: 2.4 s in all, more than the 1 s timeout
    env.admin("POST", "/config", json={"processing_step_delay": 0.6})
    try:
        code, _ = env.once(processing_timeout=1)
    finally:
        env.admin("POST", "/config", json={"processing_step_delay": 0.05})
    assert code == 0
    assert query(env.db, "SELECT state, last_error FROM packages") == [("done", None)]


def test_transient_errors_retry_in_the_same_state(env: Env) -> None:
    write_fusion_unit(env.folder / "u", frames=1, cameras=0, with_result=False)
    # 3 failures: more than one request's quick retries (max_retries = 2 in tests)
    env.admin(
        "POST",
        "/faults",
        json={"method": "PUT", "path": "^/minio/", "action": "status", "status": 503, "times": 3},
    )
    code, _ = env.once()
    assert code == 0
    assert query(env.db, "SELECT state, attempts FROM packages") == [("done", 0)]
    (fields,) = query(env.db, "SELECT fields FROM events WHERE event = 'package.retry'")[0]
    f = json.loads(fields)
    assert f["attempt"] == 1 and "HTTP 503" in f["reason"] and 0 < f["retry_in"] <= 2
    assert query(
        env.db, "SELECT from_state, to_state FROM events WHERE event = 'package.retry'"
    ) == [("uploading", "uploading")]
    assert len(env.calls()) == 1


def test_backoff_grows_and_is_capped() -> None:
    from syncd.pipeline.backoff import backoff_delay

    assert all(0.5 <= backoff_delay(1) <= 2.0 for _ in range(50))
    assert all(8.0 <= backoff_delay(4) <= 16.0 for _ in range(50))
    assert all(backoff_delay(30) <= 300.0 for _ in range(50))


def test_a_failed_package_stays_failed_until_its_files_change(env: Env) -> None:
    """A package that fails while packing (the platform refuses a pre-label class) keeps
    the file versions it failed with: the unchanged unit is not packaged again on the
    next scans (no hot loop hammering the platform), a changed file is."""
    write_fusion_unit(env.folder / "u", frames=1, cameras=0, with_result=True, classes=("Car",))
    refused = json.dumps({"code": "PARAM_ERROR", "message": "class refused", "data": None})
    env.admin(
        "POST",
        "/faults",
        json={
            "method": "POST",
            "path": "/api/datasetClass/create",
            "action": "status",
            "status": 200,
            "headers": {"Content-Type": "application/json"},
            "body": refused,
            "times": None,
        },
    )
    d = env.daemon()
    try:
        for _ in range(5):
            d.push_cycle()  # a full scan, pack and upload, as the run loop's passes do
        assert states(env) == [("u", "failed")]
        failed = query(env.db, "SELECT COUNT(*) FROM events WHERE event = 'package.failed'")
        assert failed == [(1,)]
        (err,) = query(env.db, "SELECT last_error FROM packages")[0]
        assert "class refused" in err
        env.admin("DELETE", "/faults")
        result = env.folder / "u" / "result" / "000001.json"
        result.write_text(result.read_text() + "\n")  # a new version of the file
        d.push_cycle()
        assert [s[0] for s in states(env)] == ["u", "u"]  # the new version is packaged
        assert states(env)[0] == ("u", "failed")
    finally:
        env.admin("DELETE", "/faults")
        d.close()
