"""Rate-limit windows as a platform enforces them: exact sliding windows, 429 when full.

A sandbox holds one :class:`RateWindows` per API key. ``admit()`` records the
request and returns None, or, when any window is full, records nothing and
returns the seconds until the oldest request of the full window leaves it
(what a ``Retry-After`` header would say).
"""

from __future__ import annotations

import bisect
import threading
import time


class RateWindows:
    """Several ``(limit, seconds)`` windows checked together; thread-safe."""

    def __init__(self, windows: list[tuple[int, float]]) -> None:
        self.windows = sorted((float(s), int(n)) for n, s in windows)
        self._log: list[float] = []  # admission times, ascending
        self._lock = threading.Lock()
        self.rejected = 0
        self.admitted = 0

    def admit(self, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if self.windows:
                del self._log[: bisect.bisect_right(self._log, now - self.windows[-1][0])]
            wait = 0.0
            for seconds, limit in self.windows:
                inside = len(self._log) - bisect.bisect_right(self._log, now - seconds)
                if inside >= limit:
                    # full until the limit-th newest request leaves the window
                    wait = max(wait, self._log[len(self._log) - limit] + seconds - now)
            if wait > 0:
                self.rejected += 1
                return wait
            self._log.append(now)
            self.admitted += 1
            return None
