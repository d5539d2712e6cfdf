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


# The views people query (docs/mirror.md). Live rows
# only: items and labels gone from the platform (deleted_at) are left out.
_V2_VIEWS = {
    # one row per live data item, with its dataset and scene names and label totals
    "v_items": """
        SELECT i.id, i.sync, COALESCE(d.name, i.dataset_remote_id) AS dataset, i.name AS item,
               i.kind, p.name AS scene, i.annotation_status, i.remote_id, i.first_seen_at,
               (SELECT COUNT(*) FROM labels l WHERE l.item_id = i.id AND l.deleted_at IS NULL)
                   AS labels,
               (SELECT COALESCE(SUM(l.object_count), 0) FROM labels l
                 WHERE l.item_id = i.id AND l.deleted_at IS NULL) AS objects
        FROM items i
        LEFT JOIN items p ON p.remote = i.remote AND p.remote_id = i.parent_remote_id
        LEFT JOIN datasets d ON d.remote = i.remote AND d.remote_id = i.dataset_remote_id
        WHERE i.deleted_at IS NULL
    """,
    # objects per class, per dataset and label source
    "v_label_counts": """
        SELECT i.sync, COALESCE(d.name, i.dataset_remote_id) AS dataset, l.source,
               o.class_name, COUNT(*) AS objects, COUNT(DISTINCT o.item_id) AS items
        FROM objects o
        JOIN labels l ON l.id = o.label_id
        JOIN items i ON i.id = o.item_id
        LEFT JOIN datasets d ON d.remote = i.remote AND d.remote_id = i.dataset_remote_id
        WHERE i.deleted_at IS NULL AND l.deleted_at IS NULL
        GROUP BY i.sync, dataset, l.source, o.class_name
    """,
    # data items (frames, images; not scene containers) nobody has annotated yet:
    # not marked annotated by the platform and without any live object
    "v_items_awaiting_labels": """
        SELECT i.id, i.sync, COALESCE(d.name, i.dataset_remote_id) AS dataset, i.name AS item,
               p.name AS scene, i.annotation_status, i.first_seen_at,
               ROUND((julianday('now') - julianday(i.first_seen_at)) * 24, 1) AS waiting_hours
        FROM items i
        LEFT JOIN items p ON p.remote = i.remote AND p.remote_id = i.parent_remote_id
        LEFT JOIN datasets d ON d.remote = i.remote AND d.remote_id = i.dataset_remote_id
        WHERE i.deleted_at IS NULL AND i.kind <> 'SCENE'
          AND COALESCE(i.annotation_status, '') <> 'ANNOTATED'
          AND NOT EXISTS (SELECT 1 FROM labels l
                          WHERE l.item_id = i.id AND l.deleted_at IS NULL AND l.object_count > 0)
    """,
    # packages still on their way (any state but done) or failed, with why
    "v_packages_open": """
        SELECT id, sync, unit, part, state, file_count, total_bytes, attempts, last_error,
               platform_errors, created_at, state_changed_at,
               ROUND((julianday('now') - julianday(state_changed_at)) * 24, 2) AS hours_in_state
        FROM packages
        WHERE state <> 'done'
    """,
    # uploads per UTC day and sync: packages, files, bytes, mean rate
    "v_upload_throughput_daily": """
        SELECT date(e.ts) AS day, e.sync, COUNT(*) AS packages,
               SUM(COALESCE(p.file_count, 0)) AS files,
               SUM(COALESCE(json_extract(e.fields, '$.upload_bytes_sent'),
                            json_extract(e.fields, '$.archive_bytes'),
                            json_extract(e.fields, '$.bytes'), 0)) AS bytes,
               ROUND(SUM(json_extract(e.fields, '$.seconds')), 1) AS upload_seconds,
               ROUND(SUM(COALESCE(json_extract(e.fields, '$.upload_bytes_sent'),
                                  json_extract(e.fields, '$.archive_bytes'),
                                  json_extract(e.fields, '$.bytes'), 0))
                     / 1e6 / MAX(SUM(json_extract(e.fields, '$.seconds')), 0.001), 1)
                   AS mb_per_s
        FROM events e
        LEFT JOIN packages p ON p.id = e.package_id
        WHERE e.event = 'package.uploaded'
        GROUP BY day, e.sync
    """,
    # one row per sync: packages by outcome, mirror size, last pull
    "v_sync_status": """
        SELECT s.sync,
               (SELECT COUNT(*) FROM packages p WHERE p.sync = s.sync AND p.state = 'done')
                   AS packages_done,
               (SELECT COUNT(*) FROM packages p WHERE p.sync = s.sync AND p.state = 'failed')
                   AS packages_failed,
               (SELECT COUNT(*) FROM packages p
                 WHERE p.sync = s.sync AND p.state NOT IN ('done', 'failed')) AS packages_open,
               (SELECT COUNT(*) FROM items i WHERE i.sync = s.sync AND i.deleted_at IS NULL
                   AND i.kind <> 'SCENE') AS items,
               (SELECT COUNT(*) FROM items i WHERE i.sync = s.sync AND i.deleted_at IS NULL
                   AND i.annotation_status = 'ANNOTATED') AS items_annotated,
               (SELECT value FROM cursors c WHERE c.sync = s.sync AND c.name = 'last_pull_at')
                   AS last_pull_at
        FROM (SELECT sync FROM packages UNION SELECT sync FROM items
              UNION SELECT sync FROM cursors) s
    """,
}
_V2_INDEXES = (
    # v_upload_throughput_daily and `syncd events --since`
    "CREATE INDEX IF NOT EXISTS ix_events_event_ts ON events (event, ts)",
    # v_sync_status, v_packages_open per sync
    "CREATE INDEX IF NOT EXISTS ix_packages_sync_state ON packages (sync, state)",
    # v_items_awaiting_labels: live labels with objects per item
    "CREATE INDEX IF NOT EXISTS ix_labels_item_live ON labels (item_id, deleted_at, object_count)",
)


# PostgreSQL has none of the SQLite functions the v2 views use: these give
# them there with SQLite's meaning (ISO-8601 text timestamps, numeric JSON
# fields), so both engines run the very same view text.
_PG_SQLITE_FUNCTIONS = (
    """CREATE OR REPLACE FUNCTION julianday(t text) RETURNS double precision
       LANGUAGE sql STABLE AS $$
         SELECT EXTRACT(EPOCH FROM CASE WHEN t = 'now' THEN now() ELSE t::timestamptz END)
                / 86400.0 + 2440587.5 $$""",
    # varchar, as the column is: a call that matches no function exactly would be
    # taken as a cast to the date type
    """CREATE OR REPLACE FUNCTION date(t varchar) RETURNS text
       LANGUAGE sql IMMUTABLE AS $$ SELECT substr(t, 1, 10) $$""",
    """CREATE OR REPLACE FUNCTION json_extract(doc text, path text) RETURNS double precision
       LANGUAGE sql IMMUTABLE AS $$
         SELECT (doc::json #>> string_to_array(substr(path, 3), '.'))::double precision $$""",
    """CREATE OR REPLACE FUNCTION round(x double precision, digits integer) RETURNS numeric
       LANGUAGE sql IMMUTABLE AS $$ SELECT round(x::numeric, digits) $$""",
    """CREATE OR REPLACE FUNCTION max(a double precision, b double precision)
       RETURNS double precision LANGUAGE sql IMMUTABLE AS $$ SELECT GREATEST(a, b) $$""",
)


def _v2_views_for_people(conn: Connection) -> None:
    create = "CREATE VIEW IF NOT EXISTS"
    if conn.dialect.name != "sqlite":
        for ddl in _PG_SQLITE_FUNCTIONS:
            conn.execute(text(ddl))
        create = "CREATE OR REPLACE VIEW"
    for name, sql in _V2_VIEWS.items():
        conn.execute(text(f"{create} {name} AS {sql.strip()}"))
    for ddl in _V2_INDEXES:
        conn.execute(text(ddl))


def _add_columns(conn: Connection, table: str, columns: dict[str, str]) -> None:
    have = {c["name"] for c in inspect(conn).get_columns(table)}
    for name, sql_type in columns.items():
        if name not in have:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}"))


def _v3_fleet(conn: Connection) -> None:
    """Host names on packages and events, package claims and leases (a fleet on PostgreSQL)."""
    _add_columns(conn, "events", {"host": "VARCHAR"})
    _add_columns(conn, "packages", {"host": "VARCHAR", "claimed_by": "INTEGER"})
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_packages_host ON packages (host)"))
    SQLModel.metadata.create_all(conn, tables=[SQLModel.metadata.tables["leases"]])


def _v4_unit_stamps(conn: Connection) -> None:
    """Directory stamps of uploaded units, for the catch-up scan at start."""
    SQLModel.metadata.create_all(conn, tables=[SQLModel.metadata.tables["unit_stamps"]])


def _v5_file_identity(conn: Connection) -> None:
    """Device and inode of packaged files: an upload reads the very file that was packed."""
    _add_columns(conn, "package_files", {"dev": "BIGINT", "ino": "BIGINT"})


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial tables and views", _v1_initial),
    (2, "views for people (v_*) and their indexes", _v2_views_for_people),
    (3, "fleet: host names, package claims, leases", _v3_fleet),
    (4, "directory stamps of uploaded units (catch-up scan)", _v4_unit_stamps),
    (5, "device and inode of packaged files", _v5_file_identity),
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
