"""When pulls run: one APScheduler interval job per sync, plus the scheduler's heartbeat.

Each job runs at most one instance at a time (a slow pull is never overlapped
by the next), missed runs are coalesced into one, and a run late by up to one
interval still runs (misfire grace). The first run starts at once.

The heartbeat job runs every ``HEARTBEAT_SECONDS`` in an executor of its own
(a pool of pulls all stuck on a platform must not hide a live scheduler, nor
a dead scheduler hide behind running pulls): it proves the scheduler still
dispatches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from syncd.pipeline.context import SyncContext

HEARTBEAT_SECONDS = 5.0
MAX_PULL_WORKERS = 8


def build_scheduler(
    contexts: Sequence[SyncContext],
    run_pull: Callable[[SyncContext], object],
    heartbeat: Callable[[], None] | None = None,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
) -> BackgroundScheduler:
    """A scheduler (not started) with one pull job per sync that pulls."""
    scheduler = BackgroundScheduler(
        timezone=UTC,
        executors={
            "default": ThreadPoolExecutor(max_workers=MAX_PULL_WORKERS),
            "heartbeat": ThreadPoolExecutor(max_workers=1),
        },
        job_defaults={"coalesce": True, "max_instances": 1},
    )
    for ctx in contexts:
        add_pull_job(scheduler, ctx, run_pull)
    if heartbeat is not None:
        scheduler.add_job(
            heartbeat,
            IntervalTrigger(seconds=heartbeat_seconds, timezone=UTC),
            id="heartbeat",
            name="scheduler heartbeat",
            executor="heartbeat",
            next_run_time=datetime.now(UTC),
            misfire_grace_time=max(1, int(heartbeat_seconds)),
        )
    return scheduler


def pull_job_id(name: str) -> str:
    return f"pull:{name}"


def add_pull_job(
    scheduler: BackgroundScheduler, ctx: SyncContext, run_pull: Callable[[SyncContext], object]
) -> None:
    """Schedule the pulls of one sync (a no-op for a push-only sync); the first runs now."""
    if not ctx.cfg.pull:
        return
    interval = max(1.0, ctx.cfg.pull_interval)
    scheduler.add_job(
        run_pull,
        IntervalTrigger(seconds=interval, timezone=UTC),
        args=[ctx],
        id=pull_job_id(ctx.name),
        name=f"pull {ctx.name}",
        next_run_time=datetime.now(UTC),
        misfire_grace_time=max(1, int(interval)),
        replace_existing=True,
    )


def remove_pull_job(scheduler: BackgroundScheduler, name: str) -> None:
    """Stop scheduling pulls of ``name`` (a pull in flight finishes)."""
    if scheduler.get_job(pull_job_id(name)) is not None:
        scheduler.remove_job(pull_job_id(name))
