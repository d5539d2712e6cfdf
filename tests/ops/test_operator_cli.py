"""Operator commands: status as a table, events --since/--follow, retry, plan, the progress bar."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from syncd.sampledata import write_bulk_unit, write_fusion_unit
from tests.conftest import SandboxProcess, query, run_cli, wait_until, write_config

pytestmark = pytest.mark.e2e


def business_error_on_submit(sandbox: SandboxProcess) -> None:
    """The platform refuses the next submit with a business error: the package fails."""
    sandbox.admin("POST", "/faults", json={
        "method": "POST", "path": "^/api/data/upload$", "action": "status", "status": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"code": "DATASET_LOCKED", "message": "the dataset is locked"}),
        "times": 1})  # fmt: skip


def test_status_table_retry_and_events(tmp_path: Path, sandbox_proc: SandboxProcess) -> None:
    folder = tmp_path / "in"
    write_fusion_unit(folder / "u1", frames=2, cameras=1)
    cfg = write_config(
        tmp_path / "syncd.toml", sandbox_proc.url,
        [{"name": "ops", "dataset": "ops-cli", "folder": folder}],
    )  # fmt: skip
    db = tmp_path / "state" / "syncd.db"
    business_error_on_submit(sandbox_proc)
    r = run_cli("once", "--config", str(cfg), "--no-progress")
    assert r.returncode == 1
    (pid,) = query(db, "SELECT id FROM packages WHERE state = 'failed'")[0]

    human = run_cli("status", "--config", str(cfg)).stdout
    lines = human.splitlines()
    header = next(line for line in lines if line.startswith("SYNC"))
    assert header.split() == ["SYNC", "DATASET", "DONE", "FAILED", "ON", "THE", "WAY", "ITEMS",
                              "ANNOTATED", "OBJECTS", "LAST", "PULL"]  # fmt: skip
    row = lines[lines.index(header) + 1].split()
    assert row[:5] == ["ops", "sb/ops-cli", "0", "1", "0"]
    assert f"FAILED package {pid} (u1): " in human and "DATASET_LOCKED" in human
    assert f"(syncd retry {pid})" in human
    assert "daemon:   no heartbeat file" in human
    report = json.loads(run_cli("status", "--config", str(cfg), "--json").stdout)
    assert report["syncs"]["ops"]["packages"] == {"failed": 1}
    assert report["daemon"]["alive"] is False

    # retry: usage mistakes are exit 2; a failed package goes up again and ends done
    assert run_cli("retry", "--config", str(cfg)).returncode == 2
    assert run_cli("retry", "--config", str(cfg), str(pid), "--failed").returncode == 2
    r = run_cli("retry", "--config", str(cfg), str(pid))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"package {pid} (ops/u1): failed → detected, sent again"
    assert query(db, "SELECT state, attempts, last_error FROM packages WHERE id = ?", pid) == [
        ("detected", 0, None)
    ]
    r = run_cli("once", "--config", str(cfg), "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    assert query(db, "SELECT state FROM packages") == [("done",)]
    items = sandbox_proc.api("/dataset/findByPage", pageNo=1, pageSize=10, name="ops-cli")
    assert items["list"][0]["itemCount"] == 2  # each frame once
    r = run_cli("retry", "--config", str(cfg), str(pid))
    assert r.returncode == 1 and f"package {pid} (ops/u1) is done" in r.stderr
    r = run_cli("retry", "--config", str(cfg), "999")
    assert r.returncode == 1 and "no package 999" in r.stderr
    r = run_cli("retry", "--config", str(cfg), "--failed")
    assert r.returncode == 0 and r.stdout.strip() == "no failed packages"
    reqs = query(
        db,
        "SELECT from_state, to_state, fields FROM events WHERE event = 'package.retry_requested'",
    )
    assert [(a, b) for a, b, _ in reqs] == [("failed", "detected")]
    assert "DATASET_LOCKED" in json.loads(reqs[0][2])["failed_because"]

    # events --since: an event pushed two hours back is left out
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "UPDATE events SET ts = '2000-01-01T00:00:00.000+00:00' WHERE id = (SELECT MIN(id) FROM events)"
        )
    conn.close()
    total = query(db, "SELECT COUNT(*) FROM events")[0][0]
    out = run_cli("events", "--config", str(cfg), "--since", "1h").stdout.splitlines()
    assert len(out) == total - 1 and total > 5
    assert len(run_cli("events", "--config", str(cfg)).stdout.splitlines()) == total
    assert len(run_cli("events", "--config", str(cfg), "-n", "5").stdout.splitlines()) == 5
    r = run_cli("events", "--config", str(cfg), "--since", "yesterday")
    assert r.returncode == 2 and "--since: not a duration: 'yesterday'" in r.stderr

    # --follow prints what happens after it started
    follow = subprocess.Popen(
        [sys.executable, "-m", "syncd", "events", "--config", str(cfg), "--since", "1s", "-f"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.5)
        write_bulk_unit(folder / "u2", total_bytes=50_000)
        assert run_cli("once", "--config", str(cfg), "--no-progress").returncode == 0
        assert follow.stdout is not None
        seen: list[str] = []

        def done_seen() -> bool:
            line = follow.stdout.readline()  # type: ignore[union-attr]
            seen.append(json.loads(line)["event"])
            return "package.done" in seen

        wait_until(done_seen, 60, "package.done through --follow")
        assert seen[0] == "package.detected"
    finally:
        follow.kill()
        follow.wait()


def test_plan_is_a_dry_run(tmp_path: Path, sandbox_proc: SandboxProcess) -> None:
    folder = tmp_path / "in"
    write_bulk_unit(folder / "big", total_bytes=3_000_000, file_bytes=500_000)
    write_bulk_unit(folder / "small", total_bytes=100_000)
    old = time.time() - 3600
    for p in folder.rglob("*"):
        os.utime(p, (old, old))
    write_bulk_unit(folder / "fresh", total_bytes=10_000)  # just written: not settled
    cfg = write_config(
        tmp_path / "syncd.toml", sandbox_proc.url,
        [{"name": "pl", "dataset": "plan", "folder": folder, "settle_seconds": 600,
          "max_package_bytes": "1MB", "dataset_type": "LIDAR_BASIC"}],
    )  # fmt: skip
    r = run_cli("plan", "--config", str(cfg), "--json")
    assert r.returncode == 0, r.stderr
    (plan,) = json.loads(r.stdout)
    units = {u["unit"]: u for u in plan["units"]}
    assert set(units) == {"big", "small", "fresh"}
    assert units["big"]["settled"] and len(units["big"]["parts"]) >= 3
    assert all(b <= 1_000_000 for b in units["big"]["parts"])
    assert sum(units["big"]["parts"]) == units["big"]["bytes"]
    assert units["fresh"]["settled"] is False and "settle_seconds 600" in units["fresh"]["why_not"]
    assert not (tmp_path / "state" / "syncd.db").exists(), "plan writes nothing"
    human = run_cli("plan", "--config", str(cfg)).stdout
    assert "sync pl (" in human and "ready: would be packed now" in human
    assert "UNIT" in human and "PACKAGES" in human

    r = run_cli("once", "--config", str(cfg), "--progress", "--timeout", "5m")
    assert r.returncode == 0, r.stderr[-2000:]
    parts = query(
        tmp_path / "state" / "syncd.db", "SELECT COUNT(*) FROM packages WHERE unit = 'big'"
    )
    assert parts == [(len(units["big"]["parts"]),)]  # the plan predicted the split
    assert "\x1b[K[" in r.stdout  # redrawn in place (run_cli reads \r as a newline)
    finished = r.stdout.rsplit("\x1b[K", 1)[-1]
    n = parts[0][0] + 1
    assert finished.startswith(f"[{'#' * 24}] {n}/{n} packages finished"), finished
    (after,) = json.loads(run_cli("plan", "--config", str(cfg), "--json").stdout)
    assert [u["unit"] for u in after["units"]] == ["fresh"] and after["up_to_date"] == 2
    r = run_cli("plan", "--config", str(cfg), "--sync", "nope")
    assert r.returncode == 2 and "--sync: no sync named 'nope'" in r.stderr
