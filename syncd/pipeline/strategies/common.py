"""What the upload strategies share: the frozen file list, the repack, a guarded byte stream."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress

from sqlmodel import col, select

from syncd.errors import Cancelled, LocalDataError
from syncd.pipeline.context import SyncContext
from syncd.store import Package, PackageFile, PackageMoved


def package_files(ctx: SyncContext, pkg: Package) -> list[PackageFile]:
    """The package's frozen file list, in packing order."""
    with ctx.store.read() as s:
        return list(
            s.exec(
                select(PackageFile)
                .where(PackageFile.package_id == pkg.id)
                .order_by(col(PackageFile.id))
            ).all()
        )


def repack(ctx: SyncContext, pkg: Package, reason: str) -> None:
    """The unit changed under a packed package: forget its file list, settle again.

    Nothing to do when the package ended meanwhile.
    """
    with suppress(PackageMoved), ctx.store.package_step(pkg.id) as step:
        step.repack(reason)


def guarded(
    ctx: SyncContext, pkg: Package, chunks: Callable[[], Iterable[bytes]]
) -> Iterator[bytes]:
    """The bytes of ``chunks()`` as sent: a heartbeat per chunk, the drain deadline checked
    between chunks (:class:`~syncd.errors.Cancelled`), a read error (opening the files
    included) as LocalDataError. Nothing is read before the first chunk is asked for."""
    try:
        for chunk in chunks():
            ctx.progress()
            if ctx.cancel.is_set():
                # What the platform holds (or nothing) is the checkpoint.
                raise Cancelled(f"{pkg.unit}: upload stopped by the drain deadline")
            yield chunk
    except OSError as exc:
        raise LocalDataError(
            f"{pkg.unit}: reading {exc.filename or 'a file'} failed: {exc.strerror}"
        ) from exc
