"""Xtreme1: frames of a folder parsed while pulls run reach the mirror, and classes bind like Xtreme1.

The sandbox parses as backend v0.9.1 does (one ``created_at`` per folder,
batches of five inserted in completion order, see
``syncd_sandbox/xtreme1_state.py``), so newest first a folder's late frames
sort behind the ones a pull already saw.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx

from syncd.pipeline import pull
from syncd.remotes.xtreme1 import PAGE_SIZE
from syncd.sampledata import write_fusion_unit, write_scene_unit
from tests.conftest import TOKEN, query
from tests.pipeline.conftest import Env
from tests.sandbox.test_xtreme1_strict import zip_unit

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _post(env: Env, path: str, body: dict[str, Any]) -> Any:
    r = httpx.post(f"{env.url}/api{path}", json=body, headers=AUTH, timeout=30)
    assert r.json()["code"] == "OK", r.text
    return r.json()["data"]


def _upload(env: Env, dataset_id: int, unit: Path) -> str:
    """Import ``unit`` as someone else would (presign, PUT, register); the serial."""
    urls = env.api("/data/generatePresignedUrl", fileName="u.zip", datasetId=dataset_id)
    assert httpx.put(urls["presignedUrl"], content=zip_unit(unit), timeout=60).status_code == 200
    body = {"fileUrl": urls["accessUrl"], "datasetId": dataset_id, "source": "LOCAL"}
    r = httpx.post(f"{env.url}/api/data/upload", json=body, headers=AUTH, timeout=30)
    return str(json.loads(r.text)["data"])


def _status(env: Env, serial: str) -> str:
    return str(env.api("/data/findUploadRecordBySerialNumbers", serialNumbers=serial)[0]["status"])


def _frames(env: Env) -> int:
    return int(query(env.db, "SELECT COUNT(*) FROM items WHERE kind = 'SINGLE_DATA'")[0][0])


def _pull_while_parsing(env: Env, unit: Path, frames: int, delay: float) -> list[int]:
    """Pull cycles while the unit is parsed; after PARSE_COMPLETED, two more. Mirror counts seen."""
    dataset_id = int(
        _post(env, "/dataset/create", {"name": env.dataset, "type": "LIDAR_BASIC"})["id"]
    )
    env.admin("POST", "/config", json={"parse_frame_delay": delay})
    d = env.daemon(dataset_type="LIDAR_BASIC")
    try:
        ctx = d.contexts[0]
        pull.run_once(ctx, full_sweep=False)  # the empty dataset: no cursor yet
        serial = _upload(env, dataset_id, unit)
        seen: list[int] = []
        while _status(env, serial) != "PARSE_COMPLETED":
            pull.run_once(ctx, full_sweep=False)
            seen.append(_frames(env))
        for _ in range(2):  # "within two pull intervals": two cycles
            pull.run_once(ctx, full_sweep=False)
    finally:
        d.close()
        env.admin("POST", "/config", json={"parse_frame_delay": 0.0})
    assert _frames(env) == frames, f"mirror counts while parsing: {seen}"
    return seen


def test_frames_inserted_behind_a_full_page_of_known_ones_are_found(env: Env) -> None:
    unit = env.tmp / "big"
    write_fusion_unit(unit, frames=1100, cameras=0, with_result=False, points=5)
    seen = _pull_while_parsing(env, unit, 1100, delay=0.03)  # about 6.6 s of parsing
    # pulls ran while the folder was half done, with more than a page already known:
    # exactly where the walk that stopped at a page of known ids lost the rest
    assert any(PAGE_SIZE < n < 1100 for n in seen), seen
    rows = query(env.db, "SELECT COUNT(DISTINCT remote_id), COUNT(*) FROM items")
    assert rows == [(1100, 1100)]


def test_late_frames_of_a_scene_are_found(env: Env) -> None:
    unit = env.tmp / "scene"
    write_scene_unit(unit, scene="scene_01", frames=300, cameras=0)
    seen = _pull_while_parsing(env, unit, 300, delay=0.06)  # about 3.6 s of parsing
    assert any(0 < n < 300 for n in seen), seen
    assert query(env.db, "SELECT COUNT(*) FROM items WHERE kind = 'SCENE'") == [(1,)]


def test_an_unchanged_cycle_after_the_walk_reads_one_page(env: Env) -> None:
    unit = env.tmp / "u"
    write_fusion_unit(unit, frames=620, cameras=0, with_result=False, points=5)
    _pull_while_parsing(env, unit, 620, delay=0.01)
    d = env.daemon(dataset_type="LIDAR_BASIC")
    try:
        before = env.admin("GET", "/counters")["requests"]
        pull.run_once(d.contexts[0], full_sweep=False)
        after = env.admin("GET", "/counters")["requests"]
    finally:
        d.close()
    key = "GET /api/data/findByPage"
    assert after[key] - before.get(key, 0) == 1


# --- classes --------------------------------------------------------------------------------------


def test_prelabels_bind_to_existing_classes_ignoring_case_per_tool_type(env: Env) -> None:
    dataset_id = int(
        _post(env, "/dataset/create", {"name": env.dataset, "type": "LIDAR_FUSION"})["id"]
    )
    _post(
        env,
        "/datasetClass/create",
        {"datasetId": dataset_id, "name": "Car", "color": "#ff0000", "toolType": "CUBOID"},
    )
    car = env.api(f"/datasetClass/findAll/{dataset_id}")[0]["id"]
    unit = env.folder / "drive"
    names = write_fusion_unit(unit, frames=2, cameras=1, with_result=True, classes=("car",))
    # one frame also carries a 2D box called CAR: another tool type, another class
    result = unit / "result" / f"{names[0]}.json"
    doc = json.loads(result.read_text())
    rect = [{"x": 1, "y": 1}, {"x": 9, "y": 1}, {"x": 9, "y": 9}, {"x": 1, "y": 9}]
    doc["objects"].append(
        {"type": "2D_RECT", "className": "CAR", "contour": {"points": rect, "viewIndex": 0}}
    )
    result.write_text(json.dumps(doc))

    code, _ = env.once()
    assert code == 0
    assert query(env.db, "SELECT state FROM packages") == [("done",)]
    classes = env.api(f"/datasetClass/findAll/{dataset_id}")
    assert sorted((c["name"], c["toolType"]) for c in classes) == [
        ("CAR", "BOUNDING_BOX"),
        ("Car", "CUBOID"),
    ]
    rect_class = next(c["id"] for c in classes if c["toolType"] == "BOUNDING_BOX")
    # on the platform: every box bound to a class, none left unclassified
    objects = [o for item in env.remote_items() for o in item["objects"]]
    assert objects and all("modelClass" not in o for o in objects)
    assert {(o["type"], o["classId"]) for o in objects} == {
        ("3D_BOX", car),
        ("2D_RECT", rect_class),
    }
    # in the mirror: the platform's class names and ids
    mirrored = set(query(env.db, "SELECT shape_type, class_name, class_id FROM objects"))
    assert mirrored == {("3D_BOX", "Car", str(car)), ("2D_RECT", "CAR", str(rect_class))}


def test_a_cursor_without_a_total_reads_every_page_once_then_one(env: Env) -> None:
    dataset_id = int(
        _post(env, "/dataset/create", {"name": env.dataset, "type": "LIDAR_FUSION"})["id"]
    )
    env.admin("POST", f"/datasets/{dataset_id}/seed", json={"items": 1200, "objects": 0})
    d = env.daemon()
    try:
        ctx = d.contexts[0]
        pull.run_once(ctx, full_sweep=False)
        (value,) = query(env.db, "SELECT value FROM cursors WHERE name = 'items'")[0]
        last, total = value.split(":")
        assert total == "1200"
        # the cursor an older syncd wrote: the highest id only
        with sqlite3.connect(env.db) as db:
            db.execute("UPDATE cursors SET value = ? WHERE name = 'items'", (last,))

        def listing_requests() -> int:
            before = env.admin("GET", "/counters")["requests"].get("GET /api/data/findByPage", 0)
            pull.run_once(ctx, full_sweep=False)
            return (
                int(env.admin("GET", "/counters")["requests"]["GET /api/data/findByPage"]) - before
            )

        assert listing_requests() == 3  # every page of 500
        assert query(env.db, "SELECT value FROM cursors WHERE name = 'items'") == [(value,)]
        assert listing_requests() == 1
    finally:
        d.close()
