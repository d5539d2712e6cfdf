"""Packages whose backoff is no longer worth waiting out: due at once.

Contract of :func:`retry_now`: inside the caller's write transaction, every
package of ``syncs`` that this daemon works (:func:`owned_packages`), is in a
state that talks to the platform (:data:`REMOTE_STATES`), has failed at least
once (``attempts > 0``: it waits on a transient error) and is not due yet gets
``next_attempt_at = now``; one UPDATE, nothing else changes (the attempts
count stays: a platform that fails again backs off from where it was).
Returns how many packages it made due.
"""

from __future__ import annotations

import time
from collections.abc import Collection

from sqlmodel import col, update

from syncd.store.coordination import Coordinator, owned_packages
from syncd.store.models import Package
from syncd.store.store import Tx

# The states whose stages talk to the platform: packing (it asks for the names
# already taken), upload and processing. A package that waits there for a
# local reason (a unit still changing) is merely looked at once more, early.
REMOTE_STATES = ("settled", "packing", "packed", "uploading", "uploaded", "submitted", "processing")


def retry_now(tx: Tx, coord: Coordinator, syncs: Collection[str], now: float | None = None) -> int:
    """Make the waiting packages of ``syncs`` due at ``now`` (see the module docstring)."""
    if not syncs:
        return 0
    when = time.time() if now is None else now
    result = tx.session.exec(
        update(Package)
        .where(
            col(Package.sync).in_(list(syncs)),
            col(Package.state).in_(REMOTE_STATES),
            col(Package.attempts) > 0,
            col(Package.next_attempt_at) > when,
            owned_packages(coord),
        )
        .values(next_attempt_at=when)
    )
    return int(result.rowcount or 0)
