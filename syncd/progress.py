"""The progress bar of ``syncd once`` on a terminal: this run's packages, done out of all.

Contract: :class:`ProgressBar` redraws one line (``\\r``) at most every
``min_interval`` seconds: ``[#####-----] 3/8 packages finished (1 failed) · 2 uploading · 3 in flight``
(in flight: the packages the upload workers are on now).
The packages of a run are those still open when it started plus every one
created since. Nothing is drawn unless the stream is a terminal (the CLI
decides); :meth:`close` ends the line.
"""

from __future__ import annotations

import time
from typing import TextIO

from syncd.store import FINAL_STATES

WIDTH = 24


def render(states: dict[str, int], in_flight: int = 0) -> str:
    total = sum(states.values())
    finished = sum(n for s, n in states.items() if s in FINAL_STATES)
    filled = WIDTH * finished // total if total else 0
    bar = "#" * filled + "-" * (WIDTH - filled)
    busy = [f"{n} {s}" for s, n in sorted(states.items()) if s not in FINAL_STATES and n]
    failed = states.get("failed", 0)
    head = f"[{bar}] {finished}/{total} packages finished"
    if failed:
        head += f" ({failed} failed)"
    flying = [f"{in_flight} in flight"] if in_flight else []
    return " · ".join([head, *busy, *flying])


class ProgressBar:
    def __init__(self, stream: TextIO, min_interval: float = 0.2) -> None:
        self.stream = stream
        self.min_interval = min_interval
        self._last = 0.0
        self._drawn = ""

    def update(self, states: dict[str, int], in_flight: int = 0, *, force: bool = False) -> None:
        now = time.monotonic()
        finished = sum(n for s, n in states.items() if s in FINAL_STATES)
        last_word = finished == sum(states.values())  # the end is always drawn
        if not (force or last_word) and now - self._last < self.min_interval:
            return
        self._last = now
        line = render(states, in_flight)
        if line != self._drawn or force:
            self.stream.write("\r\x1b[K" + line)
            self.stream.flush()
            self._drawn = line

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
