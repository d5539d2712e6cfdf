"""Schema migrations, applied in order at start, each in its own transaction.

A migration and its row in ``schema_migrations`` commit together (DDL is
transactional in SQLite and PostgreSQL alike), so a crash mid-migration leaves
the previous version. Add a migration by appending to :data:`MIGRATIONS`; never
edit a released one. Version 1 creates the tables of today's models, so later
migrations add only what is missing. On PostgreSQL the caller holds a lock
across :func:`migrate`, so daemons starting together migrate once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, inspect, text
from sqlmodel import SQLModel

from syncd.store import models


def _v1_initial(conn: Connection) -> None:
    tables = [
        t
        for name, t in SQLModel.metadata.tables.items()
        if name != models.SchemaMigration.__tablename__
    ]
    SQLModel.metadata.create_all(conn, tables=tables)
    # PostgreSQL has no CREATE VIEW IF NOT EXISTS; the views are new here either way.
    create = "CREATE VIEW IF NOT EXISTS" if conn.dialect.name == "sqlite" else "CREATE VIEW"
    # Views for the questions people ask most; plain SQL over the tables.
    conn.execute(
        text(
            f"""
            {create} object_details AS
            SELECT o.id, i.sync, d.name AS dataset, i.name AS item, i.kind,
                   p.name AS scene, l.source, o.class_name, o.shape_type,
                   o.track_id, o.confidence, o.geometry, o.attributes
            FROM objects o
            JOIN labels l ON l.id = o.label_id
            JOIN items i ON i.id = o.item_id
            LEFT JOIN items p ON p.remote = i.remote AND p.remote_id = i.parent_remote_id
            LEFT JOIN datasets d ON d.remote = i.remote AND d.remote_id = i.dataset_remote_id
            WHERE i.deleted_at IS NULL AND l.deleted_at IS NULL
            """
        )
    )
    conn.execute(
        text(
            f"""
            {create} package_summary AS
            SELECT sync, state, COUNT(*) AS packages, SUM(file_count) AS files,
                   SUM(total_bytes) AS bytes, MAX(updated_at) AS last_change
            FROM packages GROUP BY sync, state
            """
        )
    )


def _add_columns(conn: Connection, table: str, columns: dict[str, str]) -> None:
    have = {c["name"] for c in inspect(conn).get_columns(table)}
    for name, sql_type in columns.items():
        if name not in have:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}"))


def _v2_fleet(conn: Connection) -> None:
    """Host names on packages and events, package claims and leases (a fleet on PostgreSQL)."""
    _add_columns(conn, "events", {"host": "VARCHAR"})
    _add_columns(conn, "packages", {"host": "VARCHAR", "claimed_by": "INTEGER"})
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_packages_host ON packages (host)"))
    SQLModel.metadata.create_all(conn, tables=[SQLModel.metadata.tables["leases"]])


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial tables and views", _v1_initial),
    (2, "fleet: host names, package claims, leases", _v2_fleet),
]
LATEST_VERSION = MIGRATIONS[-1][0]


def migrate(engine: Engine) -> int:
    """Bring the database to the newest version; return that version."""
    models.SchemaMigration.metadata.create_all(
        engine, tables=[SQLModel.metadata.tables[models.SchemaMigration.__tablename__]]
    )
    current = 0
    for version, description, apply in MIGRATIONS:
        with engine.begin() as conn:
            done = conn.execute(
                text("SELECT 1 FROM schema_migrations WHERE version = :v"), {"v": version}
            ).first()
            if done:
                current = version
                continue
            apply(conn)
            conn.execute(
                text(
                    "INSERT INTO schema_migrations (version, description, applied_at) "
                    "VALUES (:v, :d, :t)"
                ),
                {"v": version, "d": description, "t": datetime.now(UTC).isoformat()},
            )
            current = version
    return current
