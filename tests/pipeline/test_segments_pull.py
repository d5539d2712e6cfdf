"""Pulling a Segments.ai dataset: every sample once, and what each cycle costs.

Request formula (listings of ``GET /datasets/{id}/samples/``, 1000 per page):

* first pull of N samples: 1 (the labels cursor's mark) + floor(N/1000)+1
  (the ascending walk; a page shorter than 1000 ends it, "Invalid page."
  after a full one) → **4 for 2 500**,
  **102 for 100 000**;
* a cycle with nothing new: 2 (the newest-first heads of the two listings);
* a cycle after k labels changed (k ≤ 1000): still 2, and exactly those k
  items' labels are written;
* the full sweep: floor(N/1000)+1 more.

Labels and statuses of the unfinished items come with the listings, so the
re-check of unfinished items costs nothing more in a running daemon.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from syncd.config import load_config
from syncd.daemon import Daemon
from syncd.pipeline import pull
from syncd_sandbox import run_in_thread
from tests.conftest import TOKEN, admin_call, query, write_config

N = 2500
AUTH = {"Authorization": f"APIKey {TOKEN}"}
DS = "sandbox-user/big"


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with run_in_thread("segments", token=TOKEN, data_dir=tmp_path / "sb") as u:
        yield u


def listings(url: str) -> int:
    counts = admin_call(url, "GET", "/counters")["requests"]
    return int(counts.get(f"GET /datasets/{DS}/samples/", 0))


def test_first_pull_then_cheap_cycles_then_changes_and_the_sweep(url: str, tmp_path: Path) -> None:
    cats = {"format_version": "0.1", "categories": [{"id": 1, "name": "Car"}]}
    r = httpx.post(
        f"{url}/user/datasets/",
        json={"name": "big", "task_type": "pointcloud-cuboid-sequence", "task_attributes": cats},
        headers=AUTH,
    )
    assert r.status_code == 201
    frame = {"frames": [{"pcd": {"url": "https://example.com/a.pcd", "type": "pcd"}}]}
    for start in range(0, N, 500):
        batch = [{"name": f"s{i:05d}", "attributes": frame} for i in range(start, start + 500)]
        r = httpx.post(f"{url}/datasets/{DS}/samples_bulk/", json=batch, headers=AUTH, timeout=60)
        assert r.status_code == 201
    cfg = write_config(
        tmp_path / "syncd.toml",
        url,
        [{"name": "s", "dataset": "big", "dataset_type": "LIDAR_BASIC", "push": False}],
        platform="segments",
    )
    db = tmp_path / "state" / "syncd.db"
    d = Daemon(load_config(cfg))
    try:
        ctx = d.contexts[0]
        before = listings(url)
        stats = pull.run_once(ctx)
        assert stats.new_items == N
        assert listings(url) - before == 1 + (N // 1000 + 1)
        assert query(db, "SELECT COUNT(*), COUNT(DISTINCT remote_id) FROM items") == [(N, N)]

        before = listings(url)
        assert not pull.run_once(ctx).changed()
        assert listings(url) - before == 2

        rows = admin_call(url, "GET", f"/datasets/{DS}/samples")["samples"]
        labelled = [s["uuid"] for s in rows[:: N // 5]]
        cuboid = {
            "id": 1,
            "category_id": 1,
            "type": "cuboid",
            "track_id": 1,
            "position": {"x": 1, "y": 2, "z": 0},
            "dimensions": {"x": 4, "y": 2, "z": 1.5},
            "yaw": 0.0,
        }
        for u in labelled:
            body = {"sample_uuid": u, "attributes": {"frames": [{"annotations": [cuboid]}]}}
            admin_call(url, "POST", "/annotate", json=body)
        before = listings(url)
        stats = pull.run_once(ctx)
        assert stats.labels_changed == len(labelled) and stats.new_items == 0
        assert listings(url) - before == 2
        marks = ",".join("?" * len(labelled))
        assert query(
            db,
            f"SELECT DISTINCT annotation_status, status FROM items WHERE remote_id IN ({marks})",
            *labelled,
        ) == [("ANNOTATED", "LABELED")]
        assert query(db, "SELECT COUNT(*) FROM objects WHERE class_name = 'Car'") == [
            (len(labelled),)
        ]

        # deletions (a sample and a label) only the sweep sees
        httpx.delete(f"{url}/samples/{rows[1]['uuid']}/", headers=AUTH)
        httpx.delete(f"{url}/labels/{labelled[0]}/ground-truth/", headers=AUTH)
        before = listings(url)
        stats = pull.run_once(ctx, full_sweep=True)
        assert stats.swept and stats.deleted == 1
        assert listings(url) - before == 2 + ((N - 1) // 1000 + 1)
        assert query(
            db,
            "SELECT COUNT(*) FROM labels l JOIN items i ON i.id = l.item_id "
            "WHERE l.deleted_at IS NULL",
        ) == [(len(labelled) - 1,)]
    finally:
        d.close()
