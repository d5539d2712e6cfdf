"""The composition root: builds the store, remotes and stages, and drives them.

Contract:

* :meth:`Daemon.run` is ``syncd run``: watches every push folder (watchdog;
  at start a catch-up scan, then a full scan right after and every
  ``RESCAN_SECONDS``: :func:`~syncd.pipeline.detect.run_once`), runs the push
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
* Liveness (:mod:`syncd.health`): the push loop, the watcher, the scheduler
  and every pull beat a heartbeat; :class:`~syncd.supervise.Supervisor`
  sends systemd ``READY=1`` once the store is open, the folders are watched
  and the scheduler runs, then ``STATUS=`` lines and ``WATCHDOG=1`` only
  while no stage is stale, and ``STOPPING=1`` when the drain starts. The
  optional ``[server] listen`` serves ``/healthz`` and ``/metrics``.
* SIGHUP reloads the configuration (:meth:`Daemon.reload`): syncs and remotes
  are added, removed or changed without a restart; a config that does not
  load or validate is refused (``daemon.reload_failed`` names the key and
  value) and the running one stays.
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
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from sqlalchemy import ColumnElement
from sqlmodel import col, or_, select

from syncd import metrics
from syncd.config import Config, SyncConfig, check_folders, load_config
from syncd.errors import ConfigError, SyncdError
from syncd.health import Heartbeats
from syncd.log import get_logger
from syncd.pipeline import detect, pack, pull, upload
from syncd.pipeline.context import SyncContext
from syncd.pipeline.schedule import (
    HEARTBEAT_SECONDS,
    add_pull_job,
    build_scheduler,
    remove_pull_job,
)
from syncd.pipeline.watcher import FolderWatcher
from syncd.remotes import build_remote
from syncd.remotes.base import Remote
from syncd.remotes.http import set_host
from syncd.store import FINAL_STATES, Package, Store
from syncd.store.coordination import owned_packages
from syncd.store.store import COMMITTED_EVENT_LISTENERS
from syncd.supervise import Supervisor

if metrics.on_event not in COMMITTED_EVENT_LISTENERS:
    COMMITTED_EVENT_LISTENERS.append(metrics.on_event)

T = TypeVar("T")
RESCAN_SECONDS = 300.0
QUIET_SECONDS = 30.0
LOOP_SECONDS = 1.0
# How long one slice of a full scan may take before the changed units get their turn.
SWEEP_SLICE_SECONDS = 0.1
HARD_EXIT_GRACE = 5.0
HOST_WAIT_SECONDS = 30.0
ONCE_GIVE_UP_ATTEMPTS = 4  # about 15 s of backoff: enough for a blip, not for a broken file


class Daemon:
    """All syncs of one configuration, sharing one store."""

    def __init__(
        self, cfg: Config, *, max_retries: int | None = None, config_file: Path | None = None
    ) -> None:
        self.cfg = cfg
        self.config_file = config_file  # re-read on SIGHUP
        self.max_retries = max_retries
        self.log = get_logger()
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.reload_requested = threading.Event()
        self.heartbeats = Heartbeats(cfg.daemon.stall_timeout)
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
        self._retired: list[Remote] = []  # replaced by a reload; closed at the end
        self.contexts = [self._context(s) for s in cfg.syncs]
        self.tracker = detect.SettleTracker()
        self.watcher: FolderWatcher | None = None
        self.scheduler: Any = None
        self.supervisor: Supervisor | None = None
        self.server: Any = None
        self._errors: dict[str, dict[str, Any]] = {}
        self._errors_lock = threading.Lock()
        self.failed_in_run = False
        self._attempts_before: dict[int | None, int] = {}

    def _context(self, s: SyncConfig) -> SyncContext:
        return SyncContext(
            cfg=s,
            remote=self.remotes[s.remote],
            store=self.store,
            stop=self.stop,
            poll_interval=self.cfg.remotes[s.remote].poll_interval,
            progress=self.heartbeats.progress,
        )

    def close(self) -> None:
        for r in [*self.remotes.values(), *self._retired]:
            r.close()
        self.store.close()

    # --- error handling ------------------------------------------------------------

    def guard(self, stage: str, fn: Callable[[], T]) -> T | None:
        """Run one stage step; report errors quietly instead of raising."""
        try:
            result = fn()
            self.heartbeats.progress()
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

    def _package_counts(self) -> dict[str, int]:
        """This machine's packages by state (for ``STATUS=``), on either engine."""
        counts: dict[str, int] = {}
        for _, state, n in self.store.package_counts():
            counts[state] = counts.get(state, 0) + n
        return counts

    def _record(self, name: str, level: str, **fields: Any) -> None:
        try:
            with self.store.tx() as tx:
                tx.event(name, level=level, **fields)
        except SyncdError:
            getattr(self.log, level)(name, **fields)

    # --- the stages ------------------------------------------------------------------

    def push_cycle(
        self,
        dirty: dict[str, set[str] | None] | None = None,
        *,
        catch_up: bool = False,
        sweeps: dict[str, detect.FullScan] | None = None,
        rescan: frozenset[str] = frozenset(),
    ) -> None:
        """One pass of watch → pack → upload over every sync (``None``: scan everything;
        ``catch_up``: the quick form of that scan, see :func:`detect.run_once`).

        With ``sweeps`` (the run loop's full scans in progress, by sync), a full
        scan is not run whole: one is started there for each sync in ``rescan``
        (and each whose ``dirty`` entry is None) that has none running, and each
        pass scans the changed units, packs and uploads, and only then scans the
        sweep's next slice (``SWEEP_SLICE_SECONDS``, cut short as soon as the
        watcher reports a change), so a changed unit never waits behind a slice.
        """
        for ctx in self.contexts:
            if self.stop.is_set():
                return
            if not ctx.cfg.push:
                continue
            units = None if dirty is None else dirty.get(ctx.name, set())
            stage = f"watch:{ctx.name}"
            if sweeps is None:
                self.guard(
                    stage, partial(detect.run_once, ctx, self.tracker, units, catch_up=catch_up)
                )
            else:
                if units is None or ctx.name in rescan:
                    units = units or set()
                    if ctx.name not in sweeps:
                        sweep = self.guard(stage, partial(detect.FullScan, ctx, self.tracker))
                        if sweep is not None:
                            sweeps[ctx.name] = sweep
                self.guard(stage, partial(detect.run_once, ctx, self.tracker, units))
            self.guard(f"pack:{ctx.name}", partial(pack.run_once, ctx))
            self.guard(f"upload:{ctx.name}", partial(upload.run_once, ctx))
            sweep = sweeps.get(ctx.name) if sweeps is not None else None
            if sweep is not None and not self.stop.is_set():
                # the watcher sets wake when a unit changes: the slice gives way to it
                self.guard(stage, partial(sweep.step, SWEEP_SLICE_SECONDS, self.wake.is_set))
                if sweep.done and sweeps is not None:
                    del sweeps[ctx.name]

    def pull(self, ctx: SyncContext) -> pull.PullStats | None:
        """One pull cycle of ``ctx`` (errors reported, never raised), timed and counted."""
        started = time.monotonic()
        with self.heartbeats.busy(f"pull:{ctx.name}"):
            stats = self.guard(f"pull:{ctx.name}", lambda: pull.run_once(ctx))
        metrics.pull_finished(ctx.name, time.monotonic() - started, stats)
        return stats

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

    def run_states(self, max_before: int, open_before: set[int]) -> dict[str, int]:
        """Packages by state among this run's: open at its start, or created since.

        ``detected`` ones (units not settled) are left out: ``once`` does not wait for them.
        """
        with self.store.read() as s:
            rows = s.exec(
                select(Package.state).where(
                    or_(col(Package.id) > max_before, col(Package.id).in_(open_before)),
                    Package.state != "detected",
                    self._owned(),
                )
            ).all()
        out: dict[str, int] = {}
        for state in rows:
            out[state] = out.get(state, 0) + 1
        return out

    def once(
        self,
        *,
        timeout: float = 3600.0,
        progress: Callable[[dict[str, int]], None] | None = None,
    ) -> int:
        """``syncd once``: returns the exit code (0 all done, 1 something failed).

        ``progress`` is called with this run's packages by state after every pass.
        """
        started = time.monotonic()
        with self.store.read() as s:
            mine = s.exec(select(Package).where(self._owned())).all()
            before = {p.id: p.state for p in mine}
            self._attempts_before = {p.id: p.attempts for p in mine}
        max_before = max((i for i in before if i is not None), default=0)
        open_before = {i for i, st in before.items() if i is not None and st not in FINAL_STATES}

        def report() -> None:
            if progress is not None:
                progress(self.run_states(max_before, open_before))

        # A first scan only records what is there; a second one (same content)
        # settles units whose files are older than settle_seconds.
        self.push_cycle()
        while not self.stop.is_set():
            self.push_cycle()
            report()
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
        report()
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
        hb = self.heartbeats
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
        hb.register("push")
        hb.register("watcher")
        hb.register("scheduler")
        for ctx in self.contexts:
            self._register_pull(ctx)
        # A few beats per stall_timeout, so one late run is no stall.
        beat_every = min(HEARTBEAT_SECONDS, self.cfg.daemon.stall_timeout / 4)
        scheduler = self.scheduler = build_scheduler(
            self.contexts,
            self.pull,
            heartbeat=partial(self._beat_scheduler_and_watcher, watcher),
            heartbeat_seconds=beat_every,
        )
        scheduler.start()
        try:
            self._start_server()
        except BaseException:
            scheduler.shutdown(wait=False)
            watcher.stop()
            raise
        self._record(
            "daemon.started",
            "info",
            pid=os.getpid(),
            syncs=[c.name for c in self.contexts],
            db=self.store.location,
            listen=self.server.address if self.server is not None else None,
        )
        supervisor = self.supervisor = Supervisor(
            hb,
            state_dir=self.store.dir,
            package_counts=self._package_counts,
            syncs=lambda: len(self.contexts),
            record=self._record,
        )
        supervisor.ready()
        # The first pass is the catch-up scan: units that changed while the daemon was
        # down start moving at once; the full scan (every file stat-ed, in-place edits
        # found) follows on the next pass and then every RESCAN_SECONDS. Not a time
        # origin of 0: the monotonic clock starts at boot, minutes before a service.
        catching_up = True
        last_full: float | None = None
        sweeps: dict[str, detect.FullScan] = {}
        try:
            with hb.busy("push"):
                while not self.stop.is_set():
                    hb.beat("push")
                    if self.reload_requested.is_set():
                        self.reload_requested.clear()
                        self.reload()
                        sweeps.clear()  # the syncs may have changed: sweep them anew
                        last_full = None
                    now = time.monotonic()
                    if catching_up:
                        catching_up = False
                        self.push_cycle(None, catch_up=True)
                    else:
                        watcher.check()
                        for n in watcher.take_notices():
                            self._record(n.event, "warning", sync=n.sync, reason=n.reason)
                        # None: the watcher lost events for that folder, scan it all
                        dirty = {c.name: watcher.take(c.name) for c in self.contexts}
                        rescan: frozenset[str] = frozenset()
                        if last_full is None or now - last_full >= RESCAN_SECONDS:
                            last_full = now
                            rescan = frozenset(dirty)
                        # changed units keep their turn while a sweep starts
                        self.push_cycle(dirty, sweeps=sweeps, rescan=rescan)
                    # between slices of a full scan, no pause: changed units are
                    # still seen first, on every pass
                    self.wake.wait(0 if sweeps else LOOP_SECONDS)
                    self.wake.clear()
        finally:
            supervisor.stopping()
            self._record("daemon.stopping", "info")
            scheduler.shutdown(wait=True)
            watcher.stop()
            if self.server is not None:
                self.server.stop()
                metrics.use_state_collector(None)
            self._record("daemon.stopped", "info")
        return 0

    def _beat_scheduler_and_watcher(self, watcher: FolderWatcher) -> None:
        """The scheduler's heartbeat job: it runs, so the scheduler dispatches; and the
        watcher is alive while every observer thread runs (a dead one that the push
        loop cannot restart leaves the folder unwatched: stale)."""
        self.heartbeats.beat("scheduler")
        if watcher.alive():
            self.heartbeats.beat("watcher")

    def _register_pull(self, ctx: SyncContext) -> None:
        """A pulling sync's last cycle must be recent: its interval plus the stall timeout."""
        if ctx.cfg.pull:
            self.heartbeats.register(
                f"pull:{ctx.name}", ctx.cfg.pull_interval + self.cfg.daemon.stall_timeout
            )

    def _start_server(self) -> None:
        address = self.cfg.server.address()
        if address is None:
            return
        from syncd.metrics import StateCollector, use_state_collector
        from syncd.server import HttpServer

        try:
            self.server = HttpServer(*address, self.heartbeats)
        except OSError as exc:
            raise ConfigError(
                f"server.listen: {self.cfg.server.listen!r}: cannot listen there ({exc.strerror})"
            ) from exc
        collector = StateCollector(
            self.store,
            syncs=lambda: [c.name for c in self.contexts if c.cfg.pull],
            heartbeat_ages=self.heartbeats.ages,
            stalled=lambda: frozenset(s.stage for s in self.heartbeats.stale()),
        )
        use_state_collector(collector)
        self.server.start()

    # --- reload ----------------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the config file (SIGHUP); apply it, or keep the running one and say why.

        Runs in the push loop's thread between cycles, so no push step is in
        flight; a pull in flight finishes with the configuration it started with.
        ``state``, ``log`` and ``server`` need a restart and keep their values.
        """
        if self.config_file is None:
            self._record("daemon.reload_failed", "error", error="no config file to re-read")
            return False
        if self.supervisor is not None:
            self.supervisor.reloading()
        try:
            new = load_config(self.config_file)
            check_folders(new)
        except ConfigError as exc:
            self._record(
                "daemon.reload_failed",
                "error",
                error=str(exc),
                config=str(self.config_file),
                action="keeping the running configuration",
            )
            if self.supervisor is not None:
                self.supervisor.reloaded()
            return False
        old = self.cfg
        restart_needed = [
            k for k in ("state", "log", "server") if getattr(new, k) != getattr(old, k)
        ]
        new = new.model_copy(update={"state": old.state, "log": old.log, "server": old.server})
        # Remotes: unchanged ones keep their clients (and rate-limit budget).
        remotes: dict[str, Remote] = {}
        replaced: set[str] = set()
        for name, rc in new.remotes.items():
            if name in self.remotes and old.remotes.get(name) == rc:
                remotes[name] = self.remotes[name]
            else:
                remotes[name] = build_remote(name, rc, max_retries=self.max_retries)
                replaced.add(name)
        self._retired.extend(r for n, r in self.remotes.items() if remotes.get(n) is not r)
        old_syncs = {c.name: c for c in self.contexts}
        new_syncs = {s.name: s for s in new.syncs}
        removed = sorted(set(old_syncs) - set(new_syncs))
        added = sorted(set(new_syncs) - set(old_syncs))
        changed = sorted(
            n
            for n in set(old_syncs) & set(new_syncs)
            if old_syncs[n].cfg != new_syncs[n] or new_syncs[n].remote in replaced
        )
        self.cfg, self.remotes = new, remotes
        self.heartbeats.stall_timeout = new.daemon.stall_timeout
        for name in (*removed, *changed):
            self._drop_sync(name)
            if name in removed or not new_syncs[name].pull:
                # another daemon of a fleet may pull it now
                self.guard("reload", partial(self.store.coord.give_up, pull.pull_lease(name)))
        contexts = {c.name: c for c in self.contexts}
        failed: dict[str, str] = {}
        for name in (*added, *changed):
            try:
                contexts[name] = self._start_sync(new_syncs[name])
            except (OSError, SyncdError) as exc:
                # Checked folders can still fail to be watched (a kernel limit in
                # native mode): that sync waits for the next reload or restart.
                failed[name] = str(exc)
                self._record(
                    "daemon.reload_failed",
                    "error",
                    error=f"syncs[{name}].folder: cannot watch it: {exc}",
                    action=f"sync {name} is not running",
                )
        self.contexts = [contexts[s.name] for s in new.syncs if s.name not in failed]
        for ctx in self.contexts:
            self._register_pull(ctx)  # a new pull_interval or stall_timeout
        self._record(
            "daemon.reloaded",
            "info",
            added=added,
            removed=removed,
            changed=changed,
            remotes_replaced=sorted(replaced),
            restart_needed=restart_needed or None,
        )
        if self.supervisor is not None:
            self.supervisor.reloaded()
        return True

    def _drop_sync(self, name: str) -> None:
        if self.scheduler is not None:
            remove_pull_job(self.scheduler, name)
        if self.watcher is not None:
            self.watcher.remove(name)
        self.heartbeats.unregister(f"pull:{name}")
        self.contexts = [c for c in self.contexts if c.name != name]

    def _start_sync(self, s: SyncConfig) -> SyncContext:
        ctx = self._context(s)
        if self.watcher is not None and s.push and s.folder is not None:
            self.watcher.add_running(s.name, s.folder, s.watch_mode, s.watch_poll_interval)
        if self.scheduler is not None:
            add_pull_job(self.scheduler, ctx, self.pull)
        return ctx

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

        def reload(_signum: int, _: FrameType | None) -> None:
            self.reload_requested.set()
            self.wake.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGHUP, reload)
