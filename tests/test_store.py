"""The store: WAL, migrations recorded, state change + event commit together."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from syncd.store import Package, Store, utcnow


def new_pkg(store: Store) -> int:
    with store.tx() as tx:
        p = Package(
            sync="s", unit="u", created_at=utcnow(), updated_at=utcnow(), state_changed_at=utcnow()
        )
        tx.session.add(p)
        tx.session.flush()
        assert p.id is not None
        return p.id


def test_wal_and_migrations(tmp_path: Path) -> None:
    store = Store(tmp_path)
    conn = sqlite3.connect(tmp_path / "syncd.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_migrations").fetchall() == [(1,), (2,)]
    tables = {
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table','view')")
    }
    assert {
        "datasets",
        "items",
        "labels",
        "objects",
        "cursors",
        "packages",
        "package_files",
        "events",
        "object_details",
        "v_items",
        "v_label_counts",
        "v_items_awaiting_labels",
        "v_packages_open",
        "v_upload_throughput_daily",
        "v_sync_status",
    } <= tables
    store.close()
    Store(tmp_path).close()  # reopening runs no migration twice
    assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == 2


def test_transition_and_event_commit_together(tmp_path: Path) -> None:
    store = Store(tmp_path)
    pid = new_pkg(store)
    with pytest.raises(RuntimeError), store.tx() as tx:
        p = tx.session.get(Package, pid)
        assert p is not None
        tx.transition(p, "settled")
        raise RuntimeError("crash before commit")
    conn = sqlite3.connect(tmp_path / "syncd.db")
    assert conn.execute("SELECT state FROM packages").fetchone()[0] == "detected"
    assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0
    with store.tx() as tx:
        p = tx.session.get(Package, pid)
        assert p is not None
        tx.transition(p, "settled", files=3)
    assert conn.execute("SELECT state FROM packages").fetchone()[0] == "settled"
    assert conn.execute("SELECT event, from_state, to_state FROM events").fetchall() == [
        ("package.settled", "detected", "settled")
    ]


def test_final_states_are_final(tmp_path: Path) -> None:
    store = Store(tmp_path)
    pid = new_pkg(store)
    with store.tx() as tx:
        p = tx.session.get(Package, pid)
        assert p is not None
        tx.transition(p, "failed", reason="x")
    with pytest.raises(ValueError, match="already failed"), store.tx() as tx:
        p = tx.session.get(Package, pid)
        assert p is not None
        tx.transition(p, "done")


def test_reader_sees_committed_rows_while_writer_holds_a_transaction(tmp_path: Path) -> None:
    store = Store(tmp_path)
    new_pkg(store)
    with store.tx():
        reader = sqlite3.connect(tmp_path / "syncd.db", timeout=1)
        assert reader.execute("SELECT COUNT(*) FROM packages").fetchone()[0] == 1
