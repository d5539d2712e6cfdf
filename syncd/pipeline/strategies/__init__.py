"""Upload strategies: how a packed package reaches the platform, behind one interface.

Contract:

* A :class:`Strategy` moves a package through the upload states:
  :meth:`~Strategy.upload` takes ``packed``/``uploading`` to ``uploaded``,
  :meth:`~Strategy.finish` takes ``uploaded``/``submitted``/``processing``
  on to ``done`` or ``failed``. Each returns the package when it moved on
  and may go further now, or None when it has to wait (or stopped). Errors
  (transient, permanent, cancelled) are raised to the driver,
  :func:`syncd.pipeline.upload.advance`.
* :func:`strategy_for` chooses the strategy once, from the remote's declared
  ``capabilities(remote).upload``: ``"archive"``
  (:mod:`~syncd.pipeline.strategies.archive`), ``"resumable"``
  (:mod:`~syncd.pipeline.strategies.resumable`), ``"files"``
  (:mod:`~syncd.pipeline.strategies.files`).
* Each strategy keeps its progress in its own typed record
  (:mod:`syncd.store.progress`) and changes the package only through
  :meth:`syncd.store.Store.package_step`.
"""

from __future__ import annotations

from typing import Protocol

from syncd.pipeline.context import SyncContext
from syncd.pipeline.strategies.archive import ArchiveStrategy
from syncd.pipeline.strategies.files import FilesStrategy
from syncd.pipeline.strategies.resumable import ResumableStrategy
from syncd.remotes.base import Remote, UploadStrategy, capabilities
from syncd.store import Package


class Strategy(Protocol):
    """How packages reach the platform (see module docstring)."""

    name: str

    def upload(self, ctx: SyncContext, pkg: Package) -> Package | None:
        """``packed``/``uploading`` → ``uploaded``."""
        ...

    def finish(self, ctx: SyncContext, pkg: Package) -> Package | None:
        """``uploaded``/``submitted``/``processing`` → ``done``/``failed``."""
        ...


STRATEGIES: dict[UploadStrategy, Strategy] = {
    "archive": ArchiveStrategy(),
    "resumable": ResumableStrategy(),
    "files": FilesStrategy(),
}


def strategy_for(remote: Remote) -> Strategy:
    """The strategy the remote's declared capabilities name."""
    return STRATEGIES[capabilities(remote).upload]
