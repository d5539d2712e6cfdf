"""Retrying a package in the same state: attempts, backoff, and one event per retry."""

from __future__ import annotations

import random
import time

from syncd.pipeline.context import SyncContext
from syncd.store import FINAL_STATES, Package


def backoff_delay(attempts: int, *, base: float = 2.0, cap: float = 300.0) -> float:
    """Seconds before retry number ``attempts``: exponential, capped at 5 min, jittered.

    The per-request retries live in remotes/http.py; this is the slower outer
    loop for a package whose step keeps failing (a platform down for hours).
    """
    return float(random.uniform(0.5, 1.0) * min(cap, base * (2 ** max(0, attempts - 1))))


def schedule_retry(
    ctx: SyncContext, pkg: Package, reason: str, *, delay: float | None = None
) -> float:
    """Record a transient failure: keep the state, count the attempt, wait with backoff.

    Returns the delay chosen (seconds). The event ``package.retry`` carries the
    reason and the attempt number, so a flapping platform is visible.
    """
    with ctx.store.tx() as tx:
        fresh = tx.session.get(Package, pkg.id)
        if fresh is None or fresh.state in FINAL_STATES:
            return 0.0
        fresh.attempts += 1
        wait = delay if delay is not None else backoff_delay(fresh.attempts)
        fresh.next_attempt_at = time.time() + wait
        fresh.last_error = reason
        tx.session.add(fresh)
        tx.note(
            "package.retry",
            fresh,
            reason=reason,
            attempt=fresh.attempts,
            retry_in=round(wait, 1),
        )
    return wait
