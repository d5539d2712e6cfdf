"""SIGTERM during a Deepen upload: cut at the drain deadline, exit 0, and the next start resumes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

import syncd_sandbox as sandbox
from syncd.sampledata import write_bulk_unit
from syncd.store import PackageFile, Store
from tests.conftest import TOKEN, admin_call, query, run_cli, wait_until
from tests.deepen_support import converted_md5, file_md5, write_deepen_config

pytestmark = [pytest.mark.e2e]


def test_drain_deadline_checkpoints_and_the_next_start_resumes(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write_bulk_unit(folder / "unit", total_bytes=24 * 2**20)
    sb = sandbox.SandboxProcess("deepen", token=TOKEN, data_dir=tmp_path / "sandbox-data")
    try:

        def admin(method: str, path: str, **kw: Any) -> Any:
            return admin_call(sb.url, method, path, **kw)

        cfg = write_deepen_config(
            tmp_path / "syncd.toml",
            sb.url,
            [{"name": "d", "dataset": "drain", "dataset_type": "LIDAR_BASIC", "folder": folder}],
            chunk="1MiB",
        )
        cfg.write_text("[daemon]\nshutdown_timeout = 2\n" + cfg.read_text())
        db = tmp_path / "state" / "syncd.db"
        admin(
            "POST",
            "/faults",
            json={
                "method": "PUT",
                "path": "^/upload/",
                "action": "throttle",
                "rate": 2e6,
                "times": None,
            },
        )
        with (tmp_path / "daemon.log").open("ab") as out:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "syncd", "run", "--config", str(cfg)], stdout=out, stderr=out
            )

        def held() -> int:
            return max(
                (d["persisted"] for d in admin("GET", "/counters")["datasets"].values()), default=0
            )

        wait_until(lambda: held() >= 2 * 2**20, 60, "2 MiB on the platform")
        sent = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
        assert time.monotonic() - sent < 5
        assert query(db, "SELECT state FROM packages") == [("uploading",)]
        events = [e for (e,) in query(db, "SELECT event FROM events ORDER BY id")]
        assert "package.checkpointed" in events and events[-1] == "daemon.stopped"
        before, kept = admin("GET", "/counters")["bytes_received"], held()

        admin("DELETE", "/faults")
        done = run_cli("once", "--config", str(cfg))
        assert done.returncode == 0, done.stderr[-2000:]
        assert query(db, "SELECT state, last_error FROM packages") == [("done", None)]
        total = query(db, "SELECT archive_bytes FROM packages")[0][0]
        after = admin("GET", "/counters")
        assert after["bytes_received"] - before <= total - kept + 2**20
        (ds_id,) = after["datasets"]
        store = Store(tmp_path / "state")
        try:
            with store.read() as s:
                files = list(s.exec(select(PackageFile).order_by(col(PackageFile.id))).all())
        finally:
            store.close()
        stored = Path(admin("GET", f"/objects/{ds_id}")["path"])
        assert file_md5(stored) == converted_md5(folder, files)
    finally:
        sb.stop()
