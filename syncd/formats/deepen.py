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

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import zipstream

from syncd.errors import LocalDataError, PermanentError
from syncd.formats import geometry, pcd
from syncd.formats.numbers import LIMIT, WIDTH, format_sci
from syncd.pipeline.archive import file_path  # also pins zip entry timestamps (see there)
from syncd.store import PackageFile

Format = Literal["json", "default", "images"]
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


def convert(folder: Path, files: Sequence[PackageFile], fmt: Format) -> DeepenArchive:
    """Plan the archive of ``files`` in ``fmt`` (see module docstring)."""
    if fmt == "images":
        return _images(folder, files)
    frames, skipped, ignored = _frames(files)
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
        _json_members(folder, frames, out)
    else:
        _default_members(folder, frames, out)
        out.derived["undocumented"] = (
            f"{' and '.join(UNDOCUMENTED)} are left out: Deepen's public docs do not describe them"
        )
    return out


# --- grouping ---------------------------------------------------------------------------


def _natural(text: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", text) if t)


def _frames(files: Sequence[PackageFile]) -> tuple[list[Frame], list[str], list[str]]:
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


def _image_ext(f: PackageFile) -> str:
    ext = PurePosixPath(f.rel_path).suffix.lower()
    if ext not in IMAGE_EXTS:
        raise UnsupportedData(
            f"{f.unit}/{f.rel_path}: Deepen takes jpg and png images only; convert it first"
        )
    return ext


def _file_source(path: Path) -> Callable[[], Iterator[bytes]]:
    def read() -> Iterator[bytes]:
        with path.open("rb") as fh:
            while block := fh.read(_READ):
                yield block

    return read


def _copy(folder: Path, f: PackageFile, name: str) -> Member:
    return Member(name, f.size, _file_source(file_path(folder, f)))


def _bytes(name: str, data: bytes) -> Member:
    return Member(name, len(data), lambda: iter((data,)))


def _images(folder: Path, files: Sequence[PackageFile]) -> DeepenArchive:
    out = DeepenArchive("images", FILE_NAMES["images"], [])
    for f in sorted(files, key=lambda f: f.arcname):
        parts = PurePosixPath(f.rel_path).parts
        if "result" in (p.lower() for p in parts[:-1]):
            out.prelabels_skipped.append(f.rel_path)
        elif PurePosixPath(f.rel_path).suffix.lower() in IMAGE_EXTS:
            # The path inside the zip is Deepen's file id: keep syncd's archive names.
            out.members.append(_copy(folder, f, f.arcname))
        else:
            out.ignored.append(f.rel_path)
    if not out.members:
        raise UnsupportedData("no jpg or png image in the package")
    return out


# --- cameras ------------------------------------------------------------------------------


def _camera_entries(folder: Path, fr: Frame) -> dict[int, dict[str, Any]]:
    """camera index → its ``camera_config`` entry (entry i = i-th camera folder, ascending)."""
    if not fr.cameras:
        return {}
    if fr.config is None:
        raise UnsupportedData(
            f"{fr.source}: camera images without camera_config/{fr.cloud.rel_path}"
        )
    path = file_path(folder, fr.config)
    try:
        doc = json.loads(path.read_bytes())
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


# --- JSON format --------------------------------------------------------------------------

_IDENTITY = np.eye(4)


def _frame_meta(folder: Path, fr: Frame, index: int) -> dict[str, Any]:
    pose = _IDENTITY  # no pose in the unit (see module docstring)
    ts = round(index * FRAME_SECONDS, 6)
    images = []
    entries = _camera_entries(folder, fr)
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
                "image_url": f"images/camera_image_{k}/{fr.stem}{_image_ext(f)}",
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


def _json_members(folder: Path, frames: list[Frame], out: DeepenArchive) -> None:
    cam_members: list[Member] = []
    for index, fr in enumerate(frames):
        path = file_path(folder, fr.cloud)
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
                _copy(folder, f, f"images/camera_image_{k}/{fr.stem}{_image_ext(f)}")
            )
    out.members += cam_members


def _points(fr: Frame, path: Path) -> Iterator[npt.NDArray[np.float64]]:
    try:
        yield from pcd.iter_points(path)
    except pcd.BadPointCloud as exc:
        raise UnsupportedData(f"{fr.cloud.unit}/{fr.cloud.rel_path}: {exc}") from exc


def _frame_source(
    fr: Frame, path: Path, head: bytes, intensity: bool
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


def _default_members(folder: Path, frames: list[Frame], out: DeepenArchive) -> None:
    cameras = sorted({k for fr in frames for k in fr.cameras})
    exts: dict[int, str] = {}
    per_frame: dict[str, dict[str, Any]] = {}
    copies: list[Member] = []
    for index, fr in enumerate(frames):
        entries = _camera_entries(folder, fr)
        views: dict[str, Any] = {}
        for k in sorted(fr.cameras):
            f = fr.cameras[k]
            ext = _image_ext(f)
            if exts.setdefault(k, ext) != ext:
                raise UnsupportedData(f"camera_image_{k}: mixes {exts[k]} and {ext} images")
            try:
                v = view_matrix(geometry.intrinsics(entries[k]), geometry.extrinsic(entries[k]))
            except (KeyError, geometry.BadCameraConfig) as exc:
                raise UnsupportedData(f"{fr.source} camera {k}: {exc}") from exc
            views[f"camera_{k}"] = {"view_matrix": v}
            copies.append(_copy(folder, f, f"images/camera_{k}/{fr.stem}.pcd{ext}"))
        per_frame[str(index)] = views
        out.members.append(_copy(folder, fr.cloud, f"lidar/{fr.stem}.pcd"))
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
        _bytes("config.json", _dump({"primary_sensor_id": "lidar", "sensors": sensors})),
        _bytes("lidar_transforms.json", _dump(transforms)),
        _bytes("view_matrices.json", _dump(per_frame)),
        *out.members,
        *copies,
    ]
