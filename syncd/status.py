"""``syncd status`` and ``syncd events``: read-only views of the state database.

They open the database read-only with plain sqlite3 (never migrating or
writing), so they are safe to run while the daemon works.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

from syncd.config import Config
from syncd.errors import StoreError
from syncd.health import read_heartbeat_file
from syncd.present import table

HEARTBEAT_MAX_AGE = 60.0


def _connect(cfg: Config) -> sqlite3.Connection:
    path = cfg.state.db_path
    if not path.exists():
        raise StoreError(
            f"no state database at {str(path)!r} yet: start the daemon first (syncd run)"
        )
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {str(path)!r}: {exc}") from exc
    conn.row_factory = sqlite3.Row
    return conn


def collect(cfg: Config) -> dict[str, Any]:
    """Everything ``syncd status`` shows, as plain data."""
    conn = _connect(cfg)
    try:
        syncs: dict[str, Any] = {}
        for s in cfg.syncs:
            states = {
                r["state"]: r["n"]
                for r in conn.execute(
                    "SELECT state, COUNT(*) AS n FROM packages WHERE sync = ? GROUP BY state",
                    (s.name,),
                )
            }
            cursors = {
                r["name"]: r["value"]
                for r in conn.execute("SELECT name, value FROM cursors WHERE sync = ?", (s.name,))
            }
            items = conn.execute(
                "SELECT COUNT(*) AS n, SUM(annotation_status = 'ANNOTATED') AS annotated FROM items "
                "WHERE sync = ? AND deleted_at IS NULL",
                (s.name,),
            ).fetchone()
            objects = conn.execute(
                "SELECT COUNT(*) FROM objects o JOIN items i ON i.id = o.item_id WHERE i.sync = ?",
                (s.name,),
            ).fetchone()[0]
            warnings = [
                dict(r)
                for r in conn.execute(
                    "SELECT id, unit, state, platform_errors FROM packages "
                    "WHERE sync = ? AND platform_errors IS NOT NULL ORDER BY id DESC LIMIT 10",
                    (s.name,),
                )
            ]
            failed = [
                dict(r)
                for r in conn.execute(
                    "SELECT id, unit, last_error, updated_at FROM packages WHERE sync = ? AND state = 'failed' "
                    "ORDER BY id DESC LIMIT 10",
                    (s.name,),
                )
            ]
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
                "platform_errors": warnings,
            }
        errors = [
            dict(r)
            for r in conn.execute(
                "SELECT ts, event, sync, package_id, unit, message, fields FROM events "
                "WHERE level = 'error' ORDER BY id DESC LIMIT 10"
            )
        ]
        alive, reason = read_heartbeat_file(cfg.state.dir, HEARTBEAT_MAX_AGE)
        return {
            "database": str(cfg.state.db_path),
            "daemon": {"alive": alive, "reason": reason},
            "syncs": syncs,
            "recent_errors": errors,
        }
    finally:
        conn.close()


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
    return "\n".join(lines)


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
        where: list[str] = ["id > ?"]
        args: list[Any] = [after]
        if sync:
            where.append("sync = ?")
            args.append(sync)
        if since:
            where.append("ts >= ?")
            args.append(since)
        rows = conn.execute(
            f"SELECT * FROM (SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?) ORDER BY id",
            (*args, limit),
        ).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["fields"] = json.loads(d["fields"] or "{}")
            out.append(d)
        return out
    finally:
        conn.close()
