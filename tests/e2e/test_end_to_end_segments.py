"""The core e2e flow against Segments.ai: the real CLI, a sandbox process, three units.

Besides the mirror, the official SDK reads back everything syncd created:
every sample and pre-label must parse as the SDK's own models.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from segments import SegmentsClient
from segments.typing import Label

import syncd_sandbox as sandbox
from tests.conftest import TOKEN, admin_call, query, run_cli, write_config
from tests.contract.segments_backend import annotate
from tests.e2e.flow import (
    LATE_BOX,
    Units,
    assert_all_done,
    assert_no_secrets,
    assert_transitions,
    frame_ids,
    late_trucks,
    object_count,
    prelabel_classes,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def segments(tmp_path: Path) -> Iterator[sandbox.SandboxProcess]:
    sp = sandbox.SandboxProcess("segments", token=TOKEN, data_dir=tmp_path / "sandbox-data")
    yield sp
    sp.stop()


def test_three_units_end_to_end(tmp_path: Path, segments: sandbox.SandboxProcess) -> None:
    u = Units(tmp_path, scene_cameras=2, image_results=True)
    fusion, scene, pics = u.fusion, u.scene, u.pics
    cfg = write_config(
        tmp_path / "syncd.toml",
        segments.url,
        u.syncs(),
        platform="segments",
        remote_extra='categories = ["Car", "Pedestrian"]\nprelabel_labelset = "ground-truth"',
    )
    db = tmp_path / "state" / "syncd.db"

    r = run_cli("once", "--config", str(cfg))
    assert r.returncode == 0, r.stderr[-3000:]
    assert_no_secrets(db, r.stderr, r"x-amz-signature")
    assert_all_done(db)
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
    shapes = prelabel_classes(db, lambda name: "3D_BOX" if name in fusion else "2D_RECT")
    assert shapes == u.expected_prelabels(with_images=True)
    top = "SELECT DISTINCT status FROM items WHERE parent_remote_id IS NULL AND name IN (?, ?, ?)"
    assert query(db, top, *fusion) == [("PRELABELED",)]

    # the annotator labels a scene frame and a single frame; the next pull brings both in
    scene_frame, single = frame_ids(db, scene[1], fusion[1])
    box = LATE_BOX
    for rid, track in ((scene_frame, "late-7"), (single, "late-8")):
        objects = [{"type": "3D_BOX", "className": "Truck", "trackId": track, "contour": box}]
        annotate(segments.url, rid, objects, None)
    r = run_cli("once", "--config", str(cfg))
    assert r.returncode == 0, r.stderr[-3000:]
    assert late_trucks(db) == [(scene[1], 0, "Truck", "7"), (fusion[1], 1, "Truck", "8")]
    # the annotator's label replaced the pre-label of that frame
    assert object_count(db, single) == 1
    status = query(
        db,
        "SELECT annotation_status, status FROM items WHERE remote_id IN (?, ?)",
        scene_frame,
        single,
    )
    assert status == [("ANNOTATED", "LABELED"), ("ANNOTATED", "LABELED")]

    assert_transitions(db)

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
