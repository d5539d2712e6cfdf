"""Coordination of several daemons through the store: who pulls, who works which package.

Contract (the same interface on both engines):

* :meth:`claim` / :meth:`release` a package before / after working on it:
  ``claim`` returns False when another live daemon has it. Claims are taken
  row by row (``SELECT … FOR UPDATE SKIP LOCKED``) and recorded in
  ``packages.claimed_by``.
* :meth:`acquire` a named lease (``pull:<sync>``): True when this daemon holds
  it now. A lease stays with its holder across cycles until the holder
  closes the store or dies; :meth:`check_lease` (inside the transaction that
  commits the work) raises :class:`LeaseLost` when it has passed to another.
  Taking a lease over records ``lease.acquired`` with the previous holder.
* :meth:`exclusive` serialises a critical section across the fleet (creating
  a dataset, choosing names on the platform).
* :meth:`hold_host` (``syncd run``/``once``): one running daemon per host
  name, since a host's daemon detects the units of its folders.
* :meth:`rejoin` after the database was unreachable: take this daemon's
  presence (and host) back at once, rather than at its next claim or lease.

On SQLite (:class:`LocalCoordinator`) one daemon owns the file: everything is
granted, and ``exclusive`` only serialises threads.

On PostgreSQL (:class:`~syncd.store.pg_coordinator.PostgresCoordinator`,
imported only when a ``database_url`` is set) a daemon is *alive* while it
holds a session-level advisory lock ``(PRESENCE, key)`` on a connection of
its own; ``key`` is the daemon's id in ``claimed_by`` and ``leases.holder``.
A claim or lease whose holder is not alive is free. The server ends the
session of a killed process at once (its socket closes) and of a vanished
machine within about 25 s (TCP keepalives), so a dead holder's work passes to
the others without a timeout to tune, and a live one never loses it to a
slow step.

A restart of the server ends every session, so every daemon's presence too:
for a moment nobody is alive and every claim and lease is free. Each daemon
takes a new key (and its host lock) when it next reaches the server, and
takes back its own claims (their old key is dead); a lease goes to whichever
daemon asks first, and a daemon whose lease passed meanwhile learns it from
:meth:`check_lease` before committing a pull's page. Packages never change
hands across machines (they belong to their host), so none is worked twice.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from sqlalchemy import ColumnElement, true
from sqlmodel import Session, col

from syncd.errors import SyncdError
from syncd.store.models import Package


class LeaseLost(SyncdError):
    """Another daemon holds the lease now: the work in hand must not be committed."""


class Transaction(Protocol):
    """What a coordinator needs of an open write transaction (:class:`syncd.store.Tx`).

    A protocol, so this module needs nothing from :mod:`syncd.store.store`
    (which builds the coordinator): the store's modules import one way only.
    """

    session: Session

    def event(self, name: str, **fields: Any) -> None: ...


class Coordinator(Protocol):
    """What the pipeline asks of the fleet (see module docstring)."""

    host: str
    fleet: bool

    def claim(self, package_id: int) -> bool: ...
    def release(self, package_id: int) -> None: ...
    def acquire(self, lease: str) -> bool: ...
    def give_up(self, lease: str) -> None: ...
    def check_lease(self, tx: Transaction, lease: str) -> None: ...
    def exclusive(self, key: str) -> Any: ...
    def hold_host(self, wait: float) -> None: ...
    def rejoin(self) -> None: ...
    def close(self) -> None: ...


def owned_packages(coord: Coordinator) -> ColumnElement[bool]:
    """The packages a daemon works: its own host's on a fleet store, every one on SQLite.

    A unit belongs to the machine whose folder holds it; on SQLite there is one
    machine, and a state restored on a renamed machine keeps working.
    """
    return true() if not coord.fleet else col(Package.host) == coord.host


class LocalCoordinator:
    """SQLite: one daemon per database file; nothing to negotiate."""

    fleet = False

    def __init__(self, host: str) -> None:
        self.host = host
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def claim(self, package_id: int) -> bool:
        return True

    def release(self, package_id: int) -> None:
        return None

    def acquire(self, lease: str) -> bool:
        return True

    def give_up(self, lease: str) -> None:
        return None

    def check_lease(self, tx: Transaction, lease: str) -> None:
        return None

    @contextmanager
    def exclusive(self, key: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield

    def hold_host(self, wait: float) -> None:
        return None

    def rejoin(self) -> None:
        return None

    def close(self) -> None:
        return None
