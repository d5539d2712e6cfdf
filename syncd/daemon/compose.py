"""The composition root: one :class:`DaemonCore` builds the store, the remotes and a
:class:`~syncd.pipeline.context.SyncContext` per sync, and owns everything a
running daemon holds.

Contract:

* Everything a daemon counts or remembers lives on its own instance: its
  :class:`~syncd.metrics.Metrics` (fed by its store's commit listener and, for
  HTTP, bound around every stage step), its
  :class:`~syncd.health.Heartbeats`, its error quieting
  (:class:`~syncd.quiet.Quiet`). Two daemons in one process (two configs, two
  state folders) share none of it. Process-wide by design: the logging setup,
  and each remote's rate limiter (the platform counts one budget per token).
* :meth:`DaemonCore.guard` runs one stage step: an error never escapes; it is
  reported as ``daemon.stage_error`` at most every ``QUIET_SECONDS`` per stage
  (same error shape), with ``consecutive_errors``, and once
  ``daemon.stage_recovered`` (``after_errors``) when the stage works again.
  The database server being unreachable is no stage's error: the store
  reports that outage once (``store.unavailable`` / ``store.available``).
* The drivers live next door: :mod:`.loop` (``syncd run``, the push cycle,
  signals), :mod:`.once` (``syncd once``), :mod:`.reload` (SIGHUP); the
  :class:`~syncd.daemon.Daemon` of :mod:`syncd.daemon.daemon` joins them.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from syncd.config import Config, PlatformConfig, SyncConfig
from syncd.daemon import outage
from syncd.daemon.uploads import UploadWorkers
from syncd.errors import ConfigError, StoreUnavailable, SyncdError
from syncd.health import Heartbeats
from syncd.log import get_logger
from syncd.metrics import Metrics, StateCollector
from syncd.pipeline import detect, pull
from syncd.pipeline.context import SyncContext
from syncd.pipeline.schedule import add_pull_job, remove_pull_job
from syncd.pipeline.watcher import FolderWatcher
from syncd.quiet import QUIET_SECONDS, Quiet
from syncd.remotes import build_remote
from syncd.remotes.base import Remote
from syncd.remotes.http import set_host
from syncd.store import Package, Store, queries
from syncd.supervise import Supervisor

T = TypeVar("T")
HOST_WAIT_SECONDS = 30.0


class DaemonCore:
    """All syncs of one configuration, sharing one store: what the drivers work on.

    :class:`syncd.daemon.Daemon` adds the drivers (``run``, ``once``,
    ``reload``, ``push_cycle``); they live in the modules next door and take a
    ``DaemonCore``, so this module imports none of them (no import cycle).
    """

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
        self.metrics = Metrics()
        self.quiet = Quiet(QUIET_SECONDS)
        self.store = Store(cfg.state.dir, database_url=cfg.state.database_url, host=cfg.state.host)
        self.store.add_commit_listener(self.metrics.on_event)
        try:
            # A daemon restarted right after a crash waits for its old session to end.
            self.store.coord.hold_host(wait=HOST_WAIT_SECONDS)
        except BaseException:
            self.store.close()
            raise
        self.remotes: dict[str, Remote] = {
            name: self.build_remote(name, rc) for name, rc in cfg.remotes.items()
        }
        self.retired: list[Remote] = []  # replaced by a reload; closed at the end
        self.contexts = [self.context(s) for s in cfg.syncs]
        self.tracker = detect.SettleTracker()
        self.uploads = UploadWorkers(
            limit=self.upload_limit, guard=self.guard, heartbeats=self.heartbeats, wake=self.wake
        )
        self.watcher: FolderWatcher | None = None
        self.scheduler: Any = None
        self.supervisor: Supervisor | None = None
        self.server: Any = None
        self.failed_in_run = False

    def build_remote(self, name: str, rc: PlatformConfig) -> Remote:
        """The backend of ``[remotes.NAME]``, its User-Agent naming this daemon's host.

        The User-Agent is still a process-wide setting of :mod:`syncd.remotes.http`
        (read when a client is made), so it is set right before each build.
        """
        set_host(self.cfg.state.host)
        return outage.watch(self, name, build_remote(name, rc, max_retries=self.max_retries))

    def context(self, s: SyncConfig) -> SyncContext:
        return SyncContext(
            cfg=s,
            remote=self.remotes[s.remote],
            store=self.store,
            stop=self.stop,
            poll_interval=self.cfg.remotes[s.remote].poll_interval,
            transfers=self.cfg.remotes[s.remote].transfers,
            progress=self.heartbeats.progress,
        )

    def upload_limit(self, remote: str) -> int:
        """``[remotes.NAME] upload_concurrency`` as configured now (a reload may change it)."""
        rc = self.cfg.remotes.get(remote)
        return rc.upload_concurrency if rc is not None else 1

    def in_flight_by_remote(self) -> dict[str, tuple[int, int]]:
        """remote → (packages in flight, its upload_concurrency), every configured remote."""
        busy: dict[str, int] = {}
        for f in self.uploads.snapshot():
            busy[f.remote] = busy.get(f.remote, 0) + 1
        return {r: (busy.get(r, 0), self.upload_limit(r)) for r in self.cfg.remotes}

    def close(self) -> None:
        self.stop.set()  # the threads still about (an outage's probe) end with the daemon
        self.uploads.join()
        for r in [*self.remotes.values(), *self.retired]:
            r.close()
        self.store.close()

    # --- one stage step ------------------------------------------------------------------

    def guard(self, stage: str, fn: Callable[[], T]) -> T | None:
        """Run one stage step; report errors quietly instead of raising."""
        try:
            with self.metrics.bound():
                result = fn()
            self.heartbeats.progress()
        except StoreUnavailable as exc:
            # The database server is restarting or down: one outage, reported once by
            # the store (store.unavailable / store.available), not once per stage.
            self.store.unavailable(exc)
            self.failed_in_run = True
            return None
        except SyncdError as exc:
            self._report(stage, str(exc))
            return None
        except Exception as exc:  # a bug: keep the daemon alive, say where
            tb = traceback.extract_tb(exc.__traceback__)[-1]
            self._report(
                stage, f"unexpected {type(exc).__name__}: {exc} (at {tb.filename}:{tb.lineno})"
            )
            return None
        after = self.quiet.succeeded(stage)
        if after is not None:
            self.record("daemon.stage_recovered", "info", stage=stage, after_errors=after)
        return result

    def _report(self, stage: str, message: str) -> None:
        self.failed_in_run = True
        count = self.quiet.failed(stage, message)
        if count is not None:
            self.record(
                "daemon.stage_error", "error", stage=stage, error=message, consecutive_errors=count
            )

    def record(self, name: str, level: str, **fields: Any) -> None:
        """Record an event of the daemon itself (logged only, if the database fails)."""
        try:
            with self.store.tx() as tx:
                tx.event(name, level=level, **fields)
        except SyncdError:
            getattr(self.log, level)(name, **fields)

    def pull(self, ctx: SyncContext) -> pull.PullStats | None:
        """One pull cycle of ``ctx`` (errors reported, never raised), timed and counted."""
        started = time.monotonic()
        with self.heartbeats.busy(f"pull:{ctx.name}"):
            stats = self.guard(f"pull:{ctx.name}", lambda: pull.run_once(ctx))
        self.metrics.pull_finished(ctx.name, time.monotonic() - started, stats)
        return stats

    def stuck_stage(self, limit: int = 20) -> str | None:
        """A stage that failed ``limit`` times in a row (``once`` gives up on it)."""
        return self.quiet.stuck(limit)

    def pending_packages(self) -> list[Package]:
        """Packages that are past ``settled`` and not final (work the daemon still owes)."""
        return queries.pending_packages(self.store)

    def package_counts(self) -> dict[str, int]:
        """This machine's packages by state (for ``STATUS=``), on either engine."""
        counts: dict[str, int] = {}
        for _, state, n in self.store.package_counts():
            counts[state] = counts.get(state, 0) + n
        return counts

    # --- parts that come and go (start, reload) ------------------------------------------

    def register_pull(self, ctx: SyncContext) -> None:
        """A pulling sync's last cycle must be recent: its interval plus the stall timeout."""
        if ctx.cfg.pull:
            self.heartbeats.register(
                f"pull:{ctx.name}", ctx.cfg.pull_interval + self.cfg.daemon.stall_timeout
            )

    def start_sync(self, s: SyncConfig) -> SyncContext:
        """A sync added while running: its context, watched folder and pull job."""
        ctx = self.context(s)
        if self.watcher is not None and s.push and s.folder is not None:
            self.watcher.add_running(s.name, s.folder, s.watch_mode, s.watch_poll_interval)
        if self.scheduler is not None:
            add_pull_job(self.scheduler, ctx, self.pull)
        return ctx

    def drop_sync(self, name: str) -> None:
        if self.scheduler is not None:
            remove_pull_job(self.scheduler, name)
        if self.watcher is not None:
            self.watcher.remove(name)
        self.heartbeats.unregister(f"pull:{name}")
        self.contexts = [c for c in self.contexts if c.name != name]

    def start_server(self) -> None:
        """``[server] listen``: /healthz from the heartbeats, /metrics from this daemon's registry."""
        address = self.cfg.server.address()
        if address is None:
            return
        from syncd.server import HttpServer

        try:
            self.server = HttpServer(*address, self.heartbeats, self.metrics.registry)
        except OSError as exc:
            raise ConfigError(
                f"server.listen: {self.cfg.server.listen!r}: cannot listen there ({exc.strerror})"
            ) from exc
        collector = StateCollector(
            self.store,
            syncs=lambda: [c.name for c in self.contexts if c.cfg.pull],
            heartbeat_ages=self.heartbeats.ages,
            stalled=lambda: frozenset(s.stage for s in self.heartbeats.stale()),
            last_pulls=self.metrics.last_pulls,
            in_flight=self.in_flight_by_remote,
        )
        self.metrics.use_state_collector(collector)
        self.server.start()

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.metrics.use_state_collector(None)
