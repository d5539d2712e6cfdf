"""Retrying a package in the same state: attempts, backoff, and one event per retry."""

from __future__ import annotations

import random
from contextlib import suppress

from syncd.pipeline.context import SyncContext
from syncd.store import Package, PackageMoved


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
    with suppress(PackageMoved), ctx.store.package_step(pkg.id) as step:
        return step.retry(reason, delay if delay is not None else backoff_delay)
    return 0.0  # the package ended meanwhile
