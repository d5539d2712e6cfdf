"""kill -9 in the middle of a 300 MB Deepen upload; the restarted daemon resumes, it does not restart.

The proof that the resume is real: after the restart the upload host receives
fewer bytes than the archive holds, the daemon records where it resumed, one
session (one Deepen dataset) served the whole upload, and the platform's copy
has the archive's MD5.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import col, select

import syncd_sandbox as sandbox
from syncd.sampledata import write_bulk_unit
from syncd.store import PackageFile, Store
from tests.conftest import TOKEN, admin_call, query, wait_until
from tests.deepen_support import converted_md5, file_md5, write_deepen_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
TOTAL = 300 * 1024 * 1024


def start_daemon(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "--config", str(cfg)], stdout=out, stderr=out
        )


def test_sigkill_mid_upload_resumes_from_what_the_platform_holds(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write_bulk_unit(folder / "big_unit", total_bytes=TOTAL)
    sb = sandbox.SandboxProcess("deepen", token=TOKEN, data_dir=tmp_path / "sandbox-data")
    daemon: subprocess.Popen[bytes] | None = None
    try:
        cfg = write_deepen_config(
            tmp_path / "syncd.toml",
            sb.url,
            [
                {
                    "name": "big",
                    "dataset": "crash-300mb",
                    "dataset_type": "LIDAR_BASIC",
                    "folder": folder,
                }
            ],
            chunk="8MiB",
        )
        db = tmp_path / "state" / "syncd.db"

        def admin(method: str, path: str, **kw: object) -> dict:  # type: ignore[type-arg]
            return dict(admin_call(sb.url, method, path, **kw))

        # Slow every chunk a little so the kill surely lands mid-upload.
        admin(
            "POST",
            "/faults",
            json={
                "method": "PUT",
                "path": "^/upload/",
                "action": "delay",
                "delay": 0.2,
                "times": None,
            },
        )
        daemon = start_daemon(cfg, tmp_path / "daemon.log")

        def persisted() -> int:
            rows = admin("GET", "/counters")["datasets"]
            return max((r["persisted"] for r in rows.values()), default=0)

        wait_until(lambda: persisted() >= 100 * 1024 * 1024, 180, "100 MB on the platform")
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(timeout=10)
        before = admin("GET", "/counters")
        held = persisted()
        assert held < TOTAL
        assert query(db, "SELECT state FROM packages") == [("uploading",)]

        admin("DELETE", "/faults")
        daemon = start_daemon(cfg, tmp_path / "daemon.log")
        wait_until(
            lambda: query(db, "SELECT 1 FROM packages WHERE state IN ('done', 'failed')"),
            300,
            "the package to finish",
        )
        assert query(db, "SELECT state, last_error FROM packages") == [("done", None)]
        after = admin("GET", "/counters")
        sent_after_restart = after["bytes_received"] - before["bytes_received"]
        archive_bytes = query(db, "SELECT archive_bytes FROM packages")[0][0]
        print(
            f"archive {archive_bytes} B; held at the kill {held} B; "
            f"sent after the restart {sent_after_restart} B"
        )
        assert 0 < sent_after_restart < archive_bytes
        assert sent_after_restart <= archive_bytes - held + 8 * 1024 * 1024
        # one session, one Deepen dataset, processed once
        (ds_id,) = after["datasets"]
        info = after["datasets"][ds_id]
        assert info["processing_status"] == "files_getting_labelled" and info["process_calls"] == 1
        assert query(db, "SELECT COUNT(*) FROM events WHERE event = 'package.upload_session'") == [
            (1,)
        ]
        assert query(db, "SELECT COUNT(*) FROM events WHERE event = 'package.uploading'") == [(1,)]
        (fields,) = query(db, "SELECT fields FROM events WHERE event = 'package.uploaded'")
        resumed = json.loads(fields[0])
        assert resumed["upload_resumed_from"] >= held - 8 * 1024 * 1024
        assert resumed["upload_bytes_sent"] == archive_bytes - resumed["upload_resumed_from"]
        # the platform's copy is byte-identical to the archive
        store = Store(tmp_path / "state")
        try:
            with store.read() as s:
                files = list(s.exec(select(PackageFile).order_by(col(PackageFile.id))).all())
        finally:
            store.close()
        stored = Path(admin("GET", f"/objects/{ds_id}")["path"])
        assert stored.stat().st_size == archive_bytes
        assert file_md5(stored) == converted_md5(folder, files)
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=60) == 0
        sb.stop()
        # 600 MB of test data: do not leave it for pytest's kept temp dirs.
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(tmp_path / "sandbox-data", ignore_errors=True)
