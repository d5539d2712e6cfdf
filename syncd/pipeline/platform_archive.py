"""Which archive a package becomes: syncd's own zip, or a platform's input format.

The pipeline's two archive call sites (sizing at pack time, streaming at
upload time) go through here, so a platform whose preprocessing wants another
layout gets it without the strategies knowing about formats.

Contract:

* :func:`platform_format` says which converter applies: Deepen's ``images``
  for IMAGE syncs, the remote's ``dataset_format`` (``json`` | ``default``)
  for LiDAR syncs; ``None`` for every other platform (the plain archive).
* :func:`archive_size` is the exact size of the archive :func:`archive_at`
  streams from offset 0; both depend only on the files, so a resume continues
  byte-identically; given ``expected`` (the size the upload session was
  opened with), :func:`archive_at` raises LocalDataError when the converted
  archive no longer has it. ``record`` (a :meth:`Tx.event`-like callable) receives
  the ``package.converted`` event (format, frames, what was derived) and,
  when pre-labels were left out, ``package.prelabels_skipped``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncd.errors import LocalDataError
from syncd.pipeline import archive
from syncd.pipeline.context import SyncContext
from syncd.pipeline.readahead import read_ahead
from syncd.remotes.base import capabilities
from syncd.store import PackageFile
from syncd.streams import skip_bytes

if TYPE_CHECKING:
    from syncd.formats import deepen

Record = Callable[..., None]


def _deepen() -> Any:
    """The Deepen converter, imported on first use: numpy stays out of a daemon that
    never converts (every platform but Deepen)."""
    from syncd.formats import deepen

    return deepen


def platform_format(ctx: SyncContext) -> deepen.Format | None:
    remote = ctx.remote
    if capabilities(remote).input_format != "deepen":
        return None
    if ctx.cfg.dataset_type == "IMAGE":
        return "images"
    fmt = getattr(getattr(remote, "cfg", None), "dataset_format", "json")
    return "default" if fmt == "default" else "json"


def archive_size(
    ctx: SyncContext,
    folder: Path,
    files: Sequence[PackageFile],
    class_ids: dict[str, str],
    record: Record | None = None,
) -> int:
    fmt = platform_format(ctx)
    if fmt is None:
        return archive.archive_size(folder, files, class_ids)
    planned: deepen.DeepenArchive = _deepen().convert(folder, files, fmt)
    if record is not None:
        _record(planned, record)
    return planned.size


def _record(planned: deepen.DeepenArchive, record: Record) -> None:
    fields: dict[str, Any] = {
        "format": planned.format,
        "file_name": planned.file_name,
        "members": len(planned.members),
    }
    if planned.frames:
        fields["frames"] = planned.frames
        fields["derived"] = planned.derived
    if planned.ignored:
        fields["ignored"] = planned.ignored[:20]
        fields["ignored_count"] = len(planned.ignored)
    record("package.converted", **fields)
    if planned.prelabels_skipped:
        record(
            "package.prelabels_skipped",
            level="warning",
            count=len(planned.prelabels_skipped),
            files=planned.prelabels_skipped[:20],
            reason=f"{planned.format}: Deepen's upload formats carry no pre-labels",
        )


def archive_at(
    ctx: SyncContext,
    folder: Path,
    files: Sequence[PackageFile],
    class_ids: dict[str, str],
    offset: int,
    expected: int | None = None,
) -> Iterator[bytes]:
    fmt = platform_format(ctx)
    if fmt is None:
        return archive.open_archive_at(folder, files, class_ids, offset)
    converter = _deepen()
    zs = converter.open_zip(converter.convert(folder, files, fmt))
    if expected is not None and len(zs) != expected:
        # Same files, other bytes (a syncd upgrade changed the conversion): the session
        # was opened for the old size, so the package is packed again.
        raise LocalDataError(
            f"the converted archive is {len(zs)} bytes, {expected} were announced: packing again"
        )
    if not 0 <= offset <= len(zs):
        raise ValueError(f"offset {offset} is outside the archive (0..{len(zs)})")
    # Converting is CPU work (numpy releases the GIL): done in a thread a few MiB ahead of
    # the socket, conversion and sending overlap instead of adding up.
    return read_ahead(skip_bytes(zs, offset), depth=8)
