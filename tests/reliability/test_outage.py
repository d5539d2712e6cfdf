"""A platform outage: the sandbox stopped for 60 s while units arrive, then back with its data.

The daemon runs embedded (a thread, as in tests/pipeline/test_two_daemons.py);
the sandbox is one app object served in a thread, stopped (the port refuses
connections) and served again on the same port with everything it held.
Every unit must be done exactly once, the outage recorded as exactly one
``remote.unreachable`` and one ``remote.reachable``, and the waiting packages
retried when the platform is back rather than when their backoff ends.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from syncd.config import load_config
from syncd.daemon import Daemon
from syncd.sampledata import write_fusion_unit
from syncd.store.due import REMOTE_STATES
from syncd_sandbox import create_app, serve_in_thread
from tests.conftest import TOKEN, query, wait_until, write_config
from tests.reliability.invariants import assert_exactly_once

pytestmark = pytest.mark.slow

OUTAGE_SECONDS = 60.0
ARRIVALS = 6  # units dropped during the outage, one every OUTAGE_SECONDS / ARRIVALS
POLL_INTERVAL = 0.2  # write_config's poll_interval
BACKOFF_CAP = 300.0  # syncd.pipeline.backoff.backoff_delay's cap
DATASET = "outage"
REMOTE = str(REMOTE_STATES)


def _drop(folder: Path, n: int) -> int:
    """A unit written in a hidden folder and renamed into place; returns its item count."""
    stage = folder / f".staging-{n}"
    items = len(write_fusion_unit(stage, frames=2, cameras=1, with_result=n % 2 == 0, seed=n))
    stage.rename(folder / f"unit_{n:02d}")
    return items


def _events(db: Path, name: str) -> list[dict[str, Any]]:
    rows = query(db, "SELECT fields FROM events WHERE event = ? ORDER BY id", name)
    return [json.loads(f) for (f,) in rows]


def _all_done(db: Path, units: int) -> bool:
    states = query(db, "SELECT unit, state FROM packages")
    return len({u for u, _ in states}) == units and all(s == "done" for _, s in states)


class Platform:
    """One sandbox app served in a thread, stopped, and served again on the same port."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.port = 0
        self._served: Any = None

    def start(self) -> str:
        # lifespan=False: stopping the server leaves the app's state (its data) alive
        self._served = serve_in_thread(self.app, port=self.port, lifespan=False)
        url = str(self._served.__enter__())
        self.port = int(url.rsplit(":", 1)[1])
        return url

    def stop(self) -> None:
        served, self._served = self._served, None
        if served is not None:
            served.__exit__(None, None, None)


def test_a_platform_outage_loses_and_doubles_nothing_and_resumes_when_it_ends(
    tmp_path: Path,
) -> None:
    app = create_app("xtreme1", TOKEN, tmp_path / "sandbox")
    platform = Platform(app)
    try:
        _run(platform, tmp_path)
    finally:
        platform.stop()
        app.state.sandbox.state.close()


def _run(platform: Platform, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    url = platform.start()
    cfg = write_config(
        tmp_path / "syncd.toml", url, [{"name": "o", "dataset": DATASET, "folder": folder}]
    )
    db = tmp_path / "state" / "syncd.db"
    daemon = Daemon(load_config(cfg))
    runner = threading.Thread(target=daemon.run, name="daemon")
    runner.start()
    expected = 0
    try:
        expected += _drop(folder, 0)
        wait_until(lambda: _all_done(db, 1), 60, "the first unit done")

        platform.stop()  # the platform goes away: its port refuses connections
        stopped = time.monotonic()
        for n in range(1, ARRIVALS + 1):
            expected += _drop(folder, n)
            time.sleep(max(0.0, stopped + n * OUTAGE_SECONDS / ARRIVALS - time.monotonic()))
        assert query(db, "SELECT COUNT(*) FROM packages WHERE state = 'done'") == [(1,)]
        assert len(_events(db, "remote.unreachable")) == 1
        # Every waiting package as if its backoff had reached the cap: only the retry
        # at the platform's return can bring them back before that.
        with sqlite3.connect(db, timeout=30) as conn:
            changed = conn.execute(
                f"UPDATE packages SET next_attempt_at = ? WHERE attempts > 0 AND state IN {REMOTE}",
                (time.time() + BACKOFF_CAP,),
            ).rowcount
        assert changed > 0  # units dropped a while ago have failed and wait

        assert platform.start() == url
        back = time.monotonic()
        # The bound stated in the README: the first answer to any request (a pull
        # runs every pull_interval = 1 s here; without pulls, a package's own
        # retry comes within the backoff cap) makes every waiting package due at
        # once; each then needs its upload, a submit and at most two processing
        # polls. The wait is that generous bound, so a slow machine does not fail
        # the test; that the resume did not wait out the backoff is asserted below.
        wait_until(
            lambda: _all_done(db, ARRIVALS + 1),
            2 * POLL_INTERVAL + BACKOFF_CAP,
            "every unit done after the platform's return",
        )
        resumed = time.monotonic() - back
        assert resumed < BACKOFF_CAP - 10, resumed  # not the backoff: the return woke them
    finally:
        daemon.stop.set()
        daemon.wake.set()
        runner.join(timeout=60)
        daemon.close()
    print(f"all done {resumed:.1f} s after the platform's return")
    assert_exactly_once(db, folder, url, DATASET, expected_items=expected)
    [down] = _events(db, "remote.unreachable")
    assert down["remote"] == "sb" and down["kind"] in ("refused", "connection")
    [up] = _events(db, "remote.reachable")
    assert up["remote"] == "sb" and up["failed_requests"] >= ARRIVALS
    # it starts at the first request that fails after its retries, a moment after the stop
    assert OUTAGE_SECONDS - 10 <= up["outage_seconds"] < OUTAGE_SECONDS + BACKOFF_CAP
    assert up["packages_due"] >= 1
