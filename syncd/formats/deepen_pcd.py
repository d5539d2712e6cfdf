"""Deepen's 3D PCD format (``dataset_format = "default"``): config.json, side files, renamed images.

See :mod:`syncd.formats.deepen` for the format, what is left out and why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from syncd.formats import geometry
from syncd.formats.deepen_frames import (
    DeepenArchive,
    Frame,
    Member,
    UnsupportedData,
    bytes_member,
    camera_entries,
    copy_member,
    image_ext,
)

# --- PCD ("default") format ------------------------------------------------------------------


def view_matrix(
    intr: tuple[float, float, float, float], e: npt.NDArray[np.float64]
) -> list[list[float]]:
    """Deepen's 4x4 ``view_matrix``: ``S · K4 · E`` (rows: fx·E0+cx·E2, fy·E1+cy·E2, 0001, E2)."""
    fx, fy, cx, cy = intr
    rows = [fx * e[0] + cx * e[2], fy * e[1] + cy * e[2], np.array([0.0, 0.0, 0.0, 1.0]), e[2]]
    return [[geometry.clean(v) for v in row] for row in rows]


def _dump(doc: Any) -> bytes:
    return json.dumps(doc, indent=1, sort_keys=True).encode()


def default_members(folder: Path, frames: list[Frame], out: DeepenArchive) -> None:
    cameras = sorted({k for fr in frames for k in fr.cameras})
    exts: dict[int, str] = {}
    per_frame: dict[str, dict[str, Any]] = {}
    copies: list[Member] = []
    for index, fr in enumerate(frames):
        entries = camera_entries(folder, fr)
        views: dict[str, Any] = {}
        for k in sorted(fr.cameras):
            f = fr.cameras[k]
            ext = image_ext(f)
            if exts.setdefault(k, ext) != ext:
                raise UnsupportedData(f"camera_image_{k}: mixes {exts[k]} and {ext} images")
            try:
                v = view_matrix(geometry.intrinsics(entries[k]), geometry.extrinsic(entries[k]))
            except (KeyError, geometry.BadCameraConfig) as exc:
                raise UnsupportedData(f"{fr.source} camera {k}: {exc}") from exc
            views[f"camera_{k}"] = {"view_matrix": v}
            copies.append(copy_member(folder, f, f"images/camera_{k}/{fr.stem}.pcd{ext}"))
        per_frame[str(index)] = views
        out.members.append(copy_member(folder, fr.cloud, f"lidar/{fr.stem}.pcd"))
    first = per_frame.get("0", {})
    sensors: dict[str, Any] = {
        "lidar": {"content": "lidar", "sensor_type": "lidar", "sensor_fusion": first}
    }
    for k in cameras:
        sensors[f"camera_{k}"] = {
            "content": f"images/camera_{k}",
            "sensor_type": "camera",
            "extension": exts[k].lstrip("."),
        }
    ident = np.eye(4).tolist()
    transforms = {
        "forward_transforms": {str(i): ident for i in range(len(frames))},
        "inverse_transforms": {str(i): ident for i in range(len(frames))},
    }
    out.members = [
        bytes_member("config.json", _dump({"primary_sensor_id": "lidar", "sensors": sensors})),
        bytes_member("lidar_transforms.json", _dump(transforms)),
        bytes_member("view_matrices.json", _dump(per_frame)),
        *out.members,
        *copies,
    ]
