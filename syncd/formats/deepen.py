"""A package's files in Deepen's input formats: a sized, deterministic list of zip members.

Deepen's preprocessing reads only its own formats
(https://help.deepen.ai/documentation/3d-input-output/3d-upload-json-format,
https://help.deepen.ai/documentation/3d-input-output/data-input-format-3d-pcd-upload-advanced-users-only,
https://help.deepen.ai/documentation/api-reference/deepen-ai-tools-api-reference); a zip in
the Xtreme1 folder layout is none of them. Formats:

* ``json`` (3D, the default): one ``<frame>.json`` per point-cloud frame at
  the zip root, names zero-padded in frame order (``000001.json``, …; Deepen
  lists the frame as ``000001.pcd``), camera images under
  ``images/<camera folder>/<frame>.<ext>``. Points are written in world
  coordinates. A unit carries no LiDAR pose: the LiDAR frame of each frame is
  the world frame (device pose identity), and frame ``n`` (0-based) gets the
  timestamp ``n * 0.1`` s (a 10 Hz LiDAR); both are recorded in
  :attr:`DeepenArchive.derived`.
* ``default`` (Deepen's PCD format): ``config.json``, ``lidar_transforms.json``,
  ``view_matrices.json``, ``lidar/<frame>.pcd`` (copied) and
  ``images/camera_<k>/<frame>.pcd.<ext>``. ``lidar_timestamps.json`` and
  ``lidar_counts.txt`` are named by Deepen's page but their content is not
  documented publicly: they are left out (:data:`UNDOCUMENTED`).
* ``images`` (2D datasets): the jpg/png files under their archive names (other
  files are listed in :attr:`DeepenArchive.ignored`).

Contract:

* :func:`convert` plans the archive: members ``(name, size, source)`` in a
  fixed order, with every size computed before a byte is streamed (the JSON
  frames are measured in a first pass over the point clouds, a block at a
  time, so memory stays flat). :func:`open_zip` streams it; ``len()`` of the
  stream is the exact size. The same files give the same bytes (numbers
  have a fixed width, entries a fixed timestamp), so a resumed upload
  continues byte-identically.
* Pre-labels (``result/``) never go into the zip (Deepen documents no
  pre-label channel in its upload formats); they are listed in
  :attr:`DeepenArchive.prelabels_skipped`. Files that belong to no frame are
  counted in :attr:`DeepenArchive.ignored`.
* Camera images other than jpg/jpeg/png, and clouds this reader cannot decode,
  raise :class:`UnsupportedData` (a PermanentError: the package fails, naming the file).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from syncd.formats.deepen_frames import (
    FILE_NAMES,
    FRAME_SECONDS,
    IMAGE_EXTS,
    UNDOCUMENTED,
    DeepenArchive,
    Format,
    Member,
    UnsupportedData,
    copy_member,
    group_frames,
    open_zip,
)
from syncd.formats.deepen_json import json_members, world_points
from syncd.formats.deepen_pcd import default_members, view_matrix
from syncd.store import PackageFile

__all__ = [
    "FILE_NAMES",
    "UNDOCUMENTED",
    "DeepenArchive",
    "Format",
    "Member",
    "UnsupportedData",
    "convert",
    "open_zip",
    "view_matrix",
    "world_points",
]


def convert(folder: Path, files: Sequence[PackageFile], fmt: Format) -> DeepenArchive:
    """Plan the archive of ``files`` in ``fmt`` (see module docstring)."""
    if fmt == "images":
        return _images(folder, files)
    frames, skipped, ignored = group_frames(files)
    if not frames:
        raise UnsupportedData(
            "no point cloud (lidar_point_cloud_N/<name>.pcd) in the package: "
            "nothing Deepen can take as a 3D frame"
        )
    out = DeepenArchive(fmt, FILE_NAMES[fmt], [], prelabels_skipped=skipped, ignored=ignored)
    out.derived = {
        "pose": "the unit has no LiDAR pose: each frame's LiDAR frame is the world frame",
        "timestamps": f"the unit has no timestamps: frame n is at n x {FRAME_SECONDS} s",
    }
    for fr in frames:
        out.frames[f"{fr.stem}.pcd"] = fr.source
    if fmt == "json":
        json_members(folder, frames, out)
    else:
        default_members(folder, frames, out)
        out.derived["undocumented"] = (
            f"{' and '.join(UNDOCUMENTED)} are left out: Deepen's public docs do not describe them"
        )
    return out


def _images(folder: Path, files: Sequence[PackageFile]) -> DeepenArchive:
    out = DeepenArchive("images", FILE_NAMES["images"], [])
    for f in sorted(files, key=lambda f: f.arcname):
        parts = PurePosixPath(f.rel_path).parts
        if "result" in (p.lower() for p in parts[:-1]):
            out.prelabels_skipped.append(f.rel_path)
        elif PurePosixPath(f.rel_path).suffix.lower() in IMAGE_EXTS:
            # The path inside the zip is Deepen's file id: keep syncd's archive names.
            out.members.append(copy_member(folder, f, f.arcname))
        else:
            out.ignored.append(f.rel_path)
    if not out.members:
        raise UnsupportedData("no jpg or png image in the package")
    return out
