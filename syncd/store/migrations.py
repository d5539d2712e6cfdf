"""Schema migrations, applied in order at start, each in its own transaction.

A migration and its row in ``schema_migrations`` commit together (SQLite DDL
is transactional), so a crash mid-migration leaves the previous version.
Add a migration by appending to :data:`MIGRATIONS`; never edit a released one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, text
from sqlmodel import SQLModel

from syncd.store import models


def _v1_initial(conn: Connection) -> None:
    tables = [
        t
        for name, t in SQLModel.metadata.tables.items()
        if name != models.SchemaMigration.__tablename__
    ]
    SQLModel.metadata.create_all(conn, tables=tables)
    # Views for the questions people ask most; plain SQL over the tables.
    conn.execute(
        text(
            """
            CREATE VIEW IF NOT EXISTS object_details AS
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
            """
            CREATE VIEW IF NOT EXISTS package_summary AS
            SELECT sync, state, COUNT(*) AS packages, SUM(file_count) AS files,
                   SUM(total_bytes) AS bytes, MAX(updated_at) AS last_change
            FROM packages GROUP BY sync, state
            """
        )
    )


# The views people query (README, "The mirror: query it with SQL"). Live rows
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


def _v2_views_for_people(conn: Connection) -> None:
    for name, sql in _V2_VIEWS.items():
        conn.execute(text(f"CREATE VIEW IF NOT EXISTS {name} AS {sql.strip()}"))
    for ddl in _V2_INDEXES:
        conn.execute(text(ddl))


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial tables and views", _v1_initial),
    (2, "views for people (v_*) and their indexes", _v2_views_for_people),
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
