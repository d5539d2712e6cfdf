"""`syncd run`: a unit dropped while the daemon runs is found by the watcher; SIGTERM drains."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from syncd.sampledata import write_fusion_unit
from tests.conftest import SandboxProcess, query, wait_until, write_config

pytestmark = pytest.mark.e2e


def test_unit_dropped_while_running_is_uploaded_and_labels_arrive(
    tmp_path: Path, sandbox_proc: SandboxProcess
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    cfg = write_config(
        tmp_path / "syncd.toml",
        sandbox_proc.url,
        [{"name": "live", "dataset": "live", "folder": folder, "pull_interval": 1}],
    )
    db = tmp_path / "state" / "syncd.db"
    with (tmp_path / "daemon.log").open("wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "--config", str(cfg)], stdout=log, stderr=log
        )
    try:
        wait_until(
            lambda: query(db, "SELECT 1 FROM events WHERE event = 'daemon.started'"),
            30,
            "the daemon to start",
        )
        # written into a hidden staging folder, then renamed into place, as copy tools do
        write_fusion_unit(folder / ".staging", frames=2, cameras=1, with_result=True)
        (folder / ".staging").rename(folder / "drive_9")
        wait_until(
            lambda: query(db, "SELECT 1 FROM packages WHERE state = 'done'"),
            60,
            "the unit to be done",
        )
        wait_until(lambda: query(db, "SELECT COUNT(*) FROM items")[0][0] == 2, 30, "the pull")
        assert query(db, "SELECT COUNT(*) FROM objects")[0][0] > 0
        assert [u for (u,) in query(db, "SELECT unit FROM packages")] == ["drive_9"]
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=60)
    assert code == 0, (tmp_path / "daemon.log").read_text()[-2000:]
    events = [
        e for (e,) in query(db, "SELECT event FROM events WHERE event LIKE 'daemon.%' ORDER BY id")
    ]
    assert events == ["daemon.started", "daemon.stopping", "daemon.stopped"]
    assert len(sandbox_proc.admin("GET", "/counters")["data_upload_calls"]) == 1
