"""The archive of one package, streamed: files are read once, straight into the upload.

Contract:

* :func:`open_archive` returns a zip stream (stored, zip64 when needed) of
  the package's files under their arcnames; ``len()`` of it is the exact
  byte size, known before a byte is read, so the upload can send
  ``Content-Length``. Result JSON files marked ``bind_classes`` are rewritten
  with the dataset's class ids (the platform imports an object whose
  ``classId`` is not one of the dataset's as unclassified).
* :func:`verify_files` raises LocalDataError when a file vanished, its size,
  mtime or identity differs from what was packed, or it is no longer a
  regular file inside the watched folder; the upload calls it before and
  after streaming, so an archive is never submitted with content that changed.
* Every file is read through :mod:`syncd.safeopen` (no symlink out
  of the watched folder, no FIFO, checked on the open descriptor), never
  opened again by path after the checks.
* The archive bytes depend only on the files' contents, arcnames and class
  ids (entries carry a fixed timestamp and mode), so packing and uploading
  agree and a resumed upload continues byte-identically.
* :func:`open_archive_at` yields the same bytes from any offset, so a
  resumable upload continues where the platform's copy ends; it is
  byte-identical to the tail of :func:`open_archive` (tested at every
  boundary). Files before the offset are still read (the central directory
  at the end needs their CRC-32), but not sent.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import zipstream

from syncd import safeopen
from syncd.errors import LocalDataError
from syncd.store import PackageFile
from syncd.streams import skip_bytes

# Point-cloud files are several MB: read them in large blocks, not zipstream's 16 KiB.
zipstream.ng.READ_BUFFER = 1024 * 1024


# The timestamp for the entry zipstream is about to create (see _Stream).
_ENTRY = threading.local()


class _StableInfo(zipstream.ng.ZipStreamInfo):  # type: ignore[misc]
    """Entries added from bytes (bound result files) get a fixed timestamp, not "now".

    zipstream-ng stamps such entries with the current time, so two streams of
    the same package differed in those header bytes; a resumed upload must
    continue byte-identically. Entries of files keep the mtime they were
    packed with (handed over by :class:`_Stream`).
    """

    def __init__(self, filename: str, date_time: tuple[int, ...] | None = None) -> None:
        pending = getattr(_ENTRY, "date_time", None)
        _ENTRY.date_time = None
        super().__init__(filename, date_time or pending or (1980, 1, 1, 0, 0, 0))


class _Stream(zipstream.ZipStream):  # type: ignore[misc]
    """A ZipStream whose file entries carry the packed mtime, as ``add_path`` did.

    Files are added as iterables (read through safeopen), which zipstream
    would stamp like bytes; the entry's info object is created when its
    generator starts, in this thread, so the timestamp travels in a
    thread-local set right before.
    """

    def _gen_file_entry(self, **kwargs: Any) -> Iterator[bytes]:
        item = kwargs.get("iterable")
        _ENTRY.date_time = item.date_time if isinstance(item, _LazyFile) else None
        yield from super()._gen_file_entry(**kwargs)


zipstream.ng.ZipStreamInfo = _StableInfo

TOOL_TYPES = {
    "3D_BOX": "CUBOID",
    "2D_BOX": "BOUNDING_BOX",
    "2D_RECT": "BOUNDING_BOX",
    "BOUNDING_BOX": "BOUNDING_BOX",
    "POLYGON": "POLYGON",
    "POLYLINE": "POLYLINE",
    "3D_SEGMENT_POINTS": "SEGMENTATION",
}


def verify_files(folder: Path, files: Sequence[PackageFile]) -> None:
    """Raise LocalDataError naming the first file that vanished, changed or is no longer
    a regular file inside the watched folder since packing (:mod:`syncd.safeopen`)."""
    safeopen.verify(folder, files)


def load_result(path: Path) -> Any:
    """Parse a result JSON file; LocalDataError with the file name if it is not JSON."""
    name = f"{path.parent.name}/{path.name}"
    try:
        # never follow a last-component link, never block on a FIFO (the upload
        # reads the file again through safeopen; this read only finds class names)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise LocalDataError(f"{path.name} cannot be read: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LocalDataError(f"{name} is not a regular file")
        try:
            data = fh.read()
        except OSError as exc:
            raise LocalDataError(f"{path.name} cannot be read: {exc.strerror}") from exc
    return parse_result(data, name)


def parse_result(data: bytes, name: str) -> Any:
    """Parse the bytes of a result JSON file; LocalDataError naming it if they are not JSON."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise LocalDataError(f"{name} is not valid JSON: {exc}") from exc


def _objects(doc: Any) -> Iterator[dict[str, Any]]:
    # The platform takes {"objects": [...]} or a list of such (docs/platforms/xtreme1.md).
    blocks = doc if isinstance(doc, list) else [doc]
    for block in blocks:
        if isinstance(block, dict):
            for obj in block.get("objects") or []:
                if isinstance(obj, dict):
                    yield obj


def result_classes(doc: Any) -> dict[str, str]:
    """``className → tool type`` for every object of a result document that names a class."""
    out: dict[str, str] = {}
    for obj in _objects(doc):
        name = obj.get("className")
        if isinstance(name, str) and name:
            out.setdefault(name, TOOL_TYPES.get(str(obj.get("type")), "CUBOID"))
    return out


def bind_result(doc: Any, class_ids: dict[str, str]) -> bytes:
    """The result document with ``classId`` set from ``className``, as compact JSON bytes."""
    for obj in _objects(doc):
        name = obj.get("className")
        if isinstance(name, str) and name in class_ids:
            obj["classId"] = int(class_ids[name])
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def open_archive(
    folder: Path, files: Sequence[PackageFile], class_ids: dict[str, str]
) -> zipstream.ZipStream:
    """A sized, stored zip stream of ``files`` (see module docstring)."""
    zs = _Stream(compress_type=zipstream.ZIP_STORED, sized=True)
    for f in files:
        if f.bind_classes and class_ids:
            doc = parse_result(safeopen.read_packaged(folder, f), f"{f.unit}/{f.rel_path}")
            zs.add(bind_result(doc, class_ids), f.arcname)
        else:
            # Opened (safely) only when the stream reaches it: one descriptor at a time.
            zs.add(_LazyFile(folder, f), f.arcname, size=f.size)
    return zs


class _LazyFile:
    """A packaged file's bytes as an iterable; each iteration opens it anew (safeopen)."""

    def __init__(self, folder: Path, f: PackageFile) -> None:
        self.folder, self.f = folder, f
        self.date_time = time.localtime(f.mtime_ns // 1_000_000_000)[0:6]

    def __iter__(self) -> Iterator[bytes]:
        return safeopen.stream_packaged(self.folder, self.f, zipstream.ng.READ_BUFFER)


def archive_size(folder: Path, files: Sequence[PackageFile], class_ids: dict[str, str]) -> int:
    """The exact size in bytes of the archive :func:`open_archive` would stream."""
    return len(open_archive(folder, files, class_ids))


def open_archive_at(
    folder: Path, files: Sequence[PackageFile], class_ids: dict[str, str], offset: int
) -> Iterator[bytes]:
    """The archive of :func:`open_archive` from byte ``offset`` to its end (see module docstring)."""
    zs = open_archive(folder, files, class_ids)
    if not 0 <= offset <= len(zs):
        raise ValueError(f"offset {offset} is outside the archive (0..{len(zs)})")
    return skip_bytes(zs, offset)
