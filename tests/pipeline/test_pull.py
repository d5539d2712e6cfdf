"""Pull: cursor moves forward with its page, re-checks, full sweep for edits and deletions."""

from __future__ import annotations

import httpx

from syncd.pipeline import pull
from syncd.sampledata import write_fusion_unit
from tests.conftest import TOKEN, query
from tests.pipeline.conftest import Env

BOX = {
    "center3D": {"x": 1, "y": 1, "z": 1},
    "size3D": {"x": 1, "y": 1, "z": 1},
    "rotation3D": {"x": 0, "y": 0, "z": 0},
}


def pull_once(env: Env, *, full_sweep: bool | None = None) -> pull.PullStats:
    d = env.daemon()
    try:
        return pull.run_once(d.contexts[0], full_sweep=full_sweep)
    finally:
        d.close()


def cursor(env: Env) -> int:
    # Xtreme1's cursor is "<highest top-level id>:<listing total>"
    return int(query(env.db, "SELECT value FROM cursors WHERE name = 'items'")[0][0].split(":")[0])


def test_cursor_only_moves_forward_and_pages_commit(env: Env) -> None:
    write_fusion_unit(env.folder / "a", frames=3, cameras=0, with_result=False)
    assert env.once()[0] == 0
    first = cursor(env)
    assert first == max(int(i["id"]) for i in env.remote_items())
    stats = pull_once(env)
    assert stats.new_items == 0 and cursor(env) == first
    write_fusion_unit(env.folder / "b", frames=2, cameras=0, with_result=False, seed=3)
    env.once()
    assert cursor(env) > first
    assert query(env.db, "SELECT COUNT(*) FROM items") == [(5,)]


def test_edits_to_finished_items_and_deletions_arrive_with_the_sweep(env: Env) -> None:
    write_fusion_unit(env.folder / "a", frames=3, cameras=0, with_result=False)
    assert env.once()[0] == 0
    items = {i["name"]: i["id"] for i in env.remote_items()}
    env.admin(
        "POST",
        "/annotate",
        json={
            "dataId": items["000001"],
            "objects": [{"type": "3D_BOX", "className": "Car", "contour": BOX}],
            "submit": True,
        },
    )
    pull_once(env)
    assert query(env.db, "SELECT class_name FROM object_details") == [("Car",)]
    # a finished item is edited: the normal cycle does not re-read it, the sweep does
    env.admin(
        "POST",
        "/annotate",
        json={
            "dataId": items["000001"],
            "objects": [{"type": "3D_BOX", "className": "Bus", "contour": BOX}],
            "submit": True,
        },
    )
    pull_once(env, full_sweep=False)
    assert query(env.db, "SELECT class_name FROM object_details") == [("Car",)]
    # an item is deleted on the platform
    r = httpx.post(
        f"{env.url}/api/data/deleteBatch",
        json={"datasetId": env.dataset_id(), "ids": [items["000002"]]},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert r.json()["code"] == "OK"
    stats = pull_once(env, full_sweep=True)
    assert stats.swept and stats.deleted == 1
    assert query(env.db, "SELECT class_name FROM object_details") == [("Bus",)]
    assert query(env.db, "SELECT name FROM items WHERE deleted_at IS NOT NULL") == [("000002",)]
    assert query(env.db, "SELECT COUNT(*) FROM items") == [(3,)]  # never dropped


def test_label_hash_detects_only_real_changes(env: Env) -> None:
    write_fusion_unit(env.folder / "a", frames=2, cameras=0, with_result=True)
    assert env.once()[0] == 0
    before = query(env.db, "SELECT id, hash, updated_at FROM labels ORDER BY id")
    stats = pull_once(env)
    assert stats.labels_changed == 0
    assert query(env.db, "SELECT id, hash, updated_at FROM labels ORDER BY id") == before
