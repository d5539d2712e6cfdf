"""The tables of the state database and mirror (documented in docs/mirror.md).

Every column that people query is a plain column with a clear name; nested
data is JSON text (query it with SQLite's ``json_extract``). Timestamps are
ISO-8601 UTC strings, so they sort and read well in ``sqlite3``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

# The package state machine (docs/units.md). Final states end the package's life.
PACKAGE_STATES = (
    "detected",
    "settled",
    "packing",
    "packed",
    "uploading",
    "uploaded",
    "submitted",
    "processing",
    "done",
    "failed",
)
FINAL_STATES = frozenset({"done", "failed"})


class Dataset(SQLModel, table=True):
    """A platform dataset that syncd pushes to or pulls from."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("remote", "remote_id"),)

    id: int | None = Field(default=None, primary_key=True)
    remote: str
    remote_id: str
    name: str
    type: str | None = None
    raw: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    updated_at: str


class Item(SQLModel, table=True):
    """One platform data item (a frame, an image, or a scene that groups frames)."""

    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("remote", "remote_id"),
        Index("ix_items_sync_status", "sync", "annotation_status"),
        Index("ix_items_name", "dataset_remote_id", "name"),
    )

    id: int | None = Field(default=None, primary_key=True)
    remote: str
    sync: str
    dataset_remote_id: str
    remote_id: str
    name: str
    kind: str  # SINGLE_DATA | SCENE
    parent_remote_id: str | None = None
    annotation_status: str | None = None
    status: str | None = None
    zip_path: str | None = None
    raw: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    first_seen_at: str
    updated_at: str
    checked_at: str | None = None
    deleted_at: str | None = None


class Label(SQLModel, table=True):
    """The annotation result of one item from one source (ground truth, a model run)."""

    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("item_id", "source"),)

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="items.id", index=True)
    remote: str
    remote_item_id: str
    source: str
    hash: str
    object_count: int = 0
    raw: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    updated_at: str
    deleted_at: str | None = None


class Object(SQLModel, table=True):
    """One annotated object of a label, flattened for SQL."""

    __tablename__ = "objects"

    id: int | None = Field(default=None, primary_key=True)
    label_id: int = Field(foreign_key="labels.id", index=True)
    item_id: int = Field(foreign_key="items.id", index=True)
    remote_object_id: str | None = None
    class_name: str | None = Field(default=None, index=True)
    class_id: str | None = None
    shape_type: str | None = None
    track_id: str | None = None
    track_name: str | None = None
    confidence: float | None = None
    geometry: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    attributes: str = Field(default="[]", sa_column=Column(Text, nullable=False))


class Cursor(SQLModel, table=True):
    """Where a sync's pull has got to; moved in the same transaction as its page."""

    __tablename__ = "cursors"

    sync: str = Field(primary_key=True)
    name: str = Field(primary_key=True)
    value: str
    updated_at: str


class Package(SQLModel, table=True):
    """One archive's journey from a local unit to the platform (docs/ARCHITECTURE.md)."""

    __tablename__ = "packages"
    __table_args__ = (Index("ix_packages_state", "state", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    sync: str = Field(index=True)
    unit: str
    part: int = 1
    state: str = "detected"
    upload_name: str | None = None
    archive_name: str | None = None
    remote_dataset_id: str | None = None
    file_count: int = 0
    total_bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    archive_bytes: int | None = Field(default=None, sa_column=Column(BigInteger))
    item_count: int = 0
    has_results: bool = False
    host: str | None = Field(default=None, index=True)  # the machine whose folder holds the unit
    claimed_by: int | None = None  # the live daemon working on it (PostgreSQL fleets)
    upload_ref: str | None = Field(default=None, sa_column=Column(Text))
    serial: str | None = None
    submit_started_at: str | None = None
    progress: str | None = None  # the platform's last processing progress seen
    progress_at: str | None = None  # when it last changed
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str | None = None
    platform_errors: str | None = None
    created_at: str
    updated_at: str
    state_changed_at: str
    done_at: str | None = None


class PackageFile(SQLModel, table=True):
    """One local file inside one package, with the size and mtime it was packed with."""

    __tablename__ = "package_files"
    __table_args__ = (Index("ix_package_files_unit", "sync", "unit", "rel_path"),)

    id: int | None = Field(default=None, primary_key=True)
    package_id: int = Field(foreign_key="packages.id", index=True)
    sync: str
    unit: str
    rel_path: str
    arcname: str
    item_key: str
    # 64-bit on every engine (SQLite's INTEGER is; PostgreSQL's is not)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    mtime_ns: int = Field(sa_column=Column(BigInteger, nullable=False))
    bind_classes: bool = False  # a result JSON whose classNames get the dataset's classIds
    # the file's identity when it was packed (signed 64-bit); None: packed before it was kept
    dev: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    ino: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class UnitStamp(SQLModel, table=True):
    """A unit's directories as the last scan that found it fully uploaded saw them.

    The catch-up scan at start skips a unit whose directories still carry
    these stamps (:func:`syncd.pipeline.scan.dirs_unchanged`).
    """

    __tablename__ = "unit_stamps"

    sync: str = Field(primary_key=True)
    host: str = Field(primary_key=True)  # "" on a one-machine (SQLite) store
    unit: str = Field(primary_key=True)
    dirs: str = Field(sa_column=Column(Text, nullable=False))  # JSON [[rel, ino, ctime_ns], …]
    stamped_at: str


class Event(SQLModel, table=True):
    """One state change, as also logged."""

    __tablename__ = "events"

    id: int | None = Field(default=None, primary_key=True)
    ts: str = Field(index=True)
    event: str = Field(index=True)
    level: str = "info"
    sync: str | None = None
    package_id: int | None = Field(default=None, index=True)
    unit: str | None = None
    from_state: str | None = None
    to_state: str | None = None
    message: str | None = None
    fields: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    host: str | None = None  # the machine whose daemon recorded it


class Lease(SQLModel, table=True):
    """A named duty that one daemon of a fleet holds at a time (``pull:<sync>``)."""

    __tablename__ = "leases"

    name: str = Field(primary_key=True)
    holder: int | None = None  # the holder's key while it is alive (syncd.store.coordination)
    host: str | None = None
    acquired_at: str | None = None


class SchemaMigration(SQLModel, table=True):
    """Which migrations have run; each is recorded in the transaction that applies it."""

    __tablename__ = "schema_migrations"

    version: int = Field(primary_key=True)
    description: str
    applied_at: str


def utcnow() -> str:
    """The current time as an ISO-8601 UTC string (the store's timestamp format)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
