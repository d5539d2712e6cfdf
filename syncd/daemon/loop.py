"""``syncd run``: the run loop, the push cycle it repeats, and the signals that stop or reload it.

Contract of :func:`run`:

* Watches every push folder (watchdog; at start a catch-up scan, then a full
  scan right after and every ``RESCAN_SECONDS``, in slices of
  ``SWEEP_SLICE_SECONDS`` so a changed unit never waits behind one), runs
  detection and packing in the calling thread, hands due packages to the
  upload workers (:mod:`.uploads`, up to ``upload_concurrency`` per remote,
  so no package's upload or retries hold up detection, packing or another
  package) and the pulls to their APScheduler schedule, until
  ``daemon.stop`` is set (SIGTERM/SIGINT).
* The first signal drains: no new step starts, the steps in flight (the
  upload workers') may finish within ``[daemon] shutdown_timeout``; then a
  transfer in flight is cut
  (``package.checkpointed``; its committed state is where the next start
  resumes) and ``run`` returns 0. Should a step still hang
  ``HARD_EXIT_GRACE`` seconds later, the process exits 0 anyway
  (``daemon.drain_timeout``): every state it acted on was committed first.
  A second signal exits at once with 128 + the signal number.
* SIGHUP asks for a reload (:mod:`syncd.daemon.reload`), applied by the loop
  between two passes, so no push step is in flight.
* Liveness: the push loop, the watcher, the scheduler and every pull beat
  their heartbeats; :class:`~syncd.supervise.Supervisor` sends ``READY=1``
  once the store is open, the folders are watched and the scheduler runs,
  then ``STATUS=`` lines, ``WATCHDOG=1`` only while no stage is stale, and
  ``STOPPING=1`` when the drain starts.
* Signal handlers are installed only from the main thread; an embedded
  daemon (tests) is stopped by setting ``stop`` and ``wake``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from functools import partial
from types import FrameType
from typing import TYPE_CHECKING

from syncd.daemon import reload as reload_driver
from syncd.errors import SyncdError
from syncd.pipeline import detect, pack
from syncd.pipeline.context import SyncContext
from syncd.pipeline.schedule import HEARTBEAT_SECONDS, build_scheduler
from syncd.pipeline.watcher import FolderWatcher
from syncd.remotes.http import reachability_of
from syncd.supervise import Supervisor

if TYPE_CHECKING:
    from syncd.daemon.compose import DaemonCore

RESCAN_SECONDS = 300.0
LOOP_SECONDS = 1.0
# How long one slice of a full scan may take before the changed units get their turn.
SWEEP_SLICE_SECONDS = 0.1
HARD_EXIT_GRACE = 5.0


def push_cycle(
    d: DaemonCore,
    dirty: dict[str, set[str] | None] | None = None,
    *,
    catch_up: bool = False,
    sweeps: dict[str, detect.FullScan] | None = None,
    rescan: frozenset[str] = frozenset(),
    wait: bool = False,
) -> None:
    """One pass of watch → pack → upload over every sync (``None``: scan everything;
    ``catch_up``: the quick form of that scan, see :func:`detect.run_once`).

    The due packages go to the upload workers (``d.uploads``) while the pass
    goes on. ``wait``: every package due now gets its step before the pass
    returns (a free slot is awaited, then every worker), as tests and
    scripted passes expect; the run loop and ``once`` do not wait.

    With ``sweeps`` (the run loop's full scans in progress, by sync), a full
    scan is not run whole: one is started there for each sync in ``rescan``
    (and each whose ``dirty`` entry is None) that has none running, and each
    pass scans the changed units, packs and uploads, and only then scans the
    sweep's next slice (``SWEEP_SLICE_SECONDS``, cut short as soon as the
    watcher reports a change), so a changed unit never waits behind a slice.
    """
    for ctx in d.contexts:
        if d.stop.is_set():
            return
        if not ctx.cfg.push:
            continue
        units = None if dirty is None else dirty.get(ctx.name, set())
        stage = f"watch:{ctx.name}"
        if sweeps is None:
            scanned = d.guard(
                stage, partial(detect.run_once, ctx, d.tracker, units, catch_up=catch_up)
            )
            if scanned is None:
                _give_back(d, ctx.name, units)
        else:
            if units is None or ctx.name in rescan:
                units = units or set()
                if ctx.name not in sweeps:
                    sweep = d.guard(stage, partial(detect.FullScan, ctx, d.tracker))
                    if sweep is None:
                        _give_back(d, ctx.name, None)  # start the sweep on the next pass
                    else:
                        sweeps[ctx.name] = sweep
            if d.guard(stage, partial(detect.run_once, ctx, d.tracker, units)) is None:
                _give_back(d, ctx.name, units)
        dispatch = partial(d.guard, f"upload:{ctx.name}", partial(d.uploads.dispatch, ctx))
        if not _down(ctx):
            # each package goes to an upload worker as soon as it is packed: the first
            # upload does not wait for the last unit of a batch to be packed
            d.guard(f"pack:{ctx.name}", partial(pack.run_once, ctx, on_packed=dispatch))
        d.guard(f"upload:{ctx.name}", partial(d.uploads.dispatch, ctx, block=wait))
        sweep = sweeps.get(ctx.name) if sweeps is not None else None
        if sweep is not None and not d.stop.is_set():
            # the watcher sets wake when a unit changes: the slice gives way to it
            d.guard(stage, partial(sweep.step, SWEEP_SLICE_SECONDS, d.wake.is_set))
            if sweep.done and sweeps is not None:
                del sweeps[ctx.name]
    if wait:
        d.uploads.join()


def _down(ctx: SyncContext) -> bool:
    """The sync's remote is in an outage: packing (which asks the platform for names and
    classes) waits for its end, instead of holding up every other sync's stages for a
    whole retry series; the outage's probe wakes the loop when the platform answers."""
    tracker = reachability_of(ctx.remote)
    return tracker is not None and tracker.unreachable


def _give_back(d: DaemonCore, sync: str, units: set[str] | None) -> None:
    """A scan that failed (the database restarting, a full disk) hands the units the
    watcher reported back to it (None: the whole folder), so the next pass scans
    them again instead of leaving them to the next full scan, minutes later."""
    if d.watcher is not None and (units is None or units):
        d.watcher.requeue(sync, units)


def run(d: DaemonCore) -> int:
    """``syncd run``: the foreground daemon (see module docstring)."""
    install_signals(d)
    hb = d.heartbeats
    watcher = d.watcher = FolderWatcher(d.wake)
    for ctx in d.contexts:
        if ctx.cfg.push and ctx.cfg.folder is not None:
            watcher.add(ctx.name, ctx.cfg.folder, ctx.cfg.watch_mode, ctx.cfg.watch_poll_interval)
    try:
        watcher.start()
    except OSError as exc:
        watcher.stop()
        raise SyncdError(f"cannot watch the folders: {exc}") from exc
    hb.register("push")
    hb.register("watcher")
    hb.register("scheduler")
    for ctx in d.contexts:
        d.register_pull(ctx)
    # A few beats per stall_timeout, so one late run is no stall.
    beat_every = min(HEARTBEAT_SECONDS, d.cfg.daemon.stall_timeout / 4)
    scheduler = d.scheduler = build_scheduler(
        d.contexts,
        d.pull,
        heartbeat=partial(_beat_scheduler_and_watcher, d, watcher),
        heartbeat_seconds=beat_every,
    )
    scheduler.start()
    try:
        d.start_server()
    except BaseException:
        scheduler.shutdown(wait=False)
        watcher.stop()
        raise
    d.record(
        "daemon.started",
        "info",
        pid=os.getpid(),
        syncs=[c.name for c in d.contexts],
        db=d.store.location,
        listen=d.server.address if d.server is not None else None,
    )
    supervisor = d.supervisor = Supervisor(
        hb,
        state_dir=d.store.dir,
        package_counts=d.package_counts,
        syncs=lambda: len(d.contexts),
        record=d.record,
        in_flight=lambda: [f.as_dict() for f in d.uploads.snapshot()],
    )
    supervisor.ready()
    try:
        with hb.busy("push"):
            _loop(d, watcher)
        # The drain: the workers' steps finish, or the deadline cuts their transfers.
        d.uploads.join()
    finally:
        supervisor.stopping()
        d.record("daemon.stopping", "info")
        scheduler.shutdown(wait=True)
        watcher.stop()
        d.stop_server()
        d.record("daemon.stopped", "info")
    return 0


def _loop(d: DaemonCore, watcher: FolderWatcher) -> None:
    # The first pass is the catch-up scan: units that changed while the daemon was
    # down start moving at once; the full scan (every file stat-ed, in-place edits
    # found) follows on the next pass and then every RESCAN_SECONDS. Not a time
    # origin of 0: the monotonic clock starts at boot, minutes before a service.
    catching_up = True
    last_full: float | None = None
    sweeps: dict[str, detect.FullScan] = {}
    while not d.stop.is_set():
        d.heartbeats.beat("push")
        if d.reload_requested.is_set():
            d.reload_requested.clear()
            reload_driver.reload(d)
            sweeps.clear()  # the syncs may have changed: sweep them anew
            last_full = None
        now = time.monotonic()
        if catching_up:
            catching_up = False
            push_cycle(d, None, catch_up=True)
        else:
            watcher.check()
            for n in watcher.take_notices():
                d.record(n.event, "warning", sync=n.sync, reason=n.reason)
            # None: the watcher lost events for that folder, scan it all
            dirty = {c.name: watcher.take(c.name) for c in d.contexts}
            rescan: frozenset[str] = frozenset()
            if last_full is None or now - last_full >= RESCAN_SECONDS:
                last_full = now
                rescan = frozenset(dirty)
            # changed units keep their turn while a sweep starts
            push_cycle(d, dirty, sweeps=sweeps, rescan=rescan)
        # between slices of a full scan, no pause: changed units are
        # still seen first, on every pass
        d.wake.wait(0 if sweeps else LOOP_SECONDS)
        d.wake.clear()


def _beat_scheduler_and_watcher(d: DaemonCore, watcher: FolderWatcher) -> None:
    """The scheduler's heartbeat job: it runs, so the scheduler dispatches; and the
    watcher is alive while every observer thread runs (a dead one that the push
    loop cannot restart leaves the folder unwatched: stale)."""
    d.heartbeats.beat("scheduler")
    if watcher.alive():
        d.heartbeats.beat("watcher")


def _drain_deadline(d: DaemonCore) -> None:
    """The drain took too long: cut transfers now, and exit for sure a little later."""
    for ctx in d.contexts:
        ctx.cancel.set()
    d.log.warning(
        "daemon.drain_deadline", seconds=d.cfg.daemon.shutdown_timeout, action="cancelling"
    )
    time.sleep(HARD_EXIT_GRACE)
    d.record("daemon.drain_timeout", "error", grace_seconds=HARD_EXIT_GRACE)
    os._exit(0)


def install_signals(d: DaemonCore) -> None:
    """SIGTERM/SIGINT drain (a second one exits at once), SIGHUP reloads; main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return  # embedded (tests): the caller stops the daemon through ``stop``

    def handler(signum: int, _: FrameType | None) -> None:
        if d.stop.is_set():
            os._exit(128 + signum)  # second signal: stop at once
        d.stop.set()
        d.wake.set()
        timer = threading.Timer(d.cfg.daemon.shutdown_timeout, _drain_deadline, args=(d,))
        timer.daemon = True
        timer.start()

    def reload(_signum: int, _: FrameType | None) -> None:
        d.reload_requested.set()
        d.wake.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGHUP, reload)
