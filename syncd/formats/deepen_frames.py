"""Units in the Xtreme1 layout as Deepen frames: grouping, cameras, zip members.

Shared by the two 3D writers (:mod:`syncd.formats.deepen_json`,
:mod:`syncd.formats.deepen_pcd`) and :mod:`syncd.formats.deepen`, which
documents the formats and their contract.

Contract:

* :func:`group_frames` returns the frames of a package in order (scene
  folder, then natural order of the data name), named ``000001``, … (at least
  six digits), with the pre-label files and the files that belong to no
  frame listed apart.
* :func:`camera_entries` maps a frame's cameras to their ``camera_config``
  entries as Xtreme1 does: entry i is the i-th camera folder of the scene folder.
* :class:`Member` sources are fresh iterators each call, so the archive can
  be streamed again from the start (a resumed upload).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

import zipstream

from syncd.errors import LocalDataError, PermanentError
from syncd.safeopen import open_packaged, read_packaged, stream_packaged
from syncd.store import PackageFile

Format = Literal["json", "default", "images"]
# process_uploaded_data's file_name per format, as Deepen's quickstart gives them
FILE_NAMES: dict[str, str] = {
    "json": "json_data.zip",
    "default": "3d_data.zip",
    "images": "data.zip",
}
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
FRAME_SECONDS = 0.1
UNDOCUMENTED = ("lidar_timestamps.json", "lidar_counts.txt")
_KIND = re.compile(r"^(lidar_point_cloud_(\d+)|camera_image_(\d+)|camera_config|result|image_\d+)$")
_READ = 1024 * 1024


class UnsupportedData(PermanentError):
    """A file Deepen's formats cannot carry, or that cannot be converted (the message names it)."""


@dataclass(frozen=True)
class Member:
    """One zip entry: its name, exact size, and a fresh iterator of its bytes."""

    name: str
    size: int
    source: Callable[[], Iterator[bytes]]


@dataclass
class Frame:
    stem: str  # the frame's name in the zip ("000001"); Deepen's file id is stem + ".pcd"
    source: str  # "<scene folder>/<data name>" in the unit
    cloud: PackageFile
    cameras: dict[int, PackageFile] = field(default_factory=dict)
    config: PackageFile | None = None
    # Camera folders of the scene folder, ascending: camera_config entry i is the i-th.
    scene_cameras: list[int] = field(default_factory=list)


@dataclass
class DeepenArchive:
    """What :func:`convert` planned (see module docstring)."""

    format: Format
    file_name: str  # what process_uploaded_data is called with when the upload URL names none
    members: list[Member]
    frames: dict[str, str] = field(default_factory=dict)  # Deepen file id → unit data
    derived: dict[str, str] = field(default_factory=dict)
    prelabels_skipped: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(open_zip(self))


def open_zip(archive: DeepenArchive) -> zipstream.ZipStream:
    """The sized, stored zip stream of the planned members."""
    zs = zipstream.ZipStream(compress_type=zipstream.ZIP_STORED, sized=True)
    for m in archive.members:
        zs.add(m.source(), m.name, size=m.size)
    return zs


# --- grouping ---------------------------------------------------------------------------


def _natural(text: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", text) if t)


def group_frames(files: Sequence[PackageFile]) -> tuple[list[Frame], list[str], list[str]]:
    """Frames in order (scene folder, then natural order of the data name)."""
    clouds: dict[tuple[str, str], tuple[int, PackageFile]] = {}
    side: dict[tuple[str, str], list[tuple[str, PackageFile]]] = {}
    skipped: list[str] = []
    ignored: list[str] = []
    for f in files:
        p = PurePosixPath(f.rel_path)
        parts = p.parts
        if len(parts) >= 3 and parts[-3].lower() == "result":  # result/<sub>/<name>.json
            skipped.append(f.rel_path)
            continue
        m = _KIND.match(parts[-2].lower()) if len(parts) >= 2 else None
        if m is None:
            ignored.append(f.rel_path)
            continue
        kind = parts[-2].lower()
        if kind == "result":
            skipped.append(f.rel_path)
            continue
        key = ("/".join(parts[:-2]), p.stem)
        if m.group(2) is not None:
            if p.suffix.lower() != ".pcd":
                ignored.append(f.rel_path)
                continue
            lidar = int(m.group(2))
            # One cloud per frame: the lowest-numbered LiDAR; the others are listed as ignored.
            old = clouds.get(key)
            if old is None or lidar < old[0]:
                if old is not None:
                    ignored.append(old[1].rel_path)
                clouds[key] = (lidar, f)
            else:
                ignored.append(f.rel_path)
            continue
        side.setdefault(key, []).append((kind, f))
    scene_cameras: dict[str, set[int]] = {}
    for (folder, _), entries in side.items():
        for kind, _f in entries:
            if kind.startswith("camera_image_"):
                scene_cameras.setdefault(folder, set()).add(int(kind.rsplit("_", 1)[1]))
    frames: list[Frame] = []
    order = sorted(clouds, key=lambda k: (_natural(k[0]), _natural(k[1])))
    width = max(6, len(str(len(order))))
    for n, key in enumerate(order, start=1):
        folder, name = key
        fr = Frame(f"{n:0{width}d}", f"{folder}/{name}" if folder else name, clouds[key][1])
        fr.scene_cameras = sorted(scene_cameras.get(folder, ()))
        for kind, f in side.pop(key, []):
            if kind.startswith("camera_image_"):
                fr.cameras[int(kind.rsplit("_", 1)[1])] = f
            elif kind == "camera_config":
                fr.config = f
            else:
                ignored.append(f.rel_path)
        frames.append(fr)
    ignored += [f.rel_path for rest in side.values() for _, f in rest]
    return frames, sorted(skipped), sorted(ignored)


def image_ext(f: PackageFile) -> str:
    ext = PurePosixPath(f.rel_path).suffix.lower()
    if ext not in IMAGE_EXTS:
        raise UnsupportedData(
            f"{f.unit}/{f.rel_path}: Deepen takes jpg and png images only; convert it first"
        )
    return ext


class Packaged:
    """A packaged file as a point-cloud :class:`~syncd.formats.pcd.Source`: every open goes
    through :func:`syncd.safeopen.open_packaged` (no symlink followed out of the watched
    folder, a regular file, the very file that was packed)."""

    def __init__(self, folder: Path, f: PackageFile) -> None:
        self.folder, self.file = folder, f
        self.name = f"{f.unit}/{f.rel_path}"

    def open(self, mode: str = "rb") -> IO[bytes]:
        assert mode == "rb"
        fd, _ = open_packaged(self.folder, self.file)
        return os.fdopen(fd, "rb")


def copy_member(folder: Path, f: PackageFile, name: str) -> Member:
    return Member(name, f.size, lambda: stream_packaged(folder, f, _READ))


def bytes_member(name: str, data: bytes) -> Member:
    return Member(name, len(data), lambda: iter((data,)))


# --- cameras ------------------------------------------------------------------------------


def camera_entries(folder: Path, fr: Frame) -> dict[int, dict[str, Any]]:
    """camera index → its ``camera_config`` entry (entry i = i-th camera folder, ascending)."""
    if not fr.cameras:
        return {}
    if fr.config is None:
        raise UnsupportedData(
            f"{fr.source}: camera images without camera_config/{fr.cloud.rel_path}"
        )
    try:
        doc = json.loads(read_packaged(folder, fr.config))
    except OSError as exc:
        raise LocalDataError(f"{fr.config.rel_path} cannot be read: {exc.strerror}") from exc
    except ValueError as exc:
        raise UnsupportedData(f"{fr.config.rel_path} is not valid JSON: {exc}") from exc
    # As Xtreme1 reads it: entry i belongs to the i-th camera folder of the scene folder,
    # whether or not this frame has an image in every one of them.
    if not isinstance(doc, list) or len(doc) < len(fr.scene_cameras):
        raise UnsupportedData(
            f"{fr.config.rel_path}: needs one entry per camera folder ({len(fr.scene_cameras)})"
        )
    return {
        k: doc[i]
        for i, k in enumerate(fr.scene_cameras)
        if k in fr.cameras and isinstance(doc[i], dict)
    }
