"""Which local files are already on their way (or up): the link between disk and packages.

A file version ``(unit, rel_path, size, mtime_ns)`` is *covered* when a
package that has not failed holds it, or a package failed *permanently* with
it (so a file the platform rejects is not sent again and again; changing the
file makes a new version, which is sent). Packages in ``detected``/``settled``
hold no files yet.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, true
from sqlmodel import Session, col, select

from syncd.store import Package, PackageFile


def covered_versions(
    session: Session,
    sync: str,
    unit: str,
    *,
    exclude_package: int | None = None,
    owned: ColumnElement[bool] | None = None,
) -> set[tuple[str, int, int]]:
    """``{(rel_path, size, mtime_ns)}`` of the unit's files that need no new package.

    ``owned`` limits it to this machine's packages (a fleet: another machine's
    unit of the same name is another unit).
    """
    rows = session.exec(
        select(PackageFile.rel_path, PackageFile.size, PackageFile.mtime_ns, PackageFile.package_id)
        .join(Package, col(Package.id) == col(PackageFile.package_id))
        .where(
            PackageFile.sync == sync, PackageFile.unit == unit, true() if owned is None else owned
        )
    ).all()
    return {(r[0], r[1], r[2]) for r in rows if r[3] != exclude_package}


def covered_by_unit(
    session: Session, sync: str, host: str | None = None, *, units: Sequence[str] | None = None
) -> dict[str, set[tuple[str, int, int]]]:
    """:func:`covered_versions` of every unit of ``sync`` at once (one query, for full scans).

    ``host``: only that machine's packages (a fleet store). ``units``: only
    these units (a slice of a full scan).
    """
    stmt = (
        select(PackageFile.unit, PackageFile.rel_path, PackageFile.size, PackageFile.mtime_ns)
        .join(Package, col(Package.id) == col(PackageFile.package_id))
        .where(PackageFile.sync == sync)
        .order_by(col(PackageFile.unit))
    )
    if units is not None:
        stmt = stmt.where(col(PackageFile.unit).in_(units))
    if host is not None:
        stmt = stmt.where(Package.host == host)
    # 100 000 rows through SQLAlchemy's result rows cost more than stat-ing the
    # files they describe: the statement is compiled for the session's dialect
    # (any backend) and its rows are read from the driver's own cursor.
    # Bound parameters (unit names come from the disk), in the driver's own style.
    connection = session.connection()
    sql = stmt.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
    params: Any = sql.params
    if sql.positional:
        params = tuple(sql.params[k] for k in sql.positiontup or ())
    cursor = connection.connection.cursor()
    try:
        cursor.execute(str(sql), params)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    return {unit: set(map(_VERSION, group)) for unit, group in itertools.groupby(rows, _UNIT)}


_UNIT = operator.itemgetter(0)
_VERSION = operator.itemgetter(1, 2, 3)


def claimed_names(session: Session, sync: str, *, exclude_package: int | None = None) -> set[str]:
    """Top-level platform names that live packages of this sync hold (case kept)."""
    rows = session.exec(
        select(PackageFile.item_key, PackageFile.package_id)
        .join(Package, col(Package.id) == col(PackageFile.package_id))
        .where(PackageFile.sync == sync, Package.state != "failed")
        .distinct()
    ).all()
    return {r[0] for r in rows if r[1] != exclude_package and r[0]}


def uncovered(
    files: Iterable[tuple[str, int, int]], covered: set[tuple[str, int, int]]
) -> list[tuple[str, int, int]]:
    return [f for f in files if f not in covered]
