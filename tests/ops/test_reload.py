"""SIGHUP re-reads the config: syncs added, removed and changed without a restart; a bad
config is refused with the key and value, and the running one stays."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from syncd.sampledata import write_bulk_unit
from tests.conftest import query, wait_until, write_config
from tests.ops.notify import NotifySocket

pytestmark = [pytest.mark.e2e]


def events(db: Path, name: str) -> list[dict[str, Any]]:
    return [
        json.loads(f)
        for (f,) in query(db, "SELECT fields FROM events WHERE event = ? ORDER BY id", name)
    ]


def done(db: Path, sync: str, unit: str) -> bool:
    return bool(
        query(
            db, "SELECT 1 FROM packages WHERE sync = ? AND unit = ? AND state = 'done'", sync, unit
        )
    )


def last_pull(db: Path, sync: str) -> str | None:
    rows = query(db, "SELECT value FROM cursors WHERE sync = ? AND name = 'last_pull_at'", sync)
    return rows[0][0] if rows else None


def test_sighup_adds_removes_and_changes_syncs(tmp_path: Path, sandbox_url: str) -> None:
    tag = uuid.uuid4().hex[:8]
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    sync_a = {"name": "a", "dataset": f"reload-a-{tag}", "folder": a, "dataset_type": "LIDAR_BASIC"}
    sync_b = {
        "name": "b",
        "dataset": f"reload-b-{tag}",
        "folder": b,
        "dataset_type": "LIDAR_BASIC",
        "pull_interval": 3600,
    }
    cfg = tmp_path / "syncd.toml"
    write_config(cfg, sandbox_url, [sync_a])
    db = tmp_path / "state" / "syncd.db"
    ns = NotifySocket()
    with (tmp_path / "daemon.log").open("ab") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "--config", str(cfg)],
            stdout=out,
            stderr=out,
            env={**os.environ, "NOTIFY_SOCKET": ns.address},
        )
    try:
        ns.wait_for(lambda: ns.times("READY=1"), 90, "READY=1")

        # 1. add b
        write_config(cfg, sandbox_url, [sync_a, sync_b])
        daemon.send_signal(signal.SIGHUP)
        wait_until(lambda: events(db, "daemon.reloaded"), 30, "daemon.reloaded")
        assert events(db, "daemon.reloaded")[0]["added"] == ["b"]
        # RELOADING=1 before the reload, READY=1 again after it
        ns.wait_for(lambda: len(ns.times("READY=1")) == 2, 10, "READY=1 after the reload")
        assert ns.times("RELOADING=1")[0] < ns.times("READY=1")[1]
        write_bulk_unit(b / "u1", total_bytes=100_000)
        wait_until(lambda: done(db, "b", "u1"), 120, "b's unit done")
        first_pull = wait_until(lambda: last_pull(db, "b"), 30, "b pulled once")

        # 2. remove a, and b pulls every second instead of every hour
        write_config(cfg, sandbox_url, [{**sync_b, "pull_interval": 1}])
        daemon.send_signal(signal.SIGHUP)
        wait_until(lambda: len(events(db, "daemon.reloaded")) == 2, 30, "second reload")
        second = events(db, "daemon.reloaded")[1]
        assert second["removed"] == ["a"] and second["changed"] == ["b"]
        seen = {first_pull}
        wait_until(
            lambda: seen.add(last_pull(db, "b")) or len(seen) >= 3,
            30,
            "b pulled again twice: the new interval applies",
        )
        write_bulk_unit(a / "u2", total_bytes=100_000)
        time.sleep(4)  # a is not watched any more: nothing happens to u2
        assert not query(db, "SELECT 1 FROM packages WHERE sync = 'a' AND unit = 'u2'")

        # 3. a bad config: refused, naming the key and the value; b keeps working
        bad = cfg.read_text().replace('remote = "sb"', 'remote = "nope"')
        cfg.write_text(bad)
        daemon.send_signal(signal.SIGHUP)
        wait_until(lambda: events(db, "daemon.reload_failed"), 30, "daemon.reload_failed")
        failed = events(db, "daemon.reload_failed")[0]
        assert failed["error"] == "syncs[b].remote: no remote named 'nope' (known: sb)"
        assert failed["action"] == "keeping the running configuration"
        cfg.write_text("[[syncs]\nname = ")  # not even TOML
        daemon.send_signal(signal.SIGHUP)
        wait_until(lambda: len(events(db, "daemon.reload_failed")) == 2, 30, "second refusal")
        assert "is not valid TOML" in events(db, "daemon.reload_failed")[1]["error"]
        write_bulk_unit(b / "u3", total_bytes=100_000)
        wait_until(lambda: done(db, "b", "u3"), 120, "b still uploads after refused reloads")
        assert daemon.poll() is None
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0
    finally:
        ns.close()
        if daemon.poll() is None:
            daemon.kill()
    log = (tmp_path / "daemon.log").read_text()
    assert "Traceback" not in log
