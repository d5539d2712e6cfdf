"""Deepen's 3D JSON format: one frame file per point cloud, points in world coordinates.

See :mod:`syncd.formats.deepen` for the format and the contract; this module
writes the frames: the metadata (timestamp, device pose, cameras with
intrinsics and camera→world pose) through ``json.dumps``, the points as
fixed-width numbers (:mod:`syncd.formats.numbers`) a block at a time, so the
size of each frame is known from a first pass that only counts points.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from syncd.errors import LocalDataError
from syncd.formats import geometry, pcd
from syncd.formats.deepen_frames import (
    FRAME_SECONDS,
    DeepenArchive,
    Frame,
    Member,
    Packaged,
    UnsupportedData,
    camera_entries,
    copy_member,
    image_ext,
)
from syncd.formats.numbers import LIMIT, WIDTH, format_sci

_READ = 1024 * 1024


# --- JSON format --------------------------------------------------------------------------

_IDENTITY = np.eye(4)


def _frame_meta(folder: Path, fr: Frame, index: int) -> dict[str, Any]:
    pose = _IDENTITY  # no pose in the unit (see module docstring)
    ts = round(index * FRAME_SECONDS, 6)
    images = []
    entries = camera_entries(folder, fr)
    for k in sorted(fr.cameras):
        f = fr.cameras[k]
        if k not in entries:
            raise UnsupportedData(
                f"{fr.config and fr.config.rel_path}: entry for camera {k} is not an object"
            )
        try:
            ext_m = geometry.extrinsic(entries[k])
            fx, fy, cx, cy = geometry.intrinsics(entries[k])
        except geometry.BadCameraConfig as exc:
            raise UnsupportedData(f"{fr.config and fr.config.rel_path} camera {k}: {exc}") from exc
        c = geometry.camera_pose(pose, ext_m)
        qx, qy, qz, qw = geometry.quaternion(c)
        images.append(
            {
                "image_url": f"images/camera_image_{k}/{fr.stem}{image_ext(f)}",
                "timestamp": ts,
                "fx": fx,
                "fy": fy,
                "cx": cx,
                "cy": cy,
                "position": {a: geometry.clean(c[i, 3]) for i, a in enumerate("xyz")},
                "heading": {
                    "x": geometry.clean(qx),
                    "y": geometry.clean(qy),
                    "z": geometry.clean(qz),
                    "w": geometry.clean(qw),
                },
                "camera_model": "pinhole",  # Xtreme1 has no distortion: all coefficients 0
                **dict.fromkeys(("k1", "k2", "p1", "p2", "k3", "k4"), 0.0),
            }
        )
    qx, qy, qz, qw = geometry.quaternion(pose)
    return {
        "timestamp": ts,
        "device_position": {a: geometry.clean(pose[i, 3]) for i, a in enumerate("xyz")},
        "device_heading": {"x": qx, "y": qy, "z": qz, "w": qw},
        "images": images,
    }


def _point_template(intensity: bool) -> tuple[npt.NDArray[np.uint8], list[int]]:
    """``,{"x":…,"y":…,"z":…[,"i":…]}`` as bytes with the number slots' offsets."""
    keys = ("x", "y", "z", "i") if intensity else ("x", "y", "z")
    text, slots = ",{", []
    for n, k in enumerate(keys):
        text += ("," if n else "") + f'"{k}":'
        slots.append(len(text))
        text += " " * WIDTH
    text += "}"
    return np.frombuffer(text.encode(), dtype=np.uint8), slots


def world_points(
    block: npt.NDArray[np.float64], pose: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Points in world coordinates; non-finite or out-of-range points dropped."""
    if not np.array_equal(pose, _IDENTITY):
        block = block.copy()
        block[:, :3] = block[:, :3] @ pose[:3, :3].T + pose[:3, 3]
    ok = np.isfinite(block).all(axis=1) & (np.abs(block) < LIMIT).all(axis=1)
    return block if ok.all() else block[ok]


def json_members(folder: Path, frames: list[Frame], out: DeepenArchive) -> None:
    cam_members: list[Member] = []
    for index, fr in enumerate(frames):
        path = Packaged(folder, fr.cloud)
        try:
            header = pcd.read_header(path)
        except OSError as exc:
            raise LocalDataError(f"{fr.cloud.rel_path} cannot be read: {exc.strerror}") from exc
        except pcd.BadPointCloud as exc:
            raise UnsupportedData(f"{fr.cloud.unit}/{fr.cloud.rel_path}: {exc}") from exc
        meta = _frame_meta(folder, fr, index)
        head = json.dumps(meta, separators=(",", ":"))[:-1].encode() + b',"points":['
        template, _ = _point_template(header.has_intensity)
        count = sum(len(world_points(b, _IDENTITY)) for b in _points(fr, path))  # first pass
        size = len(head) + count * len(template) - (1 if count else 0) + 2
        out.members.append(
            Member(f"{fr.stem}.json", size, _frame_source(fr, path, head, header.has_intensity))
        )
        for k in sorted(fr.cameras):
            f = fr.cameras[k]
            cam_members.append(
                copy_member(folder, f, f"images/camera_image_{k}/{fr.stem}{image_ext(f)}")
            )
    out.members += cam_members


def _points(fr: Frame, path: pcd.Source) -> Iterator[npt.NDArray[np.float64]]:
    try:
        yield from pcd.iter_points(path)
    except pcd.BadPointCloud as exc:
        raise UnsupportedData(f"{fr.cloud.unit}/{fr.cloud.rel_path}: {exc}") from exc


def _frame_source(
    fr: Frame, path: pcd.Source, head: bytes, intensity: bool
) -> Callable[[], Iterator[bytes]]:
    template, slots = _point_template(intensity)
    cols = len(slots)

    def stream() -> Iterator[bytes]:
        yield head
        first = True
        for block in _points(fr, path):
            pts = world_points(block, _IDENTITY)
            if not len(pts):
                continue
            rows = np.tile(template, (len(pts), 1))
            for c in range(cols):
                rows[:, slots[c] : slots[c] + WIDTH] = format_sci(pts[:, c])
            data = memoryview(rows.tobytes())[1 if first else 0 :]  # no comma before the first
            first = False
            # Pieces of at most 1 MiB: the upload checks its stop signal between pieces.
            for start in range(0, len(data), _READ):
                yield bytes(data[start : start + _READ])
        yield b"]}"

    return stream
