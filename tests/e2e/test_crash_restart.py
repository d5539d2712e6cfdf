"""kill -9 while a 200 MB unit is uploading; the restarted daemon finishes it, importing it once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from syncd.sampledata import write_bulk_unit
from tests.conftest import SandboxProcess, query, wait_until, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def start_daemon(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "--config", str(cfg)], stdout=out, stderr=out
        )


def test_sigkill_during_upload_then_restart(tmp_path: Path, sandbox_proc: SandboxProcess) -> None:
    folder = tmp_path / "in"
    write_bulk_unit(folder / "big_unit", total_bytes=200 * 1024 * 1024)
    frames = len(list((folder / "big_unit" / "lidar_point_cloud_0").iterdir()))
    cfg = write_config(
        tmp_path / "syncd.toml",
        sandbox_proc.url,
        [
            {
                "name": "big",
                "dataset": "crash-200mb",
                "dataset_type": "LIDAR_BASIC",
                "folder": folder,
            }
        ],
    )
    db = tmp_path / "state" / "syncd.db"
    # Slow the object store down so the upload is surely in flight when we kill.
    sandbox_proc.admin(
        "POST",
        "/faults",
        json={"method": "PUT", "path": "^/minio/", "action": "delay", "delay": 3.0, "times": 1},
    )

    daemon = start_daemon(cfg, tmp_path / "daemon.log")
    wait_until(
        lambda: query(db, "SELECT 1 FROM packages WHERE state = 'uploading'"),
        60,
        "the upload to start",
    )
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.wait(timeout=10)
    assert query(db, "SELECT state FROM packages") == [("uploading",)]
    assert sandbox_proc.admin("GET", "/counters")["data_upload_calls"] == []

    daemon = start_daemon(cfg, tmp_path / "daemon.log")
    try:
        wait_until(
            lambda: query(db, "SELECT 1 FROM packages WHERE state IN ('done', 'failed')"),
            180,
            "the package to finish",
        )
        assert query(db, "SELECT state, last_error FROM packages") == [("done", None)]
        counters = sandbox_proc.admin("GET", "/counters")
        assert len(counters["data_upload_calls"]) == 1
        ds = sandbox_proc.api("/dataset/findByPage", name="crash-200mb", pageNo=1, pageSize=10)[
            "list"
        ][0]
        items = sandbox_proc.api("/data/findByPage", datasetId=ds["id"], pageNo=1, pageSize=1000)
        assert items["total"] == frames
        assert len({i["name"] for i in items["list"]}) == frames
        # the daemon's own events tell the story: uploading twice (before and after the kill), done once
        uploading = query(db, "SELECT COUNT(*) FROM events WHERE event = 'package.uploading'")[0][0]
        assert uploading == 1  # state 'uploading' was entered once; the restart resumed it
        assert query(db, "SELECT COUNT(*) FROM events WHERE event = 'package.done'")[0][0] == 1
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
