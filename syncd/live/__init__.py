"""``syncd check --live``: every wire assumption of a remote checked against the platform.

:func:`run` builds each selected remote, probes it read-only
(:mod:`syncd.live.probe`) and, with ``write``, pushes a tiny unit through
a scratch dataset (:mod:`syncd.live.scratch`); the rows
(:mod:`syncd.live.rows`) say, per assumption, what syncd expects, what the
platform answered and ✔/✘. The check passes only when no row is ✘.
"""

from __future__ import annotations

from syncd.config import Config
from syncd.errors import ConfigError
from syncd.live.probe import Steps, probe
from syncd.live.rows import Row
from syncd.live.scratch import dataset_type, write_check
from syncd.remotes import build_remote


def run(cfg: Config, *, remote: str | None = None, write: bool = False) -> list[Row]:
    """The rows for every remote of ``cfg`` (or only ``remote``)."""
    if remote is not None and remote not in cfg.remotes:
        known = ", ".join(sorted(cfg.remotes)) or "none"
        raise ConfigError(f"--remote: no remote named {remote!r} (configured: {known})")
    rows: list[Row] = []
    for name, rc in cfg.remotes.items():
        if remote is not None and name != remote:
            continue
        steps = Steps(name)  # an endpoint shown once per remote (or again when it fails)
        syncs = [s for s in cfg.syncs if s.remote == name]
        r = build_remote(name, rc, max_retries=1)
        try:
            reached = probe(r, syncs, steps)
        finally:
            r.close()
        if write and reached:
            write_check(name, rc, steps, kind=dataset_type(rc, syncs))
        rows += steps.rows
    return rows
