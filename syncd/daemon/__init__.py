"""The daemon: ``syncd run`` and ``syncd once`` over every sync of one configuration.

Modules, by job:

* :mod:`.compose`: :class:`DaemonCore`, the composition root: builds the store,
  the remotes and one ``SyncContext`` per sync; owns the daemon's metrics,
  heartbeats and error quieting (nothing shared with another daemon in the
  same process); runs each stage step under :meth:`DaemonCore.guard`.
* :mod:`.daemon`: :class:`Daemon`, the composition with its drivers.
* :mod:`.loop`: ``syncd run``: the run loop, the push cycle it repeats, the
  drain on SIGTERM/SIGINT, SIGHUP.
* :mod:`.once`: ``syncd once`` and its exit code.
* :mod:`.uploads`: the packages in flight, up to ``upload_concurrency`` per
  remote, each step in a worker thread beside the push loop.
* :mod:`.reload`: a reload as a pure plan of what changed
  (:func:`~syncd.daemon.reload.plan_reload`), then its application.
* :mod:`.outage`: a platform outage recorded (``remote.unreachable``,
  ``remote.reachable``) and the waiting packages resumed when it ends.

Contract (unchanged for callers): ``Daemon(cfg, max_retries=..., config_file=...)``,
then ``run()`` or ``once()``, then ``close()``. Stage errors never kill the
daemon: each is recorded as ``daemon.stage_error`` at most every
``QUIET_SECONDS`` per stage, with a count, and once ``daemon.stage_recovered``
when the stage works again.
"""

from syncd.daemon.compose import HOST_WAIT_SECONDS, DaemonCore
from syncd.daemon.daemon import Daemon
from syncd.daemon.loop import HARD_EXIT_GRACE, LOOP_SECONDS, RESCAN_SECONDS, SWEEP_SLICE_SECONDS
from syncd.daemon.once import ONCE_GIVE_UP_ATTEMPTS
from syncd.daemon.reload import ReloadPlan, plan_reload
from syncd.quiet import QUIET_SECONDS

__all__ = [
    "HARD_EXIT_GRACE",
    "HOST_WAIT_SECONDS",
    "LOOP_SECONDS",
    "ONCE_GIVE_UP_ATTEMPTS",
    "QUIET_SECONDS",
    "RESCAN_SECONDS",
    "SWEEP_SLICE_SECONDS",
    "Daemon",
    "DaemonCore",
    "ReloadPlan",
    "plan_reload",
]
