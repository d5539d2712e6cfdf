"""The whole product path, run as users run it: the real CLI against a sandbox process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syncd.sampledata import write_fusion_unit
from tests.conftest import SandboxProcess, query, run_cli, write_config
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


def test_three_units_end_to_end(tmp_path: Path, sandbox_proc: SandboxProcess) -> None:
    u = Units(tmp_path)
    cfg = write_config(tmp_path / "syncd.toml", sandbox_proc.url, u.syncs())
    db = tmp_path / "state" / "syncd.db"

    r = run_cli("once", "--config", str(cfg))
    assert r.returncode == 0, r.stderr[-3000:]
    # secrets never printed nor recorded in events (debug logging is on)
    assert_no_secrets(db, r.stderr, r"X-Amz-Signature=[0-9a-f]{16}")

    # every unit done, imported exactly once
    assert_all_done(db)
    calls = sandbox_proc.admin("GET", "/counters")["data_upload_calls"]
    for unit in ("batch_01", "drive_0001", "drive_0002"):
        assert sum(unit in c["fileName"] for c in calls) == 1, calls

    # the mirror holds every item, with the pre-labels as objects with class names
    names = {row[0] for row in query(db, "SELECT name FROM items WHERE deleted_at IS NULL")}
    assert set(u.fusion) | set(u.scene) | set(u.pics) | {"scene_01"} <= names
    assert prelabel_classes(db) == u.expected_prelabels()

    # the annotator labels a scene frame and a single frame; the next pull brings both in
    scene_frame, single = frame_ids(db, u.scene[0], u.fusion[1])
    box = {**LATE_BOX, "pointN": 10, "points": []}
    for rid, track in ((scene_frame, "late-1"), (single, "late-2")):
        objects = [{"type": "3D_BOX", "className": "Truck", "trackId": track, "contour": box}]
        sandbox_proc.admin(
            "POST", "/annotate", json={"dataId": int(rid), "objects": objects, "submit": True}
        )
    r = run_cli("once", "--config", str(cfg))
    assert r.returncode == 0, r.stderr[-3000:]
    assert late_trucks(db) == [
        (u.scene[0], 0, "Truck", "late-1"),
        (u.fusion[1], 1, "Truck", "late-2"),
    ]
    # the annotator's objects replaced the single frame's pre-labels
    assert object_count(db, single) == 1
    status = query(
        db, "SELECT annotation_status FROM items WHERE remote_id IN (?, ?)", scene_frame, single
    )
    assert status == [("ANNOTATED",), ("ANNOTATED",)]
    assert_transitions(db)

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
