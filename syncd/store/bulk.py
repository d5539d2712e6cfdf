"""Bulk inserts for the mirror: many rows in one ``executemany`` on the driver's cursor.

Contract of :func:`insert_many`: the rows (dicts with the same keys and plain
values) go into ``table`` inside the session's transaction, with SQLAlchemy's
INSERT compiled for the session's dialect (so either engine works), without
the ORM's per-row work. Nothing is returned; ids are not read back.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Dialect, Table
from sqlmodel import Session


@functools.lru_cache(maxsize=32)
def _insert_sql(
    dialect: Dialect, table: Table, keys: tuple[str, ...]
) -> tuple[str, tuple[str, ...]]:
    """The INSERT of ``keys`` into ``table`` compiled for ``dialect``, and the order of its
    parameters when the driver's style is positional (empty when it takes names)."""
    compiled = table.insert().compile(dialect=dialect, column_keys=list(keys))
    return str(compiled), tuple(compiled.positiontup or ()) if compiled.positional else ()


def insert_many(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys, plain values) in one ``executemany``.

    Straight on the driver's cursor, in the session's transaction: a first
    mirror inserts millions of objects, and SQLAlchemy's per-row parameter
    processing cost as much as SQLite's own insert. The statement is still
    SQLAlchemy's, compiled for the session's dialect, so any backend works.
    """
    if not rows:
        return
    connection = session.connection()
    sql, order = _insert_sql(connection.dialect, table, tuple(rows[0]))
    params: Sequence[Any] = rows
    if len(order) == 1:
        params = [(r[order[0]],) for r in rows]
    elif order:
        params = list(map(operator.itemgetter(*order), rows))
    cursor = connection.connection.cursor()
    try:
        cursor.executemany(sql, params)
    finally:
        cursor.close()
