"""The core e2e flow against BasicAI: the real CLI, a sandbox process, three units."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import syncd_sandbox as sandbox
from tests.conftest import TOKEN, admin_call, query, run_cli, write_config
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
def basicai(tmp_path: Path) -> Iterator[sandbox.SandboxProcess]:
    sp = sandbox.SandboxProcess("basicai", token=TOKEN, data_dir=tmp_path / "sandbox-data")
    yield sp
    sp.stop()


def test_three_units_end_to_end(tmp_path: Path, basicai: sandbox.SandboxProcess) -> None:
    u = Units(tmp_path)
    cfg = write_config(tmp_path / "syncd.toml", basicai.url, u.syncs(), platform="basicai")
    db = tmp_path / "state" / "syncd.db"

    r = run_cli("once", "--config", str(cfg))
    assert r.returncode == 0, r.stderr[-3000:]
    assert_no_secrets(db, r.stderr, r"X-Amz-Signature=[0-9a-f]{16}")
    assert_all_done(db)
    # every file stored once, every name registered once
    counters = admin_call(basicai.url, "GET", "/counters")
    assert set(counters["puts"].values()) == {1}
    registered = [n for c in counters["add_calls"] for n in c["names"]]
    assert sorted(registered) == sorted([*u.fusion, "scene_01", *u.pics])

    names = {row[0] for row in query(db, "SELECT name FROM items WHERE deleted_at IS NULL")}
    assert set(u.fusion) | set(u.scene) | set(u.pics) | {"scene_01"} <= names
    assert prelabel_classes(db) == u.expected_prelabels()

    # the annotator labels a scene frame and a single frame; the next pull brings both in
    scene_frame, single = frame_ids(db, u.scene[0], u.fusion[1])
    for rid, track in ((scene_frame, "late-1"), (single, "late-2")):
        objects = [{"type": "3D_BOX", "className": "Truck", "trackId": track, "contour": LATE_BOX}]
        admin_call(
            basicai.url,
            "POST",
            "/annotate",
            json={"dataId": int(rid), "objects": objects, "submit": True},
        )
    r = run_cli("once", "--config", str(cfg))
    assert r.returncode == 0, r.stderr[-3000:]
    assert late_trucks(db) == [
        (u.scene[0], 0, "Truck", "late-1"),
        (u.fusion[1], 1, "Truck", "late-2"),
    ]
    assert object_count(db, single) == 1
    status = query(
        db, "SELECT annotation_status FROM items WHERE remote_id IN (?, ?)", scene_frame, single
    )
    assert status == [("ANNOTATED",), ("ANNOTATED",)]
    assert_transitions(db)

    # nothing new: a third run stores and registers nothing
    before = admin_call(basicai.url, "GET", "/counters")
    assert run_cli("once", "--config", str(cfg)).returncode == 0
    after = admin_call(basicai.url, "GET", "/counters")
    assert after["puts"] == before["puts"] and after["add_calls"] == before["add_calls"]
    assert after["rejected_429"] == 0
