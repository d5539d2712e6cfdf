"""One step of a package's life, as one write transaction: :class:`PackageStep`.

Contract of ``with store.package_step(package_id, expect=(…)) as step:``
(:meth:`syncd.store.Store.package_step`):

* opens one write transaction and reads the package afresh in it;
* raises :class:`PackageMoved` before the body runs when the package is gone
  or not in one of the ``expect``-ed states (every live state by default).
  Nothing is written then. Callers for whom that is normal (the package was
  failed, repacked or retried meanwhile) write
  ``with suppress(PackageMoved), store.package_step(…) as step:``;
* inside, ``step.pkg`` is the fresh row: set its fields, then end the step
  with one of the intent-named operations below. Everything commits together
  (the row, the file list, the events) or not at all; the events are logged
  after the commit. ``step.pkg`` stays usable after the block.

Operations: :meth:`~PackageStep.advance` (a transition of the state
machine), :meth:`~PackageStep.succeed` (the same, with the retry count
cleared), :meth:`~PackageStep.fail`, :meth:`~PackageStep.repack`,
:meth:`~PackageStep.retry` (same state, backoff), :meth:`~PackageStep.wait`,
:meth:`~PackageStep.record` / :meth:`~PackageStep.progress` (the strategy's
typed progress, :mod:`syncd.store.progress`), :meth:`~PackageStep.note` and
:meth:`~PackageStep.event` (events about the package that keep its state).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from sqlmodel import Session, col, delete

from syncd.errors import SyncdError
from syncd.store.models import Package, PackageFile
from syncd.store.progress import Progress

P = TypeVar("P", bound=Progress)


class PackageMoved(SyncdError):
    """The package is gone, or not in a state the step expects (another process moved it)."""


class StepTx(Protocol):
    """What a step needs of its transaction (:class:`syncd.store.Tx`)."""

    session: Session

    def event(self, name: str, **fields: Any) -> None: ...
    def note(self, name: str, pkg: Package, *, level: str = ..., **fields: Any) -> None: ...
    def transition(self, pkg: Package, to_state: str, **fields: Any) -> None: ...


class PackageStep:
    """The fresh row of one package inside a write transaction (see module docstring)."""

    def __init__(self, tx: StepTx, pkg: Package) -> None:
        self.tx = tx
        self.pkg = pkg

    @property
    def session(self) -> Session:
        return self.tx.session

    def advance(self, to_state: str, **fields: Any) -> None:
        """Move to ``to_state`` (an edge of :mod:`syncd.store.lifecycle`); event
        ``package.<to_state>`` with ``fields``."""
        self.tx.transition(self.pkg, to_state, **fields)

    def succeed(self, to_state: str, **fields: Any) -> None:
        """A step that worked: the attempts and last error are cleared, then :meth:`advance`."""
        self.pkg.attempts = 0
        self.pkg.last_error = None
        self.advance(to_state, **fields)

    def fail(self, reason: str, **fields: Any) -> None:
        """End in ``failed``, the reason kept in ``last_error`` and in the event."""
        self.pkg.last_error = reason
        self.advance("failed", reason=reason, **fields)

    def keep_files(self, files: Iterable[tuple[str, int, int]]) -> None:
        """Record file versions ``(rel_path, size, mtime_ns)`` as this package's (before
        :meth:`fail`: the versions it failed with are not detected again)."""
        rows = [
            PackageFile(
                package_id=self.pkg.id or 0,
                sync=self.pkg.sync,
                unit=self.pkg.unit,
                rel_path=rel_path,
                arcname=rel_path,
                item_key="",
                size=size,
                mtime_ns=mtime_ns,
            )
            for rel_path, size, mtime_ns in files
        ]
        self.session.add_all(rows)
        self.pkg.file_count = len(rows)
        self.pkg.total_bytes = sum(r.size for r in rows)

    def repack(self, reason: str) -> None:
        """The unit changed under the package: forget its file list and upload progress,
        back to ``detected`` (to be settled and packed again)."""
        self.session.exec(delete(PackageFile).where(col(PackageFile.package_id) == self.pkg.id))
        self.pkg.last_error = reason
        self.pkg.upload_ref = None
        self.pkg.archive_bytes = None
        self.advance("detected", reason=reason)

    def retry(self, reason: str, wait: float | Callable[[int], float]) -> float:
        """A transient failure: same state, one more attempt, next try after ``wait`` seconds
        (or ``wait(attempt)``); event ``package.retry``. Returns the wait."""
        pkg = self.pkg
        pkg.attempts += 1
        seconds = wait(pkg.attempts) if callable(wait) else wait
        pkg.next_attempt_at = time.time() + seconds
        pkg.last_error = reason
        self.session.add(pkg)
        self.note("package.retry", reason=reason, attempt=pkg.attempts, retry_in=round(seconds, 1))
        return seconds

    def wait(self, seconds: float) -> None:
        """Try this package again in ``seconds`` (polling), without counting an attempt."""
        self.pkg.next_attempt_at = time.time() + seconds
        self.session.add(self.pkg)

    def progress(self, kind: type[P]) -> P:
        """The upload progress recorded so far, read as ``kind``."""
        return kind.parse(self.pkg.upload_ref)

    def record(self, progress: Progress) -> None:
        """Store ``progress`` in ``packages.upload_ref`` (committed with the step)."""
        self.pkg.upload_ref = progress.dump()
        self.session.add(self.pkg)

    def note(self, name: str, *, level: str = "warning", **fields: Any) -> None:
        """An event about the package that keeps its state (from and to state both set)."""
        self.tx.note(name, self.pkg, level=level, **fields)

    def event(self, name: str, *, level: str = "info", **fields: Any) -> None:
        """An event about the package (sync, package id and unit filled in; no states)."""
        self.tx.event(
            name,
            level=level,
            sync=self.pkg.sync,
            package_id=self.pkg.id,
            unit=self.pkg.unit,
            **fields,
        )
