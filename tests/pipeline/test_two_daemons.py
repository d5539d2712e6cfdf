"""Two daemons in one process (two configs, two state folders) share nothing: not their
events, not their metrics (HTTP counters included), not their heartbeats."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

from syncd.config import load_config
from syncd.daemon import Daemon
from syncd.sampledata import write_fusion_unit
from tests.conftest import query, wait_until, write_config


def _daemon(tmp_path: Path, url: str, name: str) -> Daemon:
    folder = tmp_path / name / "in"
    folder.mkdir(parents=True)
    sync = {"name": name, "dataset": f"two-{name}-{uuid.uuid4().hex[:8]}", "folder": folder}
    # the same remote name "sb" in both: the HTTP counters' label collides on purpose
    return Daemon(load_config(write_config(tmp_path / name / "syncd.toml", url, [sync])))


def _sample(d: Daemon, metric: str, **labels: str) -> float:
    return d.metrics.registry.get_sample_value(metric, labels) or 0.0


def test_two_daemons_in_one_process_do_not_see_each_other(tmp_path: Path, sandbox_url: str) -> None:
    one, two = _daemon(tmp_path, sandbox_url, "one"), _daemon(tmp_path, sandbox_url, "two")
    seen: dict[str, list[Any]] = {"one": [], "two": []}
    one.store.add_commit_listener(lambda name, fields: seen["one"].append(fields.get("sync")))
    two.store.add_commit_listener(lambda name, fields: seen["two"].append(fields.get("sync")))
    write_fusion_unit(tmp_path / "one" / "in" / "u", frames=1, cameras=0, seed=1)
    write_fusion_unit(tmp_path / "two" / "in" / "u", frames=3, cameras=1, seed=2)
    files = {
        n: len([p for p in (tmp_path / n / "in" / "u").rglob("*") if p.is_file()])
        for n in ("one", "two")
    }
    assert files["one"] != files["two"]
    threads = {n: threading.Thread(target=d.run) for n, d in (("one", one), ("two", two))}
    for t in threads.values():
        t.start()
    try:
        for n in ("one", "two"):
            db = tmp_path / n / "state" / "syncd.db"
            wait_until(
                lambda db=db: (
                    query(db, "SELECT COUNT(*) FROM packages WHERE state = 'done'")[0][0] == 1
                ),
                90,
                f"{n}'s package done",
            )
        for n, d in (("one", one), ("two", two)):
            other = "two" if n == "one" else "one"
            assert _sample(d, "syncd_uploaded_files_total", sync=n) == files[n]
            assert _sample(d, "syncd_uploaded_files_total", sync=other) == 0
            assert _sample(d, "syncd_packages_finished_total", sync=n, state="done") == 1
            assert f"pull:{n}" in d.heartbeats.ages()
            assert f"pull:{other}" not in d.heartbeats.ages()
            assert set(seen[n]) <= {n, None} and n in seen[n]
            db = tmp_path / n / "state" / "syncd.db"
            assert query(db, "SELECT COUNT(*) FROM events WHERE sync = ?", other) == [(0,)]

        # one stops; two keeps pulling: one's HTTP counters stay where they are
        one.stop.set()
        one.wake.set()
        threads["one"].join(timeout=60)
        requests = _sample(one, "syncd_http_requests_total", remote="sb", status="200")
        assert requests > 0
        pulls = _sample(two, "syncd_pulls_total", sync="two", result="ok")
        wait_until(
            lambda: _sample(two, "syncd_pulls_total", sync="two", result="ok") >= pulls + 2,
            30,
            "two more pulls of two",
        )
        assert _sample(one, "syncd_http_requests_total", remote="sb", status="200") == requests
        assert _sample(two, "syncd_http_requests_total", remote="sb", status="200") > 0
    finally:
        for d in (one, two):
            d.stop.set()
            d.wake.set()
        for t in threads.values():
            t.join(timeout=60)
        one.close()
        two.close()
