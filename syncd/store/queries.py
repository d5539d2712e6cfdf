"""Named read queries over the state database, for the daemon's drivers and the operator views.

Contract:

* The daemon's queries take a :class:`~syncd.store.Store` and read one
  snapshot (``store.read()``); they see only this machine's packages
  (:func:`~syncd.store.coordination.owned_packages`: on a fleet store the
  other daemons answer for theirs).
* The operator views' queries (``syncd status``, ``syncd events``,
  ``syncd check``, ``syncd plan``) take a read-only connection with
  ``rows(sql, **params) -> list[dict]`` (:class:`Rows`; ``syncd.status.Reader``
  on either engine), so they never migrate or write. Their SQL is plain and
  portable (SQLite and PostgreSQL).
* Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any, Protocol

from sqlmodel import col, or_, select

from syncd.store.coordination import owned_packages
from syncd.store.models import FINAL_STATES, Package
from syncd.store.store import Store


class Rows(Protocol):
    """A read-only connection: ``:name`` parameters in, rows as dicts out."""

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]: ...


# --- the daemon (``syncd once`` and the run loop) ------------------------------------------


def my_packages(store: Store) -> list[Package]:
    """Every package of this machine (``syncd once`` notes them before it starts)."""
    with store.read() as s:
        return list(s.exec(select(Package).where(owned_packages(store.coord))).all())


def pending_packages(store: Store) -> list[Package]:
    """Packages past ``settled`` and not final: work the daemon still owes."""
    with store.read() as s:
        return list(
            s.exec(
                select(Package).where(
                    col(Package.state).not_in((*FINAL_STATES, "detected")),
                    owned_packages(store.coord),
                )
            ).all()
        )


def run_package_states(store: Store, max_before: int, open_before: Collection[int]) -> list[str]:
    """States of one run's packages: open at its start (``open_before``) or created since
    (id above ``max_before``); ``detected`` ones (units not settled) are left out."""
    with store.read() as s:
        return [
            str(state)
            for state in s.exec(
                select(Package.state).where(
                    or_(col(Package.id) > max_before, col(Package.id).in_(open_before)),
                    Package.state != "detected",
                    owned_packages(store.coord),
                )
            ).all()
        ]


def failed_packages(store: Store) -> list[Package]:
    """This machine's packages in ``failed``."""
    with store.read() as s:
        return list(
            s.exec(
                select(Package).where(Package.state == "failed", owned_packages(store.coord))
            ).all()
        )


# --- ``syncd check`` ------------------------------------------------------------------------


def has_schema(db: Rows) -> bool:
    """Whether syncd's migrations table exists yet (PostgreSQL)."""
    return bool(db.rows("SELECT to_regclass('schema_migrations') IS NOT NULL AS yes")[0]["yes"])


def schema_version(db: Rows) -> Any:
    """The newest migration applied (None before the first)."""
    return db.rows("SELECT MAX(version) AS v FROM schema_migrations")[0]["v"]


def fleet_hosts(db: Rows) -> list[str]:
    """The machines that have packages in the database, by name."""
    return [r["host"] for r in db.rows("SELECT DISTINCT host FROM packages ORDER BY host")]


# --- ``syncd status`` -----------------------------------------------------------------------


def package_states(db: Rows, sync: str) -> dict[str, int]:
    """state → packages of ``sync`` (every machine's)."""
    return {
        r["state"]: r["n"]
        for r in db.rows(
            "SELECT state, COUNT(*) AS n FROM packages WHERE sync = :s GROUP BY state", s=sync
        )
    }


def cursors(db: Rows, sync: str) -> dict[str, str]:
    """name → value of the cursors of ``sync`` (``items``, ``last_pull_at``, ...)."""
    return {
        r["name"]: r["value"]
        for r in db.rows("SELECT name, value FROM cursors WHERE sync = :s", s=sync)
    }


def item_counts(db: Rows, sync: str) -> dict[str, Any]:
    """``{"n": items, "annotated": ANNOTATED items}`` of ``sync``, deleted ones left out
    (either may be None on an empty mirror)."""
    return db.rows(
        "SELECT COUNT(*) AS n, "
        "SUM(CASE WHEN annotation_status = 'ANNOTATED' THEN 1 ELSE 0 END) AS annotated "
        "FROM items WHERE sync = :s AND deleted_at IS NULL",
        s=sync,
    )[0]


def object_count(db: Rows, sync: str) -> Any:
    """Objects (labels' shapes) in the mirror of ``sync``."""
    return db.rows(
        "SELECT COUNT(*) AS n FROM objects o JOIN items i ON i.id = o.item_id WHERE i.sync = :s",
        s=sync,
    )[0]["n"]


def packages_with_platform_errors(db: Rows, sync: str, limit: int = 10) -> list[dict[str, Any]]:
    """The newest packages of ``sync`` the platform reported errors for."""
    return db.rows(
        "SELECT id, unit, state, platform_errors FROM packages "
        "WHERE sync = :s AND platform_errors IS NOT NULL ORDER BY id DESC LIMIT :limit",
        s=sync,
        limit=limit,
    )


def waiting_packages(db: Rows, sync: str, limit: int = 10) -> list[dict[str, Any]]:
    """Packages of ``sync`` on their way that carry a reason for not moving yet (a retry
    with backoff, an uncertain submit), with when they are tried next (unix time)."""
    return db.rows(
        "SELECT id, unit, state, last_error, next_attempt_at FROM packages "
        "WHERE sync = :s AND state NOT IN ('done', 'failed') AND last_error IS NOT NULL "
        "ORDER BY id LIMIT :limit",
        s=sync,
        limit=limit,
    )


def newest_failed_packages(db: Rows, sync: str, limit: int = 10) -> list[dict[str, Any]]:
    """The newest ``failed`` packages of ``sync``."""
    return db.rows(
        "SELECT id, unit, last_error, updated_at FROM packages "
        "WHERE sync = :s AND state = 'failed' ORDER BY id DESC LIMIT :limit",
        s=sync,
        limit=limit,
    )


def recent_errors(db: Rows, limit: int = 10) -> list[dict[str, Any]]:
    """The newest error events, newest first."""
    return db.rows(
        "SELECT ts, event, sync, package_id, unit, message, fields FROM events "
        "WHERE level = 'error' ORDER BY id DESC LIMIT :limit",
        limit=limit,
    )


# --- ``syncd events`` -----------------------------------------------------------------------


def events(
    db: Rows, *, limit: int, sync: str | None = None, after: int = 0, since: str | None = None
) -> list[dict[str, Any]]:
    """Events in id order: the last ``limit`` ones after id ``after`` (of ``sync``, at or
    after ``since``, an ISO time); ``fields`` as stored (JSON text)."""
    where = (
        ["id > :after"] + (["sync = :sync"] if sync else []) + (["ts >= :since"] if since else [])
    )
    return db.rows(
        f"SELECT * FROM (SELECT * FROM events WHERE {' AND '.join(where)} "
        "ORDER BY id DESC LIMIT :limit) AS recent ORDER BY id",
        after=after,
        sync=sync,
        since=since,
        limit=limit,
    )


# --- ``syncd plan`` -------------------------------------------------------------------------


def _mine(host: str | None) -> str:
    """On a fleet store only this machine's packages count; on SQLite (None) all do."""
    return "" if host is None else " AND p.host = :host"


def covered_files(db: Rows, sync: str, host: str | None) -> dict[str, set[tuple[str, int, int]]]:
    """unit → the file versions (path, size, mtime_ns) some package of ``sync`` holds."""
    out: dict[str, set[tuple[str, int, int]]] = {}
    for r in db.rows(
        "SELECT f.unit, f.rel_path, f.size, f.mtime_ns FROM package_files f "
        f"JOIN packages p ON p.id = f.package_id WHERE f.sync = :sync{_mine(host)}",
        sync=sync,
        host=host,
    ):
        out.setdefault(r["unit"], set()).add((r["rel_path"], int(r["size"]), int(r["mtime_ns"])))
    return out


def open_packages(db: Rows, sync: str, host: str | None, states: Iterable[str]) -> dict[str, int]:
    """unit → id of a package of ``sync`` in one of ``states`` (fixed state names)."""
    names = ", ".join(f"'{s}'" for s in states)  # the store's own state names, not input
    return {
        r["unit"]: int(r["id"])
        for r in db.rows(
            "SELECT p.unit, p.id FROM packages p "
            f"WHERE p.sync = :sync AND p.state IN ({names}){_mine(host)}",
            sync=sync,
            host=host,
        )
    }
