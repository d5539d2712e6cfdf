"""Outages of the database server, each reported once: ``store.unavailable`` / ``store.available``.

Contract of :class:`Availability` (one per :class:`~syncd.store.Store`, shared
by every thread using it):

* :meth:`failed` counts a failure that means the server cannot be reached
  (:class:`~syncd.errors.StoreUnavailable`); it returns True only for the
  first failure of an outage, when the caller logs ``store.unavailable`` at
  once. That event cannot be written to the ``events`` table yet.
* :meth:`ended` is called after every statement that worked: the first one
  after an outage gets the :class:`Outage` (once, whichever thread it is), and
  records both events; every later call returns None without taking a lock.
* :meth:`resume` puts an outage back when recording it failed (the server
  went away again): it goes on as the same outage, with its start and error.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

from syncd.store.models import utcnow


@dataclass(frozen=True)
class Outage:
    """One outage: its first error, when it began, how many failures it caused."""

    error: str
    started_at: str  # wall clock (ISO-8601 UTC), for the event row
    started: float  # monotonic, for the length
    failures: int = 1

    def seconds(self) -> float:
        return round(time.monotonic() - self.started, 1)


class Availability:
    """Whether the database server answers, by the outcome of the last statements."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outage: Outage | None = None

    @property
    def down(self) -> bool:
        return self._outage is not None

    def failed(self, error: str) -> bool:
        """One more failure; True when it starts an outage (the caller logs it now)."""
        with self._lock:
            if self._outage is not None:
                self._outage = replace(self._outage, failures=self._outage.failures + 1)
                return False
            self._outage = Outage(error, utcnow(), time.monotonic())
            return True

    def ended(self) -> Outage | None:
        """A statement worked: the outage that this ends, for one caller only."""
        if self._outage is None:  # the usual case, without the lock
            return None
        with self._lock:
            outage, self._outage = self._outage, None
        return outage

    def resume(self, outage: Outage) -> None:
        """Recording ``outage`` failed: it goes on (failures since are counted in it)."""
        with self._lock:
            extra = self._outage.failures if self._outage is not None else 0
            self._outage = replace(outage, failures=outage.failures + extra)
