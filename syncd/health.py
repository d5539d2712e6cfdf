"""Heartbeats: is every stage of the daemon alive and making progress?

Contract of :class:`Heartbeats`:

* A *stage* (``watcher``, ``push``, ``scheduler``, ``pull:NAME``) is alive
  while its last beat is at most ``stall_timeout`` seconds old.
* Stages are *continuous*: registered at start, they must beat for ever
  (the push loop every cycle and from inside long transfers, the watcher
  while all its observers run, the scheduler from a job of its own, each
  pull at the end of every cycle).
* A stage may allow a longer quiet while idle (``pull:NAME``: its
  ``pull_interval`` plus ``stall_timeout``, so "the last cycle is recent"),
  but while a thread is :meth:`busy` in it, ``stall_timeout`` applies: a
  pull stuck on a request goes stale, a pull that commits page after page
  does not.
* :meth:`progress` beats whatever stage the calling thread is in; long
  loops (archive streaming, pages of a pull) call it, so a slow but moving
  step is alive and a hung one is not.
* :meth:`stale` lists the stages that are not alive, with their age; the
  daemon sends ``WATCHDOG=1`` to systemd, answers ``/healthz`` with 200 and
  writes a fresh heartbeat file only while it is empty.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HEARTBEAT_FILE = "heartbeat.json"


@dataclass(frozen=True)
class Stale:
    """A stage that did not beat in time."""

    stage: str
    age: float  # seconds since its last beat

    def __str__(self) -> str:
        return f"{self.stage} (no progress for {self.age:.0f}s)"


class Heartbeats:
    """Last-beat times of every stage; thread-safe."""

    def __init__(self, stall_timeout: float, clock: Any = time.monotonic) -> None:
        self.stall_timeout = stall_timeout
        self._clock = clock
        self._beats: dict[str, float] = {}
        # continuous stages: longest quiet while idle (None: the current stall_timeout)
        self._limits: dict[str, float | None] = {}
        self._busy: dict[str, int] = {}  # stage -> threads working on it now
        self._threads: dict[int, str] = {}
        self._lock = threading.Lock()

    def register(self, stage: str, max_idle: float | None = None) -> None:
        """A continuous stage, alive from now as long as it beats at least every
        ``max_idle`` seconds (default ``stall_timeout``) while idle, and every
        ``stall_timeout`` while busy (a pull: its interval plus the stall timeout)."""
        with self._lock:
            self._limits[stage] = max_idle
            self._beats[stage] = self._clock()

    def unregister(self, stage: str) -> None:
        with self._lock:
            self._limits.pop(stage, None)
            if not self._busy.get(stage):
                self._beats.pop(stage, None)

    def beat(self, stage: str) -> None:
        with self._lock:
            self._beats[stage] = self._clock()

    def progress(self) -> None:
        """Beat the stage the calling thread is busy in (a no-op outside :meth:`busy`)."""
        with self._lock:
            stage = self._threads.get(threading.get_ident())
            if stage is not None:
                self._beats[stage] = self._clock()

    @contextmanager
    def busy(self, stage: str) -> Iterator[None]:
        """The calling thread works on ``stage`` until the block ends, beating through
        :meth:`progress`; at the end the stage beats once more (a cycle finished) or,
        if it is not continuous, is forgotten."""
        ident = threading.get_ident()
        with self._lock:
            previous = self._threads.get(ident)
            self._threads[ident] = stage
            self._busy[stage] = self._busy.get(stage, 0) + 1
            self._beats[stage] = self._clock()
        try:
            yield
        finally:
            with self._lock:
                if previous is None:
                    self._threads.pop(ident, None)
                else:
                    self._threads[ident] = previous
                self._busy[stage] -= 1
                if not self._busy[stage]:
                    del self._busy[stage]
                    if stage not in self._limits:
                        self._beats.pop(stage, None)
                if stage in self._beats:
                    self._beats[stage] = self._clock()

    def stale(self) -> list[Stale]:
        """Stages quiet for longer than their limit, oldest first."""
        now = self._clock()
        with self._lock:
            late = []
            for stage, t in self._beats.items():
                limit = None if self._busy.get(stage) else self._limits.get(stage)
                if limit is None:
                    limit = self.stall_timeout
                if now - t > limit:
                    late.append(Stale(stage, now - t))
        return sorted(late, key=lambda s: -s.age)

    def ages(self) -> dict[str, float]:
        """Seconds since each stage's last beat."""
        now = self._clock()
        with self._lock:
            return {stage: round(now - t, 3) for stage, t in sorted(self._beats.items())}


def write_heartbeat_file(state_dir: Path, *, alive: bool, detail: dict[str, Any]) -> None:
    """Atomically write ``<state>/heartbeat.json`` (read by ``syncd health``)."""
    path = state_dir / HEARTBEAT_FILE
    tmp = path.with_name(f".{HEARTBEAT_FILE}.{os.getpid()}.tmp")
    body = {
        "ts": datetime.now(UTC).isoformat(),
        "unix": time.time(),
        "pid": os.getpid(),
        "alive": alive,
        **detail,
    }
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(body, fh)
    os.replace(tmp, path)


def read_heartbeat_body(state_dir: Path) -> dict[str, Any]:
    """The heartbeat file as written (raises OSError or ValueError when it cannot be read)."""
    body = json.loads((state_dir / HEARTBEAT_FILE).read_text(encoding="utf-8"))
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    return body


def read_heartbeat_file(state_dir: Path, max_age: float) -> tuple[bool, str]:
    """(healthy, one-line reason) from the heartbeat file: fresh and ``alive``."""
    path = state_dir / HEARTBEAT_FILE
    try:
        body = read_heartbeat_body(state_dir)
    except FileNotFoundError:
        return False, f"no heartbeat file at {str(path)!r} (is syncd run running?)"
    except (OSError, ValueError) as exc:
        return False, f"heartbeat file {str(path)!r} unreadable: {exc}"
    age = time.time() - float(body.get("unix", 0))
    if body.get("stopping"):
        return False, f"the daemon (pid {body.get('pid')}) stopped or is draining, {age:.0f}s ago"
    if age > max_age:
        return (
            False,
            f"heartbeat is {age:.0f}s old (limit {max_age:.0f}s): the daemon is hung or gone",
        )
    if not body.get("alive"):
        return False, f"stalled: {', '.join(body.get('stale') or ['unknown stage'])}"
    return True, f"ok: heartbeat {age:.0f}s old, pid {body.get('pid')}"
