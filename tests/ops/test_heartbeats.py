"""Heartbeats: continuous stages, busy pulls, progress from inside a step, the heartbeat file."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from syncd.health import Heartbeats, read_heartbeat_file, write_heartbeat_file
from tests.conftest import run_cli


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_continuous_stage_goes_stale_without_beats() -> None:
    clock = Clock()
    hb = Heartbeats(10, clock=clock)
    hb.register("push")
    clock.now += 9
    assert hb.stale() == []
    clock.now += 2
    assert [s.stage for s in hb.stale()] == ["push"]
    hb.beat("push")
    assert hb.stale() == []


def test_idle_pull_may_wait_its_interval_but_a_busy_one_must_progress() -> None:
    clock = Clock()
    hb = Heartbeats(10, clock=clock)
    hb.register("pull:a", max_idle=60 + 10)  # pull_interval + stall_timeout
    clock.now += 65
    assert hb.stale() == []  # between pulls: fine
    with hb.busy("pull:a"):
        clock.now += 8
        hb.progress()  # a page committed
        clock.now += 8
        assert hb.stale() == []
        clock.now += 3
        assert [str(s) for s in hb.stale()] == ["pull:a (no progress for 11s)"]
    assert hb.stale() == []  # the cycle ended: it beat
    clock.now += 71
    assert [s.stage for s in hb.stale()] == ["pull:a"]  # no cycle for too long


def test_progress_beats_only_the_calling_threads_stage() -> None:
    clock = Clock()
    hb = Heartbeats(10, clock=clock)
    hb.register("push")
    inside = threading.Event()
    leave = threading.Event()

    def pull() -> None:
        with hb.busy("pull:x"):
            inside.set()
            leave.wait(5)

    t = threading.Thread(target=pull)
    t.start()
    inside.wait(5)
    clock.now += 11
    hb.progress()  # the main thread is busy in nothing: no stage beats
    assert {s.stage for s in hb.stale()} == {"push", "pull:x"}
    leave.set()
    t.join()
    assert [s.stage for s in hb.stale()] == ["push"]  # a non-continuous stage is forgotten


def test_stall_timeout_change_applies_to_registered_stages() -> None:
    clock = Clock()
    hb = Heartbeats(10, clock=clock)
    hb.register("push")
    clock.now += 15
    assert hb.stale()
    hb.stall_timeout = 20  # a reload
    assert hb.stale() == []


def test_heartbeat_file_fresh_stale_and_stalled(tmp_path: Path) -> None:
    assert read_heartbeat_file(tmp_path, 60) == (
        False,
        f"no heartbeat file at {str(tmp_path / 'heartbeat.json')!r} (is syncd run running?)",
    )
    write_heartbeat_file(tmp_path, alive=True, detail={"stale": []})
    ok, reason = read_heartbeat_file(tmp_path, 60)
    assert ok and reason.startswith("ok: heartbeat 0s old")
    time.sleep(1.1)
    ok, reason = read_heartbeat_file(tmp_path, 1)
    assert not ok and "the daemon is hung or gone" in reason
    write_heartbeat_file(tmp_path, alive=False, detail={"stale": ["push (no progress for 999s)"]})
    assert read_heartbeat_file(tmp_path, 60) == (False, "stalled: push (no progress for 999s)")
    assert (tmp_path / "heartbeat.json").stat().st_mode & 0o777 == 0o600
    write_heartbeat_file(tmp_path, alive=False, detail={"stopping": True})
    ok, reason = read_heartbeat_file(tmp_path, 60)
    assert not ok and reason.startswith("the daemon (pid ") and "stopped or is draining" in reason


def test_syncd_health_command(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(f'[state]\ndir = "{state}"\n')
    r = run_cli("health", "--config", str(cfg))
    assert r.returncode == 1 and "no heartbeat file" in r.stderr
    write_heartbeat_file(state, alive=True, detail={})
    r = run_cli("health", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok: heartbeat")
    r = run_cli("health", "--config", str(cfg), "--max-age", "soon")
    assert r.returncode == 2 and "--max-age: not a duration: 'soon'" in r.stderr
