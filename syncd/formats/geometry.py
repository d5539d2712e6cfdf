"""Camera matrices of Xtreme1's ``camera_config`` and the poses Deepen's JSON format wants.

Contract:

* :func:`extrinsic` returns the row-major 4x4 LiDAR→camera matrix of one
  ``camera_config`` entry, applying Xtreme1's own rule before anything else
  (``translateCameraConfig`` / ``isMatrixColumnMajor`` in
  https://github.com/xtreme1-io/xtreme1/blob/main/frontend/pc-tool/src/packages/pc-editor/utils/common.ts):
  the 16 numbers are transposed when ``rowMajor`` is false, or when elements
  3, 7 and 11 are all 0 and one of 12-14 is not. The camera axes are OpenCV's
  (x right, y down, z forward), as Xtreme1's renderer assumes.
* :func:`intrinsics` returns ``fx, fy, cx, cy`` (``cameraInternal`` or ``camera_internal``).
* :func:`camera_pose` is the camera→world pose ``W · E⁻¹`` for a LiDAR→world pose ``W``.
* :func:`quaternion` is the unit quaternion ``(x, y, z, w)`` of a rotation matrix, ``w >= 0``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from syncd.errors import LocalDataError

Matrix = npt.NDArray[np.float64]


class BadCameraConfig(LocalDataError):
    """A ``camera_config`` entry lacks a usable matrix or intrinsics (the message says which)."""


def extrinsic(entry: dict[str, Any]) -> Matrix:
    """The row-major LiDAR→camera 4x4 of one entry (see module docstring)."""
    raw = entry.get("cameraExternal", entry.get("camera_external"))
    if not isinstance(raw, list) or len(raw) != 16:
        raise BadCameraConfig("cameraExternal must hold 16 numbers")
    try:
        e = [float(v) for v in raw]
    except (TypeError, ValueError):
        raise BadCameraConfig("cameraExternal must hold 16 numbers") from None
    column_major = entry.get("rowMajor", True) is False or (
        e[3] == 0 and e[7] == 0 and e[11] == 0 and any(e[i] != 0 for i in (12, 13, 14))
    )
    m = np.array(e, dtype=np.float64).reshape(4, 4)
    return m.T.copy() if column_major else m


def intrinsics(entry: dict[str, Any]) -> tuple[float, float, float, float]:
    raw = entry.get("cameraInternal", entry.get("camera_internal"))
    if not isinstance(raw, dict):
        raise BadCameraConfig("cameraInternal {fx, fy, cx, cy} is missing")
    try:
        return float(raw["fx"]), float(raw["fy"]), float(raw["cx"]), float(raw["cy"])
    except (KeyError, TypeError, ValueError):
        raise BadCameraConfig("cameraInternal needs numeric fx, fy, cx and cy") from None


def camera_pose(world_from_lidar: Matrix, lidar_to_camera: Matrix) -> Matrix:
    try:
        inv = np.linalg.inv(lidar_to_camera)
    except np.linalg.LinAlgError:
        raise BadCameraConfig("cameraExternal is not invertible") from None
    return np.asarray(world_from_lidar @ inv, dtype=np.float64)


def quaternion(r: Matrix) -> tuple[float, float, float, float]:
    """``(x, y, z, w)`` of rotation ``r`` (Shepperd's method), normalised, ``w >= 0``."""
    m = r[:3, :3]
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        w, x, y, z = (
            0.25 * s,
            (m[2, 1] - m[1, 2]) / s,
            (m[0, 2] - m[2, 0]) / s,
            (m[1, 0] - m[0, 1]) / s,
        )
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        w, x, y, z = (
            (m[2, 1] - m[1, 2]) / s,
            0.25 * s,
            (m[0, 1] + m[1, 0]) / s,
            (m[0, 2] + m[2, 0]) / s,
        )
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        w, x, y, z = (
            (m[0, 2] - m[2, 0]) / s,
            (m[0, 1] + m[1, 0]) / s,
            0.25 * s,
            (m[1, 2] + m[2, 1]) / s,
        )
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        w, x, y, z = (
            (m[1, 0] - m[0, 1]) / s,
            (m[0, 2] + m[2, 0]) / s,
            (m[1, 2] + m[2, 1]) / s,
            0.25 * s,
        )
    n = math.sqrt(w * w + x * x + y * y + z * z) or 1.0
    sign = -1.0 if w < 0 else 1.0
    return (sign * x / n, sign * y / n, sign * z / n, sign * w / n)


def clean(v: float) -> float:
    """Round to 9 decimals and turn ``-0.0`` into ``0.0``: stable, readable JSON numbers."""
    return round(float(v), 9) + 0.0
