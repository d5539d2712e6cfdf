"""The Store: the one place that opens the database and owns transactions.

Contract:

* ``with store.tx() as tx:`` is one write transaction (SQLite ``BEGIN
  IMMEDIATE``, so two writers never deadlock on a lock upgrade). Everything
  done through ``tx.session``, every :meth:`Tx.event` and every
  :meth:`Tx.transition` commits together or not at all. ``Tx.transition``
  takes only the edges of the state machine (:mod:`syncd.store.lifecycle`).
* ``with store.package_step(package_id, expect=(…)) as step:`` is one step
  of a package's life in one write transaction: the row read afresh (or
  :class:`~syncd.store.steps.PackageMoved` when it is not in an expected
  state), then intent-named operations (:mod:`syncd.store.steps`).
* Events are logged only after their transaction has committed; then each
  listener added with :meth:`Store.add_commit_listener` (this store's own:
  two stores in one process never see each other's events) is called.
* ``with store.read() as session:`` is a read-only snapshot; readers never
  block the daemon (WAL) and other processes may query the file meanwhile.
* The database is ``<state.dir>/syncd.db`` in WAL mode with a busy timeout,
  migrated to the newest schema on open; or, with ``state.database_url``, a
  PostgreSQL database shared by a fleet of daemons (:mod:`syncd.store.postgres`),
  whose work they divide through ``store.coord``
  (:mod:`syncd.store.coordination`). Every event records ``host``.
* PostgreSQL outages (:mod:`syncd.store.availability`): a transaction or
  read that fails because the server cannot be reached raises
  :class:`~syncd.errors.StoreUnavailable`; the first such failure of an
  outage logs ``store.unavailable`` at once, and the first statement that
  works again writes it to ``events`` (with the time it happened) together
  with ``store.available`` (``outage_seconds``). The pool checks a connection
  before using it (``pool_pre_ping``), so nothing is needed to reconnect. After
  an outage, or connections the pool found dead (a restart between two
  statements), the coordinator takes the daemon's presence back
  (:meth:`~syncd.store.coordination.Coordinator.rejoin`).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool
from sqlmodel import Session, select

from syncd import failpoints
from syncd.config import masked_url
from syncd.errors import ConfigError, StoreError, StoreUnavailable
from syncd.log import get_logger, redact
from syncd.protect import tighten_state
from syncd.store.availability import Availability
from syncd.store.coordination import Coordinator, LocalCoordinator, owned_packages
from syncd.store.lifecycle import LIVE_STATES, REOPEN, InvalidTransition, check_transition
from syncd.store.migrations import LATEST_VERSION, migrate
from syncd.store.models import Cursor, Event, Package, utcnow
from syncd.store.steps import PackageMoved, PackageStep

BUSY_TIMEOUT_MS = 30_000
# FULL, not WAL's usual NORMAL: under NORMAL a commit can roll back after a
# power loss or an OS crash (not after a process crash), and the commits that
# precede a side effect ("about to submit", names being registered, a resumable
# session recorded before its first byte) are exactly the ones that must
# survive one, or a reboot re-submits blindly. FULL syncs the WAL at every
# commit; bench/durability.py measures what that costs (docs/guarantees.md).
SYNCHRONOUS = "FULL"


def _engine(path: Path, *, immediate: bool) -> Engine:
    engine = create_engine(
        f"sqlite:///{path}",
        poolclass=NullPool,  # one connection per transaction: safe across threads and forks
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own
        # transaction handling would defer it and upgrade locks later).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
        if immediate:
            # WAL lets people query the mirror while the daemon writes.
            mode = cur.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{path}: cannot switch to WAL mode (got {mode})")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


# Called with (event name, fields) for every event once its transaction has
# committed (the metrics count only what the database holds).
CommitListener = Callable[[str, dict[str, Any]], None]


class Tx:
    """One open write transaction: the session plus the events to log after commit."""

    def __init__(
        self,
        session: Session,
        host: str | None = None,
        listeners: tuple[CommitListener, ...] = (),
    ) -> None:
        self.session = session
        self.host = host
        self._listeners = listeners
        self._logs: list[tuple[str, str, dict[str, Any]]] = []

    def event(
        self,
        name: str,
        *,
        level: str = "info",
        sync: str | None = None,
        package_id: int | None = None,
        unit: str | None = None,
        from_state: str | None = None,
        to_state: str | None = None,
        message: str | None = None,
        **fields: Any,
    ) -> None:
        """Record one event row in this transaction; it is logged once the commit succeeds."""
        clean = redact({k: v for k, v in fields.items() if v is not None})
        msg = redact(message) if message else None
        self._row(name, level, clean, sync, package_id, unit, from_state, to_state, msg)
        head = {
            "sync": sync,
            "package_id": package_id,
            "unit": unit,
            "from_state": from_state,
            "to_state": to_state,
            "message": msg,
        }
        self._logs.append(
            (name, level, {**{k: v for k, v in head.items() if v is not None}, **clean})
        )

    def late_event(self, name: str, ts: str, *, level: str = "info", **fields: Any) -> None:
        """The row of an event logged earlier, when it could not be written (the
        database was unreachable): with the time it happened, and not logged again."""
        clean = redact({k: v for k, v in fields.items() if v is not None})
        self._row(name, level, clean, ts=ts)

    def _row(
        self,
        name: str,
        level: str,
        clean: dict[str, Any],
        sync: str | None = None,
        package_id: int | None = None,
        unit: str | None = None,
        from_state: str | None = None,
        to_state: str | None = None,
        msg: str | None = None,
        ts: str | None = None,
    ) -> None:
        self.session.add(
            Event(
                ts=ts or utcnow(),
                event=name,
                level=level,
                sync=sync,
                package_id=package_id,
                unit=unit,
                from_state=from_state,
                to_state=to_state,
                message=msg,
                fields=json.dumps(clean, default=str, sort_keys=True),
                host=self.host,
            )
        )

    def note(self, name: str, pkg: Package, *, level: str = "warning", **fields: Any) -> None:
        """Record an event about ``pkg`` that leaves its state as it is (a retry, a checkpoint)."""
        self.event(
            name,
            level=level,
            sync=pkg.sync,
            package_id=pkg.id,
            unit=pkg.unit,
            from_state=pkg.state,
            to_state=pkg.state,
            **fields,
        )

    def transition(self, pkg: Package, to_state: str, **fields: Any) -> None:
        """Move ``pkg`` to ``to_state`` and record ``package.<to_state>`` in this transaction.

        Only the edges of :data:`syncd.store.lifecycle.TRANSITIONS`; any other
        move raises :class:`~syncd.store.lifecycle.InvalidTransition`.
        """
        check_transition(pkg.id, pkg.state, to_state)
        from_state = pkg.state
        now = utcnow()
        pkg.state = to_state
        pkg.updated_at = now
        pkg.state_changed_at = now
        if to_state == "done":
            pkg.done_at = now
        self.session.add(pkg)
        self.session.flush()
        level = "error" if to_state == "failed" else "info"
        self.event(
            f"package.{to_state}",
            level=level,
            sync=pkg.sync,
            package_id=pkg.id,
            unit=pkg.unit,
            from_state=from_state,
            to_state=to_state,
            **fields,
        )

    def reopen(self, pkg: Package, **fields: Any) -> None:
        """An operator's retry (``syncd retry``): a ``failed`` package back to ``detected``.

        The one edge out of a final state. The caller forgets the package's
        file list first, so the unit's files are packed again as they are now.
        """
        if pkg.state != REOPEN[0]:
            raise InvalidTransition(f"package {pkg.id} is {pkg.state}, not failed")
        now = utcnow()
        pkg.state, pkg.updated_at, pkg.state_changed_at = REOPEN[1], now, now
        self.session.add(pkg)
        self.session.flush()
        self.event(
            "package.retry_requested",
            sync=pkg.sync,
            package_id=pkg.id,
            unit=pkg.unit,
            from_state="failed",
            to_state="detected",
            **fields,
        )

    def emit_logs(self) -> None:
        log = get_logger()
        for name, level, fields in self._logs:
            getattr(log, level if level in ("info", "warning", "error", "debug") else "info")(
                name, **fields
            )
            for listener in self._listeners:
                listener(name, fields)
            failpoints.reached(name)
        self._logs.clear()


SQLITE_MAGIC = b"SQLite format 3\x00"


def check_database(path: Path) -> None:
    """Refuse a file syncd must not touch: not SQLite, another program's, or a newer syncd's.

    Raises ConfigError naming ``state.dir``; never writes to the file.
    """
    where = f"state.dir: {str(path)!r}"
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read: {exc.strerror}") from exc
    if not head:
        return  # an empty file is what SQLite itself creates first
    if head != SQLITE_MAGIC:
        raise ConfigError(
            f"{where} is not a SQLite database (corrupted, or another file); syncd will not "
            "overwrite it: move it away to start with an empty state"
        )
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            newest = (
                conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
                if "schema_migrations" in tables
                else None
            )
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise ConfigError(
            f"{where} cannot be read as a database ({exc}); syncd will not overwrite it: "
            "move it away to start with an empty state"
        ) from exc
    if tables and "schema_migrations" not in tables:
        raise ConfigError(
            f"{where} belongs to another program (tables {', '.join(sorted(tables)[:5])}); "
            "point state.dir at a folder of syncd's own"
        )
    if newest is not None and newest > LATEST_VERSION:
        raise ConfigError(
            f"{where} was written by a newer syncd (schema {newest}, this one knows "
            f"{LATEST_VERSION}); upgrade syncd"
        )


def store_error(path: Path, exc: OperationalError) -> StoreError:
    """A StoreError that says what to do about the usual causes."""
    reason = str(exc.orig)
    if "locked" in reason:
        reason += (
            f" (another process held the write lock for over {BUSY_TIMEOUT_MS // 1000}s: "
            "a sqlite3 shell with an open transaction? readers never block syncd)"
        )
    elif "full" in reason:
        reason += " (free space on the state disk; syncd retries and loses nothing)"
    return StoreError(f"state database {str(path)!r}: {reason}")


class Store:
    """Opens ``<state.dir>/syncd.db``, migrates it, and hands out transactions.

    A new state folder is created 0700 and a new database 0600 (its -wal and
    -shm files inherit that): it holds dataset names, file paths and events.
    """

    def __init__(
        self, state_dir: Path, *, database_url: str | None = None, host: str | None = None
    ) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / "syncd.db"
        self.url = database_url
        self.location = str(self.path)  # what messages and events name: the file, or the URL
        self._keeper: sqlite3.Connection | None
        self.host = host or socket.gethostname()
        self.coord: Coordinator
        self._listeners: tuple[CommitListener, ...] = ()
        self.availability = Availability()
        self._reconnected = False  # the pool dropped its connections: check the presence
        # On every store: the heartbeat file (syncd health) lives here too.
        try:
            if not self.dir.exists():
                self.dir.mkdir(parents=True, mode=0o700)
                self.dir.chmod(0o700)  # mkdir's mode is filtered by the umask
        except OSError as exc:
            raise ConfigError(
                f"state.dir: {str(self.dir)!r} cannot be created: {exc.strerror}"
            ) from exc
        if database_url is not None:
            self._open_postgres(database_url)
            return
        self.coord = LocalCoordinator(self.host)
        check_database(self.path)
        try:
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise ConfigError(
                f"state.dir: {str(self.path)!r} cannot be created or written: {exc.strerror}"
            ) from exc
        tighten_state(self.dir, self.path)  # it holds presigned URLs: 0700 / 0600
        try:
            self._write = _engine(self.path, immediate=True)
            self._read = _engine(self.path, immediate=False)
            self.version = migrate(self._write)
            # Held open for the store's life: with NullPool every transaction
            # closes its connection, and the last connection to close a WAL
            # database checkpoints it (writes every page again). With this one
            # open, checkpoints happen as usual, every 1000 pages.
            self._keeper = sqlite3.connect(self.path, check_same_thread=False)
            self._keeper.execute("SELECT count(*) FROM sqlite_master").fetchall()  # opens the WAL
        except OperationalError as exc:
            raise store_error(self.path, exc) from exc

    def _open_postgres(self, url: str) -> None:
        # imported here: a daemon on SQLite never loads psycopg
        from syncd.store import postgres
        from syncd.store.pg_coordinator import PostgresCoordinator

        self._keeper = None
        self.location = masked_url(url)
        self._write = self._read = postgres.pg_engine(url, self.host)

        # A restart between two statements fails none of them (the pool tests a
        # connection before handing it out and reconnects), but it ended this
        # daemon's session, so its presence: noticed here, taken back at once.
        @event.listens_for(self._write, "invalidate")
        def _on_invalidate(*_: Any) -> None:
            self._reconnected = True

        coord: PostgresCoordinator | None = None
        try:
            postgres.check_schema(self._write, url, LATEST_VERSION)
            # The engine first, then the coordinator over it: it writes through the
            # store's transactions (self.tx needs only the engine and the host).
            coord = PostgresCoordinator(self._write, url, self.host, self.tx)
            with coord.exclusive("migrate"):
                self.version = migrate(self._write)
        except BaseException as exc:
            if coord is not None:
                coord.close()
            self._write.dispose()
            if isinstance(exc, DBAPIError):
                raise postgres.database_error(url, exc) from exc
            raise
        self.coord = coord

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener(name, fields)`` for every event of this store once its
        transaction has committed (after it is logged), in the committing thread."""
        self._listeners = (*self._listeners, listener)

    @property
    def engine(self) -> Engine:
        """The engine write transactions use (for the coordinator's own statements)."""
        return self._write

    def _error(self, exc: DBAPIError) -> StoreError | None:
        """Our error for a driver error, or None when it is not the database's doing
        (a constraint violated: a bug, left to surface as it is)."""
        if self.url is not None:
            from syncd.store import postgres

            if not isinstance(exc, OperationalError) and not postgres.unavailable(exc):
                return None
            err = postgres.database_error(self.url, exc)
            if isinstance(err, StoreUnavailable):
                self.unavailable(err)
            return err
        if not isinstance(exc, OperationalError):
            return None
        return store_error(self.path, exc)

    def unavailable(self, err: StoreUnavailable) -> None:
        """The server cannot be reached: the first failure of an outage logs it at once.

        Each error counts once, whoever reports it (the store, then the daemon's guard)."""
        if err.counted:
            return
        err.counted = True
        if self.availability.failed(str(err)):
            get_logger().warning("store.unavailable", error=str(err), db=self.location)

    def _answered(self) -> None:
        """A statement worked: if that ends an outage, write its two events now; after
        lost connections (an outage, or a restart the pool saw only by reconnecting)
        take this daemon's presence back."""
        outage = self.availability.ended()
        if outage is None:
            if self._reconnected:
                self._reconnected = False
                self._rejoin()
            return
        try:
            with self.tx() as tx:
                tx.late_event(
                    "store.unavailable",
                    outage.started_at,
                    level="warning",
                    error=outage.error,
                    db=self.location,
                )
                tx.event(
                    "store.available",
                    db=self.location,
                    outage_seconds=outage.seconds(),
                    failures=outage.failures,
                    error=outage.error,
                )
        except StoreError:
            self.availability.resume(outage)  # gone again: the same outage goes on
            return
        self._reconnected = False
        self._rejoin()

    def _rejoin(self) -> None:
        try:
            self.coord.rejoin()  # a restart ended this daemon's presence: take it back now
        except StoreError as exc:
            # unreachable again (noticed by the next statement), or the host taken by
            # another daemon meanwhile: the next claim says so as the stage's error
            get_logger().warning("store.presence_lost", host=self.host, error=str(exc))

    @contextmanager
    def tx(self) -> Iterator[Tx]:
        """One write transaction; commits on normal exit, rolls back on an exception."""
        session = Session(self._write, expire_on_commit=False)
        tx = Tx(session, self.host, self._listeners)
        try:
            with session.begin():
                yield tx
        except DBAPIError as exc:
            err = self._error(exc)
            if err is None:
                raise
            raise err from exc
        finally:
            session.close()
        tx.emit_logs()
        self._answered()

    @contextmanager
    def package_step(
        self, package_id: int | None, expect: Collection[str] = LIVE_STATES
    ) -> Iterator[PackageStep]:
        """One step of a package in one write transaction (:mod:`syncd.store.steps`).

        Raises :class:`~syncd.store.steps.PackageMoved` (nothing written) when
        the package is gone or not in one of the ``expect``-ed states.
        """
        with self.tx() as tx:
            pkg = tx.session.get(Package, package_id) if package_id is not None else None
            if pkg is None:
                raise PackageMoved(f"package {package_id} does not exist")
            if pkg.state not in expect:
                raise PackageMoved(
                    f"package {package_id} is {pkg.state}, not {' or '.join(expect)}"
                )
            yield PackageStep(tx, pkg)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read session; rows it loads stay usable after it ends (detached, not expired)."""
        session = Session(self._read, expire_on_commit=False)
        try:
            with session.begin():
                yield session
        except DBAPIError as exc:
            err = self._error(exc)
            if err is None:
                raise
            raise err from exc
        finally:
            session.close()
        self._answered()

    def package_counts(self) -> list[tuple[str, str, int]]:
        """(sync, state, packages) of this machine's packages, on either engine; [] on error.

        For gauges and ``STATUS=`` lines: a reading that fails is skipped, never raised.
        """
        try:
            with self.read() as s:
                rows = s.exec(
                    select(Package.sync, Package.state, func.count())
                    .where(owned_packages(self.coord))
                    .group_by(Package.sync, Package.state)
                ).all()
        except (StoreError, DBAPIError):
            return []
        return [(str(sync), str(state), int(n)) for sync, state, n in rows]

    def cursor_values(self, name: str) -> dict[str, str]:
        """sync → value of the cursor ``name`` (e.g. ``last_pull_at``); {} on error."""
        try:
            with self.read() as s:
                rows = s.exec(select(Cursor.sync, Cursor.value).where(Cursor.name == name)).all()
        except (StoreError, DBAPIError):
            return {}
        return {str(sync): str(value) for sync, value in rows}

    def close(self) -> None:
        self.coord.close()
        if self._keeper is not None:
            self._keeper.close()
        self._write.dispose()
        self._read.dispose()
