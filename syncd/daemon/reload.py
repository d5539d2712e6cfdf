"""SIGHUP: re-read the configuration, work out what changed (a pure plan), then apply it.

Contract:

* :func:`plan_reload` is pure: from the running configuration, the syncs that
  run now and the new configuration it says which syncs are added, removed
  or changed, which remotes keep their clients (and rate-limit budget) and
  which are built anew, which fleet pull leases to give up, and which
  sections (``state``, ``log``, ``server``) changed but need a restart and
  keep their running values.
* :func:`reload` (in the push loop's thread, between two passes, so no push
  step is in flight; a pull in flight finishes with the configuration it
  started with) loads and checks the file; a config that does not load or
  validate is refused (``daemon.reload_failed`` names the key and value) and
  the running one stays. Otherwise :func:`apply_plan` swaps the parts and
  records ``daemon.reloaded``. A sync whose folder cannot be watched (a
  kernel limit) is not started (``daemon.reload_failed`` names it); it waits
  for the next reload or restart.
* systemd hears ``RELOADING=1`` then ``READY=1`` either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from syncd.config import Config, SyncConfig, check_folders, load_config
from syncd.errors import ConfigError, SyncdError
from syncd.pipeline import pull
from syncd.remotes.base import Remote

if TYPE_CHECKING:
    from syncd.daemon.compose import DaemonCore

# Sections a running daemon cannot swap: they keep their values until a restart.
RESTART_SECTIONS = ("state", "log", "server")


@dataclass(frozen=True)
class ReloadPlan:
    """What a reload changes (see :func:`plan_reload`)."""

    config: Config  # the new configuration, with the restart-only sections kept
    added: list[str]  # syncs, sorted
    removed: list[str]
    changed: list[str]  # their settings or their remote changed: restarted
    kept_remotes: frozenset[str]  # same settings: the running client stays
    new_remotes: list[str]  # changed or added: built anew, in config order
    retired_remotes: list[str]  # changed or removed: closed when the daemon ends
    give_up_leases: list[str]  # syncs no longer pulled here (another daemon may)
    restart_needed: list[str]  # sections that changed but keep their running values

    @property
    def remotes_replaced(self) -> list[str]:
        return sorted(self.new_remotes)


def plan_reload(old: Config, running: Mapping[str, SyncConfig], new: Config) -> ReloadPlan:
    """What changes from ``old`` (with the syncs ``running`` now, by name) to ``new``."""
    restart_needed = [k for k in RESTART_SECTIONS if getattr(new, k) != getattr(old, k)]
    config = new.model_copy(update={k: getattr(old, k) for k in RESTART_SECTIONS})
    kept = frozenset(n for n, rc in config.remotes.items() if old.remotes.get(n) == rc)
    new_remotes = [n for n in config.remotes if n not in kept]
    new_syncs = {s.name: s for s in config.syncs}
    removed = sorted(set(running) - set(new_syncs))
    added = sorted(set(new_syncs) - set(running))
    changed = sorted(
        n
        for n in set(running) & set(new_syncs)
        if running[n] != new_syncs[n] or new_syncs[n].remote in new_remotes
    )
    return ReloadPlan(
        config=config,
        added=added,
        removed=removed,
        changed=changed,
        kept_remotes=kept,
        new_remotes=new_remotes,
        retired_remotes=[n for n in old.remotes if n not in kept],
        give_up_leases=[n for n in (*removed, *changed) if n in removed or not new_syncs[n].pull],
        restart_needed=restart_needed,
    )


def reload(d: DaemonCore) -> bool:
    """Re-read the config file (SIGHUP); apply it, or keep the running one and say why."""
    if d.config_file is None:
        d.record("daemon.reload_failed", "error", error="no config file to re-read")
        return False
    if d.supervisor is not None:
        d.supervisor.reloading()
    try:
        new = load_config(d.config_file)
        check_folders(new)
    except ConfigError as exc:
        d.record(
            "daemon.reload_failed",
            "error",
            error=str(exc),
            config=str(d.config_file),
            action="keeping the running configuration",
        )
        if d.supervisor is not None:
            d.supervisor.reloaded()
        return False
    apply_plan(d, plan_reload(d.cfg, {c.name: c.cfg for c in d.contexts}, new))
    if d.supervisor is not None:
        d.supervisor.reloaded()
    return True


def apply_plan(d: DaemonCore, plan: ReloadPlan) -> None:
    """Swap the daemon's remotes and syncs as ``plan`` says, and record ``daemon.reloaded``."""
    new = plan.config
    remotes: dict[str, Remote] = {
        name: d.remotes[name] if name in plan.kept_remotes else d.build_remote(name, rc)
        for name, rc in new.remotes.items()
    }
    d.retired.extend(d.remotes[n] for n in plan.retired_remotes)
    d.cfg, d.remotes = new, remotes
    d.heartbeats.stall_timeout = new.daemon.stall_timeout
    for name in (*plan.removed, *plan.changed):
        d.drop_sync(name)
    for name in plan.give_up_leases:
        # another daemon of a fleet may pull it now
        d.guard("reload", partial(d.store.coord.give_up, pull.pull_lease(name)))
    new_syncs = {s.name: s for s in new.syncs}
    contexts = {c.name: c for c in d.contexts}
    failed: dict[str, str] = {}
    for name in (*plan.added, *plan.changed):
        try:
            contexts[name] = d.start_sync(new_syncs[name])
        except (OSError, SyncdError) as exc:
            # Checked folders can still fail to be watched (a kernel limit in
            # native mode): that sync waits for the next reload or restart.
            failed[name] = str(exc)
            d.record(
                "daemon.reload_failed",
                "error",
                error=f"syncs[{name}].folder: cannot watch it: {exc}",
                action=f"sync {name} is not running",
            )
    d.contexts = [contexts[s.name] for s in new.syncs if s.name not in failed]
    for ctx in d.contexts:
        d.register_pull(ctx)  # a new pull_interval or stall_timeout
    d.record(
        "daemon.reloaded",
        "info",
        added=plan.added,
        removed=plan.removed,
        changed=plan.changed,
        remotes_replaced=plan.remotes_replaced,
        restart_needed=plan.restart_needed or None,
    )
