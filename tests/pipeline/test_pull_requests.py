"""Pull: what an unchanged cycle costs in requests, and that it still sees every change."""

from __future__ import annotations

import math

import httpx

from syncd.pipeline import pull
from tests.conftest import TOKEN, query
from tests.pipeline.conftest import Env

ITEMS = 250


def seeded(env: Env, items: int = ITEMS, annotated_every: int = 0) -> int:
    r = httpx.post(
        f"{env.url}/api/dataset/create",
        json={"name": env.dataset, "type": "LIDAR_FUSION"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    dataset_id = int(r.json()["data"]["id"])
    created = env.admin(
        "POST",
        f"/datasets/{dataset_id}/seed",
        json={"items": items, "objects": 3, "annotated_every": annotated_every},
    )
    assert created["created"] == items
    return dataset_id


def counted_pull(env: Env) -> tuple[pull.PullStats, dict[str, int]]:
    """One pull cycle (dataset already resolved) and the API requests it made, per route."""
    d = env.daemon()
    try:
        ctx = d.contexts[0]
        ctx.dataset_id()
        before = env.admin("GET", "/counters")["requests"]
        stats = pull.run_once(ctx)
        after = env.admin("GET", "/counters")["requests"]
    finally:
        d.close()
    return stats, {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def test_seeded_items_mirror_with_their_objects(env: Env) -> None:
    seeded(env, items=120, annotated_every=3)
    counted_pull(env)
    assert query(env.db, "SELECT COUNT(*) FROM items") == [(120,)]
    assert query(env.db, "SELECT COUNT(*) FROM objects") == [(360,)]
    assert query(env.db, "SELECT COUNT(*) FROM items WHERE annotation_status = 'ANNOTATED'") == [
        (40,)
    ]


def test_an_unchanged_cycle_costs_one_request_per_100_unfinished_items(env: Env) -> None:
    seeded(env)
    counted_pull(env)
    _, requests = counted_pull(env)
    assert sum(requests.values()) <= math.ceil(ITEMS / 100) + 5
    assert requests.get("GET /api/data/getDataAndResult") == math.ceil(ITEMS / 100)
    assert "GET /api/data/getDataStatusByIds" not in requests  # nothing moved: no status check


def test_unchanged_cycles_still_see_submits_and_label_edits(env: Env) -> None:
    seeded(env)
    counted_pull(env)
    counted_pull(env)
    items = sorted(i["id"] for i in env.remote_items())
    box = {"center3D": {"x": 1, "y": 2, "z": 3}, "size3D": {"x": 1, "y": 1, "z": 1}}
    # a save without submit: the status stays, the labels change
    env.admin(
        "POST",
        "/annotate",
        json={
            "dataId": items[7],
            "objects": [{"type": "3D_BOX", "className": "Bus", "contour": box}],
        },
    )
    stats, requests = counted_pull(env)
    assert stats.labels_changed == 1
    assert "GET /api/data/getDataStatusByIds" not in requests
    assert query(
        env.db,
        "SELECT o.class_name FROM objects o JOIN items i ON i.id = o.item_id WHERE i.remote_id = ?",
        str(items[7]),
    ) == [("Bus",)]
    # a submit moves the status counters: statuses are checked again
    env.admin("POST", "/annotate", json={"dataId": items[200], "objects": [], "submit": True})
    stats, requests = counted_pull(env)
    assert requests.get("GET /api/data/getDataStatusByIds") == math.ceil(ITEMS / 100)
    assert query(
        env.db, "SELECT annotation_status FROM items WHERE remote_id = ?", str(items[200])
    ) == [("ANNOTATED",)]
    # and the cycle after that is quiet again, with one item fewer to re-check
    _, requests = counted_pull(env)
    assert "GET /api/data/getDataStatusByIds" not in requests
    assert sum(requests.values()) <= math.ceil((ITEMS - 1) / 100) + 5
