"""Directory stamps of uploaded units: what lets the catch-up scan at start skip them.

A stamp set is recorded for a unit when a scan finds every one of its files
covered by a package and no package of it open, and every directory of the
unit older than :data:`RACY_SECONDS` (a change in the same clock tick as the
stamp would leave the ctime equal). At the next start, a unit whose
directories still carry their stamps has had no file added, removed or renamed
(:func:`~syncd.pipeline.scan.dirs_unchanged`) and is not listed or stat-ed
by the catch-up scan; in-place writes to its files are found by the full scan
that follows it. Stamps are only a shortcut: losing them costs one full scan,
never a file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from sqlalchemy import delete, insert
from sqlmodel import Session, col, select

from syncd.pipeline.scan import DirStamp, UnitSnapshot
from syncd.store import UnitStamp, utcnow

# Directory timestamps come from a clock that ticks coarsely (a few ms on a
# local disk, 1 or 2 s on some network and FAT filesystems): a directory changed
# this recently is not stamped, so that a later change cannot keep its ctime.
RACY_SECONDS = 2.0

Stamps = tuple[DirStamp, ...]


def worth_stamping(snap: UnitSnapshot, started_ns: int) -> bool:
    """A directory unit with no symlink whose directories all changed well before
    ``started_ns`` (the wall clock when the scan began, in ns)."""
    if snap.is_file or snap.linked or not snap.dirs:
        return False
    newest = max(d.ctime_ns for d in snap.dirs)
    return newest < started_ns - int(RACY_SECONDS * 1e9)


def load(session: Session, sync: str, host: str) -> dict[str, Stamps]:
    """Every stamped unit of ``sync`` (on ``host``; ``""`` on a one-machine store)."""
    rows = session.exec(
        select(UnitStamp.unit, UnitStamp.dirs).where(UnitStamp.sync == sync, UnitStamp.host == host)
    ).all()
    return {unit: tuple(DirStamp(*d) for d in json.loads(dirs)) for unit, dirs in rows}


def save(
    session: Session, sync: str, host: str, put: Mapping[str, Stamps], drop: Iterable[str]
) -> None:
    """Replace the stamps of the units in ``put`` and forget those in ``drop``."""
    gone = set(drop) | set(put)
    if not gone:
        return
    names = sorted(gone)
    for i in range(0, len(names), 500):  # bounded IN lists on every engine
        session.exec(
            delete(UnitStamp).where(
                col(UnitStamp.sync) == sync,
                col(UnitStamp.host) == host,
                col(UnitStamp.unit).in_(names[i : i + 500]),
            )
        )
    if put:
        now = utcnow()
        session.execute(
            insert(UnitStamp),
            [
                {
                    "sync": sync,
                    "host": host,
                    "unit": unit,
                    "dirs": json.dumps([list(d) for d in dirs], separators=(",", ":")),
                    "stamped_at": now,
                }
                for unit, dirs in put.items()
            ],
        )
