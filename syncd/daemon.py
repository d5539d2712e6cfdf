"""The composition root: builds the store, remotes and stages, and drives them.

Contract:

* :meth:`Daemon.run` is ``syncd run``: watches every push folder (watchdog
  plus a full scan at start and every ``RESCAN_SECONDS``), runs the push
  stages in one loop thread and the pulls on their APScheduler schedule, until
  SIGTERM/SIGINT. The first signal drains: no new step starts, the step in
  flight may finish within ``daemon.shutdown_timeout``; then a transfer in
  flight is cut (``package.checkpointed``; its committed state is where the
  next start resumes) and ``run`` returns 0. Should a step still hang
  ``HARD_EXIT_GRACE`` seconds later, the process exits 0 anyway
  (``daemon.drain_timeout``): every state it acted on was committed first.
  A second signal exits at once with 128 + the signal number.
* :meth:`Daemon.once` is ``syncd once``: one full scan, every settled unit
  uploaded and followed until its processing ends, then one pull per sync.
* Stage errors never kill the daemon: each is logged (and recorded) as
  ``daemon.stage_error`` at most every ``QUIET_SECONDS`` per stage, with a
  count, and once ``daemon.stage_recovered`` when the stage works again.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import traceback
from collections.abc import Callable
from functools import partial
from types import FrameType
from typing import Any, TypeVar

from sqlalchemy import ColumnElement
from sqlmodel import col, select

from syncd.config import Config
from syncd.errors import SyncdError
from syncd.log import get_logger
from syncd.pipeline import pack, pull, upload, watch
from syncd.pipeline.context import SyncContext
from syncd.pipeline.observe import FolderWatcher
from syncd.pipeline.schedule import build_scheduler
from syncd.remotes import build_remote
from syncd.remotes.base import Remote
from syncd.remotes.http import set_host
from syncd.store import FINAL_STATES, Package, Store
from syncd.store.coordination import owned_packages

T = TypeVar("T")
RESCAN_SECONDS = 300.0
QUIET_SECONDS = 30.0
LOOP_SECONDS = 1.0
HARD_EXIT_GRACE = 5.0
HOST_WAIT_SECONDS = 30.0
ONCE_GIVE_UP_ATTEMPTS = 4  # about 15 s of backoff: enough for a blip, not for a broken file


class Daemon:
    """All syncs of one configuration, sharing one store."""

    def __init__(self, cfg: Config, *, max_retries: int | None = None) -> None:
        self.cfg = cfg
        self.log = get_logger()
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.store = Store(cfg.state.dir, database_url=cfg.state.database_url, host=cfg.state.host)
        try:
            # A daemon restarted right after a crash waits for its old session to end.
            self.store.coord.hold_host(wait=HOST_WAIT_SECONDS)
        except BaseException:
            self.store.close()
            raise
        set_host(cfg.state.host)
        self.remotes: dict[str, Remote] = {
            name: build_remote(name, rc, max_retries=max_retries)
            for name, rc in cfg.remotes.items()
        }
        self.contexts = [
            SyncContext(
                cfg=s,
                remote=self.remotes[s.remote],
                store=self.store,
                stop=self.stop,
                poll_interval=cfg.remotes[s.remote].poll_interval,
            )
            for s in cfg.syncs
        ]
        self.tracker = watch.SettleTracker()
        self.watcher: FolderWatcher | None = None
        self._errors: dict[str, dict[str, Any]] = {}
        self._errors_lock = threading.Lock()
        self.failed_in_run = False
        self._attempts_before: dict[int | None, int] = {}

    def close(self) -> None:
        for r in self.remotes.values():
            r.close()
        self.store.close()

    # --- error handling ------------------------------------------------------------

    def guard(self, stage: str, fn: Callable[[], T]) -> T | None:
        """Run one stage step; report errors quietly instead of raising."""
        try:
            result = fn()
        except SyncdError as exc:
            self._report(stage, str(exc))
            return None
        except Exception as exc:  # a bug: keep the daemon alive, say where
            tb = traceback.extract_tb(exc.__traceback__)[-1]
            self._report(
                stage, f"unexpected {type(exc).__name__}: {exc} (at {tb.filename}:{tb.lineno})"
            )
            return None
        with self._errors_lock:
            state = self._errors.pop(stage, None)
        if state is not None:
            self._record("daemon.stage_recovered", "info", stage=stage, after_errors=state["count"])
        return result

    def _report(self, stage: str, message: str) -> None:
        self.failed_in_run = True
        now = time.monotonic()
        with self._errors_lock:
            state = self._errors.setdefault(stage, {"count": 0, "logged": 0.0, "message": ""})
            state["count"] += 1
            # Same error = same text once addresses and numbers are masked.
            shape = re.sub(r"0x[0-9a-f]+|\d+", "#", message)
            due = state["message"] != shape or now - state["logged"] >= QUIET_SECONDS
            if due:
                state["logged"], state["message"] = now, shape
            count = state["count"]
        if due:
            self._record(
                "daemon.stage_error", "error", stage=stage, error=message, consecutive_errors=count
            )

    def _record(self, name: str, level: str, **fields: Any) -> None:
        try:
            with self.store.tx() as tx:
                tx.event(name, level=level, **fields)
        except SyncdError:
            getattr(self.log, level)(name, **fields)

    # --- the stages ------------------------------------------------------------------

    def push_cycle(self, dirty: dict[str, set[str] | None] | None = None) -> None:
        """One pass of watch → pack → upload over every sync (``None``: scan everything)."""
        for ctx in self.contexts:
            if self.stop.is_set():
                return
            if not ctx.cfg.push:
                continue
            units = None if dirty is None else dirty.get(ctx.name, set())
            self.guard(f"watch:{ctx.name}", partial(watch.run_once, ctx, self.tracker, units))
            self.guard(f"pack:{ctx.name}", partial(pack.run_once, ctx))
            self.guard(f"upload:{ctx.name}", partial(upload.run_once, ctx))

    def pull(self, ctx: SyncContext) -> pull.PullStats | None:
        return self.guard(f"pull:{ctx.name}", lambda: pull.run_once(ctx))

    def stuck_stage(self, limit: int = 20) -> str | None:
        """A stage that failed ``limit`` times in a row (``once`` gives up on it)."""
        with self._errors_lock:
            for stage, state in self._errors.items():
                if state["count"] >= limit:
                    return stage
        return None

    def blocked_packages(self, attempts: int = ONCE_GIVE_UP_ATTEMPTS) -> list[Package]:
        """Pending packages whose step failed ``attempts`` times in a row (``once`` stops waiting)."""
        return [
            p
            for p in self.pending_packages()
            if p.attempts - self._attempts_before.get(p.id or 0, 0) >= attempts
        ]

    def _owned(self) -> ColumnElement[bool]:
        """This machine's packages: on a fleet store the other daemons answer for theirs."""
        return owned_packages(self.store.coord)

    def pending_packages(self) -> list[Package]:
        """Packages that are past ``settled`` and not final (work the daemon still owes)."""
        with self.store.read() as s:
            return list(
                s.exec(
                    select(Package).where(
                        col(Package.state).not_in((*FINAL_STATES, "detected")), self._owned()
                    )
                ).all()
            )

    # --- drivers -------------------------------------------------------------------------

    def once(self, *, timeout: float = 3600.0) -> int:
        """``syncd once``: returns the exit code (0 all done, 1 something failed)."""
        started = time.monotonic()
        with self.store.read() as s:
            mine = s.exec(select(Package).where(self._owned())).all()
            before = {p.id: p.state for p in mine}
            self._attempts_before = {p.id: p.attempts for p in mine}
        # A first scan only records what is there; a second one (same content)
        # settles units whose files are older than settle_seconds.
        self.push_cycle()
        while not self.stop.is_set():
            self.push_cycle()
            if not self.pending_packages():
                break
            stuck = self.stuck_stage()
            blocked = self.blocked_packages()
            if blocked and len(blocked) == len(self.pending_packages()):
                for p in blocked:
                    self.log.error(
                        "once.giving_up",
                        package_id=p.id,
                        unit=p.unit,
                        state=p.state,
                        reason=p.last_error,
                        attempts=p.attempts,
                    )
                self.failed_in_run = True
                break
            if stuck:
                self.log.error("once.giving_up", stage=stuck, reason="the stage keeps failing")
                self.failed_in_run = True
                break
            if time.monotonic() - started > timeout:
                self.log.error(
                    "once.timeout", seconds=timeout, pending=len(self.pending_packages())
                )
                self.failed_in_run = True
                break
            time.sleep(0.2)
        for ctx in self.contexts:
            if ctx.cfg.pull and self.pull(ctx) is None:
                self.failed_in_run = True
        with self.store.read() as s:
            failed_now = [
                p
                for p in s.exec(
                    select(Package).where(Package.state == "failed", self._owned())
                ).all()
                if before.get(p.id) != "failed"
            ]
        return 1 if failed_now or self.failed_in_run else 0

    def run(self) -> int:
        """``syncd run``: the foreground daemon (see module docstring)."""
        self._install_signals()
        watcher = self.watcher = FolderWatcher(self.wake)
        for ctx in self.contexts:
            if ctx.cfg.push and ctx.cfg.folder is not None:
                watcher.add(
                    ctx.name, ctx.cfg.folder, ctx.cfg.watch_mode, ctx.cfg.watch_poll_interval
                )
        try:
            watcher.start()
        except OSError as exc:
            watcher.stop()
            raise SyncdError(f"cannot watch the folders: {exc}") from exc
        scheduler = build_scheduler(self.contexts, self.pull)
        scheduler.start()
        self._record(
            "daemon.started",
            "info",
            pid=os.getpid(),
            syncs=[c.name for c in self.contexts],
            db=self.store.location,
        )
        last_full = 0.0
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                if now - last_full >= RESCAN_SECONDS:
                    last_full = now
                    for ctx in self.contexts:
                        watcher.take(ctx.name)
                    self.push_cycle(None)
                else:
                    watcher.check()
                    for n in watcher.take_notices():
                        self._record(n.event, "warning", sync=n.sync, reason=n.reason)
                    self.push_cycle({c.name: watcher.take(c.name) for c in self.contexts})
                self.wake.wait(LOOP_SECONDS)
                self.wake.clear()
        finally:
            self._record("daemon.stopping", "info")
            scheduler.shutdown(wait=True)
            watcher.stop()
            self._record("daemon.stopped", "info")
        return 0

    def _drain_deadline(self) -> None:
        """The drain took too long: cut transfers now, and exit for sure a little later."""
        for ctx in self.contexts:
            ctx.cancel.set()
        self.log.warning(
            "daemon.drain_deadline", seconds=self.cfg.daemon.shutdown_timeout, action="cancelling"
        )
        time.sleep(HARD_EXIT_GRACE)
        self._record("daemon.drain_timeout", "error", grace_seconds=HARD_EXIT_GRACE)
        os._exit(0)

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # embedded (tests): the caller stops the daemon through ``stop``

        def handler(signum: int, _: FrameType | None) -> None:
            if self.stop.is_set():
                os._exit(128 + signum)  # second signal: stop at once
            self.stop.set()
            self.wake.set()
            timer = threading.Timer(self.cfg.daemon.shutdown_timeout, self._drain_deadline)
            timer.daemon = True
            timer.start()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
