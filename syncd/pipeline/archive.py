"""The archive of one package, streamed: files are read once, straight into the upload.

Contract:

* :func:`open_archive` returns a zip stream (stored, zip64 when needed) of
  the package's files under their arcnames; ``len()`` of it is the exact
  byte size, known before a byte is read, so the upload can send
  ``Content-Length``. Result JSON files marked ``bind_classes`` are rewritten
  with the dataset's class ids (the platform imports an object whose
  ``classId`` is not one of the dataset's as unclassified).
* :func:`verify_files` raises LocalDataError when a file vanished or its size
  or mtime differs from what was packed; the upload calls it before and after
  streaming, so an archive is never submitted with content that changed.
* The archive bytes depend only on the files, arcnames and class ids; the
  size does not depend on timestamps, so packing and uploading agree.
* :func:`open_archive_at` yields the same bytes from any offset, so a
  resumable upload continues where the platform's copy ends; it is
  byte-identical to the tail of :func:`open_archive` (tested at every
  boundary). Files before the offset are still read (the central directory
  at the end needs their CRC-32), but not sent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import zipstream

from syncd.errors import LocalDataError
from syncd.store import PackageFile
from syncd.streams import skip_bytes

# Point-cloud files are several MB: read them in large blocks, not zipstream's 16 KiB.
zipstream.ng.READ_BUFFER = 1024 * 1024


class _StableInfo(zipstream.ng.ZipStreamInfo):  # type: ignore[misc]
    """Entries added from bytes (bound result files) get a fixed timestamp, not "now".

    zipstream-ng stamps such entries with the current time, so two streams of
    the same package differed in those header bytes; a resumed upload must
    continue byte-identically. Entries from paths keep the file's mtime.
    """

    def __init__(self, filename: str, date_time: tuple[int, ...] | None = None) -> None:
        super().__init__(filename, date_time or (1980, 1, 1, 0, 0, 0))


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


def file_path(folder: Path, f: PackageFile) -> Path:
    """Where a packaged file lives: ``folder/unit/rel_path``, or ``folder/unit`` for a loose file."""
    loose = folder / f.unit
    return loose if f.rel_path == f.unit and loose.is_file() else loose / f.rel_path


def verify_files(folder: Path, files: Sequence[PackageFile]) -> None:
    """Raise LocalDataError naming the first file that vanished or changed since packing."""
    for f in files:
        path = file_path(folder, f)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise LocalDataError(f"{f.unit}/{f.rel_path} vanished after it was packed") from None
        except OSError as exc:
            raise LocalDataError(f"{f.unit}/{f.rel_path} cannot be read: {exc.strerror}") from exc
        if st.st_size != f.size or st.st_mtime_ns != f.mtime_ns:
            raise LocalDataError(
                f"{f.unit}/{f.rel_path} changed after it was packed (size {f.size} → {st.st_size})"
            )


def load_result(path: Path) -> Any:
    """Parse a result JSON file; LocalDataError with the file name if it is not JSON."""
    try:
        return json.loads(path.read_bytes())
    except OSError as exc:
        raise LocalDataError(f"{path.name} cannot be read: {exc.strerror}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise LocalDataError(f"{path.parent.name}/{path.name} is not valid JSON: {exc}") from exc


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
    zs = zipstream.ZipStream(compress_type=zipstream.ZIP_STORED, sized=True)
    for f in files:
        path = file_path(folder, f)
        if f.bind_classes and class_ids:
            zs.add(bind_result(load_result(path), class_ids), f.arcname)
        else:
            try:
                zs.add_path(str(path), f.arcname)
            except FileNotFoundError:
                raise LocalDataError(
                    f"{f.unit}/{f.rel_path} vanished after it was packed"
                ) from None
    return zs


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
