"""The store on both engines: migrations recorded, state change + event commit together.

Every test here runs on SQLite and on PostgreSQL (a throwaway cluster, see
``tests/postgres_support.py``); SQLite-only behaviour (WAL) has its own tests.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from syncd.store import Item, Package, Store, utcnow
from tests.conftest import query

Query = Callable[..., list[tuple[Any, ...]]]


class Engine:
    """One engine under test: how to open its store, and how to read it from outside."""

    def __init__(self, state: Path, url: str | None) -> None:
        self.state, self.url = state, url

    def open(self, host: str = "rig-a") -> Store:
        return Store(self.state, database_url=self.url, host=host)

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return query(self.url or self.state / "syncd.db", sql, *args)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    yield Engine(tmp_path / "state", url)


def new_pkg(store: Store, host: str = "rig-a") -> int:
    with store.tx() as tx:
        p = Package(
            sync="s",
            unit="u",
            host=host,
            created_at=utcnow(),
            updated_at=utcnow(),
            state_changed_at=utcnow(),
        )
        tx.session.add(p)
        tx.session.flush()
        assert p.id is not None
        return p.id


def test_migrations_recorded_and_tables_there(engine: Engine) -> None:
    store = engine.open()
    assert engine.query("SELECT version FROM schema_migrations ORDER BY version") == [
        (1,),
        (2,),
        (3,),
        (4,),
        (5,),
    ]
    for table in (
        "datasets",
        "items",
        "labels",
        "objects",
        "cursors",
        "packages",
        "package_files",
        "events",
        "leases",
        "unit_stamps",
        "object_details",
        "package_summary",
        "v_items",
        "v_label_counts",
        "v_items_awaiting_labels",
        "v_packages_open",
        "v_upload_throughput_daily",
        "v_sync_status",
    ):
        assert engine.query(f"SELECT COUNT(*) FROM {table}") == [(0,)], table
    store.close()
    engine.open().close()  # reopening runs no migration twice
    assert engine.query("SELECT COUNT(*) FROM schema_migrations") == [(5,)]


def test_wal_mode(tmp_path: Path) -> None:
    Store(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "syncd.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_database_before_the_fleet_is_migrated(tmp_path: Path) -> None:
    """A SQLite mirror written before the fleet columns gets them, keeping its rows."""
    Store(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "syncd.db")
    conn.executescript(
        "DELETE FROM schema_migrations WHERE version = 3; DROP TABLE leases;"
        "DROP INDEX ix_packages_host; ALTER TABLE packages DROP COLUMN host;"
        "ALTER TABLE packages DROP COLUMN claimed_by; ALTER TABLE events DROP COLUMN host;"
        "INSERT INTO events (ts, event, level, fields) VALUES ('t', 'old.event', 'info', '{}');"
    )
    conn.close()
    store = Store(tmp_path, host="rig-b")
    new_pkg(store, host="rig-b")
    with store.tx() as tx:
        tx.event("new.event")
    rows = query(tmp_path / "syncd.db", "SELECT event, host FROM events ORDER BY id")
    assert rows == [("old.event", None), ("new.event", "rig-b")]
    assert query(tmp_path / "syncd.db", "SELECT host FROM packages") == [("rig-b",)]


def test_transition_and_event_commit_together(engine: Engine) -> None:
    store = engine.open()
    pid = new_pkg(store)
    with pytest.raises(RuntimeError), store.tx() as tx:
        p = tx.session.get(Package, pid)
        assert p is not None
        tx.transition(p, "settled")
        raise RuntimeError("crash before commit")
    assert engine.query("SELECT state FROM packages") == [("detected",)]
    assert engine.query("SELECT COUNT(*) FROM events") == [(0,)]
    with store.tx() as tx:
        p = tx.session.get(Package, pid)
        assert p is not None
        tx.transition(p, "settled", files=3)
    assert engine.query("SELECT state FROM packages") == [("settled",)]
    assert engine.query("SELECT event, from_state, to_state, host FROM events") == [
        ("package.settled", "detected", "settled", "rig-a")
    ]
    store.close()


def test_final_states_are_final(engine: Engine) -> None:
    store = engine.open()
    pid = new_pkg(store)
    with store.tx() as tx:
        p = tx.session.get(Package, pid)
        assert p is not None
        tx.transition(p, "failed", reason="x")
    with pytest.raises(ValueError, match="already failed"), store.tx() as tx:
        p = tx.session.get(Package, pid)
        assert p is not None
        tx.transition(p, "done")
    store.close()


def test_reader_sees_committed_rows_while_writer_holds_a_transaction(engine: Engine) -> None:
    store = engine.open()
    new_pkg(store)
    with store.tx() as tx:
        p = Package(
            sync="s", unit="v", created_at=utcnow(), updated_at=utcnow(), state_changed_at=utcnow()
        )
        tx.session.add(p)
        tx.session.flush()
        assert engine.query("SELECT COUNT(*) FROM packages") == [(1,)]
        with store.read() as s:
            assert len(s.exec(select(Package)).all()) == 1
    store.close()


def test_every_view_answers_with_rows_on_both_engines(engine: Engine) -> None:
    """The v_* views use SQLite's date and JSON functions; PostgreSQL gets them as shims."""
    store = engine.open()
    pid = new_pkg(store)
    with store.tx() as tx:
        p = tx.session.get(Package, pid)
        assert p is not None
        p.file_count = 3
        for state in ("settled", "packing", "packed", "uploading"):
            tx.transition(p, state)
        tx.transition(p, "uploaded", archive_bytes=4_000_000, seconds=2.0)
        tx.session.add(
            Item(
                remote="r",
                sync="s",
                dataset_remote_id="1",
                remote_id="10",
                name="000001",
                kind="SINGLE_DATA",
                first_seen_at="2026-01-01T00:00:00.000+00:00",
                updated_at=utcnow(),
            )
        )
    day, sync, packages, files, size, seconds, rate = engine.query(
        "SELECT day, sync, packages, files, bytes, upload_seconds, mb_per_s "
        "FROM v_upload_throughput_daily"
    )[0]
    assert (day, sync, packages, files) == (utcnow()[:10], "s", 1, 3)
    assert (float(size), float(seconds), float(rate)) == (4_000_000, 2.0, 2.0)
    item, waiting = engine.query("SELECT item, waiting_hours FROM v_items_awaiting_labels")[0]
    assert item == "000001" and float(waiting) > 24
    assert engine.query("SELECT sync, state FROM v_packages_open") == [("s", "uploaded")]
    assert engine.query("SELECT sync, packages_open, items FROM v_sync_status") == [("s", 1, 1)]
    assert engine.query("SELECT item, labels, objects FROM v_items") == [("000001", 0, 0)]
    assert engine.query("SELECT COUNT(*) FROM v_label_counts") == [(0,)]
    store.close()


def test_unit_stamps_round_trip(engine: Engine) -> None:
    """Directory stamps keep 64-bit inodes and ns ctimes exactly, per sync and host;
    units with awkward names are bound, never spliced into SQL."""
    from syncd.pipeline import stamps
    from syncd.pipeline.coverage import covered_by_unit
    from syncd.pipeline.scan import DirStamp

    store = engine.open()
    big = (DirStamp("", 2**62 + 7, 1_790_000_000_123_456_789), DirStamp("a/b", 12, 13))
    odd = "it's; DROP TABLE packages; --"
    with store.tx() as tx:
        stamps.save(tx.session, "s", "", {"u1": big, odd: big[1:]}, [])
        stamps.save(tx.session, "s", "rig-b", {"u1": big[1:]}, [])
    with store.read() as s:
        assert stamps.load(s, "s", "") == {"u1": big, odd: big[1:]}
        assert stamps.load(s, "s", "rig-b") == {"u1": big[1:]}
        assert covered_by_unit(s, "s", units=[odd, "u1"]) == {}
    with store.tx() as tx:  # replace one, forget the other
        stamps.save(tx.session, "s", "", {"u1": big[:1]}, [odd])
    with store.read() as s:
        assert stamps.load(s, "s", "") == {"u1": big[:1]}
        assert stamps.load(s, "s", "rig-b") == {"u1": big[1:]}
    store.close()


def test_a_sqlite_daemon_never_loads_psycopg(tmp_path: Path) -> None:
    """psycopg costs about 9 MB and 0.1 s of start-up: only a fleet store loads it."""
    import subprocess
    import sys

    code = (
        "import sys, pathlib, syncd.cli, syncd.daemon, syncd.status\n"
        "from syncd.store import Store\n"
        "Store(pathlib.Path(sys.argv[1])).close()\n"
        "print('psycopg' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "state")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_every_commit_is_synced_so_it_survives_a_power_loss(tmp_path: Path) -> None:
    """``synchronous = FULL`` (2) on every connection of the store, the daemon's and readers'."""
    st = Store(tmp_path)
    try:
        for engine in (st._write, st._read):
            with engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    finally:
        st.close()
