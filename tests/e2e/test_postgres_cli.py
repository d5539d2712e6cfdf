"""The CLI on a PostgreSQL store: a server that is down or refuses the credentials is one
line naming ``state.database_url`` (password masked), exit 1; ``status`` reads the fleet's store."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from syncd.store.migrations import LATEST_VERSION
from tests.conftest import SandboxProcess, run_cli, write_config
from tests.postgres_support import PASSWORD


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("syncd: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def config(tmp_path: Path, url: str, database_url: str) -> Path:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    return write_config(
        tmp_path / "syncd.toml",
        url,
        [{"name": "s", "dataset": "d", "folder": folder}],
        database_url=database_url,
    )


def test_server_down_is_exit_1_naming_the_key(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://syncd:{PASSWORD}@127.0.0.1:{free_port()}/fleet"
    cfg = config(tmp_path, "http://127.0.0.1:1", url)
    for cmd in ("once", "run", "status"):
        r = run_cli(cmd, "--config", str(cfg), timeout=60)
        assert r.returncode == 1, (cmd, r.stderr)
        line = one_error_line(r.stderr)
        assert "state.database_url: 'postgresql+psycopg://syncd:***@127.0.0.1:" in line, line
        assert "refused" in line.lower() and "is PostgreSQL running" in line
        assert PASSWORD not in r.stderr + r.stdout


def test_wrong_password_is_exit_1_and_never_printed(tmp_path: Path, pg_url: str) -> None:
    wrong = pg_url.replace(PASSWORD, "not-the-password")
    cfg = config(tmp_path, "http://127.0.0.1:1", wrong)
    r = run_cli("once", "--config", str(cfg), timeout=60)
    assert r.returncode == 1, r.stderr
    line = one_error_line(r.stderr)
    assert "password authentication failed" in line and "check the user and password" in line
    assert "not-the-password" not in r.stderr + r.stdout


def test_bad_url_is_exit_2(tmp_path: Path) -> None:
    cfg = config(tmp_path, "http://127.0.0.1:1", "sqlite:///var/lib/syncd.db")
    r = run_cli("once", "--config", str(cfg))
    assert r.returncode == 2
    assert "state.database_url: not a PostgreSQL URL" in one_error_line(r.stderr)


def test_once_and_status_on_postgresql(
    tmp_path: Path, pg_url: str, sandbox_proc: SandboxProcess
) -> None:
    from syncd.sampledata import write_fusion_unit

    cfg = config(tmp_path, sandbox_proc.url, pg_url)
    write_fusion_unit(tmp_path / "in" / "unit_a", frames=2, cameras=0)
    r = run_cli("once", "--config", str(cfg), timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_cli("status", "--json", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["database"].startswith("postgresql+psycopg://syncd:***@127.0.0.1:")
    assert report["syncs"]["s"]["packages"] == {"done": 1}
    assert report["syncs"]["s"]["items"] == 2
    r = run_cli("events", "--config", str(cfg))
    assert r.returncode == 0 and "package.done" in r.stdout
    assert PASSWORD not in r.stdout
    r = run_cli("check", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "ok   database postgresql+psycopg://syncd:***@127.0.0.1:" in r.stdout
    assert f"schema {LATEST_VERSION}" in r.stdout and PASSWORD not in r.stdout + r.stderr


def test_check_reports_a_refused_password(tmp_path: Path, pg_url: str) -> None:
    cfg = config(tmp_path, "http://127.0.0.1:1", pg_url.replace(PASSWORD, "wrong-one"))
    r = run_cli("check", "--config", str(cfg), timeout=60)
    assert r.returncode == 1
    assert "FAIL database: state.database_url:" in r.stderr
    assert "password authentication failed" in r.stderr and "wrong-one" not in r.stderr


def test_plan_gauges_and_status_line_read_the_fleet_store(
    tmp_path: Path, pg_url: str, sandbox_proc: SandboxProcess
) -> None:
    """``plan``, the package gauges and ``STATUS=`` count this machine's packages on PostgreSQL."""
    from syncd.config import load_config
    from syncd.sampledata import write_fusion_unit
    from syncd.store import Store

    cfg_path = config(tmp_path, sandbox_proc.url, pg_url)
    write_fusion_unit(tmp_path / "in" / "unit_a", frames=2, cameras=0)
    assert run_cli("once", "--config", str(cfg_path), timeout=240).returncode == 0
    write_fusion_unit(tmp_path / "in" / "unit_b", frames=1, cameras=0, seed=5)
    r = run_cli("plan", "--json", "--config", str(cfg_path))
    assert r.returncode == 0, r.stderr
    (plan,) = json.loads(r.stdout)
    assert plan["up_to_date"] == 1  # unit_a is covered by its done package in PostgreSQL
    assert [u["unit"] for u in plan["units"]] == ["unit_b"]

    cfg = load_config(cfg_path)
    store = Store(cfg.state.dir, database_url=cfg.state.database_url, host=cfg.state.host)
    try:
        assert store.package_counts() == [("s", "done", 1)]
        assert set(store.cursor_values("last_pull_at")) == {"s"}
    finally:
        store.close()
    # another machine's view of the same store: none of these packages are its own
    store = Store(cfg.state.dir, database_url=cfg.state.database_url, host="another-machine")
    try:
        assert store.package_counts() == []
    finally:
        store.close()


def test_the_state_folder_is_created_and_health_works_on_postgresql(
    tmp_path: Path, pg_url: str, sandbox_proc: SandboxProcess
) -> None:
    """The heartbeat file lives in ``state.dir`` on every store: on PostgreSQL too the
    folder is created (0700), so ``syncd health`` (the container's health check) sees
    a running daemon as alive."""
    import signal
    import subprocess
    import sys

    from tests.conftest import wait_until

    cfg = config(tmp_path, sandbox_proc.url, pg_url)
    state = tmp_path / "state"
    assert not state.exists()
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncd", "run", "--config", str(cfg)], stdout=log, stderr=log
    )
    try:
        wait_until(lambda: (state / "heartbeat.json").exists(), 60, "the heartbeat file")
        assert state.stat().st_mode & 0o777 == 0o700
        health = run_cli("health", "--config", str(cfg))
        assert health.returncode == 0, health.stdout + health.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        log.close()
    assert "heartbeat_unwritable" not in (tmp_path / "run.log").read_text()
