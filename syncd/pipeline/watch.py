"""Watch and settle: find units with new files, and decide when they are settled.

Contract of :func:`run_once`:

* scans the given units (all of them when ``units`` is None, as at start: a
  unit that appeared while the daemon was down is found here);
* a unit with files no package covers gets one ``detected`` package (never
  two open ones);
* a ``detected`` package becomes ``settled`` when the unit's ready marker
  exists (``ready_marker`` set), or, without a marker, when the unit's file
  list, sizes and mtimes stayed the same for ``settle_seconds``.

:class:`~syncd.pipeline.observe.FolderWatcher` (watchdog) only says *which*
units changed and wakes the daemon; it never changes state itself.
"""

from __future__ import annotations

import os
import time
import warnings

from sqlmodel import col, select

from syncd.pipeline.context import SyncContext
from syncd.pipeline.coverage import covered_by_unit, covered_versions
from syncd.pipeline.units import UnitSnapshot, excluded, list_units, scan_unit
from syncd.store import Package, utcnow

# Packages that hold no frozen file list yet: a unit has at most one of them.
# watchdog 7 warns when inotify re-adds a watch for a folder created inside a
# recursive watch; the watch works, the warning is noise on every new unit.
warnings.filterwarnings("ignore", message="Callback with id", category=RuntimeWarning)

OPEN_STATES = ("detected", "settled", "packing")


class SettleTracker:
    """Remembers, per unit, since when its content has looked the same (monotonic clock)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], tuple[object, float]] = {}

    def stable_for(self, sync: str, snap: UnitSnapshot, now: float) -> float:
        key = (sync, snap.name)
        sig = snap.signature()
        prev = self._seen.get(key)
        if prev is None or prev[0] != sig:
            self._seen[key] = (sig, now)
            return 0.0 if prev is None else -1.0
        return now - prev[1]

    def forget(self, sync: str, unit: str) -> None:
        self._seen.pop((sync, unit), None)


def is_settled(ctx: SyncContext, snap: UnitSnapshot, stable_for: float) -> bool:
    """The settle rule (see module docstring)."""
    if ctx.cfg.ready_marker:
        return snap.marker
    settle = ctx.cfg.settle_seconds
    if stable_for >= settle:
        return True
    # After a restart nothing is remembered: files untouched for settle_seconds
    # that look the same on a second scan are settled as well.
    age = time.time() - snap.newest_mtime_ns / 1e9
    return (stable_for == 0.0 and settle == 0) or (stable_for > 0 and age >= settle)


def run_once(ctx: SyncContext, tracker: SettleTracker, units: set[str] | None = None) -> int:
    """Detect and settle; returns the number of state changes made."""
    if not ctx.cfg.push or ctx.cfg.folder is None:
        return 0
    folder = ctx.cfg.folder
    with ctx.store.read() as s:
        open_pkgs = {
            p.unit: p
            for p in s.exec(
                select(Package).where(
                    Package.sync == ctx.name, col(Package.state).in_(OPEN_STATES), ctx.owned()
                )
            ).all()
        }
    names = list_units(folder, ctx.cfg.exclude) if units is None else sorted(units | set(open_pkgs))
    prefetched = None
    if units is None:  # a full scan looks at every unit: one query instead of one per unit
        with ctx.store.read() as s:
            prefetched = covered_by_unit(
                s, ctx.name, ctx.store.host if ctx.store.coord.fleet else None
            )
    changes = 0
    now = time.monotonic()
    real_folder = os.path.realpath(folder)
    for name in names:
        if ctx.stop.is_set():
            break
        if excluded(name, ctx.cfg.exclude):
            continue
        snap = scan_unit(
            folder, name, ctx.cfg.exclude, ctx.cfg.ready_marker, real_folder=real_folder
        )
        if snap is None or not snap.files:
            tracker.forget(ctx.name, name)
            continue
        stable = tracker.stable_for(ctx.name, snap, now)
        pkg = open_pkgs.get(name)
        if pkg is None:
            if prefetched is not None:
                covered = prefetched.get(name, set())
            else:
                with ctx.store.read() as s:
                    covered = covered_versions(s, ctx.name, name, owned=ctx.owned())
            if covered.issuperset(snap.files):  # FileStat is that tuple
                continue  # the common case of a full scan, at C speed
            new = [f for f in snap.files if f not in covered]
            with ctx.store.tx() as tx:
                now_s = utcnow()
                pkg = Package(
                    sync=ctx.name,
                    unit=name,
                    host=ctx.store.host,
                    state="detected",
                    file_count=len(new),
                    total_bytes=sum(f.size for f in new),
                    created_at=now_s,
                    updated_at=now_s,
                    state_changed_at=now_s,
                )
                tx.session.add(pkg)
                tx.session.flush()
                tx.event(
                    "package.detected",
                    sync=ctx.name,
                    package_id=pkg.id,
                    unit=name,
                    to_state="detected",
                    files=len(new),
                    bytes=pkg.total_bytes,
                )
                if snap.skipped:
                    tx.event(
                        "unit.files_skipped",
                        level="warning",
                        sync=ctx.name,
                        package_id=pkg.id,
                        unit=name,
                        count=len(snap.skipped),
                        files=[f"{path}: {why}" for path, why in snap.skipped[:20]],
                    )
            changes += 1
        if pkg.state == "detected" and is_settled(ctx, snap, stable):
            with ctx.store.tx() as tx:
                fresh = tx.session.get(Package, pkg.id)
                if fresh is not None and fresh.state == "detected":
                    fresh.file_count = len(snap.files)
                    fresh.total_bytes = snap.total_bytes
                    tx.transition(
                        fresh,
                        "settled",
                        files=len(snap.files),
                        bytes=snap.total_bytes,
                        by="marker" if ctx.cfg.ready_marker else "quiet",
                    )
                    changes += 1
    return changes
