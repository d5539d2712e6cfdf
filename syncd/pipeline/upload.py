"""Upload, submit and follow processing of one package: the driver.

Contract of :func:`advance` and :func:`run_once` (packages in ``packed`` …
``processing`` whose retry time has come, oldest first: :func:`due_packages`;
the daemon runs several at once, :mod:`syncd.daemon.uploads`, and
:func:`run_once` runs them one after another):

* The upload strategy is chosen once, from the remote's declared
  capabilities (:func:`syncd.pipeline.strategies.strategy_for`): one archive
  (``archive``: :mod:`~syncd.pipeline.strategies.archive`), one archive
  through sessions kept across crashes (``resumable``), or each data item's
  files then registration (``files``). Each strategy's contract says what is
  committed before and after every request, so a crash at any point neither
  loses nor duplicates an upload.
* Each package is claimed (``store.coord``) while it is worked on, and
  advanced (:func:`advance`) until it has to wait, finishes or fails.
* Transient errors keep the state and retry with backoff
  (:func:`~syncd.pipeline.backoff.schedule_retry`); permanent errors end in
  ``failed`` with the reason. A transfer the drain deadline cut short, or a
  transient error during the drain, records ``package.checkpointed``: the
  committed state is where the next start resumes.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from contextlib import suppress

from sqlmodel import col, select

from syncd.errors import Cancelled, PermanentError, TransientError
from syncd.pipeline.backoff import schedule_retry
from syncd.pipeline.context import SyncContext
from syncd.pipeline.strategies import Strategy, strategy_for
from syncd.store import Package, PackageMoved

ACTIVE_STATES = ("packed", "uploading", "uploaded", "submitted", "processing")
UPLOAD_STATES = ("packed", "uploading")
FINISH_STATES = ("uploaded", "submitted", "processing")


def due_packages(ctx: SyncContext, exclude: Collection[int] = ()) -> list[Package]:
    """The sync's packages in an upload state whose retry time has come, oldest first
    (``exclude``: ids already in flight)."""
    with ctx.store.read() as s:
        due = s.exec(
            select(Package)
            .where(
                Package.sync == ctx.name,
                col(Package.state).in_(ACTIVE_STATES),
                Package.next_attempt_at <= time.time(),
                ctx.owned(),
            )
            .order_by(col(Package.id))
        ).all()
    return [p for p in due if p.id not in exclude]


def run_once(ctx: SyncContext) -> int:
    """Advance every due package as far as it goes now, one after another; returns the
    number of packages touched."""
    due = due_packages(ctx)
    strategy = strategy_for(ctx.remote)
    for pkg in due:
        if ctx.stop.is_set():
            break
        assert pkg.id is not None
        # Claimed row by row: two daemons never upload the same package.
        if not ctx.store.coord.claim(pkg.id):
            continue
        try:
            advance(ctx, pkg, strategy)
        finally:
            ctx.store.coord.release(pkg.id)
    return len(due)


def advance(ctx: SyncContext, pkg: Package, strategy: Strategy | None = None) -> None:
    """Move one package forward until it has to wait, finishes or fails."""
    strategy = strategy or strategy_for(ctx.remote)
    try:
        while not ctx.stop.is_set():
            if pkg.state in UPLOAD_STATES:
                nxt = strategy.upload(ctx, pkg)
            elif pkg.state in FINISH_STATES:
                nxt = strategy.finish(ctx, pkg)
            else:
                return
            if nxt is None:
                return
            pkg = nxt
    except TransientError as exc:
        if ctx.cancel.is_set():
            _checkpoint(ctx, pkg, str(exc))
        else:
            schedule_retry(ctx, pkg, str(exc))
    except Cancelled as exc:
        _checkpoint(ctx, pkg, str(exc))
    except PermanentError as exc:
        with suppress(PackageMoved), ctx.store.package_step(pkg.id) as step:
            step.fail(str(exc))


def _checkpoint(ctx: SyncContext, pkg: Package, reason: str) -> None:
    """The drain deadline cut a step short: its committed state is where the next start resumes."""
    with ctx.store.tx() as tx:
        tx.note("package.checkpointed", pkg, reason=reason)
