"""Realistic sample units for the demo, the tests and the benchmarks (stdlib only).

The layouts follow the Xtreme1 archive rules (shared/remote-apis/xtreme1.md
§4-§5): ``lidar_point_cloud_0/<name>.pcd``, ``camera_image_N/<name>.png``,
``camera_config/<name>.json`` (one entry per camera), optional
``result/<name>.json`` pre-labels (``{"objects": [...]}`` with ``className``
and no ``classId``: syncd binds classes itself), ``scene_*`` sub-folders for
sequences, and ``image_0/`` for IMAGE datasets.

Images are real PNGs (the platform drops images it cannot decode), point
clouds are valid ASCII PCD v0.7 (bulk units: binary PCD with incompressible
payload). Every file is written to ``<name>.tmp`` and renamed, so a folder
watcher never sees a half-written file under its final name. The same seed
gives byte-identical files.
"""

from __future__ import annotations

import json
import math
import os
import random
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_CHUNK = 1024 * 1024


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def png(width: int, height: int, rng: random.Random) -> bytes:
    """A valid RGB PNG: a gradient with a little noise."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    shade = rng.randrange(256)
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type: none
        for x in range(width):
            rows += bytes(
                (
                    (x * 255 // max(1, width - 1)) ^ shade,
                    (y * 255 // max(1, height - 1)),
                    rng.randrange(256),
                )
            )
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 6))
        + chunk(b"IEND", b"")
    )


def _pcd_header(points: int, data: str = "ascii") -> str:
    return (
        "# .PCD v0.7 - Point Cloud Data file format\n"
        "VERSION 0.7\nFIELDS x y z intensity\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\n"
        f"WIDTH {points}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {points}\nDATA {data}\n"
    )


def _boxes(rng: random.Random, classes: Sequence[str], count: int) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        cls = classes[i % len(classes)]
        size = {
            "Car": (4.5, 1.9, 1.6),
            "Pedestrian": (0.7, 0.7, 1.8),
            "Cyclist": (1.8, 0.7, 1.7),
        }.get(cls, (2.0, 1.0, 1.5))
        out.append(
            {
                "class": cls,
                "track": f"t{i + 1}",
                "center": (rng.uniform(5, 40), rng.uniform(-10, 10), size[2] / 2),
                "size": size,
                "yaw": rng.uniform(-math.pi, math.pi),
                "speed": rng.uniform(0.2, 1.5),
            }
        )
    return out


def _pcd(rng: random.Random, points: int, boxes: list[dict[str, Any]], frame: int) -> bytes:
    lines = []
    for n in range(points):
        if boxes and n % 4 == 0:  # a quarter of the points on the objects
            b = boxes[n // 4 % len(boxes)]
            cx, cy, cz = b["center"]
            cx += b["speed"] * frame
            sx, sy, sz = b["size"]
            x, y, z = (
                cx + rng.uniform(-sx / 2, sx / 2),
                cy + rng.uniform(-sy / 2, sy / 2),
                cz + rng.uniform(-sz / 2, sz / 2),
            )
            intensity = rng.uniform(0.4, 1.0)
        else:  # ground plane
            r, a = rng.uniform(2, 60), rng.uniform(-math.pi, math.pi)
            x, y, z = r * math.cos(a), r * math.sin(a), rng.gauss(0, 0.03)
            intensity = rng.uniform(0.0, 0.3)
        lines.append(f"{x:.3f} {y:.3f} {z:.3f} {intensity:.3f}")
    return (_pcd_header(points) + "\n".join(lines) + "\n").encode()


def _camera_config(cameras: int, width: int, height: int) -> list[dict[str, Any]]:
    out = []
    for c in range(cameras):
        yaw = 2 * math.pi * c / max(1, cameras)
        cos, sin = math.cos(yaw), math.sin(yaw)
        # LiDAR (x fwd, y left, z up) → camera (x right, y down, z fwd), rotated by yaw.
        ext = [-sin, cos, 0.0, 0.0, 0.0, 0.0, -1.0, 1.5, cos, sin, 0.0, 0.1, 0.0, 0.0, 0.0, 1.0]
        out.append(
            {
                "cameraInternal": {
                    "fx": width * 0.9,
                    "fy": width * 0.9,
                    "cx": width / 2,
                    "cy": height / 2,
                },
                "cameraExternal": [round(v, 6) for v in ext],
                "width": width,
                "height": height,
                "rowMajor": True,
            }
        )
    return out


def _result(boxes: list[dict[str, Any]], frame: int) -> dict[str, Any]:
    objects = []
    for b in boxes:
        cx, cy, cz = b["center"]
        objects.append(
            {
                "type": "3D_BOX",
                "className": b["class"],
                "trackId": b["track"],
                "trackName": b["track"].lstrip("t"),
                "contour": {
                    "center3D": {
                        "x": round(cx + b["speed"] * frame, 3),
                        "y": round(cy, 3),
                        "z": round(cz, 3),
                    },
                    "size3D": {"x": b["size"][0], "y": b["size"][1], "z": b["size"][2]},
                    "rotation3D": {"x": 0, "y": 0, "z": round(b["yaw"], 4)},
                    "pointN": 50,
                    "points": [],
                },
            }
        )
    return {"objects": objects}


def _frames(
    root: Path,
    *,
    frames: int,
    cameras: int,
    with_result: bool,
    points: int,
    seed: int,
    classes: Sequence[str],
) -> list[str]:
    rng = random.Random(seed)
    boxes = _boxes(rng, classes, rng.randint(2, 4))
    names = [f"{i:06d}" for i in range(1, frames + 1)]
    width, height = 64, 48
    for i, name in enumerate(names):
        _write(root / "lidar_point_cloud_0" / f"{name}.pcd", _pcd(rng, points, boxes, i))
        for c in range(cameras):
            _write(root / f"camera_image_{c}" / f"{name}.png", png(width, height, rng))
        if cameras:
            _write(
                root / "camera_config" / f"{name}.json",
                json.dumps(_camera_config(cameras, width, height), indent=1).encode(),
            )
        if with_result:
            _write(
                root / "result" / f"{name}.json", json.dumps(_result(boxes, i), indent=1).encode()
            )
    return names


def write_fusion_unit(
    unit_dir: Path,
    *,
    frames: int = 3,
    cameras: int = 2,
    with_result: bool = True,
    points: int = 2000,
    seed: int = 0,
    classes: Sequence[str] = ("Car", "Pedestrian", "Cyclist"),
) -> list[str]:
    """A LIDAR_FUSION unit: point clouds, camera images and configs, optional pre-labels."""
    return _frames(
        unit_dir,
        frames=frames,
        cameras=cameras,
        with_result=with_result,
        points=points,
        seed=seed,
        classes=classes,
    )


def write_scene_unit(
    unit_dir: Path,
    *,
    scene: str = "scene_01",
    frames: int = 3,
    cameras: int = 1,
    with_result: bool = False,
    seed: int = 0,
) -> list[str]:
    """A unit holding one ``scene_*`` sequence of continuous frames; returns frame names."""
    return _frames(
        unit_dir / scene,
        frames=frames,
        cameras=cameras,
        with_result=with_result,
        points=1000,
        seed=seed,
        classes=("Car", "Pedestrian"),
    )


def write_image_unit(
    unit_dir: Path, *, images: int = 3, with_result: bool = False, seed: int = 0
) -> list[str]:
    """An IMAGE-dataset unit: ``image_0/<name>.png`` and optional 2D pre-labels."""
    rng = random.Random(seed)
    names = [f"img_{i:04d}" for i in range(1, images + 1)]
    for name in names:
        _write(unit_dir / "image_0" / f"{name}.png", png(320, 240, rng))
        if with_result:
            x, y = rng.randint(10, 200), rng.randint(10, 150)
            box = {
                "type": "2D_RECT",
                "className": "Sign",
                "contour": {
                    "points": [
                        {"x": x, "y": y},
                        {"x": x + 40, "y": y},
                        {"x": x + 40, "y": y + 30},
                        {"x": x, "y": y + 30},
                    ]
                },
            }
            _write(unit_dir / "result" / f"{name}.json", json.dumps({"objects": [box]}).encode())
    return names


def write_bulk_unit(
    unit_dir: Path, *, total_bytes: int, file_bytes: int = 5 * 1024 * 1024, seed: int = 0
) -> int:
    """A LIDAR_BASIC unit of binary PCDs with incompressible payload, ``total_bytes`` in all.

    Memory stays flat (1 MiB chunks) whatever the total. Returns bytes written.
    """
    rng = random.Random(seed)
    folder = unit_dir / "lidar_point_cloud_0"
    folder.mkdir(parents=True, exist_ok=True)
    written, n = 0, 0
    while written < total_bytes:
        n += 1
        size = min(file_bytes, total_bytes - written)
        header = _pcd_header(max(1, size // 16), "binary").encode()
        path = folder / f"{n:06d}.pcd"
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as f:
            head = header[:size]
            f.write(head)
            left = size - len(head)
            while left > 0:
                step = min(_CHUNK, left)
                f.write(rng.randbytes(step))
                left -= step
        os.replace(tmp, path)
        written += size
    return written


def write_demo_tree(root: Path) -> dict[str, list[str]]:
    """What ``syncd demo`` drops into its watched folder: a fusion unit and a scene unit."""
    return {
        "drive_0001": write_fusion_unit(
            root / "drive_0001", frames=3, cameras=2, with_result=True, seed=1
        ),
        "drive_0002": write_scene_unit(root / "drive_0002", scene="scene_01", frames=3, seed=2),
    }
