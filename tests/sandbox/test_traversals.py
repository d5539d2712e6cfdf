"""The sandbox's traversal record finds two clients pulling one dataset at once, and only that."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from syncd_sandbox import serve_in_thread
from syncd_sandbox.traversals import TraversalLog
from syncd_sandbox.xtreme1 import create_app

AUTH = {"Authorization": "Bearer tok"}


def _pull(url: str, agent: str, dataset: int, pages: int) -> None:
    with httpx.Client(base_url=url, headers={**AUTH, "User-Agent": agent}, timeout=30) as c:
        c.get(f"/api/dataset/{dataset}/statistics/dataStatus").raise_for_status()
        for n in range(1, pages + 1):
            r = c.get("/api/data/findByPage", params={"datasetId": dataset, "pageNo": n})
            r.raise_for_status()
        # a name check is a push-side question, not part of a pull
        c.get(
            "/api/data/findByPage", params={"datasetId": dataset, "pageNo": 1, "name": "x"}
        ).raise_for_status()


def test_concurrent_pulls_overlap_and_sequential_ones_do_not(tmp_path: Path) -> None:
    with serve_in_thread(create_app("tok", tmp_path)) as url:
        r = httpx.post(
            f"{url}/api/dataset/create", headers=AUTH, json={"name": "d", "type": "LIDAR_BASIC"}
        )
        ds = int(r.json()["data"]["id"])
        httpx.post(f"{url}/__sandbox/config", json={"traversal_delay": 0.02, "traversal_gap": 0.2})
        # one after the other, a pause between: two traversals, no overlap
        _pull(url, "syncd (a)", ds, 4)
        time.sleep(0.4)
        _pull(url, "syncd (b)", ds, 4)
        report = httpx.get(f"{url}/__sandbox/traversals").json()
        assert [(t["client"], t["requests"]) for t in report["traversals"]] == [
            ("syncd (a)", 5),
            ("syncd (b)", 5),
        ]
        assert report["overlaps"] == []
        # at the same time: the overlap is reported
        httpx.delete(f"{url}/__sandbox/traversals")
        threads = [threading.Thread(target=_pull, args=(url, agent, ds, 6)) for agent in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        report = httpx.get(f"{url}/__sandbox/traversals").json()
        assert len(report["overlaps"]) == 1
        assert {t["client"] for t in report["overlaps"][0]} == {"a", "b"}


def test_one_client_never_overlaps_itself_and_datasets_are_apart() -> None:
    log = TraversalLog()
    log.record(1, "a", 0.0, 1.0)
    log.record(1, "a", 0.5, 1.5)  # a client's own concurrent requests: one traversal
    log.record(2, "b", 0.2, 0.8)  # another dataset
    log.record(1, "b", 3.0, 4.0)  # after a's traversal ended
    report = log.report(gap=0.5)
    assert report["overlaps"] == []
    assert [(t["dataset"], t["client"], t["requests"]) for t in report["traversals"]] == [
        (1, "a", 2),
        (2, "b", 1),
        (1, "b", 1),
    ]
