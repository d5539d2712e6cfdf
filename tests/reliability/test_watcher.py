"""Watcher robustness: kernel limits, polling mode, a dead observer, an overflowing queue.

In each case a unit dropped afterwards must still be found promptly, long
before the 5-minute safety rescan would find it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from syncd.config import load_config
from syncd.daemon import Daemon
from syncd.sampledata import write_fusion_unit
from tests.conftest import query, wait_until, write_config

pytestmark = pytest.mark.e2e


def config(tmp_path: Path, url: str, **sync: object) -> tuple[Path, Path]:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    cfg = write_config(
        tmp_path / "syncd.toml",
        url,
        [
            {
                "name": "w",
                "dataset": f"watch-{tmp_path.name}"[:60],
                "folder": folder,
                "watch_poll_interval": 0.5,
                **sync,
            }
        ],
    )
    return cfg, folder


@contextmanager
def daemon_process(cfg: Path, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with (tmp_path / "daemon.log").open("ab") as log:
        p = subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "--config", str(cfg)], stdout=log, stderr=log
        )
    db = tmp_path / "state" / "syncd.db"
    try:
        wait_until(
            lambda: query(db, "SELECT 1 FROM events WHERE event = 'daemon.started'"), 30, "start"
        )
        yield p
    finally:
        p.send_signal(signal.SIGCONT)
        p.terminate()
        assert p.wait(timeout=60) == 0


def drop_unit(folder: Path, name: str) -> None:
    write_fusion_unit(folder / f".{name}", frames=1, cameras=1, seed=len(name))
    (folder / f".{name}").rename(folder / name)


def done(db: Path, unit: str) -> bool:
    return bool(query(db, "SELECT 1 FROM packages WHERE unit = ? AND state = 'done'", unit))


def test_poll_mode_finds_units(tmp_path: Path, sandbox_url: str) -> None:
    cfg, folder = config(tmp_path, sandbox_url, watch_mode="poll")
    db = tmp_path / "state" / "syncd.db"
    with daemon_process(cfg, tmp_path):
        time.sleep(1.5)  # past the start-up scan: only the poller can find it now
        drop_unit(folder, "polled")
        wait_until(lambda: done(db, "polled"), 30, "the polled unit")


@contextmanager
def inotify_instances_exhausted() -> Iterator[int]:
    """Hold every free inotify instance of this user (a busy machine), and any freed meanwhile."""
    libc = ctypes.CDLL(None, use_errno=True)
    fds: list[int] = []
    stop = threading.Event()

    def grab() -> None:
        while len(fds) < 100_000:
            fd = libc.inotify_init1(os.O_CLOEXEC)
            if fd < 0:
                break
            fds.append(fd)

    def hog() -> None:  # other processes of this user may close theirs: take those too
        while not stop.wait(0.005):
            grab()

    grab()
    t = threading.Thread(target=hog, daemon=True)
    t.start()
    try:
        yield len(fds)
    finally:
        stop.set()
        t.join()
        for fd in fds:
            os.close(fd)


def test_inotify_limit_falls_back_to_polling(tmp_path: Path, sandbox_url: str) -> None:
    cfg, folder = config(tmp_path, sandbox_url)
    db = tmp_path / "state" / "syncd.db"
    with inotify_instances_exhausted() as held:
        assert held > 0
        with daemon_process(cfg, tmp_path):
            wait_until(
                lambda: query(
                    db, "SELECT fields FROM events WHERE event = 'watch.fallback_polling'"
                ),
                30,
                "fallback",
            )
    # the fallback is logged with its reason, and the folder is still watched (by polling)
    [(fields,)] = query(db, "SELECT fields FROM events WHERE event = 'watch.fallback_polling'")
    assert "max_user_instances" in fields and "polling" in fields
    with inotify_instances_exhausted(), daemon_process(cfg, tmp_path):
        time.sleep(1.5)
        drop_unit(folder, "after_fallback")
        wait_until(lambda: done(db, "after_fallback"), 30, "the unit")


def test_dead_observer_is_restarted(tmp_path: Path, sandbox_url: str) -> None:
    cfg, folder = config(tmp_path, sandbox_url)
    d = Daemon(load_config(cfg))
    t = threading.Thread(target=d.run)
    t.start()
    db = tmp_path / "state" / "syncd.db"
    try:
        wait_until(lambda: d.watcher is not None and d.watcher.alive(), 30, "the watcher")
        assert d.watcher is not None
        observer = d.watcher._watches["w"].observer
        assert observer is not None
        observer.stop()  # the observer thread dies (as on an unexpected error inside it)
        observer.join()
        drop_unit(folder, "after_death")
        wait_until(lambda: done(db, "after_death"), 30, "the unit")
        assert query(db, "SELECT COUNT(*) FROM events WHERE event = 'watch.restarted'")[0][0] == 1
        assert d.watcher.alive()
    finally:
        d.stop.set()
        d.wake.set()
        t.join(timeout=60)
        d.close()


def test_event_queue_overflow_triggers_a_rescan(tmp_path: Path, sandbox_url: str) -> None:
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    cfg, folder = config(tmp_path, sandbox_url)
    db = tmp_path / "state" / "syncd.db"
    flood = folder / ".flood"  # excluded from units, but watched like everything else
    flood.mkdir()
    with daemon_process(cfg, tmp_path) as p:
        time.sleep(1)
        p.send_signal(signal.SIGSTOP)  # the daemon stalls; the kernel queues its events
        for i in range(limit):
            (flood / f"{i}").touch()
        drop_unit(folder, "lost_in_overflow")  # its events are the ones the kernel drops
        p.send_signal(signal.SIGCONT)
        wait_until(lambda: done(db, "lost_in_overflow"), 60, "the unit")
    assert query(db, "SELECT COUNT(*) FROM events WHERE event = 'watch.overflow'")[0][0] >= 1
