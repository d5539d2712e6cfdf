"""Watch and settle: find units with new files, and decide when they are settled.

Contract of :func:`run_once`:

* scans the given units (all of them when ``units`` is None: a *full scan*,
  which stats every file; :class:`FullScan` does one in slices, so that units
  the watcher reports meanwhile are not kept waiting behind it);
* ``catch_up`` (a full scan's quick form, the daemon's first pass at start):
  a unit with no open package whose directories still carry the stamps a
  scan recorded when it was last found uploaded (:mod:`~syncd.pipeline.stamps`)
  is skipped without listing or stat-ing its files; every other unit is
  scanned. A unit that appeared, and a file added, removed or renamed while
  the daemon was down, are found here; a file rewritten in place under the
  same name is found by the next full scan, which the daemon runs right after;
* a unit with files no package covers gets one ``detected`` package (never
  two open ones);
* a ``detected`` package becomes ``settled`` when the unit's ready marker
  exists (``ready_marker`` set), or, without a marker, when the unit's file
  list, sizes and mtimes stayed the same for ``settle_seconds``.

:class:`~syncd.pipeline.watcher.FolderWatcher` (watchdog) only says *which*
units changed and wakes the daemon; it never changes state itself.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from contextlib import suppress

from sqlmodel import col, select

from syncd.pipeline import stamps
from syncd.pipeline.context import SyncContext
from syncd.pipeline.coverage import covered_by_unit, covered_versions
from syncd.pipeline.scan import UnitSnapshot, dirs_unchanged, excluded, list_units, scan_unit
from syncd.store import Package, PackageMoved, utcnow

# Packages that hold no frozen file list yet: a unit has at most one of them.
# watchdog 7 warns when inotify re-adds a watch for a folder created inside a
# recursive watch; the watch works, the warning is noise on every new unit.
warnings.filterwarnings("ignore", message="Callback with id", category=RuntimeWarning)

OPEN_STATES = ("detected", "settled", "packing")

# Above this many units to compare, their covered file versions are read in
# one query rather than one per unit.
PREFETCH_UNITS = 20
# A slice of a full scan reads the covered versions of this many units at once.
SLICE_UNITS = 50


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


def run_once(
    ctx: SyncContext,
    tracker: SettleTracker,
    units: set[str] | None = None,
    *,
    catch_up: bool = False,
) -> int:
    """Detect and settle; returns the number of state changes made."""
    if not ctx.cfg.push or ctx.cfg.folder is None:
        return 0
    if units is None:
        scan = FullScan(ctx, tracker, catch_up=catch_up)
        while not scan.done and not ctx.stop.is_set():
            scan.step()
        return scan.changes
    open_pkgs = _open_packages(ctx)
    changes = 0
    now = time.monotonic()
    real_folder = os.path.realpath(ctx.cfg.folder)
    for name in sorted(units | set(open_pkgs)):
        if ctx.stop.is_set():
            break
        changes += _visit(ctx, tracker, name, open_pkgs.get(name), None, now, real_folder)[0]
    return changes


class FullScan:
    """A full scan (or its ``catch_up`` form) that can be run a slice at a time.

    Built at the start of the scan: lists the units (in ``catch_up``, only those
    with an open package or whose directories lost their stamps). Each
    :meth:`step` scans the next units until ``budget`` seconds have passed
    (all of them when None), reading open packages afresh, so that another
    scan between two steps never leads to a second open package for a unit.
    Stamps are saved step by step; those of units gone from the folder are
    forgotten when a (non-catch-up) scan is done.
    """

    def __init__(self, ctx: SyncContext, tracker: SettleTracker, *, catch_up: bool = False):
        assert ctx.cfg.folder is not None
        self.ctx, self.tracker, self.catch_up = ctx, tracker, catch_up
        self.changes = 0
        self._host = ctx.store.host if ctx.store.coord.fleet else None
        self._folder = ctx.cfg.folder
        self._real_folder = os.path.realpath(self._folder)
        with ctx.store.read() as s:
            self._known = stamps.load(s, ctx.name, self._host or "")
        names = list_units(self._folder, ctx.cfg.exclude)
        self._listed = set(names)
        if catch_up:
            open_units = set(_open_packages(ctx))
            names = [
                n
                for n in names
                if n in open_units or not dirs_unchanged(self._folder, n, self._known.get(n, ()))
            ]
        self._names = names
        self._pos = 0

    @property
    def done(self) -> bool:
        return self._pos >= len(self._names)

    def step(self, budget: float | None = None, interrupt: Callable[[], bool] | None = None) -> int:
        """Scan the next units for up to ``budget`` seconds, or until ``interrupt()``
        is true (checked after each unit: at least one unit is scanned per step).
        Returns the state changes made."""
        ctx = self.ctx
        t0 = time.monotonic()
        started_ns = time.time_ns()
        changes = 0
        restamp: dict[str, stamps.Stamps] = {}
        unstamp: set[str] = set()
        while not self.done and not ctx.stop.is_set():
            batch = self._names[self._pos : self._pos + SLICE_UNITS]
            open_pkgs = _open_packages(ctx)
            covered = None
            if len(batch) > PREFETCH_UNITS:  # one query for the batch, not one per unit
                with ctx.store.read() as s:
                    covered = covered_by_unit(s, ctx.name, self._host, units=batch)
            now = time.monotonic()
            for name in batch:
                self._pos += 1
                made, snap = _visit(
                    ctx, self.tracker, name, open_pkgs.get(name), covered, now, self._real_folder
                )
                changes += made
                if snap is not None and stamps.worth_stamping(snap, started_ns):
                    if self._known.get(name) != snap.dirs:
                        restamp[name] = snap.dirs
                elif name in self._known:
                    unstamp.add(name)
                if ctx.stop.is_set() or self._enough(t0, budget, interrupt):
                    break
            if self._enough(t0, budget, interrupt):
                break
        if self.done and not self.catch_up and not ctx.stop.is_set():
            unstamp |= set(self._known) - self._listed  # units gone from the folder
        if restamp or unstamp:
            with ctx.store.tx() as tx:
                stamps.save(tx.session, ctx.name, self._host or "", restamp, unstamp)
            for name in unstamp:
                self._known.pop(name, None)
            self._known.update(restamp)
        self.changes += changes
        return changes

    @staticmethod
    def _enough(t0: float, budget: float | None, interrupt: Callable[[], bool] | None) -> bool:
        if budget is not None and time.monotonic() - t0 >= budget:
            return True
        return interrupt is not None and interrupt()


def _open_packages(ctx: SyncContext) -> dict[str, Package]:
    """This daemon's packages of ``ctx`` that hold no frozen file list, by unit."""
    with ctx.store.read() as s:
        return {
            p.unit: p
            for p in s.exec(
                select(Package).where(
                    Package.sync == ctx.name, col(Package.state).in_(OPEN_STATES), ctx.owned()
                )
            ).all()
        }


def _visit(
    ctx: SyncContext,
    tracker: SettleTracker,
    name: str,
    pkg: Package | None,
    prefetched: dict[str, set[tuple[str, int, int]]] | None,
    now: float,
    real_folder: str,
) -> tuple[int, UnitSnapshot | None]:
    """Scan one unit, detect and settle it. Returns the state changes made and,
    when the unit is found fully uploaded (every file covered, no open package),
    its snapshot (the caller may stamp it)."""
    assert ctx.cfg.folder is not None
    if excluded(name, ctx.cfg.exclude):
        return 0, None
    snap = scan_unit(
        ctx.cfg.folder, name, ctx.cfg.exclude, ctx.cfg.ready_marker, real_folder=real_folder
    )
    if snap is None or not snap.files:
        tracker.forget(ctx.name, name)
        return 0, None
    stable = tracker.stable_for(ctx.name, snap, now)
    changes = 0
    if pkg is None:
        if prefetched is not None:
            covered = prefetched.get(name, set())
        else:
            with ctx.store.read() as s:
                covered = covered_versions(s, ctx.name, name, owned=ctx.owned())
        if covered.issuperset(snap.files):  # FileStat is that tuple
            return 0, snap  # the common case of a full scan, at C speed
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
        # Skipped when the package moved on meanwhile (another scan settled it).
        with suppress(PackageMoved), ctx.store.package_step(pkg.id, expect=("detected",)) as step:
            step.pkg.file_count = len(snap.files)
            step.pkg.total_bytes = snap.total_bytes
            step.advance(
                "settled",
                files=len(snap.files),
                bytes=snap.total_bytes,
                by="marker" if ctx.cfg.ready_marker else "quiet",
            )
            changes += 1
    return changes, None
