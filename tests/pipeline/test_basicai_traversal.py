"""Pulling a large BasicAI dataset: every item once, and the request count batching promises.

Request formula for one first pull of N data items (no scenes), from the
sandbox's counters: ``listById`` 1 (find the dataset) + ``listItemById``
floor(N/100)+1 (a page shorter than 100 ends the walk, so N a multiple of
100 costs one more, empty page) + ``batchDataAnnotationResult`` ceil(N/100)
+ ``listAnnotationSource`` 1 (once results name a source) = 2*N/100 + 3 for N a multiple of 100:
**2 003 requests for 100 000 items**, not 100 000.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd.config import load_config
from syncd.daemon import Daemon
from syncd.pipeline import pull
from syncd_sandbox import run_in_thread
from tests.conftest import TOKEN, admin_call, query, write_config

pytestmark = pytest.mark.slow

N = 10_000


def requests_for(n: int) -> int:
    """The formula above (first pull, data items only)."""
    return 1 + (n // 100 + 1) + math.ceil(n / 100) + 1


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[str]:
    with run_in_thread("basicai", token=TOKEN, data_dir=tmp_path / "sb") as url:
        yield url


def _setup(tmp_path: Path, url: str, n: int = N) -> tuple[Daemon, int]:
    folder = tmp_path / "in"
    folder.mkdir()
    cfg = write_config(
        tmp_path / "syncd.toml",
        url,
        [{"name": "s", "dataset": "big", "dataset_type": "LIDAR_FUSION", "folder": folder}],
        platform="basicai",
    )
    created = httpx.post(
        f"{url}/api/v1/dataset/create",
        json={"name": "big", "type": "LIDAR_FUSION"},
        headers={"Authorization": f"ApiKey {TOKEN}"},
    ).json()["data"]
    ds = int(created["id"])
    for start in range(0, n, 2000):
        admin_call(
            url,
            "POST",
            f"/datasets/{ds}/items",
            json={"names": [f"f{i:06d}" for i in range(start, min(n, start + 2000))]},
        )
    # a few items already labelled (the results name their source: one listAnnotationSource)
    ids = [int(r["id"]) for r in admin_call(url, "GET", f"/datasets/{ds}/items")["items"]]
    for rid in ids[:: max(1, n // 4)]:
        admin_call(url, "POST", "/annotate", json={"dataId": rid, "objects": [], "submit": True})
    return Daemon(load_config(cfg)), ds


def _api_requests(url: str) -> dict[str, int]:
    return {
        k: v for k, v in admin_call(url, "GET", "/counters")["requests"].items() if "/api/" in k
    }


def test_request_count_of_a_full_pull_is_what_batching_promises(
    tmp_path: Path, sandbox: str
) -> None:
    d, _ = _setup(tmp_path, sandbox)
    before = sum(_api_requests(sandbox).values())
    try:
        stats = pull.run_once(d.contexts[0])
    finally:
        d.close()
    counts = _api_requests(sandbox)
    used = sum(counts.values()) - before
    print(f"\n{N} items pulled with {used} requests: {counts}")
    print(
        f"formula 1 + (N//100 + 1) + ceil(N/100) + 1 → 100 000 items: {requests_for(100_000)} requests"
    )
    assert stats.new_items == N
    assert used == requests_for(N)
    assert query(
        tmp_path / "state" / "syncd.db", "SELECT COUNT(*), COUNT(DISTINCT remote_id) FROM items"
    ) == [(N, N)]


def test_items_added_and_labelled_during_the_pull_arrive_exactly_once(
    tmp_path: Path, sandbox: str
) -> None:
    d, ds = _setup(tmp_path, sandbox)
    # a slow platform: the walk takes long enough for the annotators to work meanwhile
    # (every page 50 ms, 100 pages: the walk is still running while the annotators
    # work; a rule fires once unless "times" says otherwise)
    admin_call(
        sandbox,
        "POST",
        "/faults",
        json={
            "method": "GET",
            "path": "listItemById",
            "action": "delay",
            "delay": 0.05,
            "times": None,
        },
    )
    ids = [int(r["id"]) for r in admin_call(sandbox, "GET", f"/datasets/{ds}/items")["items"]]
    done = threading.Event()
    result: list[pull.PullStats] = []

    def run() -> None:
        try:
            result.append(pull.run_once(d.contexts[0]))
        finally:
            done.set()

    t = threading.Thread(target=run)
    t.start()
    added = 0
    # each labelled once, at a moment the walk may be before, on or past its page:
    # a page read before the label leaves the item unfinished for the next cycle
    labelled = [ids[10], ids[2500], ids[5000], ids[7500], ids[-1]]
    time.sleep(0.3)
    for n in range(5):
        assert not done.is_set(), "the pull ended before the platform changed under it"
        admin_call(
            sandbox,
            "POST",
            f"/datasets/{ds}/items",
            json={"names": [f"late{n}-{k}" for k in range(40)]},
        )
        added += 40
        _label(sandbox, labelled[n], f"C{n}")
        time.sleep(0.2)
    t.join(timeout=300)
    assert result, "the first pull did not finish"
    admin_call(sandbox, "DELETE", "/faults")
    db = tmp_path / "state" / "syncd.db"
    try:
        pull.run_once(
            d.contexts[0], full_sweep=False
        )  # re-checks the unfinished, picks up the rest
        assert query(db, "SELECT COUNT(*), COUNT(DISTINCT remote_id) FROM items") == [
            (N + added, N + added)
        ]
        assert _classes(db) == {str(labelled[n]): f"C{n}" for n in range(5)}
        # an edit to an item already finished in the mirror arrives with the full sweep
        _label(sandbox, labelled[2], "EDITED")
        pull.run_once(d.contexts[0], full_sweep=True)
    finally:
        d.close()
    want = {str(labelled[n]): f"C{n}" for n in range(5)} | {str(labelled[2]): "EDITED"}
    assert _classes(db) == want
    assert query(db, "SELECT COUNT(*), COUNT(DISTINCT remote_id) FROM items") == [
        (N + added, N + added)
    ]


def _label(url: str, data_id: int, cls: str) -> None:
    box: dict[str, Any] = {"center3D": {"x": 0, "y": 0, "z": 0}, "size3D": {"x": 1, "y": 1, "z": 1}}
    admin_call(
        url,
        "POST",
        "/annotate",
        json={
            "dataId": data_id,
            "objects": [{"type": "3D_BOX", "className": cls, "contour": box}],
            "submit": True,
        },
    )


def _classes(db: Path) -> dict[str, str]:
    rows = query(
        db,
        "SELECT i.remote_id, o.class_name FROM objects o JOIN items i ON i.id = o.item_id"
        " ORDER BY i.remote_id",
    )
    return {str(k): str(v) for k, v in rows}


def test_a_recheck_costs_one_call_per_100_unfinished_items(tmp_path: Path, sandbox: str) -> None:
    d, _ = _setup(tmp_path, sandbox, n=250)
    try:
        pull.run_once(d.contexts[0])
        before = _api_requests(sandbox)
        pull.run_once(d.contexts[0])  # nothing new; 245 items are not finished
    finally:
        d.close()
    after = _api_requests(sandbox)
    used = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    print(f"\nre-check of 245 unfinished items: {used}")
    assert used == {
        "GET /api/v1/dataset/listItemById/{id}": 1,  # the cursor's walk: one short page
        "GET /api/v1/dataset/batchDataAnnotationResult/{id}/": 3,  # states and labels at once
    }
