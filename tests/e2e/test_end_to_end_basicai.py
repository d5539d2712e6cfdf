"""The core e2e flow against BasicAI: the real CLI, a sandbox process, three units."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd import sandbox
from syncd.sampledata import write_fusion_unit, write_image_unit, write_scene_unit
from tests.conftest import TOKEN, admin_call, query, run_cli, write_config
from tests.e2e.test_end_to_end import TRANSITIONS

pytestmark = pytest.mark.e2e


@pytest.fixture
def basicai(tmp_path: Path) -> Iterator[sandbox.SandboxProcess]:
    sp = sandbox.SandboxProcess("basicai", token=TOKEN, data_dir=tmp_path / "sandbox-data")
    yield sp
    sp.stop()


def test_three_units_end_to_end(tmp_path: Path, basicai: sandbox.SandboxProcess) -> None:
    lidar, images = tmp_path / "lidar", tmp_path / "images"
    fusion = write_fusion_unit(lidar / "drive_0001", frames=3, cameras=2, with_result=True)
    scene = write_scene_unit(lidar / "drive_0002", scene="scene_01", frames=3)
    pics = write_image_unit(images / "batch_01", images=3)
    cfg = write_config(
        tmp_path / "syncd.toml",
        basicai.url,
        [
            {
                "name": "lidar",
                "dataset": "e2e-fusion",
                "dataset_type": "LIDAR_FUSION",
                "folder": lidar,
            },
            {"name": "images", "dataset": "e2e-images", "dataset_type": "IMAGE", "folder": images},
        ],
        platform="basicai",
    )
    db = tmp_path / "state" / "syncd.db"

    r = run_cli("once", "--config", str(cfg))
    assert r.returncode == 0, r.stderr[-3000:]

    events_text = " ".join(
        f for (f,) in query(db, "SELECT fields || COALESCE(message, '') FROM events")
    )
    for text in (r.stderr, events_text):
        assert TOKEN not in text
        assert not re.search(r"X-Amz-Signature=[0-9a-f]{16}", text)

    assert query(db, "SELECT unit, state FROM packages ORDER BY unit") == [
        ("batch_01", "done"),
        ("drive_0001", "done"),
        ("drive_0002", "done"),
    ]
    # every file stored once, every name registered once
    counters = admin_call(basicai.url, "GET", "/counters")
    assert set(counters["puts"].values()) == {1}
    registered = [n for c in counters["add_calls"] for n in c["names"]]
    assert sorted(registered) == sorted([*fusion, "scene_01", *pics])

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
    }
    for rid, track in ((scene_frame, "late-1"), (single, "late-2")):
        objects = [{"type": "3D_BOX", "className": "Truck", "trackId": track, "contour": box}]
        admin_call(
            basicai.url,
            "POST",
            "/annotate",
            json={"dataId": int(rid), "objects": objects, "submit": True},
        )
    r = run_cli("once", "--config", str(cfg))
    assert r.returncode == 0, r.stderr[-3000:]
    late = query(
        db,
        "SELECT i.name, i.parent_remote_id IS NULL, o.class_name, o.track_id FROM objects o "
        "JOIN items i ON i.id = o.item_id WHERE o.class_name = 'Truck' ORDER BY o.track_id",
    )
    assert late == [(scene[0], 0, "Truck", "late-1"), (fusion[1], 1, "Truck", "late-2")]
    assert query(
        db,
        "SELECT COUNT(*) FROM objects WHERE item_id = (SELECT id FROM items WHERE remote_id = ?)",
        single,
    ) == [(1,)]
    status = query(
        db, "SELECT annotation_status FROM items WHERE remote_id IN (?, ?)", scene_frame, single
    )
    assert status == [("ANNOTATED",), ("ANNOTATED",)]

    for (pid,) in query(db, "SELECT id FROM packages"):
        states = [
            row[0]
            for row in query(
                db,
                "SELECT to_state FROM events WHERE package_id = ? AND event LIKE 'package.%' "
                "AND event != 'package.retry' AND to_state IS NOT NULL ORDER BY id",
                pid,
            )
        ]
        assert states == TRANSITIONS, (pid, states)

    # nothing new: a third run stores and registers nothing
    before = admin_call(basicai.url, "GET", "/counters")
    assert run_cli("once", "--config", str(cfg)).returncode == 0
    after = admin_call(basicai.url, "GET", "/counters")
    assert after["puts"] == before["puts"] and after["add_calls"] == before["add_calls"]
    assert after["rejected_429"] == 0
