"""A platform outage as the daemon records it, and the resume when it ends.

Contract of :func:`watch` (called by :meth:`DaemonCore.build_remote
<syncd.daemon.compose.DaemonCore.build_remote>` for every remote it builds,
at start and on reload):

* The remote's :class:`~syncd.remotes.reachability.Reachability` reports to
  this daemon: the start of an outage is recorded as ``remote.unreachable``
  (warning: ``remote``, ``kind``, ``error``), once per outage whichever
  thread's request saw it.
* Its end is recorded as ``remote.reachable`` (info: ``remote``,
  ``outage_seconds``, ``failed_requests``, ``packages_due``) in the same
  transaction that makes every package of that remote's syncs that waits on a
  transient error due at once (:func:`syncd.store.due.retry_now`); then the
  push loop is woken. Packages resume within one loop pass of the first
  answer instead of sitting out a backoff of up to five minutes.
* A store that cannot be written (its own outage) does not lose the
  change: it is logged instead, and the push loop is woken all the same.
* While the outage lasts, a probe thread asks the platform's address once
  every ``poll_interval`` (at least 1 s, at most :data:`PROBE_MAX_SECONDS`),
  without retries (:meth:`syncd.remotes.http.Http.probe`), so the end is
  seen within seconds even when nothing else would ask: a push-only sync
  whose packages back off for minutes, no pull due. The probe stops with the
  outage or the daemon.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

from syncd.errors import SyncdError
from syncd.pipeline.context import SyncContext
from syncd.remotes.base import Remote
from syncd.remotes.http import Http, reachability_of
from syncd.remotes.reachability import Change, Reachability
from syncd.store import Store
from syncd.store.due import retry_now

PROBE_MIN_SECONDS = 1.0
PROBE_MAX_SECONDS = 10.0


class Core(Protocol):
    """What :func:`watch` needs of a :class:`~syncd.daemon.compose.DaemonCore`."""

    store: Store
    wake: threading.Event
    stop: threading.Event
    log: Any

    @property
    def cfg(self) -> Any: ...

    @property
    def contexts(self) -> Sequence[SyncContext]: ...

    def record(self, name: str, level: str, **fields: Any) -> None: ...


def watch(core: Core, name: str, remote: Remote) -> Remote:
    """Have ``remote``'s outages recorded by ``core`` (see the module docstring); returns it."""
    tracker = reachability_of(remote)
    http = getattr(remote, "http", None)
    if tracker is not None and isinstance(http, Http):
        prober = Prober(core, name, http, tracker)

        def heard(change: Change) -> None:
            changed(core, name, change)
            if not change.reachable:
                prober.start()

        tracker.listen(heard)
    return remote


class Prober:
    """Asks a remote that is down whether it answers again (see the module docstring)."""

    def __init__(self, core: Core, name: str, http: Http, tracker: Reachability) -> None:
        self.core, self.name, self.http, self.tracker = core, name, http, tracker
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def interval(self) -> float:
        rc = self.core.cfg.remotes.get(self.name)
        every = float(rc.poll_interval) if rc is not None else PROBE_MAX_SECONDS
        return min(PROBE_MAX_SECONDS, max(PROBE_MIN_SECONDS, every))

    def start(self) -> None:
        """Start probing, unless a probe thread runs already."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(
                target=self._run, name=f"probe-{self.name}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while self.tracker.unreachable and not self.core.stop.wait(self.interval()):
            rc = self.core.cfg.remotes.get(self.name)
            if rc is None:
                return  # the remote was removed by a reload
            try:
                self.http.probe(rc.url)
            except Exception:  # the remote was closed (the daemon ends): nothing to ask
                return


def changed(core: Core, name: str, change: Change) -> None:
    """Record one start or end of an outage of remote ``name``."""
    if not change.reachable:
        core.record(
            "remote.unreachable", "warning", remote=name, kind=change.kind, error=change.error
        )
        return
    # contexts is read now, not at build time: a reload may have added or dropped syncs
    syncs = [c.name for c in core.contexts if c.cfg.remote == name]
    fields: dict[str, Any] = {
        "remote": name,
        "outage_seconds": change.seconds,
        "failed_requests": change.failed_requests,
    }
    try:
        with core.store.tx() as tx:
            fields["packages_due"] = retry_now(tx, core.store.coord, syncs)
            tx.event("remote.reachable", level="info", **fields)
    except SyncdError as exc:
        core.log.info("remote.reachable", **fields, store_error=str(exc))
    core.wake.set()
