"""What every stage needs for one sync: its config, the store and its remote."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement
from sqlmodel import select

from syncd.config import SyncConfig
from syncd.remotes.base import Remote
from syncd.store import Dataset, Store, utcnow
from syncd.store.coordination import owned_packages


def _nothing() -> None:
    return None


@dataclass
class SyncContext:
    """One ``[[syncs]]`` entry, bound to its store and remote.

    ``stop`` is set when the daemon drains: long loops check it between steps.
    ``cancel`` is set when the drain deadline passes: a transfer in flight
    checks it between chunks and raises :class:`~syncd.errors.Cancelled`.
    ``progress`` is called by long loops (chunks of a transfer, pages of a
    pull): the daemon's heartbeat, so a slow step that moves is not "stalled".
    """

    cfg: SyncConfig
    remote: Remote
    store: Store
    stop: threading.Event = field(default_factory=threading.Event)
    cancel: threading.Event = field(default_factory=threading.Event)
    poll_interval: float = 3.0
    transfers: int = 8  # the remote's: files a per-file push stores at once
    progress: Callable[[], None] = _nothing
    _dataset_id: str | None = None
    # pack (the push loop), pulls (the scheduler) and upload workers share the context
    _dataset_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.cfg.name

    def owned(self) -> ColumnElement[bool]:
        """Which packages this daemon works (:func:`~syncd.store.coordination.owned_packages`):
        two machines may feed the same sync and dataset, each with its own units."""
        return owned_packages(self.store.coord)

    def dataset_id(self) -> str:
        """The remote dataset id, looked up or created once, and recorded in ``datasets``.

        One daemon of a fleet at a time looks it up or creates it, so daemons
        starting together create a new dataset once.
        """
        if self._dataset_id is not None:
            return self._dataset_id
        with (
            self._dataset_lock,
            self.store.coord.exclusive(f"dataset:{self.remote.name}:{self.cfg.dataset}"),
        ):
            return self._resolve_dataset()

    def _resolve_dataset(self) -> str:
        if self._dataset_id is not None:
            return self._dataset_id
        ds, created = self.remote.ensure_dataset(self.cfg.dataset, self.cfg.dataset_type)
        if ds.type and ds.type != self.cfg.dataset_type:
            from syncd.errors import ConfigError

            raise ConfigError(
                f"syncs[{self.name}].dataset_type: {self.cfg.dataset_type!r} but dataset "
                f"{ds.name!r} on the platform is {ds.type!r}"
            )
        with self.store.tx() as tx:
            row = tx.session.exec(
                select(Dataset).where(
                    Dataset.remote == self.remote.name, Dataset.remote_id == ds.id
                )
            ).first()
            if row is None:
                row = Dataset(remote=self.remote.name, remote_id=ds.id, name=ds.name, updated_at="")
            row.name, row.type, row.updated_at = ds.name, ds.type, utcnow()
            tx.session.add(row)
            tx.event(
                "dataset.created" if created else "dataset.resolved",
                sync=self.name,
                dataset=ds.name,
                dataset_id=ds.id,
                dataset_type=ds.type,
            )
        self._dataset_id = ds.id
        return ds.id
