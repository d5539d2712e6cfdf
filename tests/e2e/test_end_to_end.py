"""The whole product path, run as users run it: the real CLI against a sandbox process."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from syncd.sampledata import write_fusion_unit, write_image_unit, write_scene_unit
from tests.conftest import TOKEN, SandboxProcess, query, run_cli, write_config

pytestmark = pytest.mark.e2e

TRANSITIONS = [
    "detected",
    "settled",
    "packing",
    "packed",
    "uploading",
    "uploaded",
    "submitted",
    "processing",
    "done",
]


def test_three_units_end_to_end(tmp_path: Path, sandbox_proc: SandboxProcess) -> None:
    lidar, images = tmp_path / "lidar", tmp_path / "images"
    fusion = write_fusion_unit(lidar / "drive_0001", frames=3, cameras=2, with_result=True)
    scene = write_scene_unit(lidar / "drive_0002", scene="scene_01", frames=3)
    pics = write_image_unit(images / "batch_01", images=3)
    cfg = write_config(
        tmp_path / "syncd.toml",
        sandbox_proc.url,
        [
            {
                "name": "lidar",
                "dataset": "e2e-fusion",
                "dataset_type": "LIDAR_FUSION",
                "folder": lidar,
            },
            {"name": "images", "dataset": "e2e-images", "dataset_type": "IMAGE", "folder": images},
        ],
    )
    db = tmp_path / "state" / "syncd.db"

    r = run_cli("once", "--config", str(cfg))
    assert r.returncode == 0, r.stderr[-3000:]

    # secrets never printed nor recorded in events (debug logging is on)
    events_text = " ".join(
        f for (f,) in query(db, "SELECT fields || COALESCE(message, '') FROM events")
    )
    for text in (r.stderr, events_text):
        assert TOKEN not in text
        assert not re.search(r"X-Amz-Signature=[0-9a-f]{16}", text)

    # every unit done, imported exactly once
    assert query(db, "SELECT unit, state FROM packages ORDER BY unit") == [
        ("batch_01", "done"),
        ("drive_0001", "done"),
        ("drive_0002", "done"),
    ]
    calls = sandbox_proc.admin("GET", "/counters")["data_upload_calls"]
    for unit in ("batch_01", "drive_0001", "drive_0002"):
        assert sum(unit in c["fileName"] for c in calls) == 1, calls

    # the mirror holds every item, with the pre-labels as objects with class names
    names = {row[0] for row in query(db, "SELECT name FROM items WHERE deleted_at IS NULL")}
    assert set(fusion) | set(scene) | set(pics) | {"scene_01"} <= names
    pre = query(
        db,
        "SELECT i.name, o.class_name, o.shape_type FROM objects o JOIN items i ON i.id = o.item_id",
    )
    expected = {}
    for name in fusion:
        doc = json.loads((lidar / "drive_0001" / "result" / f"{name}.json").read_text())
        expected[name] = sorted(o["className"] for o in doc["objects"])
    got: dict[str, list[str]] = {}
    for name, cls, shape in pre:
        assert shape == "3D_BOX"
        got.setdefault(name, []).append(cls)
    assert {k: sorted(v) for k, v in got.items()} == expected

    # the annotator labels a scene frame and a single frame; the next pull brings both in
    scene_frame = query(
        db, "SELECT remote_id FROM items WHERE name = ? AND parent_remote_id IS NOT NULL", scene[0]
    )[0][0]
    single = query(
        db, "SELECT remote_id FROM items WHERE name = ? AND parent_remote_id IS NULL", fusion[1]
    )[0][0]
    box = {
        "center3D": {"x": 1, "y": 2, "z": 0},
        "size3D": {"x": 8, "y": 2.5, "z": 3},
        "rotation3D": {"x": 0, "y": 0, "z": 0},
        "pointN": 10,
        "points": [],
    }
    for rid, track in ((scene_frame, "late-1"), (single, "late-2")):
        objects = [{"type": "3D_BOX", "className": "Truck", "trackId": track, "contour": box}]
        sandbox_proc.admin(
            "POST", "/annotate", json={"dataId": int(rid), "objects": objects, "submit": True}
        )
    r = run_cli("once", "--config", str(cfg))
    assert r.returncode == 0, r.stderr[-3000:]
    late = query(
        db,
        "SELECT i.name, i.parent_remote_id IS NULL, o.class_name, o.track_id FROM objects o "
        "JOIN items i ON i.id = o.item_id WHERE o.class_name = 'Truck' ORDER BY o.track_id",
    )
    assert late == [(scene[0], 0, "Truck", "late-1"), (fusion[1], 1, "Truck", "late-2")]
    # the annotator's objects replaced the single frame's pre-labels
    assert query(
        db,
        "SELECT COUNT(*) FROM objects WHERE item_id = (SELECT id FROM items WHERE remote_id = ?)",
        single,
    ) == [(1,)]
    status = query(
        db, "SELECT annotation_status FROM items WHERE remote_id IN (?, ?)", scene_frame, single
    )
    assert status == [("ANNOTATED",), ("ANNOTATED",)]

    # the events table holds every transition of every package, in order
    for (pid,) in query(db, "SELECT id FROM packages"):
        states = [
            row[0]
            for row in query(
                db,
                "SELECT to_state FROM events WHERE package_id = ? AND event LIKE 'package.%' AND event != 'package.retry' AND to_state IS NOT NULL ORDER BY id",
                pid,
            )
        ]
        assert states == TRANSITIONS, (pid, states)

    # nothing new: a third run uploads nothing
    before = len(sandbox_proc.admin("GET", "/counters")["data_upload_calls"])
    assert run_cli("once", "--config", str(cfg)).returncode == 0
    assert len(sandbox_proc.admin("GET", "/counters")["data_upload_calls"]) == before


def test_status_and_events_commands(tmp_path: Path, sandbox_proc: SandboxProcess) -> None:
    folder = tmp_path / "in"
    write_fusion_unit(folder / "u1", frames=1, cameras=1)
    cfg = write_config(
        tmp_path / "syncd.toml",
        sandbox_proc.url,
        [{"name": "s1", "dataset": "e2e-status", "folder": folder}],
    )
    assert run_cli("once", "--config", str(cfg)).returncode == 0
    r = run_cli("status", "--config", str(cfg), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["syncs"]["s1"]["packages"] == {"done": 1}
    assert report["syncs"]["s1"]["items"] == 1 and report["syncs"]["s1"]["last_pull_at"]
    human = run_cli("status", "--config", str(cfg)).stdout
    assert "packages: done 1" in human
    ev = run_cli("events", "--config", str(cfg), "-n", "500")
    names = [json.loads(line)["event"] for line in ev.stdout.splitlines()]
    assert "package.done" in names and "pull.page_committed" in names
