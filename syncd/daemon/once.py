"""``syncd once``: one full scan, every settled unit uploaded and followed to its end, one pull.

Contract of :func:`run_once` (the exit code of ``syncd once``):

* It notes this machine's packages first; "this run's packages" are those
  open then or created since. A first push pass only records what is on
  disk, the next ones settle, pack and upload, until no package is pending
  (past ``settled``, not final).
* It stops waiting, logs ``once.giving_up`` and returns 1 when every pending
  package failed its step ``ONCE_GIVE_UP_ATTEMPTS`` times in a row during
  this run, when a stage failed 20 times in a row, or after ``timeout``
  seconds (``once.timeout``).
* Then every pulling sync pulls once. It returns 1 if a package became
  ``failed`` during the run or any stage step or pull failed, else 0.
* ``progress`` is called with this run's packages by state, and the number
  of packages in flight, after every pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from syncd.daemon.loop import push_cycle
from syncd.store import FINAL_STATES, Package, queries

if TYPE_CHECKING:
    from syncd.daemon.compose import DaemonCore

ONCE_GIVE_UP_ATTEMPTS = 4  # about 15 s of backoff: enough for a blip, not for a broken file
STUCK_STAGE_ERRORS = 20
PASS_PAUSE_SECONDS = 0.2


def blocked_packages(
    d: DaemonCore, attempts_before: dict[int, int], attempts: int = ONCE_GIVE_UP_ATTEMPTS
) -> list[Package]:
    """Pending packages whose step failed ``attempts`` times in a row since the run began."""
    return [
        p
        for p in d.pending_packages()
        if p.attempts - attempts_before.get(p.id or 0, 0) >= attempts
    ]


def run_states(d: DaemonCore, max_before: int, open_before: set[int]) -> dict[str, int]:
    """Packages by state among this run's: open at its start, or created since.

    ``detected`` ones (units not settled) are left out: ``once`` does not wait for them.
    """
    out: dict[str, int] = {}
    for state in queries.run_package_states(d.store, max_before, open_before):
        out[state] = out.get(state, 0) + 1
    return out


def run_once(
    d: DaemonCore,
    *,
    timeout: float = 3600.0,
    progress: Callable[[dict[str, int], int], None] | None = None,
) -> int:
    """``syncd once``: returns the exit code (0 all done, 1 something failed)."""
    started = time.monotonic()
    mine = queries.my_packages(d.store)
    before = {p.id: p.state for p in mine if p.id is not None}
    attempts_before = {p.id: p.attempts for p in mine if p.id is not None}
    max_before = max(before, default=0)
    open_before = {i for i, st in before.items() if st not in FINAL_STATES}

    def report() -> None:
        if progress is not None:
            progress(run_states(d, max_before, open_before), d.uploads.count())

    # A first scan only records what is there; a second one (same content)
    # settles units whose files are older than settle_seconds.
    push_cycle(d)
    while not d.stop.is_set():
        # The upload workers run beside the passes (several packages in flight).
        push_cycle(d)
        report()
        if not _waiting_is_useful(d, attempts_before, started, timeout):
            break
        d.wake.wait(PASS_PAUSE_SECONDS)  # a worker that finished wakes the next pass
        d.wake.clear()
    d.uploads.join()
    report()
    for ctx in d.contexts:
        if ctx.cfg.pull and d.pull(ctx) is None:
            d.failed_in_run = True
    failed_now = [p for p in queries.failed_packages(d.store) if before.get(p.id or 0) != "failed"]
    return 1 if failed_now or d.failed_in_run else 0


def _waiting_is_useful(
    d: DaemonCore, attempts_before: dict[int, int], started: float, timeout: float
) -> bool:
    """Whether another pass may still finish something; if not, say why (and fail the run)."""
    pending = d.pending_packages()
    if not pending:
        return False
    stuck = d.stuck_stage(STUCK_STAGE_ERRORS)
    blocked = blocked_packages(d, attempts_before)
    if blocked and len(blocked) == len(pending):
        for p in blocked:
            d.log.error(
                "once.giving_up",
                package_id=p.id,
                unit=p.unit,
                state=p.state,
                reason=p.last_error,
                attempts=p.attempts,
            )
        d.failed_in_run = True
        return False
    if stuck:
        d.log.error("once.giving_up", stage=stuck, reason="the stage keeps failing")
        d.failed_in_run = True
        return False
    if time.monotonic() - started > timeout:
        d.log.error("once.timeout", seconds=timeout, pending=len(d.pending_packages()))
        d.failed_in_run = True
        return False
    return True
