"""Telling the outside world how the daemon is: systemd notifications and the heartbeat file.

Contract of :class:`Supervisor` (one thread, started by ``syncd run`` once the
store is open, the folders are watched and the scheduler runs):

* :meth:`ready` sends ``READY=1`` (``Type=notify``: systemd counts the
  service as started only then) and a first ``STATUS=``.
* Every tick (half of systemd's ``WATCHDOG_USEC``, at most
  ``TICK_SECONDS``) it asks :class:`~syncd.health.Heartbeats` which stages
  are stale. Only when none is, it sends ``WATCHDOG=1`` and writes a fresh
  heartbeat file (``syncd health``, Docker's ``HEALTHCHECK``). A hung stage
  therefore stops the pings, and systemd restarts the service after
  ``WatchdogSec``.
* ``STATUS=`` says what an operator wants from ``systemctl status``:
  packages by state and, when stalled, which stage and for how long.
  Becoming stalled and recovering are events (``daemon.stage_stalled``,
  ``daemon.stage_unstalled``).
* :meth:`reloading` / :meth:`stopping` send ``RELOADING=1`` /
  ``STOPPING=1``.

Notifications go through ``sdnotify`` (pure Python: no libsystemd, so the
same code runs in a slim container); without ``NOTIFY_SOCKET`` they are no-ops.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sdnotify

from syncd.health import Heartbeats, Stale, write_heartbeat_file
from syncd.log import get_logger
from syncd.store.models import PACKAGE_STATES

TICK_SECONDS = 5.0


def watchdog_interval() -> float | None:
    """Seconds between pings systemd asked for (half of ``WATCHDOG_USEC``), or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.05, int(usec) / 1e6 / 2)
    except ValueError:
        return None


def status_line(counts: dict[str, int], syncs: int, stale: list[Stale], in_flight: int = 0) -> str:
    """One ASCII line for ``STATUS=`` (systemctl status shows it)."""
    parts = [f"{n} {s}" for s in PACKAGE_STATES if (n := counts.get(s))]
    head = f"{syncs} sync{'s' if syncs != 1 else ''}; packages: {', '.join(parts) or 'none'}"
    if in_flight:
        head += f"; {in_flight} in flight"
    if stale:
        return "STALLED: " + "; ".join(str(s) for s in stale) + " | " + head
    return head


class Supervisor:
    """The notifier thread (see module docstring)."""

    def __init__(
        self,
        heartbeats: Heartbeats,
        *,
        state_dir: Path,
        package_counts: Callable[[], dict[str, int]],
        syncs: Callable[[], int],
        record: Callable[..., None],
        in_flight: Callable[[], list[dict[str, Any]]] = list,
    ) -> None:
        self.heartbeats = heartbeats
        self.in_flight = in_flight
        self.state_dir = state_dir
        self.package_counts = package_counts
        self.syncs = syncs
        self.record = record
        self.notifier = sdnotify.SystemdNotifier()
        self.watchdog = watchdog_interval()
        self.tick = min(TICK_SECONDS, self.watchdog or TICK_SECONDS)
        self.log = get_logger()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stalled: frozenset[str] = frozenset()
        self.last_status = ""

    def notify(self, message: str) -> None:
        self.notifier.notify(message)

    def ready(self) -> None:
        """Everything is up: READY=1 with a first status, then start ticking."""
        self._check(send=False)  # the first STATUS goes with READY=1
        self.notify(f"READY=1\nSTATUS={self.last_status}\nMAINPID={os.getpid()}")
        self._thread = threading.Thread(target=self._loop, name="syncd-supervisor", daemon=True)
        self._thread.start()

    def reloading(self) -> None:
        self.notify("RELOADING=1\nSTATUS=reloading the configuration")

    def reloaded(self, status: str | None = None) -> None:
        self.notify(f"READY=1\nSTATUS={status or self.last_status}")

    def stopping(self) -> None:
        """Draining: STOPPING=1 and no more pings (the drain has its own deadline)."""
        self._stop.set()
        self.notify("STOPPING=1\nSTATUS=draining: finishing the steps in flight")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.tick + 5)
        try:  # ``syncd health`` says "stopping", not "hung", from now on
            write_heartbeat_file(self.state_dir, alive=False, detail={"stopping": True})
        except OSError as exc:
            self.log.warning("daemon.heartbeat_unwritable", error=str(exc))

    def _loop(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self._check()
            except Exception as exc:  # never let the watchdog thread die silently
                self.log.error("daemon.supervisor_error", error=f"{type(exc).__name__}: {exc}")

    def _check(self, *, send: bool = True) -> None:
        stale = self.heartbeats.stale()
        names = frozenset(s.stage for s in stale)
        if names != self._stalled:
            if names - self._stalled:
                self.record(
                    "daemon.stage_stalled",
                    "error",
                    stages=sorted(names),
                    detail="; ".join(str(s) for s in stale),
                    stall_timeout=self.heartbeats.stall_timeout,
                )
            if self._stalled - names:
                self.record("daemon.stage_unstalled", "info", stages=sorted(self._stalled - names))
            self._stalled = names
        flying = self.in_flight()
        status = status_line(self.package_counts(), self.syncs(), stale, len(flying))
        messages = []
        if not stale and self.watchdog is not None:
            messages.append("WATCHDOG=1")
        if status != self.last_status:
            messages.append(f"STATUS={status}")
            self.last_status = status
        if messages and send and not self._stop.is_set():
            self.notify("\n".join(messages))
        detail: dict[str, Any] = {
            "stale": [str(s) for s in stale],
            "stages": self.heartbeats.ages(),
            "status": status,
            # the packages the upload workers are on (``syncd status`` shows them)
            "in_flight": flying,
        }
        try:
            # A stalled daemon says so (``syncd health`` names the stage); a hung
            # supervisor stops writing, and the file's age says that.
            write_heartbeat_file(self.state_dir, alive=not stale, detail=detail)
        except OSError as exc:
            self.log.warning("daemon.heartbeat_unwritable", error=str(exc))

    @property
    def stalled(self) -> frozenset[str]:
        return self._stalled
