"""``syncd retry``: send failed packages again, or wake packages that wait for a retry.

Contract of :func:`retry_package`:

* a ``failed`` package goes back to ``detected`` (event
  ``package.retry_requested``, the reason it failed kept in the event): its
  file list, archive and upload state are forgotten, so the daemon settles,
  packs and uploads the unit's files as they are now, with a fresh attempt
  count. Refused while another package of the same unit is still open
  (``detected``/``settled``/``packing``): that one takes the new files.
* a package still on its way whose step waits for a backoff has its wait
  cleared (``next_attempt_at``) so the next cycle tries at once.
* a ``done`` package, or an unknown id, is an error naming it.

It writes through :class:`~syncd.store.Store` transactions, so it is safe
while the daemon runs (SQLite serialises the writers).
"""

from __future__ import annotations

from sqlmodel import col, delete, select

from syncd.errors import SyncdError
from syncd.pipeline.detect import OPEN_STATES
from syncd.store import Package, PackageFile, Store


class RetryRefused(SyncdError):
    """The package cannot be retried (done, unknown, or its unit has another open package)."""


def retry_package(store: Store, package_id: int) -> str:
    """Retry one package (see module docstring); returns a one-line summary."""
    with store.tx() as tx:
        pkg = tx.session.get(Package, package_id)
        if pkg is None:
            raise RetryRefused(f"no package {package_id}")
        if pkg.state == "done":
            raise RetryRefused(f"package {package_id} ({pkg.sync}/{pkg.unit}) is done")
        if pkg.state != "failed":
            pkg.next_attempt_at = 0.0
            tx.session.add(pkg)
            tx.note("package.retry_requested", pkg, level="info", waited_attempts=pkg.attempts)
            return f"package {package_id} ({pkg.sync}/{pkg.unit}): {pkg.state}, tried again now"
        other = tx.session.exec(
            select(Package).where(
                Package.sync == pkg.sync,
                Package.unit == pkg.unit,
                col(Package.state).in_(OPEN_STATES),
                Package.id != pkg.id,
            )
        ).first()
        if other is not None:
            raise RetryRefused(
                f"package {package_id} ({pkg.sync}/{pkg.unit}): package {other.id} of the same "
                f"unit is {other.state} and will take its files; nothing to retry"
            )
        reason = pkg.last_error
        tx.session.exec(delete(PackageFile).where(col(PackageFile.package_id) == pkg.id))
        pkg.attempts, pkg.next_attempt_at = 0, 0.0
        pkg.last_error = pkg.platform_errors = None
        pkg.upload_ref = pkg.serial = pkg.submit_started_at = None
        pkg.archive_name = pkg.archive_bytes = None
        pkg.progress = pkg.progress_at = None
        tx.reopen(pkg, failed_because=reason)
        return f"package {package_id} ({pkg.sync}/{pkg.unit}): failed → detected, sent again"


def failed_packages(store: Store, sync: str | None = None) -> list[int]:
    """Ids of every failed package (of ``sync``), oldest first."""
    with store.read() as s:
        q = select(Package.id).where(Package.state == "failed")
        if sync:
            q = q.where(Package.sync == sync)
        return [int(i) for i in s.exec(q.order_by(col(Package.id))).all() if i is not None]
