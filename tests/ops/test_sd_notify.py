"""sd_notify against a NOTIFY_SOCKET the test binds: READY=1, STATUS=, WATCHDOG=1, STOPPING=1.

The watchdog contract is the point: ``WATCHDOG=1`` goes out only while every
stage shows progress, so a hung stage (a pull stuck on a platform that does
not answer; a push step that never returns) stops the pings and systemd
restarts the service.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.config import load_config
from syncd.daemon import Daemon
from syncd.pipeline import pack
from syncd.pipeline.context import SyncContext
from syncd.sampledata import write_bulk_unit
from tests.conftest import admin_call, query, run_cli, wait_until, write_config
from tests.ops.notify import NotifySocket

PING_USEC = 400_000  # WATCHDOG_USEC: pings every 0.2 s


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    ns = NotifySocket()
    yield ns
    ns.close()


def start(cfg: Path, tmp_path: Path, ns: NotifySocket) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NOTIFY_SOCKET": ns.address, "WATCHDOG_USEC": str(PING_USEC)}
    with (tmp_path / "daemon.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "--config", str(cfg)],
            stdout=out,
            stderr=out,
            env=env,
        )


def pings_after(ns: NotifySocket, t: float) -> list[float]:
    return [p for p in ns.times("WATCHDOG=1") if p > t]


@pytest.mark.e2e
def test_lifecycle_ready_status_watchdog_stopping(
    tmp_path: Path, sandbox_url: str, notify_socket: NotifySocket, report: Callable[[str], None]
) -> None:
    ns = notify_socket
    folder = tmp_path / "in"
    folder.mkdir()
    cfg = write_config(
        tmp_path / "syncd.toml",
        sandbox_url,
        [
            {
                "name": "n1",
                "dataset": f"notify-{uuid.uuid4().hex[:8]}",
                "folder": folder,
                "dataset_type": "LIDAR_BASIC",
            }
        ],
    )
    db = tmp_path / "state" / "syncd.db"
    daemon = start(cfg, tmp_path, ns)
    try:
        ns.wait_for(lambda: ns.times("READY=1"), 90, "READY=1")
        ready = ns.times("READY=1")[0]
        # READY=1 comes after the store is open and the folders are watched:
        # daemon.started is committed before it.
        assert query(db, "SELECT 1 FROM events WHERE event = 'daemon.started'")
        assert not [t for t in ns.times("WATCHDOG=1") if t < ready]
        ns.wait_for(lambda: len(pings_after(ns, ready)) >= 5, 20, "five watchdog pings")
        assert ns.statuses()[0] == "1 sync; packages: none"

        write_bulk_unit(folder / "u1", total_bytes=200_000)
        ns.wait_for(
            lambda: any("1 done" in s for s in ns.statuses()), 120, "STATUS= with the package done"
        )
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    stopping = ns.times("STOPPING=1")
    assert len(stopping) == 1, ns.lines()
    health = run_cli("health", "--config", str(cfg))
    assert health.returncode == 1 and "stopped or is draining" in health.stderr
    assert not pings_after(ns, stopping[0]), "no watchdog ping after STOPPING=1"
    for status in dict.fromkeys(ns.statuses()):
        report(f"sd_notify STATUS={status}")


@pytest.mark.e2e
def test_a_pull_hung_on_the_platform_stops_the_watchdog_pings(
    tmp_path: Path, sandbox_url: str, notify_socket: NotifySocket, report: Callable[[str], None]
) -> None:
    """The platform answers one listing after 8 s; the stall timeout is 2 s."""
    ns = notify_socket
    cfg = write_config(
        tmp_path / "syncd.toml",
        sandbox_url,
        [
            {
                "name": "hang",
                "dataset": f"hang-{uuid.uuid4().hex[:8]}",
                "push": False,
                "pull_interval": 2,
            }
        ],
        remote_extra="timeout = 60",
    )
    cfg.write_text('[daemon]\nstall_timeout = "2s"\n' + cfg.read_text())
    db = tmp_path / "state" / "syncd.db"
    daemon = start(cfg, tmp_path, ns)
    try:
        ns.wait_for(lambda: ns.times("READY=1"), 90, "READY=1")
        ready = ns.times("READY=1")[0]
        ns.wait_for(lambda: len(pings_after(ns, ready)) >= 5, 20, "watchdog pings")
        fault_at = time.monotonic()
        admin_call(
            sandbox_url,
            "POST",
            "/faults",
            json={
                "method": "GET",
                "path": "^/api/data/findByPage",
                "action": "delay",
                "delay": 8,
                "times": 1,
            },
        )
        ns.wait_for(
            lambda: [
                t
                for t, line in ns.lines()
                if t > fault_at and line.startswith("STATUS=STALLED: pull:hang")
            ],
            30,
            "STATUS=STALLED",
        )
        stalled_at = next(
            t
            for t, line in ns.lines()
            if t > fault_at and line.startswith("STATUS=STALLED: pull:hang")
        )
        ns.wait_for(
            lambda: [
                t
                for t, line in ns.lines()
                if t > stalled_at and line.startswith("STATUS=") and "STALLED" not in line
            ],
            30,
            "recovery",
        )
        recovered_at = next(
            t
            for t, line in ns.lines()
            if t > stalled_at and line.startswith("STATUS=") and "STALLED" not in line
        )
        ns.wait_for(lambda: pings_after(ns, recovered_at), 10, "pings after recovery")
        silent = [t for t in ns.times("WATCHDOG=1") if stalled_at <= t < recovered_at]
        assert not silent, "a stalled daemon must not ping the watchdog"
        assert recovered_at - stalled_at >= 3, (
            "stalled from ~2 s into the pull until its end (~8 s)"
        )
        # The longest silence covers the stall; elsewhere the pings are steady.
        pings = ns.times("WATCHDOG=1")
        gaps = sorted((b - a for a, b in itertools.pairwise(pings)), reverse=True)
        assert gaps[0] >= 3
        events = query(db, "SELECT fields FROM events WHERE event = 'daemon.stage_stalled'")
        assert events and "pull:hang" in events[0][0]
        assert query(db, "SELECT 1 FROM events WHERE event = 'daemon.stage_unstalled'")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    report(
        f"sd_notify: a pull hung 8 s (stall_timeout 2 s): no WATCHDOG=1 for "
        f"{recovered_at - stalled_at:.1f}s, longest ping gap {gaps[0]:.1f}s"
    )


def push_only(
    tmp_path: Path, sandbox_url: str, ns: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path]:
    """A push-only sync (folder "in") with a 2 s stall timeout, notifying ``ns`` with the
    watchdog on: (the folder, the config file)."""
    monkeypatch.setenv("NOTIFY_SOCKET", ns.address)
    monkeypatch.setenv("WATCHDOG_USEC", str(PING_USEC))
    folder = tmp_path / "in"
    folder.mkdir()
    cfg_path = write_config(
        tmp_path / "syncd.toml",
        sandbox_url,
        [{"name": "p", "dataset": f"push-{uuid.uuid4().hex[:8]}", "folder": folder, "pull": False}],
    )
    cfg_path.write_text('[daemon]\nstall_timeout = "2s"\n' + cfg_path.read_text())
    return folder, cfg_path


def test_a_hung_push_step_stops_the_pings_until_it_returns(
    tmp_path: Path,
    sandbox_url: str,
    notify_socket: NotifySocket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In process: the packing step blocks (as on a hung NFS mount) while the test holds it."""
    ns = notify_socket
    _, cfg_path = push_only(tmp_path, sandbox_url, ns, monkeypatch)
    armed, release, entered = threading.Event(), threading.Event(), threading.Event()
    real = pack.run_once

    def hanging(ctx: SyncContext, **kw: Any) -> object:
        if armed.is_set():
            entered.set()
            release.wait(60)
        return real(ctx, **kw)

    monkeypatch.setattr(pack, "run_once", hanging)
    daemon = Daemon(load_config(cfg_path), config_file=cfg_path)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        ns.wait_for(lambda: ns.times("READY=1"), 30, "READY=1")
        ns.wait_for(lambda: len(ns.times("WATCHDOG=1")) >= 5, 20, "pings")
        armed.set()
        daemon.wake.set()
        assert entered.wait(10)
        hung_at = time.monotonic()
        ns.wait_for(
            lambda: [
                t
                for t, line in ns.lines()
                if t > hung_at and line.startswith("STATUS=STALLED: push")
            ],
            20,
            "STALLED: push",
        )
        time.sleep(1.0)
        last = max(ns.times("WATCHDOG=1"))
        # a deadline, not a target: the stall timeout (2 s) plus slack for a loaded machine
        assert last < hung_at + 4, "pings stop within the stall timeout"
        assert not pings_after(ns, last), "no ping while the stage hangs"
        armed.clear()
        release.set()
        ns.wait_for(lambda: pings_after(ns, last), 20, "pings after the step returns")
    finally:
        release.set()
        daemon.stop.set()
        daemon.wake.set()
        thread.join(60)
        daemon.close()
    assert ns.times("STOPPING=1")
    wait_until(lambda: not thread.is_alive(), 5, "daemon thread ends")


def test_a_hung_upload_worker_stops_the_pings_while_the_loop_goes_on(
    tmp_path: Path,
    sandbox_url: str,
    notify_socket: NotifySocket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Uploads run beside the push loop, so the loop keeps beating while one hangs: the
    worker's own stage (``upload:SYNC#ID``) goes stale and the watchdog pings stop."""
    from syncd.pipeline import upload
    from syncd.sampledata import write_fusion_unit

    ns = notify_socket
    folder, cfg_path = push_only(tmp_path, sandbox_url, ns, monkeypatch)
    release, entered = threading.Event(), threading.Event()
    real = upload.advance

    def hanging(ctx: SyncContext, pkg: Any, strategy: Any = None) -> None:
        entered.set()
        release.wait(60)
        real(ctx, pkg, strategy)

    monkeypatch.setattr(upload, "advance", hanging)
    daemon = Daemon(load_config(cfg_path), config_file=cfg_path)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        ns.wait_for(lambda: ns.times("READY=1"), 30, "READY=1")
        write_fusion_unit(folder / "u", frames=1, cameras=0, with_result=False)
        assert entered.wait(30)
        hung_at = time.monotonic()
        ns.wait_for(
            lambda: [
                line
                for t, line in ns.lines()
                if t > hung_at and line.startswith("STATUS=STALLED: upload:p#")
            ],
            20,
            "STALLED: upload:p#…",
        )
        stalled = [ln for t, ln in ns.lines() if ln.startswith("STATUS=STALLED")]
        assert all("push" not in ln.split("|")[0] for ln in stalled)  # the loop kept beating
        time.sleep(1.0)
        last = max(ns.times("WATCHDOG=1"))
        assert not pings_after(ns, last), "no ping while the upload hangs"
        release.set()
        ns.wait_for(lambda: pings_after(ns, last), 20, "pings after the upload returns")
    finally:
        release.set()
        daemon.stop.set()
        daemon.wake.set()
        thread.join(60)
        daemon.close()
