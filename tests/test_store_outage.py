"""A PostgreSQL outage seen by the store: which errors are one, and its two events.

* :func:`syncd.store.postgres.unavailable` tells a server that cannot be
  reached (refused, shutting down, starting up, connection cut) from a
  statement it refused;
* :class:`~syncd.store.availability.Availability` reports an outage once, to
  one thread, however many statements fail meanwhile;
* on a real server stopped and started again, the store raises
  :class:`StoreUnavailable`, logs ``store.unavailable`` once at the first
  failure, and writes it (with the time it happened) and ``store.available``
  to ``events`` at the first statement that works, and takes its presence
  back (tests/e2e/test_postgres_restart.py shows the daemon around it).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from structlog.testing import capture_logs

from syncd.errors import StoreError, StoreUnavailable
from syncd.store import Store
from syncd.store.availability import Availability
from syncd.store.pg_coordinator import HOST
from syncd.store.postgres import database_error, unavailable
from tests.postgres_support import Cluster, own_cluster


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    yield from own_cluster()


def _pg_error(cls: type[psycopg.Error], sqlstate: str | None) -> psycopg.Error:
    err = cls("boom")
    if sqlstate is not None:
        err.sqlstate = sqlstate
    return err


@pytest.mark.parametrize(
    ("cls", "sqlstate", "expected"),
    [
        (psycopg.OperationalError, None, True),  # refused, reset, closed: no SQLSTATE
        (psycopg.InterfaceError, None, True),  # "the connection is closed"
        (psycopg.errors.AdminShutdown, "57P01", True),  # pg_ctl stop -m fast
        (psycopg.errors.CrashShutdown, "57P02", True),
        (psycopg.errors.CannotConnectNow, "57P03", True),  # starting up / shutting down
        (psycopg.OperationalError, "08006", True),  # connection failure
        (psycopg.errors.DiskFull, "53100", False),  # the server is there, and says no
        (psycopg.errors.UniqueViolation, "23505", False),
    ],
)
def test_which_errors_are_an_outage(
    cls: type[psycopg.Error], sqlstate: str | None, expected: bool
) -> None:
    err = _pg_error(cls, sqlstate)
    assert unavailable(err) is expected
    wrapped = DBAPIError.instance("SELECT 1", None, err, psycopg.Error)
    assert unavailable(wrapped) is expected
    mapped = database_error("postgresql+psycopg://u:secret@db.example/x", wrapped)
    assert isinstance(mapped, StoreUnavailable) is expected
    assert "secret" not in str(mapped)


def test_a_dropped_connection_is_an_outage() -> None:
    exc = OperationalError(
        "SELECT 1", None, psycopg.DatabaseError("x"), connection_invalidated=True
    )
    assert unavailable(exc)
    assert not unavailable(IntegrityError("INSERT", None, psycopg.DatabaseError("dup")))


def test_an_outage_is_reported_once_however_many_threads_fail() -> None:
    a = Availability()
    assert a.ended() is None and not a.down
    starts = []
    threads = [threading.Thread(target=lambda: starts.append(a.failed("down"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(starts) == [False] * 7 + [True]
    outage = a.ended()
    assert outage is not None and outage.failures == 8 and outage.error == "down"
    assert a.ended() is None  # one caller records it
    # recording it failed: the same outage goes on, with the failures since
    a.failed("again")
    a.resume(outage)
    again = a.ended()
    assert again is not None and again.error == "down" and again.failures == 9
    assert again.started_at == outage.started_at


def test_a_server_stopped_and_started_again(tmp_path: Path, cluster: Cluster) -> None:
    store = Store(tmp_path / "state", database_url=cluster.database(), host="m1")
    try:
        with store.tx() as tx:
            tx.event("daemon.started", pid=1)
        store.coord.hold_host(wait=0)  # as a daemon does
        key_before = store.coord.key  # type: ignore[attr-defined]
        cluster.shut_down("immediate")  # the pooled connections die with it
        with capture_logs() as logs:
            for _ in range(3):
                with pytest.raises(StoreUnavailable), store.tx() as tx:
                    tx.event("daemon.started", pid=2)
            with pytest.raises(StoreUnavailable) as caught, store.read() as s:
                s.execute(text("SELECT 1"))
            store.unavailable(caught.value)  # as the daemon's guard does: counted once
        down = [e for e in logs if e["event"] == "store.unavailable"]
        assert len(down) == 1 and down[0]["log_level"] == "warning"
        assert "state.database_url" in down[0]["error"] and "fleet-test-pw" not in str(logs)
        assert store.availability.down
        cluster.start()
        with capture_logs() as logs:
            with store.read() as s:  # the first statement that works ends the outage
                s.execute(text("SELECT 1"))
            with store.tx() as tx:
                tx.event("daemon.started", pid=3)
        # the restart ended its presence: taken back at once, with a new key
        assert [e["event"] for e in logs] == [
            "store.available",
            "store.presence_lost",
            "daemon.started",
        ]
        assert logs[1]["key"] == key_before and store.coord.key != key_before  # type: ignore[attr-defined]
        assert logs[0]["failures"] == 4 and logs[0]["outage_seconds"] >= 0
        with store.read() as s:
            rows = s.execute(
                text(
                    "SELECT event, level, ts, fields FROM events "
                    "WHERE event LIKE 'store.%' ORDER BY id"
                )
            ).all()
        assert [(r[0], r[1]) for r in rows] == [
            ("store.unavailable", "warning"),
            ("store.available", "info"),
        ]
        assert rows[0][2] < rows[1][2]
        assert json.loads(rows[0][3])["error"] == down[0]["error"]
        assert _host_locks(cluster) == 1, "the host lock was not taken back"
    finally:
        store.close()


def test_not_an_outage_stays_a_store_error(tmp_path: Path, cluster: Cluster) -> None:
    store = Store(tmp_path / "state", database_url=cluster.database(), host="m1")
    try:
        with pytest.raises(DBAPIError) as caught, store.tx() as tx:
            tx.session.execute(text("SELECT * FROM no_such_table"))
        assert not isinstance(caught.value, StoreError)
        assert not store.availability.down
    finally:
        store.close()


def test_a_restart_between_two_statements_is_noticed_by_the_presence(
    tmp_path: Path, cluster: Cluster
) -> None:
    """No statement fails (the pool reconnects before handing a connection out), so no
    outage is reported; but the restart ended the daemon's session, and the next
    statement takes its presence and host lock back."""
    store = Store(tmp_path / "state", database_url=cluster.database(), host="m1")
    try:
        store.coord.hold_host(wait=0)
        key_before = store.coord.key  # type: ignore[attr-defined]
        with store.tx() as tx:
            tx.event("daemon.started", pid=1)
        cluster.restart("fast")
        assert _host_locks(cluster) == 0
        with capture_logs() as logs, store.read() as s:
            s.execute(text("SELECT 1"))
        assert [e["event"] for e in logs] == ["store.presence_lost"]
        assert store.coord.key != key_before  # type: ignore[attr-defined]
        assert _host_locks(cluster) == 1
        assert not store.availability.down
    finally:
        store.close()


def _host_locks(cluster: Cluster) -> int:
    return int(
        cluster.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            f"AND classid = {HOST} AND objsubid = 2"
        )[0][0]
    )
