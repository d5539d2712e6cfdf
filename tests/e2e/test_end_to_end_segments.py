"""The core e2e flow against Segments.ai: the real CLI, a sandbox process, three units.

Besides the mirror, the official SDK reads back everything syncd created:
every sample and pre-label must parse as the SDK's own models.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from segments import SegmentsClient
from segments.typing import Label

from syncd import sandbox
from syncd.sampledata import write_fusion_unit, write_image_unit, write_scene_unit
from tests.conftest import TOKEN, admin_call, query, run_cli, write_config
from tests.contract.segments_backend import annotate
from tests.e2e.test_end_to_end import TRANSITIONS

pytestmark = pytest.mark.e2e


@pytest.fixture
def segments(tmp_path: Path) -> Iterator[sandbox.SandboxProcess]:
    sp = sandbox.SandboxProcess("segments", token=TOKEN, data_dir=tmp_path / "sandbox-data")
    yield sp
    sp.stop()


def test_three_units_end_to_end(tmp_path: Path, segments: sandbox.SandboxProcess) -> None:
    lidar, images = tmp_path / "lidar", tmp_path / "images"
    fusion = write_fusion_unit(lidar / "drive_0001", frames=3, cameras=2, with_result=True)
    scene = write_scene_unit(lidar / "drive_0002", scene="scene_01", frames=3, cameras=2)
    pics = write_image_unit(images / "batch_01", images=3, with_result=True)
    cfg = write_config(
        tmp_path / "syncd.toml",
        segments.url,
        [
            {
                "name": "lidar",
                "dataset": "e2e-fusion",
                "dataset_type": "LIDAR_FUSION",
                "folder": lidar,
            },
            {"name": "images", "dataset": "e2e-images", "dataset_type": "IMAGE", "folder": images},
        ],
        platform="segments",
        remote_extra='categories = ["Car", "Pedestrian"]\nprelabel_labelset = "ground-truth"',
    )
    db = tmp_path / "state" / "syncd.db"

    r = run_cli("once", "--config", str(cfg))
    assert r.returncode == 0, r.stderr[-3000:]

    events_text = " ".join(
        f for (f,) in query(db, "SELECT fields || COALESCE(message, '') FROM events")
    )
    for text in (r.stderr, events_text):
        assert TOKEN not in text
        assert not re.search(r"x-amz-signature", text, re.IGNORECASE)

    assert query(db, "SELECT unit, state FROM packages ORDER BY unit") == [
        ("batch_01", "done"),
        ("drive_0001", "done"),
        ("drive_0002", "done"),
    ]
    # every asset stored once, every sample created once
    counters = admin_call(segments.url, "GET", "/counters")
    assert set(counters["uploads"].values()) == {1}
    created = counters["created_samples"]
    assert sorted(created["sandbox-user/e2e-fusion"]) == sorted([*fusion, "scene_01"])
    assert sorted(created["sandbox-user/e2e-images"]) == sorted(pics)
    # 3 frames x (1 cloud + 2 cameras), the scene likewise, 3 pictures
    assert len(counters["uploads"]) == 9 + 9 + 3

    # the SDK parses every sample and pre-label syncd created
    client = SegmentsClient(api_key=TOKEN, api_url=segments.url)
    try:
        fused = client.get_samples(
            "sandbox-user/e2e-fusion", labelset="ground-truth", include_full_label=True
        )
        assert sorted(s.name for s in fused) == sorted([*fusion, "scene_01"])
        for s in fused:
            assert s.metadata["source"] == "syncd"
            if s.name in fusion:
                assert isinstance(s.label, Label) and s.label.label_status == "PRELABELED"
        pictures = client.get_samples(
            "sandbox-user/e2e-images", labelset="ground-truth", include_full_label=True
        )
        assert all(isinstance(s.label, Label) for s in pictures) and len(pictures) == 3
        ds = client.get_dataset("sandbox-user/e2e-fusion")
        assert ds.task_type == "multisensor-sequence"
        names = [c.name for c in (ds.task_attributes.categories or [])]  # type: ignore[union-attr]
        assert names[:2] == ["Car", "Pedestrian"]
    finally:
        client.close()

    items = {row[0] for row in query(db, "SELECT name FROM items WHERE deleted_at IS NULL")}
    assert set(fusion) | set(scene) | set(pics) | {"scene_01"} <= items
    pre = query(
        db,
        "SELECT i.name, o.class_name, o.shape_type FROM objects o JOIN items i ON i.id = o.item_id",
    )
    expected: dict[str, list[str]] = {}
    for unit, names in ((lidar / "drive_0001", fusion), (images / "batch_01", pics)):
        for name in names:
            doc = json.loads((unit / "result" / f"{name}.json").read_text())
            expected[name] = sorted(o["className"] for o in doc["objects"])
    got: dict[str, list[str]] = {}
    for name, cls, shape in pre:
        assert shape == ("3D_BOX" if name in fusion else "2D_RECT")
        got.setdefault(name, []).append(cls)
    assert {k: sorted(v) for k, v in got.items()} == expected
    top = "SELECT DISTINCT status FROM items WHERE parent_remote_id IS NULL AND name IN (?, ?, ?)"
    assert query(db, top, *fusion) == [("PRELABELED",)]

    # the annotator labels a scene frame and a single frame; the next pull brings both in
    scene_frame = query(
        db, "SELECT remote_id FROM items WHERE name = ? AND parent_remote_id IS NOT NULL", scene[1]
    )[0][0]
    single = query(
        db, "SELECT remote_id FROM items WHERE name = ? AND parent_remote_id IS NULL", fusion[1]
    )[0][0]
    box = {
        "center3D": {"x": 1, "y": 2, "z": 0},
        "size3D": {"x": 8, "y": 2.5, "z": 3},
        "rotation3D": {"x": 0, "y": 0, "z": 0},
    }
    for rid, track in ((scene_frame, "late-7"), (single, "late-8")):
        objects = [{"type": "3D_BOX", "className": "Truck", "trackId": track, "contour": box}]
        annotate(segments.url, rid, objects, None)
    r = run_cli("once", "--config", str(cfg))
    assert r.returncode == 0, r.stderr[-3000:]
    late = query(
        db,
        "SELECT i.name, i.parent_remote_id IS NULL, o.class_name, o.track_id FROM objects o "
        "JOIN items i ON i.id = o.item_id WHERE o.class_name = 'Truck' ORDER BY o.track_id",
    )
    assert late == [(scene[1], 0, "Truck", "7"), (fusion[1], 1, "Truck", "8")]
    # the annotator's label replaced the pre-label of that frame
    assert query(
        db,
        "SELECT COUNT(*) FROM objects WHERE item_id = (SELECT id FROM items WHERE remote_id = ?)",
        single,
    ) == [(1,)]
    status = query(
        db,
        "SELECT annotation_status, status FROM items WHERE remote_id IN (?, ?)",
        scene_frame,
        single,
    )
    assert status == [("ANNOTATED", "LABELED"), ("ANNOTATED", "LABELED")]

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

    # a finished item edited later: the labels cursor finds it without a sweep
    objects = [{"type": "3D_BOX", "className": "Bus", "trackId": "9", "contour": box}]
    annotate(segments.url, single, objects, None)
    before = admin_call(segments.url, "GET", "/counters")
    assert run_cli("once", "--config", str(cfg)).returncode == 0
    after = admin_call(segments.url, "GET", "/counters")
    got_bus = query(
        db,
        "SELECT o.class_name FROM objects o JOIN items i ON i.id = o.item_id WHERE i.remote_id = ?",
        single,
    )
    assert got_bus == [("Bus",)]
    # nothing new was stored or created
    assert after["uploads"] == before["uploads"]
    assert after["created_samples"] == before["created_samples"]
    assert after["rejected_429"] == 0
