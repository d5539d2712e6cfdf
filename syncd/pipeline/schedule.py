"""When pulls run: one APScheduler interval job per sync.

Each job runs at most one instance at a time (a slow pull is never overlapped
by the next), missed runs are coalesced into one, and a run late by up to one
interval still runs (misfire grace). The first run starts at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from syncd.pipeline.context import SyncContext


def build_scheduler(
    contexts: Sequence[SyncContext], run_pull: Callable[[SyncContext], object]
) -> BackgroundScheduler:
    """A scheduler (not started) with one pull job per sync that pulls."""
    pulling = [c for c in contexts if c.cfg.pull]
    scheduler = BackgroundScheduler(
        timezone=UTC,
        executors={"default": ThreadPoolExecutor(max_workers=max(1, min(8, len(pulling))))},
        job_defaults={"coalesce": True, "max_instances": 1},
    )
    for ctx in pulling:
        interval = max(1.0, ctx.cfg.pull_interval)
        scheduler.add_job(
            run_pull,
            IntervalTrigger(seconds=interval, timezone=UTC),
            args=[ctx],
            id=f"pull:{ctx.name}",
            name=f"pull {ctx.name}",
            next_run_time=datetime.now(UTC),
            misfire_grace_time=max(1, int(interval)),
        )
    return scheduler
