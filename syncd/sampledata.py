"""Realistic sample units for the demo, the tests and the benchmarks (stdlib only).

A *unit* is one sub-folder of a watched folder; syncd zips it and uploads it to
Xtreme1. The platform's archive parser (docs/platforms/xtreme1.md) only
recognises data in particular folders, so every generator here produces exactly
that layout:

* ``lidar_point_cloud_0/<name>.pcd``: the folder whose parent is the "scene
  folder"; the point cloud's base name is the data name. Valid ASCII PCD v0.7
  with ``FIELDS x y z intensity``: a ground plane plus one box-shaped cluster
  per labelled object, so labels and points agree.
* ``camera_image_N/<name>.png`` (LIDAR_FUSION): real, decodable PNGs, because
  the platform drops images it cannot read.
* ``camera_config/<name>.json``: a JSON array, entry N for ``camera_image_N``,
  with ``cameraInternal``, a row-major 4x4 LiDAR→camera ``cameraExternal``,
  ``width``, ``height`` and ``rowMajor``.
* ``result/<name>.json``: pre-labels ``{"objects": [...]}`` in the import format
  of §5 (``type``, ``contour``, ``className``, ``trackId``/``trackName``). They
  carry no ``classId``: syncd binds class names to the dataset's class ids
  before upload, and the platform would otherwise turn unknown ids into
  unclassified objects.
* ``scene_*/`` sub-folders hold continuous frames (one SCENE item on the
  platform); ``image_0/`` holds the pictures of an IMAGE dataset.

Bulk units (benchmarks, large-upload tests) are binary PCDs whose payload is
random and therefore incompressible, so zip deflate cannot shrink them and the
measured throughput is the real one.

Every file is written to ``<file>.tmp`` and renamed with :func:`os.replace`, so
a folder watcher never sees a half-written file under its final name. The same
arguments (seed included) give byte-identical files. Nothing is printed.
"""

from __future__ import annotations

import json
import math
import os
import random
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "write_bulk_unit",
    "write_demo_tree",
    "write_fusion_unit",
    "write_image_unit",
    "write_scene_unit",
]

_CHUNK = 1024 * 1024  # bulk payload is generated and written 1 MiB at a time
_CAMERA_SIZE = (64, 48)  # small camera frames: valid, yet cheap to generate and upload
_IMAGE_SIZE = (320, 240)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PCD_FIRST_LINE = "# .PCD v0.7 - Point Cloud Data file format\n"
_BULK_POINT_BYTES = 16  # x, y, z, intensity as float32

# Typical (length, width, height) in metres; unknown classes get a generic size.
_CLASS_SIZES: dict[str, tuple[float, float, float]] = {
    "Car": (4.5, 1.9, 1.6),
    "Van": (5.0, 2.0, 2.1),
    "Truck": (8.0, 2.5, 3.2),
    "Bus": (11.0, 2.6, 3.2),
    "Pedestrian": (0.7, 0.7, 1.8),
    "Cyclist": (1.8, 0.7, 1.7),
}
_DEFAULT_SIZE = (2.0, 1.0, 1.5)
# Distance travelled per frame (10 Hz LiDAR) in metres.
_CLASS_SPEEDS: dict[str, tuple[float, float]] = {
    "Pedestrian": (0.08, 0.15),
    "Cyclist": (0.3, 0.6),
}
_DEFAULT_SPEED = (0.8, 1.5)


# --------------------------------------------------------------------------- files


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` under a temporary name, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _json(doc: Any) -> bytes:
    return json.dumps(doc, indent=1).encode()


# --------------------------------------------------------------------------- PNG


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _png(
    width: int,
    height: int,
    rng: random.Random,
    rects: Sequence[tuple[int, int, int, int, bytes]] = (),
) -> bytes:
    """An 8-bit RGB PNG: a gradient with noise, plus filled ``(x0, y0, x1, y1, rgb)`` rects.

    Rows are built with slice assignment rather than per-pixel loops so that
    even the 320x240 images cost a few milliseconds.
    """
    shade = rng.randrange(256)
    red = bytes((x * 255 // max(1, width - 1)) ^ shade for x in range(width))
    raw = bytearray()
    for y in range(height):
        row = bytearray(3 * width)
        row[0::3] = red
        row[1::3] = bytes((y * 255 // max(1, height - 1),)) * width
        row[2::3] = rng.randbytes(width)  # noise keeps the image from being trivial
        for x0, y0, x1, y1, rgb in rects:
            if y0 <= y < y1:
                row[3 * x0 : 3 * x1] = rgb * (x1 - x0)
        raw.append(0)  # filter type "None" for every scanline
        raw += row
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit, truecolour
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(bytes(raw), 6))
        + _png_chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------- PCD


def _pcd_header(points: int, data: str, pad: int = 0) -> str:
    """A PCD v0.7 header; ``pad`` > 0 inserts a comment line of exactly that length.

    PCD readers skip ``#`` lines, so the comment lets bulk files hit an exact
    byte size while the binary payload stays exactly ``points`` records long.
    """
    if pad == 1:
        raise ValueError("a PCD padding line needs at least 2 bytes")
    padding = "#" + "-" * (pad - 2) + "\n" if pad else ""
    return (
        _PCD_FIRST_LINE
        + padding
        + "VERSION 0.7\n"
        + "FIELDS x y z intensity\n"
        + "SIZE 4 4 4 4\n"
        + "TYPE F F F F\n"
        + "COUNT 1 1 1 1\n"
        + f"WIDTH {points}\n"
        + "HEIGHT 1\n"
        + "VIEWPOINT 0 0 0 1 0 0 0\n"
        + f"POINTS {points}\n"
        + f"DATA {data}\n"
    )


@dataclass(frozen=True)
class _Object:
    """One labelled object of a sequence; it drives along its heading frame by frame."""

    class_name: str
    track_id: str
    track_name: str
    x: float
    y: float
    size: tuple[float, float, float]
    yaw: float  # radians, wrapped to (-pi, pi], then rounded as written
    step: float  # metres per frame along the heading

    def center(self, frame: int) -> tuple[float, float, float]:
        """Box centre at ``frame``, rounded as written to the result file.

        Points are counted against the rounded box, so ``pointN`` is exact for
        the box a reader of the result file reconstructs.
        """
        d = self.step * frame
        return (
            round(self.x + d * math.cos(self.yaw), 3),
            round(self.y + d * math.sin(self.yaw), 3),
            round(self.size[2] / 2, 3),  # standing on the ground plane z = 0
        )

    def contains(self, frame: int, p: tuple[float, float, float]) -> bool:
        cx, cy, cz = self.center(frame)
        dx, dy = p[0] - cx, p[1] - cy
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        # Into the box frame: rotate by -yaw.
        u, v = c * dx + s * dy, -s * dx + c * dy
        sx, sy, sz = self.size
        return abs(u) <= sx / 2 and abs(v) <= sy / 2 and abs(p[2] - cz) <= sz / 2


def _wrap(angle: float) -> float:
    """The same angle in (-pi, pi]: one canonical yaw per heading, however it was drawn."""
    return math.atan2(math.sin(angle), math.cos(angle))


def _objects(rng: random.Random, classes: Sequence[str]) -> list[_Object]:
    """2-4 objects ahead of the vehicle, spaced so they do not overlap at frame 0.

    They sit inside camera 0's field of view (|y| <= 0.3 x) so the pre-labels
    are ones an annotator could see in the front camera.
    """
    order = list(classes)
    rng.shuffle(order)
    out = []
    for i in range(rng.randint(2, 4)):
        cls = order[i % len(order)]
        length, width, height = _CLASS_SIZES.get(cls, _DEFAULT_SIZE)
        k = rng.uniform(0.95, 1.05)  # a little size variation between instances
        x = 8.0 + 9.0 * i + rng.uniform(0.0, 3.0)
        lo, hi = _CLASS_SPEEDS.get(cls, _DEFAULT_SPEED)
        out.append(
            _Object(
                class_name=cls,
                # 32-hex ids like the platform's own; drawn from the seeded rng.
                track_id=f"{rng.getrandbits(128):032x}",
                track_name=str(i + 1),
                x=x,
                y=rng.uniform(-0.3, 0.3) * x,
                size=(round(length * k, 2), round(width * k, 2), round(height * k, 2)),
                # Traffic moves along the road, either way, with a small deviation.
                yaw=round(_wrap(rng.choice((0.0, math.pi)) + rng.uniform(-0.15, 0.15)), 4),
                step=rng.uniform(lo, hi),
            )
        )
    return out


def _cloud(
    rng: random.Random, points: int, objects: Sequence[_Object], frame: int
) -> list[tuple[float, float, float, float]]:
    """Ground returns plus a quarter of the points spread over the objects' boxes."""
    out = []
    for n in range(points):
        if objects and n % 4 == 0:
            ob = objects[(n // 4) % len(objects)]
            cx, cy, cz = ob.center(frame)
            sx, sy, sz = ob.size
            # Sample in the box frame, slightly shrunk so rounding to mm keeps
            # the point inside, then rotate by the yaw into the LiDAR frame.
            u = rng.uniform(-0.48, 0.48) * sx
            v = rng.uniform(-0.48, 0.48) * sy
            w = rng.uniform(-0.48, 0.48) * sz
            c, s = math.cos(ob.yaw), math.sin(ob.yaw)
            x, y, z = cx + c * u - s * v, cy + s * u + c * v, cz + w
            intensity = rng.uniform(0.4, 1.0)  # metal and paint reflect strongly
        else:
            # Uniform in range, not in area: denser near the sensor, as with a
            # real spinning LiDAR.
            r, a = rng.uniform(2.0, 60.0), rng.uniform(-math.pi, math.pi)
            x, y, z = r * math.cos(a), r * math.sin(a), rng.gauss(0.0, 0.02)
            intensity = rng.uniform(0.0, 0.3)
        out.append((round(x, 3), round(y, 3), round(z, 3), round(intensity, 3)))
    return out


def _ascii_pcd(cloud: Sequence[tuple[float, float, float, float]]) -> bytes:
    body = "".join(f"{x:.3f} {y:.3f} {z:.3f} {i:.3f}\n" for x, y, z, i in cloud)
    return (_pcd_header(len(cloud), "ascii") + body).encode()


# --------------------------------------------------------------------------- cameras


def _camera_config(cameras: int, width: int, height: int) -> list[dict[str, Any]]:
    """One entry per camera, evenly spread around the car, camera 0 facing forward.

    LiDAR frame: x forward, y left, z up. Camera frame (OpenCV): x right,
    y down, z along the optical axis. The extrinsic is the rigid transform
    [R | -R p] for a camera at p looking along ``yaw``.
    """
    fx = round(width * 0.9, 3)  # about 58 degrees horizontal field of view
    out = []
    for c in range(cameras):
        yaw = 2 * math.pi * c / cameras
        cos, sin = math.cos(yaw), math.sin(yaw)
        rot = (
            (sin, -cos, 0.0),  # camera x: to the right of the viewing direction
            (0.0, 0.0, -1.0),  # camera y: down
            (cos, sin, 0.0),  # camera z: the viewing direction
        )
        # Cameras sit 0.3 m out from the LiDAR, 0.4 m below it (LiDAR on the roof).
        pos = (0.3 * cos, 0.3 * sin, -0.4)
        ext: list[float] = []
        for row in rot:
            t = -sum(r * p for r, p in zip(row, pos, strict=True))
            ext += [*row, t]
        ext += [0.0, 0.0, 0.0, 1.0]
        out.append(
            {
                "cameraInternal": {"fx": fx, "fy": fx, "cx": width / 2, "cy": height / 2},
                "cameraExternal": [round(v, 6) + 0.0 for v in ext],  # + 0.0: no "-0.0"
                "width": width,
                "height": height,
                "rowMajor": True,
            }
        )
    return out


# --------------------------------------------------------------------------- results


def _box_result(
    objects: Sequence[_Object],
    frame: int,
    cloud: Sequence[tuple[float, float, float, float]],
) -> dict[str, Any]:
    docs = []
    for ob in objects:
        cx, cy, cz = ob.center(frame)
        docs.append(
            {
                "type": "3D_BOX",
                "className": ob.class_name,
                "trackId": ob.track_id,
                "trackName": ob.track_name,
                "contour": {
                    "center3D": {"x": cx, "y": cy, "z": cz},
                    "size3D": {"x": ob.size[0], "y": ob.size[1], "z": ob.size[2]},
                    "rotation3D": {"x": 0.0, "y": 0.0, "z": ob.yaw},  # yaw only
                    # Counted, not invented: the points of this cloud inside the box.
                    "pointN": sum(ob.contains(frame, (x, y, z)) for x, y, z, _ in cloud),
                    "points": [],
                },
            }
        )
    return {"objects": docs}


# --------------------------------------------------------------------------- units


def _write_frames(
    folder: Path,
    *,
    frames: int,
    cameras: int,
    with_result: bool,
    points: int,
    seed: int,
    classes: Sequence[str],
) -> list[str]:
    """The per-frame files of one scene folder (the unit root or a ``scene_*`` folder)."""
    if frames < 0 or cameras < 0 or points < 0:
        raise ValueError("frames, cameras and points must not be negative")
    if not classes:
        raise ValueError("classes must name at least one class")
    rng = random.Random(seed)
    objects = _objects(rng, classes)
    width, height = _CAMERA_SIZE
    config = _json(_camera_config(cameras, width, height)) if cameras else b""
    names = [f"{i:06d}" for i in range(1, frames + 1)]
    for frame, name in enumerate(names):
        cloud = _cloud(rng, points, objects, frame)
        _write(folder / "lidar_point_cloud_0" / f"{name}.pcd", _ascii_pcd(cloud))
        for c in range(cameras):
            _write(folder / f"camera_image_{c}" / f"{name}.png", _png(width, height, rng))
        if cameras:  # no cameras: a LIDAR_BASIC item, which has no camera_config
            _write(folder / "camera_config" / f"{name}.json", config)
        if with_result:
            _write(folder / "result" / f"{name}.json", _json(_box_result(objects, frame, cloud)))
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
    """A LIDAR_FUSION unit: ``frames`` top-level items named ``000001``, ``000002``, ….

    Each frame has a point cloud, ``cameras`` 64x48 PNGs with their
    ``camera_config`` and, when ``with_result``, 2-4 tracked ``3D_BOX``
    pre-labels whose ``className`` comes from ``classes``. ``cameras=0``
    gives a LIDAR_BASIC unit. Returns the data names.
    """
    return _write_frames(
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
    """A unit with one ``scene_*`` folder of continuous frames (one SCENE on the platform).

    Objects move from frame to frame. Returns the frame names.
    """
    # Without the prefix the platform imports the frames as unrelated items.
    if not scene.lower().startswith("scene_") or Path(scene).name != scene:
        raise ValueError(f"scene must be a single folder name starting with scene_: {scene!r}")
    return _write_frames(
        unit_dir / scene,
        frames=frames,
        cameras=cameras,
        with_result=with_result,
        points=1000,
        seed=seed,
        classes=("Car", "Pedestrian", "Cyclist"),
    )


_IMAGE_CLASSES = (
    ("Car", b"\xd0\x20\x20"),
    ("Pedestrian", b"\x20\xd0\x20"),
    ("Sign", b"\xf0\xf0\x20"),
)


def write_image_unit(
    unit_dir: Path, *, images: int = 3, with_result: bool = False, seed: int = 0
) -> list[str]:
    """An IMAGE-dataset unit: ``image_0/<name>.png`` (320x240) and optional 2D pre-labels.

    The labelled rectangles are painted into the picture, so the pre-labels
    match what an annotator sees. Returns the data names ``img_0001``, ….
    """
    if images < 0:
        raise ValueError("images must not be negative")
    rng = random.Random(seed)
    width, height = _IMAGE_SIZE
    names = [f"img_{i:04d}" for i in range(1, images + 1)]
    for name in names:
        rects = []
        for k in range(rng.randint(1, 3)):
            cls, rgb = _IMAGE_CLASSES[k % len(_IMAGE_CLASSES)]
            w, h = rng.randint(20, 80), rng.randint(20, 80)
            # Side by side in their own horizontal band, so rectangles never overlap.
            x0 = rng.randint(k * 100 + 5, k * 100 + 95 - w)
            y0 = rng.randint(5, height - h - 5)
            rects.append((cls, x0, y0, x0 + w, y0 + h, rgb))
        _write(
            unit_dir / "image_0" / f"{name}.png",
            _png(width, height, rng, [(x0, y0, x1, y1, rgb) for _, x0, y0, x1, y1, rgb in rects]),
        )
        if with_result:
            doc = {
                "objects": [
                    {
                        "type": "2D_RECT",
                        "className": cls,
                        "contour": {
                            # Pixel corners, origin top-left, clockwise from top-left.
                            "points": [
                                {"x": x0, "y": y0},
                                {"x": x1, "y": y0},
                                {"x": x1, "y": y1},
                                {"x": x0, "y": y1},
                            ]
                        },
                    }
                    for cls, x0, y0, x1, y1, _ in rects
                ]
            }
            _write(unit_dir / "result" / f"{name}.json", _json(doc))
    return names


def _bulk_header(size: int) -> bytes:
    """A binary-PCD header such that header + 16 bytes x POINTS == ``size`` exactly."""
    points = max(0, (size - len(_pcd_header(0, "binary")) - 2) // _BULK_POINT_BYTES)
    while True:
        pad = size - len(_pcd_header(points, "binary")) - _BULK_POINT_BYTES * points
        if pad >= 2:
            return _pcd_header(points, "binary", pad).encode()
        if points == 0:
            raise ValueError(f"{size} bytes is too small for a PCD file")
        points -= 1  # a shorter payload leaves room for the padding line


def _bulk_sizes(total_bytes: int, file_bytes: int) -> Iterator[int]:
    """File sizes summing to ``total_bytes``; a tail too small for a header joins its predecessor."""
    smallest = len(_pcd_header(0, "binary")) + 2
    if file_bytes < smallest or total_bytes < smallest:
        raise ValueError(f"total_bytes and file_bytes must be at least {smallest}")
    left = total_bytes
    while left:
        size = left if left - file_bytes < smallest else file_bytes
        yield size
        left -= size


def write_bulk_unit(
    unit_dir: Path, *, total_bytes: int, file_bytes: int = 5 * 1024 * 1024, seed: int = 0
) -> int:
    """A LIDAR_BASIC-shaped unit of binary PCDs with random payload, ``total_bytes`` in all.

    Files ``lidar_point_cloud_0/000001.pcd``, … are ``file_bytes`` each; the last
    one takes the remainder (joining the one before when the remainder is
    smaller than a PCD header). Random bytes cannot be compressed, so archive
    sizes and upload throughput are the worst case. Payload is generated and
    written 1 MiB at a time, so memory stays flat for multi-GB totals.
    Returns the number of bytes written (always ``total_bytes``).
    """
    rng = random.Random(seed)
    folder = unit_dir / "lidar_point_cloud_0"
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for n, size in enumerate(_bulk_sizes(total_bytes, file_bytes), start=1):
        path = folder / f"{n:06d}.pcd"
        tmp = path.with_name(path.name + ".tmp")
        header = _bulk_header(size)
        try:
            with tmp.open("wb") as f:
                f.write(header)
                left = size - len(header)
                while left > 0:
                    step = min(_CHUNK, left)
                    f.write(rng.randbytes(step))
                    left -= step
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        written += size
    return written


def write_demo_tree(root: Path) -> dict[str, list[str]]:
    """What ``syncd demo`` drops into its watched folder; returns unit name → data names.

    ``drive_0001``: a fusion unit (3 frames, 2 cameras, pre-labels);
    ``drive_0002``: a scene unit (``scene_01``, 3 frames).
    """
    root.mkdir(parents=True, exist_ok=True)
    return {
        "drive_0001": write_fusion_unit(
            root / "drive_0001", frames=3, cameras=2, with_result=True, seed=1
        ),
        "drive_0002": write_scene_unit(root / "drive_0002", scene="scene_01", frames=3, seed=2),
    }
