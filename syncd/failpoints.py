"""Crash points: let tests kill the process at an exact step, as a power cut would.

``SYNCD_CRASH_AT="package.uploaded"`` makes the process SIGKILL itself right
after the transaction that recorded ``package.uploaded`` has committed;
``name@3`` waits for the third time. Several points may be given, separated by
commas. Points are the names of committed events plus the few moments that no
event marks:

* ``upload.sent``: the archive was stored, ``uploaded`` is not yet recorded;
* ``upload.opening`` / ``upload.session_opened``: a resumable upload session
  is about to be opened / was opened, its ref is not yet recorded;
* ``upload.file_stored``: one file of a per-file push was stored (on a transfer
  thread, other files may be in flight), its ref is not yet recorded;
* ``submit.sent``: the platform accepted ``/data/upload``, the serial number
  is not yet recorded (the dangerous one: the import runs on the platform).

The variable is read once, at import; without it :func:`reached` costs a
dictionary lookup. It exists for tests and for operators reproducing a
report; it has no other effect.
"""

from __future__ import annotations

import os
import signal

ENV = "SYNCD_CRASH_AT"


def _parse(spec: str) -> dict[str, int]:
    points: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, nth = part.partition("@")
        points[name] = int(nth) if nth.isdigit() else 1
    return points


_points = _parse(os.environ.get(ENV, ""))


def reached(name: str) -> None:
    """Die here (SIGKILL, no cleanup) if ``name`` is an armed crash point whose count is up."""
    if not _points or name not in _points:
        return
    _points[name] -= 1
    if _points[name] <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
