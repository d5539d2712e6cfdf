"""The fleet's coordination on PostgreSQL: :class:`PostgresCoordinator`.

The contract is :mod:`syncd.store.coordination`'s. A module of its own so
that a daemon on SQLite never imports psycopg (about 9 MB of memory and
0.1 s of start-up it would not use).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from syncd.errors import ConfigError, StoreError
from syncd.log import get_logger
from syncd.store import postgres
from syncd.store.coordination import LeaseLost, Transaction
from syncd.store.models import utcnow

# Advisory lock namespaces (the first int4 of the two-key form).
PRESENCE = 0x5359_4E01  # "SYN" 1: one per live daemon
EXCLUSIVE = 0x5359_4E02  # named critical sections
HOST = 0x5359_4E03  # one running daemon per host name

_ALIVE = """
    EXISTS (SELECT 1 FROM pg_locks l
            WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND l.classid = {ns} AND l.objid = {holder})
"""


class PostgresCoordinator:
    """PostgreSQL: presence by advisory lock, leases and claims in rows
    (:mod:`syncd.store.coordination`)."""

    fleet = True

    def __init__(
        self,
        engine: Engine,
        url: str,
        host: str,
        transaction: Callable[[], AbstractContextManager[Transaction]],
    ) -> None:
        """``engine`` is the store's write engine (claims, releases); ``transaction``
        opens one of the store's write transactions (a lease taken over is an event)."""
        self.engine, self.url, self.host = engine, url, host
        self._transaction = transaction
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self.key = 0
        self._host_held = False
        self._present()

    # --- presence ------------------------------------------------------------------

    def _present(self) -> int:
        """This daemon's key, (re)registering when its presence connection is gone."""
        with self._lock:
            conn = self._conn
            if conn is not None and not conn.closed:
                try:
                    conn.execute("SELECT 1")
                    return self.key
                except psycopg.Error:
                    get_logger().warning("store.presence_lost", host=self.host, key=self.key)
                    conn.close()
            conn = postgres.connect(self.url, self.host)
            try:
                for _ in range(100):
                    key = random.randint(1, 2**31 - 1)
                    got = conn.execute(
                        "SELECT pg_try_advisory_lock(%s, %s)", (PRESENCE, key)
                    ).fetchone()
                    if got and got[0]:
                        break
                else:  # pragma: no cover - 100 collisions among 2^31 keys
                    raise StoreError("state.database_url: no free daemon key (100 tries)")
                if self._host_held and not self._try_host(conn):
                    conn.close()
                    raise StoreError(f"state.host: {self.host!r} was taken by another syncd")
            except psycopg.Error as exc:
                conn.close()
                raise postgres.database_error(self.url, exc) from exc
            self._conn, self.key = conn, key
            return key

    def rejoin(self) -> None:
        """After an outage: presence and the host lock again now (a new key if the
        server restarted; a StoreError if another daemon took the host meanwhile)."""
        self._present()

    def _try_host(self, conn: psycopg.Connection[tuple[Any, ...]]) -> bool:
        got = conn.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (HOST, self.host)
        ).fetchone()
        return bool(got and got[0])

    def hold_host(self, wait: float) -> None:
        """Be the one running daemon named ``host``; wait up to ``wait`` s for another to go.

        Raises ConfigError naming ``state.host`` when another daemon keeps it
        (two machines with one name would both detect, and upload, their units).
        """
        deadline = time.monotonic() + wait
        while True:
            self._present()
            with self._lock:
                conn = self._conn
                assert conn is not None
                try:
                    if self._try_host(conn):
                        self._host_held = True
                        return
                except psycopg.Error as exc:
                    raise postgres.database_error(self.url, exc) from exc
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f"state.host: {self.host!r} is in use by another running syncd on this "
                    "database (give every machine its own host name)"
                )
            time.sleep(0.5)

    @staticmethod
    def _alive(conn: Connection, holder: int | None) -> bool:
        if holder is None:
            return False
        sql = "SELECT " + _ALIVE.format(ns=PRESENCE, holder=int(holder))
        return bool(conn.execute(text(sql)).scalar())

    # --- package claims ----------------------------------------------------------------

    def claim(self, package_id: int) -> bool:
        me = self._present()
        try:
            return self._claim(me, package_id)
        except DBAPIError as exc:
            raise postgres.database_error(self.url, exc) from exc

    def _claim(self, me: int, package_id: int) -> bool:
        with self.engine.begin() as conn:
            row = conn.execute(
                text(
                    "SELECT claimed_by FROM packages WHERE id = :id AND host = :host "
                    "FOR UPDATE SKIP LOCKED"
                ),
                {"id": package_id, "host": self.host},
            ).first()
            if row is None:  # another daemon is claiming it this instant, or not ours
                return False
            holder = row[0]
            if holder not in (None, me) and self._alive(conn, holder):
                return False
            if holder != me:
                conn.execute(
                    text("UPDATE packages SET claimed_by = :me WHERE id = :id"),
                    {"me": me, "id": package_id},
                )
        return True

    def release(self, package_id: int) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    text(
                        "UPDATE packages SET claimed_by = NULL WHERE id = :id AND claimed_by = :me"
                    ),
                    {"id": package_id, "me": self.key},
                )
        except DBAPIError as exc:
            # the claim dies with this daemon's presence anyway; say why it lingers
            raise postgres.database_error(self.url, exc) from exc

    # --- leases ------------------------------------------------------------------------

    def acquire(self, lease: str) -> bool:
        me = self._present()
        with self._transaction() as tx:
            conn = tx.session.connection()
            conn.execute(
                text(
                    "INSERT INTO leases (name, holder, host, acquired_at) "
                    "VALUES (:n, NULL, NULL, NULL) ON CONFLICT (name) DO NOTHING"
                ),
                {"n": lease},
            )
            row = conn.execute(
                text("SELECT holder, host FROM leases WHERE name = :n FOR UPDATE"), {"n": lease}
            ).one()
            holder, previous = row[0], row[1]
            if holder == me:
                return True
            if self._alive(conn, holder):
                return False
            conn.execute(
                text(
                    "UPDATE leases SET holder = :me, host = :host, acquired_at = :t WHERE name = :n"
                ),
                {"me": me, "host": self.host, "t": utcnow(), "n": lease},
            )
            tx.event(
                "lease.acquired",
                lease=lease,
                holder=me,
                previous_host=previous,
                previous_holder=holder,
            )
        return True

    def give_up(self, lease: str) -> None:
        """Let another daemon take ``lease`` now (this one no longer does that work)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    text("UPDATE leases SET holder = NULL WHERE name = :n AND holder = :me"),
                    {"n": lease, "me": self.key},
                )
        except DBAPIError as exc:
            raise postgres.database_error(self.url, exc) from exc

    def check_lease(self, tx: Transaction, lease: str) -> None:
        conn = tx.session.connection()
        # FOR SHARE: a takeover (FOR UPDATE) waits until this transaction ends,
        # so work committed here was committed while the lease was ours.
        row = conn.execute(
            text("SELECT holder, host FROM leases WHERE name = :n FOR SHARE"), {"n": lease}
        ).first()
        if row is None or row[0] != self.key or not self._alive(conn, self.key):
            holder = f"{row[1]} (daemon {row[0]})" if row is not None and row[0] else "nobody"
            raise LeaseLost(f"lease {lease!r} is held by {holder} now: this cycle stops")

    # --- critical sections ----------------------------------------------------------

    @contextmanager
    def exclusive(self, key: str) -> Iterator[None]:
        conn = postgres.connect(self.url, self.host)
        try:
            conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (EXCLUSIVE, key))
            yield
        except psycopg.Error as exc:
            raise postgres.database_error(self.url, exc) from exc
        finally:
            conn.close()  # ends the session: the lock goes with it

    def close(self) -> None:
        """Give up every claim and lease of this daemon and leave the fleet."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is None or conn.closed:
            return
        try:
            conn.execute("UPDATE packages SET claimed_by = NULL WHERE claimed_by = %s", (self.key,))
            conn.execute("UPDATE leases SET holder = NULL WHERE holder = %s", (self.key,))
        except psycopg.Error:
            pass  # the server ends the session anyway: what it held is free
        finally:
            conn.close()
