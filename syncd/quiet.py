"""Quiet error reporting: a repeated error is worth one line every so often, not one per try.

Contract of :class:`Quiet` (one per reporter; keys are what fails: a daemon
stage, or one remote's requests):

* :meth:`Quiet.failed` counts a failure of ``key`` and says whether to report
  it now: the first failure, a failure whose *shape* differs from the last one
  reported (the message with numbers and addresses masked, so "try 3" and
  "try 4" are the same error), or the same shape once ``seconds`` have passed
  since it was last reported. The answer carries the consecutive count, for
  the report's ``consecutive_errors`` / ``failures`` field.
* :meth:`Quiet.succeeded` ends a run of failures of ``key``: it returns how
  many there were (the caller reports one "recovered" event with it), or
  None when ``key`` was not failing.
* Thread-safe; the clock is ``time.monotonic`` read at every call (tests
  patch it), or the ``clock`` given.

The callers own their event names and fields (``daemon.stage_error`` /
``daemon.stage_recovered``, ``remote.retry`` / ``remote.recovered``).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

QUIET_SECONDS = 30.0
# Numbers, and hex addresses in reprs: what differs between two reports of one error.
NUMBERS = r"0x[0-9a-f]+|\d+"


@dataclass
class _Run:
    count: int = 0
    logged: float = 0.0
    shape: str = ""


class Quiet:
    """Consecutive failures per key, and when each is worth reporting (see module docstring)."""

    def __init__(
        self,
        seconds: float = QUIET_SECONDS,
        *,
        mask: str = NUMBERS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.seconds = seconds
        self._mask = re.compile(mask)
        self._clock = clock
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()

    def failed(self, key: str, message: str) -> int | None:
        """Count one failure of ``key``: its consecutive count when it is due a report, else None."""
        now = self._clock() if self._clock is not None else time.monotonic()
        shape = self._mask.sub("#", message)
        with self._lock:
            run = self._runs.setdefault(key, _Run())
            run.count += 1
            if run.shape != shape or now - run.logged >= self.seconds:
                run.shape, run.logged = shape, now
                return run.count
            return None

    def succeeded(self, key: str) -> int | None:
        """``key`` works again: how many failures in a row came before, or None if none did."""
        if not self._runs:  # the usual case, without taking the lock
            return None
        with self._lock:
            run = self._runs.pop(key, None)
        return run.count if run is not None else None

    def count(self, key: str) -> int:
        """Consecutive failures of ``key`` so far (0 while it works)."""
        with self._lock:
            run = self._runs.get(key)
            return run.count if run is not None else 0

    def stuck(self, limit: int) -> str | None:
        """A key that failed ``limit`` times in a row, if any."""
        with self._lock:
            for key, run in self._runs.items():
                if run.count >= limit:
                    return key
        return None
