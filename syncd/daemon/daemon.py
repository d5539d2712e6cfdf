"""The :class:`Daemon`: the composition (:mod:`.compose`) joined with its drivers.

Contract (unchanged for callers): ``Daemon(cfg, max_retries=..., config_file=...)``,
then :meth:`~Daemon.run` or :meth:`~Daemon.once`, then ``close()``. The drivers
are functions of the modules next door that take a
:class:`~syncd.daemon.compose.DaemonCore`; this class only names them.
"""

from __future__ import annotations

from collections.abc import Callable

from syncd.daemon import loop
from syncd.daemon import once as once_driver
from syncd.daemon import reload as reload_driver
from syncd.daemon.compose import DaemonCore
from syncd.pipeline import detect


class Daemon(DaemonCore):
    """All syncs of one configuration, sharing one store."""

    def run(self) -> int:
        """``syncd run``: the foreground daemon until SIGTERM (:func:`.loop.run`)."""
        return loop.run(self)

    def push_cycle(
        self,
        dirty: dict[str, set[str] | None] | None = None,
        *,
        catch_up: bool = False,
        sweeps: dict[str, detect.FullScan] | None = None,
        rescan: frozenset[str] = frozenset(),
    ) -> None:
        """One pass of watch → pack → upload over every sync (:func:`.loop.push_cycle`),
        returning once every package due in it had its step (``wait``)."""
        loop.push_cycle(self, dirty, catch_up=catch_up, sweeps=sweeps, rescan=rescan, wait=True)

    def once(
        self,
        *,
        timeout: float = 3600.0,
        progress: Callable[[dict[str, int], int], None] | None = None,
    ) -> int:
        """``syncd once``: the exit code (:func:`.once.run_once`)."""
        return once_driver.run_once(self, timeout=timeout, progress=progress)

    def reload(self) -> bool:
        """Re-read the config file (SIGHUP) and apply it, or keep the running one
        (:func:`.reload.reload`)."""
        return reload_driver.reload(self)
