"""``syncd plan``: a dry run of the push side — what would be packed now, into how many
packages, how large — without changing anything (read-only database, no platform call).

Contract of :func:`make_plan`: for every push sync, every unit with file
versions no package covers (the same rule the daemon uses,
:mod:`syncd.pipeline.coverage`) is listed with its new files and bytes, the
parts ``max_package_bytes`` splits it into (the daemon's own
:func:`~syncd.pipeline.layout.split_groups`), whether it is settled (marker
present or quiet for ``settle_seconds``) and which package already holds it
open. Units whose files are all covered are counted, not listed. Renames for
name collisions need the platform and are not predicted.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from syncd.config import Config, SyncConfig
from syncd.pipeline.detect import OPEN_STATES
from syncd.pipeline.layout import group_items, split_groups
from syncd.pipeline.scan import list_units, scan_unit
from syncd.present import human_bytes, table
from syncd.status import Reader
from syncd.store import queries


@dataclass
class UnitPlan:
    sync: str
    unit: str
    files: int
    bytes: int
    parts: list[int]  # bytes of each package the unit would become
    settled: bool
    why_not: str | None  # why it is not settled yet
    open_package: int | None  # a package of this unit already detected/settled/packing


@dataclass
class SyncPlan:
    sync: str
    folder: str
    units: list[UnitPlan] = field(default_factory=list)
    up_to_date: int = 0  # units whose files are all in packages already


def _plan_sync(s: SyncConfig, db: Reader | None, host: str | None, now: float) -> SyncPlan:
    assert s.folder is not None
    plan = SyncPlan(s.name, str(s.folder))
    covered = queries.covered_files(db, s.name, host) if db is not None else {}
    open_pkgs = queries.open_packages(db, s.name, host, OPEN_STATES) if db is not None else {}
    for name in list_units(s.folder, s.exclude):
        snap = scan_unit(s.folder, name, s.exclude, s.ready_marker)
        if snap is None or not snap.files:
            continue
        new = [f for f in snap.files if f not in covered.get(name, set())]
        if not new:
            plan.up_to_date += 1
            continue
        unit_is_scene = name.lower().startswith("scene_") and not snap.is_file
        parts = split_groups(group_items(new, name, unit_is_scene), s.max_package_bytes)
        if s.ready_marker:
            settled = snap.marker
            why = None if settled else f"waiting for the marker {s.ready_marker!r}"
        else:
            quiet = now - snap.newest_mtime_ns / 1e9
            settled = quiet >= s.settle_seconds
            why = (
                None
                if settled
                else f"changed {quiet:.0f}s ago (settle_seconds {s.settle_seconds:g})"
            )
        plan.units.append(
            UnitPlan(
                sync=s.name,
                unit=name,
                files=len(new),
                bytes=sum(f.size for f in new),
                parts=[sum(g.size for g in part) for part in parts],
                settled=settled,
                why_not=why,
                open_package=open_pkgs.get(name),
            )
        )
    return plan


def make_plan(cfg: Config, sync: str | None = None) -> list[SyncPlan]:
    """The plan for every push sync (or only ``sync``); reads, never writes."""
    fleet = cfg.state.database_url is not None
    db = Reader(cfg) if fleet or cfg.state.db_path.exists() else None
    host = cfg.state.host if fleet else None
    try:
        now = time.time()
        return [
            _plan_sync(s, db, host, now)
            for s in cfg.syncs
            if s.push and s.folder is not None and (sync is None or s.name == sync)
        ]
    finally:
        if db is not None:
            db.close()


def as_json(plans: list[SyncPlan]) -> list[dict[str, Any]]:
    return [asdict(p) for p in plans]


def render(plans: list[SyncPlan]) -> str:
    """A table per sync, and a total."""
    lines: list[str] = []
    total_pk = total_b = 0
    for p in plans:
        lines.append(
            f"sync {p.sync} ({p.folder}): {len(p.units)} unit(s) to send, {p.up_to_date} up to date"
        )
        rows: list[tuple[str, ...]] = [("UNIT", "FILES", "SIZE", "PACKAGES", "STATUS")]
        for u in p.units:
            if u.open_package is not None:
                status = f"in package {u.open_package}"
            else:
                status = "ready: would be packed now" if u.settled else (u.why_not or "")
            if u.settled or u.open_package is not None:
                total_pk += len(u.parts)
                total_b += u.bytes
            sizes = ", ".join(human_bytes(b) for b in u.parts)
            rows.append(
                (u.unit, str(u.files), human_bytes(u.bytes), f"{len(u.parts)} ({sizes})", status)
            )
        if len(rows) > 1:
            lines += ["  " + line for line in table(rows)]
    lines.append(f"total: {total_pk} package(s), {human_bytes(total_b)} ready or on their way")
    return "\n".join(lines)
