"""PostgreSQL as the store: the engine, connection errors that say what to do, the schema check.

Contract:

* :func:`pg_engine` returns a pooled SQLAlchemy engine over psycopg 3 whose
  connections say who they are (``application_name = syncd@<host>``) and
  give up connecting after ``CONNECT_TIMEOUT`` seconds.
* :func:`connect` opens one plain psycopg connection (autocommit) to the same
  database, for the session-level advisory locks of
  :mod:`syncd.store.coordination`.
* :func:`database_error` turns a driver error into a one-line
  :class:`~syncd.errors.StoreError` naming ``state.database_url`` (password
  masked): unreachable server, refused credentials, missing database. An
  error that means the server cannot be reached now (:func:`unavailable`: a
  connection refused, cut or closed, the server shutting down or starting up)
  is a :class:`~syncd.errors.StoreUnavailable`: a running daemon waits it out.
* :func:`check_schema` refuses a database written by a newer syncd.
"""

from __future__ import annotations

import re

from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import DBAPIError

from syncd.config import masked_url
from syncd.errors import ConfigError, StoreError, StoreUnavailable
from syncd.extras import missing
from syncd.protect import is_loopback

try:
    import psycopg
except ImportError as exc:  # the 'postgres' extra is not installed
    raise missing("postgres", exc) from exc

CONNECT_TIMEOUT = 10
# The server notices a client that vanished (machine off, cable out) within
# about 10 + 3 * 5 s and ends its session: its advisory locks are released,
# so its pull leases and package claims pass to the others.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
SERVER_KEEPALIVES = (
    "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"
)


def conninfo(url: str) -> str:
    """The libpq connection string of a ``postgresql+psycopg://`` URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _params(host: str) -> dict[str, object]:
    return {
        "connect_timeout": CONNECT_TIMEOUT,
        "application_name": f"syncd@{host}"[:63],
        "options": SERVER_KEEPALIVES,
        **KEEPALIVES,
    }


def tls_defaults(url: str) -> dict[str, object]:
    """``sslmode=verify-full`` (against the system's CAs) unless the URL sets ``sslmode``.

    libpq's own default, ``prefer``, takes any certificate, or none: a machine
    in the middle reads the password. A server on this machine (loopback, a
    Unix socket) is left to libpq's default: no network to cross.
    """
    u = make_url(url)
    if "sslmode" in u.query:
        return {}
    host = u.host or str(u.query.get("host") or "")
    if not host or host.startswith("/") or is_loopback(host):
        return {}
    return {
        "sslmode": "verify-full",
        **({} if "sslrootcert" in u.query else {"sslrootcert": "system"}),
    }


def pg_engine(url: str, host: str) -> Engine:
    """A pooled engine; ``pool_pre_ping`` replaces connections the server closed meanwhile."""
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=4,
        max_overflow=8,
        connect_args={**_params(host), **tls_defaults(url)},
    )


def connect(url: str, host: str) -> psycopg.Connection[tuple[object, ...]]:
    """One autocommit connection of its own (advisory locks live as long as it does)."""
    try:
        params = {**_params(host), **tls_defaults(url)}
        return psycopg.connect(conninfo(url), autocommit=True, **params)  # type: ignore[arg-type]
    except psycopg.Error as exc:
        raise database_error(url, exc) from exc


# SQLSTATEs of a server going away or not there yet: admin_shutdown (pg_ctl stop
# -m fast/smart, pg_terminate_backend), crash_shutdown (another backend crashed,
# or -m immediate), cannot_connect_now ("the database system is starting up" /
# "is shutting down"); class 08 is "connection exception".
_GOING_AWAY = frozenset({"57P01", "57P02", "57P03"})


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the server cannot be reached now, rather than a refused statement.

    A connection that failed or broke client-side (refused, reset, closed) has
    no SQLSTATE; SQLAlchemy marks the errors after which it dropped the
    connection (``connection_invalidated``).
    """
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if not isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _GOING_AWAY


def database_error(url: str, exc: BaseException) -> StoreError:
    """A StoreError naming ``state.database_url`` that says what to do about the usual causes
    (a :class:`StoreUnavailable` when the server cannot be reached now)."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = [ln.strip() for ln in str(orig).strip().splitlines() if ln.strip()]
    reason = lines[0] if lines else type(orig).__name__
    # libpq prefixes "connection failed: connection to server at …, port … failed:"
    reason = reason.rsplit(" failed: ", 1)[-1] if "connection to server" in reason else reason
    reason = re.sub(r"^(FATAL|ERROR):\s+", "", reason)
    low = reason.lower()
    if "password authentication failed" in low or "no password supplied" in low:
        hint = "the server refused the credentials: check the user and password (or ~/.pgpass)"
    elif "does not exist" in low and "database" in low:
        hint = "create the database first (createdb), or fix its name"
    elif "refused" in low or "timeout" in low or "timed out" in low or "could not" in low:
        hint = (
            "is PostgreSQL running and reachable from here? At start syncd exits (its supervisor "
            "restarts it); a running syncd waits for it"
        )
    elif "permission denied" in low:
        hint = "grant the user CREATE on the database's public schema"
    else:
        hint = ""
    where = f"state.database_url: {masked_url(url)!r}"
    kind = StoreUnavailable if unavailable(exc) else StoreError
    return kind(f"{where}: {reason}" + (f" ({hint})" if hint else ""))


def check_schema(engine: Engine, url: str, latest: int) -> None:
    """Refuse a database a newer syncd migrated (ConfigError naming ``state.database_url``)."""
    with engine.connect() as conn:
        exists = conn.execute(text("SELECT to_regclass('schema_migrations') IS NOT NULL")).scalar()
        if not exists:
            return
        newest = conn.execute(text("SELECT MAX(version) FROM schema_migrations")).scalar()
    if newest is not None and int(newest) > latest:
        raise ConfigError(
            f"state.database_url: {masked_url(url)!r} was written by a newer syncd (schema "
            f"{newest}, this one knows {latest}); upgrade syncd on every machine of the fleet"
        )
