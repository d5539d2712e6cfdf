"""SIGTERM drains: the upload in flight finishes or is checkpointed by the deadline, exit 0.

The sandbox's object store is throttled (a slow uplink) so an upload is surely
in flight when the signal arrives.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from syncd.sampledata import write_bulk_unit
from tests.conftest import SandboxProcess, query, run_cli, wait_until, write_config
from tests.reliability.invariants import assert_exactly_once

pytestmark = [pytest.mark.e2e]


def setup(tmp_path: Path, sandbox: SandboxProcess, mb: int, shutdown: float) -> tuple[Path, Path]:
    folder = tmp_path / "in"
    write_bulk_unit(folder / "unit", total_bytes=mb * 2**20)
    cfg = write_config(
        tmp_path / "syncd.toml",
        sandbox.url,
        [{"name": "d", "dataset": "drain", "dataset_type": "LIDAR_BASIC", "folder": folder}],
    )
    cfg.write_text(f"[daemon]\nshutdown_timeout = {shutdown}\n" + cfg.read_text())
    return cfg, folder


def start(cfg: Path, tmp_path: Path) -> subprocess.Popen[bytes]:
    with (tmp_path / "daemon.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "--config", str(cfg)], stdout=out, stderr=out
        )


def throttle(sandbox: SandboxProcess, bytes_per_second: float) -> None:
    sandbox.admin(
        "POST",
        "/faults",
        json={"method": "PUT", "path": "^/minio/", "action": "throttle", "rate": bytes_per_second},
    )


def test_deadline_checkpoints_the_upload_and_exits_0(
    tmp_path: Path, sandbox_proc: SandboxProcess
) -> None:
    cfg, folder = setup(tmp_path, sandbox_proc, mb=40, shutdown=2)
    db = tmp_path / "state" / "syncd.db"
    throttle(sandbox_proc, 2e6)  # 40 MB would take 20 s
    daemon = start(cfg, tmp_path)
    wait_until(lambda: query(db, "SELECT 1 FROM packages WHERE state = 'uploading'"), 60, "upload")
    time.sleep(0.5)
    sent = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=30) == 0
    took = time.monotonic() - sent
    assert 1.5 <= took < 4.5, f"drain took {took:.1f}s with shutdown_timeout = 2s"
    assert query(db, "SELECT state FROM packages") == [("uploading",)]
    events = [e for (e,) in query(db, "SELECT event FROM events ORDER BY id")]
    assert "package.checkpointed" in events and "daemon.drain_timeout" not in events
    assert events[-1] == "daemon.stopped"
    assert sandbox_proc.admin("GET", "/counters")["data_upload_calls"] == []

    # the next start resumes from the checkpoint and finishes, once
    sandbox_proc.admin("DELETE", "/faults")
    done = run_cli("once", "--config", str(cfg))
    assert done.returncode == 0, done.stderr[-2000:]
    frames = len(list((folder / "unit" / "lidar_point_cloud_0").iterdir()))
    assert_exactly_once(db, folder, sandbox_proc.url, "drain", expected_items=frames)


def test_upload_that_fits_the_deadline_finishes(
    tmp_path: Path, sandbox_proc: SandboxProcess
) -> None:
    cfg, _ = setup(tmp_path, sandbox_proc, mb=12, shutdown=30)
    db = tmp_path / "state" / "syncd.db"
    throttle(sandbox_proc, 4e6)  # about 3 s
    daemon = start(cfg, tmp_path)
    wait_until(lambda: query(db, "SELECT 1 FROM packages WHERE state = 'uploading'"), 60, "upload")
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=30) == 0
    events = [e for (e,) in query(db, "SELECT event FROM events ORDER BY id")]
    assert "package.uploaded" in events and "package.checkpointed" not in events
    # no new step started after the signal: the archive was stored, not yet submitted
    assert query(db, "SELECT state FROM packages") == [("uploaded",)]


def test_second_signal_exits_at_once(tmp_path: Path, sandbox_proc: SandboxProcess) -> None:
    cfg, _ = setup(tmp_path, sandbox_proc, mb=40, shutdown=30)
    db = tmp_path / "state" / "syncd.db"
    throttle(sandbox_proc, 2e6)
    daemon = start(cfg, tmp_path)
    wait_until(lambda: query(db, "SELECT 1 FROM packages WHERE state = 'uploading'"), 60, "upload")
    daemon.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    sent = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=10) == 128 + signal.SIGTERM
    assert time.monotonic() - sent < 2
    assert query(db, "SELECT state FROM packages") == [("uploading",)]
