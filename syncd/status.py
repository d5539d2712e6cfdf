"""``syncd status`` and ``syncd events``: read-only views of the state database.

They open the database read-only (never migrating or writing): the SQLite
file in ``mode=ro``, or a PostgreSQL session with read-only transactions, so
they are safe to run while the daemons work.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from syncd.config import Config
from syncd.errors import StoreError
from syncd.health import read_heartbeat_body, read_heartbeat_file
from syncd.present import table
from syncd.protect import strip_escapes
from syncd.store import queries

HEARTBEAT_MAX_AGE = 60.0


class Reader:
    """Read-only queries with ``:name`` parameters, rows as dicts, on either engine."""

    def __init__(self, cfg: Config) -> None:
        url = cfg.state.database_url
        if url is not None:
            from syncd.store import postgres

            self._where = url
            self._engine = create_engine(
                url,
                poolclass=NullPool,
                connect_args={
                    "connect_timeout": postgres.CONNECT_TIMEOUT,
                    "options": "-c default_transaction_read_only=on",
                    **postgres.tls_defaults(url),
                },
            )
        else:
            path = cfg.state.db_path
            if not path.exists():
                raise StoreError(
                    f"no state database at {str(path)!r} yet: start the daemon first (syncd run)"
                )
            self._where = str(path)
            self._engine = create_engine(
                "sqlite://",
                poolclass=NullPool,
                creator=lambda: sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30),
            )
        try:
            self._conn = self._engine.connect()
        except DBAPIError as exc:
            raise self._error(exc) from exc

    def _error(self, exc: DBAPIError) -> StoreError:
        if self._engine.dialect.name == "sqlite":
            return StoreError(f"cannot open {self._where!r}: {exc.orig}")
        from syncd.store import postgres

        return postgres.database_error(self._where, exc)

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        try:
            return [dict(r._mapping) for r in self._conn.execute(text(sql), params)]
        except DBAPIError as exc:
            raise self._error(exc) from exc

    def close(self) -> None:
        self._conn.close()
        self._engine.dispose()


def _connect(cfg: Config) -> Reader:
    return Reader(cfg)


def database_check(cfg: Config) -> str:
    """One line on the shared database (``syncd check``): reachable, credentials taken, schema.

    Read-only, like every view here; raises StoreError naming ``state.database_url``.
    """
    conn = _connect(cfg)
    try:
        exists = queries.has_schema(conn)
        version = queries.schema_version(conn) if exists else None
        hosts = queries.fleet_hosts(conn) if exists else []
    finally:
        conn.close()
    schema = f"schema {version}" if version else "empty: the first daemon creates the tables"
    fleet = ", ".join(h for h in hosts if h) or "none yet"
    return f"{cfg.state.database} ({schema}; this machine: {cfg.state.host}; machines: {fleet})"


def collect(cfg: Config) -> dict[str, Any]:
    """Everything ``syncd status`` shows, as plain data."""
    conn = _connect(cfg)
    try:
        syncs: dict[str, Any] = {}
        for s in cfg.syncs:
            states = queries.package_states(conn, s.name)
            cursors = queries.cursors(conn, s.name)
            items = queries.item_counts(conn, s.name)
            objects = queries.object_count(conn, s.name)
            warnings = queries.packages_with_platform_errors(conn, s.name)
            failed = queries.newest_failed_packages(conn, s.name)
            waiting = queries.waiting_packages(conn, s.name)
            syncs[s.name] = {
                "remote": s.remote,
                "dataset": s.dataset,
                "packages": states,
                "last_pull_at": cursors.get("last_pull_at"),
                "items_cursor": cursors.get("items"),
                "items": items["n"] or 0,
                "items_annotated": items["annotated"] or 0,
                "objects": objects,
                "failed_packages": failed,
                "waiting_packages": waiting,
                "platform_errors": warnings,
            }
        errors = queries.recent_errors(conn)
        alive, reason = read_heartbeat_file(cfg.state.dir, HEARTBEAT_MAX_AGE)
        flying = _in_flight(cfg) if alive else []
        for name, s in syncs.items():
            s["in_flight"] = [f for f in flying if f.get("sync") == name]
        return {
            "database": cfg.state.database,
            "daemon": {"alive": alive, "reason": reason},
            "syncs": syncs,
            "recent_errors": errors,
        }
    finally:
        conn.close()


def _in_flight(cfg: Config) -> list[dict[str, Any]]:
    """The packages the running daemon's upload workers are on, from its heartbeat file
    (written every few seconds; empty when it cannot be read)."""
    try:
        body = read_heartbeat_body(cfg.state.dir)
    except (OSError, ValueError):
        return []
    flying = body.get("in_flight")
    return [f for f in flying if isinstance(f, dict)] if isinstance(flying, list) else []


def _ago(iso: str | None) -> str:
    if not iso:
        return "never"
    try:
        seconds = (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()
    except ValueError:
        return iso
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{iso[:19]}Z ({seconds / size:.0f}{unit} ago)"
    return f"{iso[:19]}Z ({seconds:.0f}s ago)"


def render(report: dict[str, Any]) -> str:
    """The human view of :func:`collect`: one table row per sync, then what needs attention."""
    lines = [f"database: {report['database']}"]
    daemon = report.get("daemon")
    if daemon:
        lines.append(f"daemon:   {daemon['reason']}")
    rows: list[tuple[str, ...]] = [
        ("SYNC", "DATASET", "DONE", "FAILED", "ON THE WAY", "ITEMS", "ANNOTATED", "OBJECTS",
         "LAST PULL"),
    ]  # fmt: skip
    for name, s in report["syncs"].items():
        pk = s["packages"]
        rows.append(
            (
                name,
                f"{s['remote']}/{s['dataset']}",
                str(pk.get("done", 0)),
                str(pk.get("failed", 0)),
                str(sum(n for st, n in pk.items() if st not in ("done", "failed"))),
                str(s["items"]),
                str(s["items_annotated"]),
                str(s["objects"]),
                _ago(s["last_pull_at"]),
            )
        )
    lines += table(rows)
    for name, s in report["syncs"].items():
        pk = ", ".join(f"{k} {v}" for k, v in sorted(s["packages"].items())) or "none"
        lines.append(f"{name} packages: {pk}")
        for f in s["failed_packages"]:
            lines.append(
                f"  FAILED package {f['id']} ({f['unit']}): {f['last_error']} "
                f"(syncd retry {f['id']})"
            )
        for f in s.get("in_flight", ()):
            lines.append(
                f"  IN FLIGHT package {f.get('package_id')} ({f.get('unit')}, "
                f"{f.get('state')}): {f.get('seconds')} s"
            )
        for w in s.get("waiting_packages", ()):
            when = datetime.fromtimestamp(float(w["next_attempt_at"] or 0), UTC)
            lines.append(
                f"  WAITING package {w['id']} ({w['unit']}, {w['state']}): {w['last_error']} "
                f"(next look {when.isoformat(timespec='seconds').replace('+00:00', 'Z')})"
            )
        for w in s["platform_errors"]:
            lines.append(
                f"  platform reported errors for package {w['id']} ({w['unit']}): {w['platform_errors']}"
            )
    if report["recent_errors"]:
        lines.append("recent errors:")
        for e in report["recent_errors"]:
            fields = json.loads(e["fields"] or "{}")
            detail = e["message"] or fields.get("reason") or fields.get("error") or ""
            lines.append(
                f"  {e['ts']} {e['event']} {e['sync'] or ''} {e['unit'] or ''} {detail}".rstrip()
            )
    # unit names and platform messages come from others: no terminal escapes
    return strip_escapes("\n".join(lines))


def read_events(
    cfg: Config,
    *,
    limit: int = 50,
    sync: str | None = None,
    after: int = 0,
    since: str | None = None,
) -> list[dict[str, Any]]:
    """Events in id order: the last ``limit`` ones (at or after ``since``, an ISO
    time), or those after id ``after``."""
    conn = _connect(cfg)
    try:
        rows = queries.events(conn, limit=limit, sync=sync, after=after, since=since)
        out = []
        for d in rows:
            d["fields"] = json.loads(d["fields"] or "{}")
            out.append(d)
        return out
    finally:
        conn.close()
