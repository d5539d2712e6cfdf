"""Packages in flight: each remote works on up to ``upload_concurrency`` packages at once.

Detection and packing run in the push loop; the upload stage (upload, submit,
follow processing) runs here, one thread per package step, so a package that
waits on the platform, or retries through an outage, never holds up the
detection and packing of other units, nor the upload of the next package.

Contract of :class:`UploadWorkers`:

* :meth:`~UploadWorkers.dispatch` starts a worker for each due package of a
  sync (oldest first, :func:`syncd.pipeline.upload.due_packages`) while its
  remote has a free slot (``[remotes.NAME] upload_concurrency``, read at each
  dispatch, so a reload applies it). A package is never worked on by two
  workers: within the daemon the in-flight set says so, across a fleet the
  store's claim (``store.coord.claim``) does.
* A worker claims the package, advances it as far as it goes now
  (:func:`syncd.pipeline.upload.advance`: its steps stay in order and every
  state is committed before it is acted on, exactly as with one package at a
  time), releases the claim, frees its slot and sets ``wake``, so the loop
  starts the next package at once. Errors go through ``DaemonCore.guard``
  (stage ``upload:SYNC``): a worker never dies silently.
* Each worker is its own heartbeat stage (``upload:SYNC#ID``, busy only while
  it runs): a hung transfer shows as stalled while the others move.
* :meth:`~UploadWorkers.join` waits for the workers in flight (the drain,
  ``syncd once``, a synchronous push pass); :meth:`~UploadWorkers.snapshot`
  lists them for ``syncd status`` and ``/metrics``.
* What a worker must not swallow (a ``BaseException`` that is no
  ``Exception``: ``SystemExit``, ``KeyboardInterrupt``) is raised again in
  the caller's thread by the next :meth:`dispatch` or :meth:`join`, and no
  worker starts after it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from syncd.health import Heartbeats
from syncd.pipeline import upload
from syncd.pipeline.context import SyncContext
from syncd.pipeline.strategies import strategy_for
from syncd.store import Package

# DaemonCore.guard: runs a step, reports its error, returns None on one.
Guard = Callable[[str, Callable[[], Any]], Any]


@dataclass(frozen=True)
class InFlight:
    """One package a worker is on: what ``syncd status`` shows."""

    package_id: int
    sync: str
    remote: str
    unit: str
    part: int
    state: str  # when the worker took it
    since: float  # time.time() when the worker took it

    def as_dict(self) -> dict[str, object]:
        return {
            "package_id": self.package_id,
            "sync": self.sync,
            "remote": self.remote,
            "unit": self.unit,
            "part": self.part,
            "state": self.state,
            "seconds": round(time.time() - self.since, 1),
        }


class UploadWorkers:
    """The packages in flight of one daemon (see module docstring)."""

    def __init__(
        self,
        *,
        limit: Callable[[str], int],
        guard: Guard,
        heartbeats: Heartbeats,
        wake: threading.Event,
    ) -> None:
        """``limit(remote)``: how many packages of the remote may be in flight now."""
        self.limit = limit
        self._guard = guard
        self._heartbeats = heartbeats
        self._wake = wake
        self._lock = threading.Condition()
        self._running: dict[int, tuple[threading.Thread, InFlight]] = {}
        self._fatal: BaseException | None = None
        self._ended = False

    def _busy(self, remote: str) -> int:
        return sum(1 for _, f in self._running.values() if f.remote == remote)

    def dispatch(self, ctx: SyncContext, *, block: bool = False) -> int:
        """Start workers for the due packages of ``ctx``; returns how many started.

        ``block``: wait for a free slot instead of leaving the rest to the next
        pass, so every package due now gets its step (a synchronous pass).
        """
        self._raise_fatal()
        if self._ended:
            return 0
        remote = ctx.cfg.remote
        with self._lock:
            taken = set(self._running)
        started = 0
        for pkg in upload.due_packages(ctx, exclude=taken):
            assert pkg.id is not None
            with self._lock:
                while self._busy(remote) >= self.limit(remote):
                    if not block or ctx.stop.is_set():
                        return started
                    self._lock.wait(0.5)
                if ctx.stop.is_set():
                    return started
                if pkg.id in self._running:
                    continue  # taken by another dispatch meanwhile
                info = InFlight(
                    pkg.id, ctx.name, remote, pkg.unit, pkg.part, pkg.state, time.time()
                )
                thread = threading.Thread(
                    target=self._work,
                    args=(ctx, pkg, info),
                    name=f"upload-{ctx.name}-{pkg.id}",
                    daemon=True,
                )
                self._running[pkg.id] = (thread, info)
            thread.start()
            started += 1
        return started

    def _work(self, ctx: SyncContext, pkg: Package, info: InFlight) -> None:
        worked = None
        try:
            with self._heartbeats.busy(f"upload:{ctx.name}#{info.package_id}"):
                worked = self._guard(f"upload:{ctx.name}", partial(_advance_claimed, ctx, pkg))
        except BaseException as exc:
            # Not an error guard reports (SystemExit, KeyboardInterrupt, a test's stand-in
            # for kill -9): it ends the daemon as it would have in the loop's own thread.
            self._fatal = self._fatal or exc
            self._ended = True
            worked = None
        finally:
            with self._lock:
                self._running.pop(info.package_id, None)
                self._lock.notify_all()
            if worked is not False:
                # A slot is free: the loop dispatches the next package now (not after a
                # claim another daemon holds: that would spin).
                self._wake.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for every worker in flight; False if some still run after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._running:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._lock.wait(left if left is not None else 1.0)
        self._raise_fatal()
        return True

    def _raise_fatal(self) -> None:
        """Re-raise, once, in the caller's thread, what ended a worker and must end the
        daemon; no worker starts after it."""
        fatal, self._fatal = self._fatal, None
        if fatal is not None:
            raise fatal

    def snapshot(self) -> list[InFlight]:
        """The packages in flight now, oldest first."""
        with self._lock:
            return sorted((f for _, f in self._running.values()), key=lambda f: f.since)

    def count(self) -> int:
        with self._lock:
            return len(self._running)


def _advance_claimed(ctx: SyncContext, pkg: Package) -> bool:
    """Claimed row by row: two daemons never upload the same package. False: not claimed."""
    assert pkg.id is not None
    if not ctx.store.coord.claim(pkg.id):
        return False
    try:
        upload.advance(ctx, pkg, strategy_for(ctx.remote))
    finally:
        ctx.store.coord.release(pkg.id)
    return True
