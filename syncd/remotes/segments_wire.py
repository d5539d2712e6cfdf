"""Segments.ai wire shapes: a unit's files → sample attributes, pre-labels → label attributes,
labels → neutral objects.

The shapes are the official SDK's models (``segments/typing.py``, summarised
in docs/platforms/segments.md): what a sample holds is decided by
the dataset's task type, so one data item becomes

* an image sample ``{image: {url}}`` (image task types),
* a point-cloud sample ``{pcd: {url, type}, images: [calibrated cameras]}``
  (``pointcloud-*``),
* a sequence ``{frames: [...]}`` of either (``*-sequence``; a single frame is
  a one-frame sequence, a ``scene_*`` folder one frame per data name),
* a multi-sensor sample ``{sensors: [lidar, camera_image_0, …]}``, each
  sensor a sequence (``multisensor-sequence``).

A shape the task type cannot take (a scene in a single-image dataset, two
cameras in an image dataset) is a PermanentError naming the ``task_type``
setting. Frame names are kept in every frame (``name``) so that pulled
labels map back to the data names of the unit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from syncd.errors import PermanentError

PLATFORM = "segments"
IMAGE_TASKS = (
    "segmentation-bitmap",
    "segmentation-bitmap-highres",
    "bboxes",
    "vector",
    "keypoints",
)
IMAGE_SEQUENCE_TASKS = ("image-segmentation-sequence", "image-vector-sequence")
POINTCLOUD_TASKS = ("pointcloud-cuboid", "pointcloud-segmentation", "pointcloud-vector")
POINTCLOUD_SEQUENCE_TASKS = (
    "pointcloud-cuboid-sequence",
    "pointcloud-segmentation-sequence",
    "pointcloud-vector-sequence",
)
MULTISENSOR = "multisensor-sequence"
TASK_TYPES = (
    *IMAGE_TASKS,
    *IMAGE_SEQUENCE_TASKS,
    *POINTCLOUD_TASKS,
    *POINTCLOUD_SEQUENCE_TASKS,
    MULTISENSOR,
)
# The task type of a dataset syncd creates, by the sync's dataset_type (config task_type overrides).
DEFAULT_TASK_TYPES = {
    "LIDAR_FUSION": MULTISENSOR,
    "LIDAR_BASIC": "pointcloud-cuboid-sequence",
    "IMAGE": "vector",
}
LIDAR_SENSOR = "lidar"
PCD_TYPES = {".pcd": "pcd", ".bin": "binary-xyzi", ".ply": "ply", ".las": "las"}
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
# Segments' annotation types in the neutral vocabulary of result/ files (and back).
SHAPES = {"cuboid": "3D_BOX", "cuboid-sync": "3D_BOX", "bbox": "2D_RECT"}
SHAPES.update({t: t.upper() for t in ("polygon", "polyline", "point")})


def task_fits(task_type: str, dataset_type: str) -> bool:
    """Whether a dataset of ``task_type`` can hold a sync's ``dataset_type`` units."""
    if dataset_type == "IMAGE":
        return task_type in IMAGE_TASKS or task_type in IMAGE_SEQUENCE_TASKS
    return task_type not in IMAGE_TASKS and task_type not in IMAGE_SEQUENCE_TASKS


def is_sequence(task_type: str) -> bool:
    return task_type.endswith("-sequence")


# --- a data item's files -------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """The stored files of one frame (a data name): refs as ``upload_files`` returned them."""

    name: str
    refs: list[dict[str, Any]]

    def assets(self) -> list[dict[str, Any]]:
        return [r for r in self.refs if r.get("kind") == "asset"]

    def clouds(self) -> list[dict[str, Any]]:
        return sorted((r for r in self.assets() if _ext(r) in PCD_TYPES), key=lambda r: r["device"])

    def pcd(self) -> dict[str, Any] | None:
        """The one point cloud of the frame (several: see :func:`sample_attributes`)."""
        clouds = self.clouds()
        return clouds[0] if clouds else None

    def images(self) -> list[dict[str, Any]]:
        return sorted((r for r in self.assets() if _ext(r) in IMAGE_EXT), key=lambda r: r["device"])

    def doc(self, kind: str) -> Any:
        for r in self.refs:
            if r.get("kind") == kind:
                return r.get("doc")
        return None


def _ext(ref: dict[str, Any]) -> str:
    return PurePosixPath(str(ref.get("filename", ""))).suffix.lower()


def _refuse(task_type: str, what: str) -> PermanentError:
    return PermanentError(
        f"{what}: a Segments.ai sample of task type {task_type!r} cannot hold it (the "
        "remote's task_type decides a new dataset's type: sequences and multisensor-sequence "
        "take scenes and several sensors)",
        platform=PLATFORM,
    )


def _pcd(ref: dict[str, Any]) -> dict[str, Any]:
    return {"url": ref["url"], "type": PCD_TYPES[_ext(ref)]}


def _camera_index(device: str) -> int | None:
    tail = device.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def calibrated(ref: dict[str, Any], config: Any) -> dict[str, Any]:
    """A CalibratedImage: the url, and the camera's intrinsics and pose when ``camera_config``
    has an entry for it (``cameraInternal``; ``cameraExternal`` is LiDAR → camera, row-major)."""
    out: dict[str, Any] = {"url": ref["url"], "name": ref["device"]}
    index = _camera_index(str(ref["device"]))
    if not isinstance(config, list) or index is None or index >= len(config):
        return out
    entry = config[index]
    internal = entry.get("cameraInternal") if isinstance(entry, dict) else None
    if isinstance(internal, dict) and all(k in internal for k in ("fx", "fy", "cx", "cy")):
        out["intrinsics"] = {
            "intrinsic_matrix": [
                [internal["fx"], 0.0, internal["cx"]],
                [0.0, internal["fy"], internal["cy"]],
                [0.0, 0.0, 1.0],
            ]
        }
    external = entry.get("cameraExternal") if isinstance(entry, dict) else None
    if isinstance(external, list) and len(external) == 16:
        out["extrinsics"] = camera_pose([float(v) for v in external])
        out["camera_convention"] = "OpenCV"  # x right, y down, z forward (sampledata's cameras)
    return out


def camera_pose(m: Sequence[float]) -> dict[str, Any]:
    """The camera's pose in the LiDAR frame from a row-major LiDAR → camera matrix [R | t]:
    rotation Rᵀ (as a quaternion) and position -Rᵀ t."""
    r = [[m[0], m[1], m[2]], [m[4], m[5], m[6]], [m[8], m[9], m[10]]]
    t = [m[3], m[7], m[11]]
    rt = [[r[j][i] for j in range(3)] for i in range(3)]
    pos = [-sum(rt[i][k] * t[k] for k in range(3)) for i in range(3)]
    qw, qx, qy, qz = _quaternion(rt)
    return {
        "translation": {"x": pos[0], "y": pos[1], "z": pos[2]},
        "rotation": {"qx": qx, "qy": qy, "qz": qz, "qw": qw},
    }


def _quaternion(r: list[list[float]]) -> tuple[float, float, float, float]:
    trace = r[0][0] + r[1][1] + r[2][2]
    if trace > 0:
        s = math.sqrt(trace + 1.0) * 2
        return (0.25 * s, (r[2][1] - r[1][2]) / s, (r[0][2] - r[2][0]) / s, (r[1][0] - r[0][1]) / s)
    if r[0][0] > r[1][1] and r[0][0] > r[2][2]:
        s = math.sqrt(1.0 + r[0][0] - r[1][1] - r[2][2]) * 2
        return ((r[2][1] - r[1][2]) / s, 0.25 * s, (r[0][1] + r[1][0]) / s, (r[0][2] + r[2][0]) / s)
    if r[1][1] > r[2][2]:
        s = math.sqrt(1.0 + r[1][1] - r[0][0] - r[2][2]) * 2
        return ((r[0][2] - r[2][0]) / s, (r[0][1] + r[1][0]) / s, 0.25 * s, (r[1][2] + r[2][1]) / s)
    s = math.sqrt(1.0 + r[2][2] - r[0][0] - r[1][1]) * 2
    return ((r[1][0] - r[0][1]) / s, (r[0][2] + r[2][0]) / s, (r[1][2] + r[2][1]) / s, 0.25 * s)


def _pointcloud_frame(task_type: str, f: Frame, name: str) -> dict[str, Any]:
    pcd = f.pcd()
    if pcd is None:
        raise _refuse(task_type, f"{name}: frame {f.name!r} has no point cloud")
    if len(f.clouds()) > 1:
        raise _refuse(task_type, f"{name}: frame {f.name!r} has {len(f.clouds())} point clouds")
    config = f.doc("calibration")
    return {
        "pcd": _pcd(pcd),
        "images": [calibrated(r, config) for r in f.images()],
        "name": f.name,
    }


def sample_attributes(
    task_type: str, name: str, frames: Sequence[Frame], scene: bool
) -> dict[str, Any]:
    """The attributes of one sample of ``task_type`` made of ``frames`` (one unless ``scene``)."""
    if not frames:
        raise _refuse(task_type, f"{name}: no frames")
    if task_type in IMAGE_TASKS or task_type in POINTCLOUD_TASKS:
        if scene or len(frames) > 1:
            raise _refuse(task_type, f"{name}: a scene of {len(frames)} frames")
        if task_type in POINTCLOUD_TASKS:
            frame = _pointcloud_frame(task_type, frames[0], name)
            del frame["name"]
            return frame
        images = frames[0].images()
        if len(images) != 1:
            raise _refuse(task_type, f"{name}: {len(images)} images in one data item")
        return {"image": {"url": images[0]["url"]}}
    if task_type in IMAGE_SEQUENCE_TASKS:
        out = []
        for f in frames:
            images = f.images()
            if len(images) != 1:
                raise _refuse(task_type, f"{name}: frame {f.name!r} has {len(images)} images")
            out.append({"image": {"url": images[0]["url"]}, "name": f.name})
        return {"frames": out}
    if task_type in POINTCLOUD_SEQUENCE_TASKS:
        return {"frames": [_pointcloud_frame(task_type, f, name) for f in frames]}
    # multisensor-sequence: the LiDAR and every camera, each a sequence of the same frames
    # Every sensor holds every frame: frame n of a label is frame n of each sensor.
    sensors: list[dict[str, Any]] = []
    lidars = sorted({r["device"] for f in frames for r in f.clouds()})
    for lidar in lidars:
        clouds = [
            {"pcd": _pcd(r), "name": f.name}
            for f in frames
            for r in f.clouds()
            if r["device"] == lidar
        ]
        if len(clouds) != len(frames):
            raise _refuse(task_type, f"{name}: {lidar} lacks some frames")
        sensors.append(
            {
                # the first LiDAR is "lidar": 3D pre-labels and the label editor's main sensor
                "name": LIDAR_SENSOR if lidar == lidars[0] else lidar,
                "task_type": "pointcloud-cuboid-sequence",
                "attributes": {"frames": clouds},
            }
        )
    cameras = sorted({r["device"] for f in frames for r in f.images()})
    for cam in cameras:
        shots = [
            {"image": {"url": r["url"]}, "name": f.name}
            for f in frames
            for r in f.images()
            if r["device"] == cam
        ]
        if len(shots) != len(frames):
            raise _refuse(task_type, f"{name}: {cam} lacks some frames")
        sensors.append(
            {"name": cam, "task_type": "image-vector-sequence", "attributes": {"frames": shots}}
        )
    if not sensors:
        raise _refuse(task_type, f"{name}: no point cloud and no image")
    return {"sensors": sensors}


# --- pre-labels → label attributes -----------------------------------------------------------


def result_objects(doc: Any) -> list[dict[str, Any]]:
    """The objects of a result document: ``{"objects": [...]}`` or a list of such blocks."""
    blocks = doc if isinstance(doc, list) else [doc]
    out: list[dict[str, Any]] = []
    for b in blocks:
        objs = b.get("objects", b.get("instances")) if isinstance(b, dict) else None
        out += [o for o in objs or [] if isinstance(o, dict)]
    return out


class Tracks:
    """Local track ids (strings) → Segments' integer track ids, per sample."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.next = 1

    def get(self, local: Any) -> int:
        if local is None or local == "":
            self.next += 1
            return self.next - 1
        key = str(local)
        if key not in self.ids:
            self.ids[key] = self.next
            self.next += 1
        return self.ids[key]


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) else 0.0


def _annotation(
    o: dict[str, Any], category: int, ident: int, track: int | None
) -> tuple[str, dict[str, Any]]:
    """One result object as a Segments annotation; returns (``3d`` | ``2d``, annotation)."""
    kind = str(o.get("type") or "")
    found = o.get("contour")
    contour: dict[str, Any] = found if isinstance(found, dict) else {}
    ann: dict[str, Any] = {"id": ident, "category_id": category}
    if kind in ("3D_BOX", "CUBOID"):
        c, s, r = (contour.get(k) or {} for k in ("center3D", "size3D", "rotation3D"))
        ann.update(
            type="cuboid",
            position={"x": _num(c.get("x")), "y": _num(c.get("y")), "z": _num(c.get("z"))},
            dimensions={"x": _num(s.get("x")), "y": _num(s.get("y")), "z": _num(s.get("z"))},
            yaw=_num(r.get("z")),
        )
        dim = "3d"
    elif kind in ("2D_RECT", "2D_BOX", "RECTANGLE", "BOUNDING_BOX"):
        corners = [p for p in contour.get("points") or [] if isinstance(p, dict)]
        xs, ys = [_num(p.get("x")) for p in corners], [_num(p.get("y")) for p in corners]
        if not xs:
            raise ValueError("a 2D box without points")
        ann.update(type="bbox", points=[[min(xs), min(ys)], [max(xs), max(ys)]])
        dim = "2d"
    elif kind in ("POLYGON", "POLYLINE", "POINT"):
        line = [[_num(p.get("x")), _num(p.get("y"))] for p in contour.get("points") or []]
        ann.update(type=kind.lower(), points=line)
        dim = "2d"
    else:
        raise ValueError(f"object type {kind!r} has no Segments.ai counterpart")
    if track is not None:
        ann.update(track_id=track, is_keyframe=True)
    return dim, ann


def label_attributes(
    task_type: str, frames: Sequence[Frame], categories: dict[str, int], where: str
) -> dict[str, Any] | None:
    """The pre-labels of the frames as label attributes of ``task_type``; None when no frame has any.

    Class names must be among ``categories`` (bound before upload).
    """
    docs = [f.doc("prelabel") for f in frames]
    if all(d is None for d in docs):
        return None
    sequence = is_sequence(task_type)
    tracks = Tracks()
    per_frame: list[dict[str, list[dict[str, Any]]]] = []
    for f, doc in zip(frames, docs, strict=True):
        got: dict[str, list[dict[str, Any]]] = {"3d": [], "2d": []}
        for i, o in enumerate(result_objects(doc) if doc is not None else []):
            cls = o.get("className")
            if cls not in categories:
                raise PermanentError(
                    f"{where}: pre-label class {cls!r} of frame {f.name!r} is not a category "
                    "of the dataset",
                    platform=PLATFORM,
                )
            track = tracks.get(o.get("trackId")) if sequence else None
            try:
                dim, ann = _annotation(o, categories[str(cls)], track if track else i + 1, track)
            except ValueError as exc:
                raise PermanentError(
                    f"{where}: frame {f.name!r}: {exc}", platform=PLATFORM
                ) from None
            got[dim].append(ann)
        per_frame.append(got)
    if not sequence:
        (only,) = per_frame
        dim = "3d" if task_type in POINTCLOUD_TASKS else "2d"
        if only["3d" if dim == "2d" else "2d"]:
            raise _refuse(task_type, f"{where}: pre-labels of the other dimension")
        return {"format_version": "0.2" if dim == "3d" else "0.1", "annotations": only[dim]}
    if task_type != MULTISENSOR:
        dim = "2d" if task_type in IMAGE_SEQUENCE_TASKS else "3d"
        return {
            "format_version": "0.2",
            "frames": [{"format_version": "0.2", "annotations": g[dim]} for g in per_frame],
        }
    sensors = []
    if any(g["3d"] for g in per_frame):
        sensors.append(
            {
                "name": LIDAR_SENSOR,
                "task_type": "pointcloud-cuboid-sequence",
                "attributes": {
                    "format_version": "0.2",
                    "frames": [
                        {"format_version": "0.2", "annotations": g["3d"]} for g in per_frame
                    ],
                },
            }
        )
    if any(g["2d"] for g in per_frame):
        cameras = sorted({r["device"] for f in frames for r in f.images()})
        if not cameras:
            raise _refuse(task_type, f"{where}: 2D pre-labels without a camera")
        sensors.append(
            {
                "name": cameras[0],
                "task_type": "image-vector-sequence",
                "attributes": {
                    "format_version": "0.2",
                    "frames": [
                        {"format_version": "0.2", "annotations": g["2d"]} for g in per_frame
                    ],
                },
            }
        )
    return {"sensors": sensors}


# --- a sample's frames and labels, read back -------------------------------------------------


def frame_names(sample: dict[str, Any]) -> list[str]:
    """The frame names of a sample (data names); ``<sample>#<n>`` where a frame has none."""
    attrs = sample.get("attributes") or {}
    frames: list[Any] = []
    if isinstance(attrs.get("frames"), list):
        frames = attrs["frames"]
    elif isinstance(attrs.get("sensors"), list) and attrs["sensors"]:
        frames = max(
            ((s.get("attributes") or {}).get("frames") or [] for s in attrs["sensors"]), key=len
        )
    else:
        return [str(sample["name"])]
    return [
        str(f.get("name")) if isinstance(f, dict) and f.get("name") else f"{sample['name']}#{i}"
        for i, f in enumerate(frames)
    ]


def frame_annotations(
    attrs: Any, index: int, frames: int
) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(sensor, annotation) of frame ``index`` of label attributes (a single-frame label: all)."""
    if not isinstance(attrs, dict):
        return
    if isinstance(attrs.get("sensors"), list):
        for s in attrs["sensors"]:
            inner = s.get("attributes") if isinstance(s, dict) else None
            for a in _frame_of(inner, index):
                yield str(s.get("name")), a
        return
    if isinstance(attrs.get("frames"), list):
        yield from ((None, a) for a in _frame_of(attrs, index))
        return
    if index == 0 or frames <= 1:
        yield from ((None, a) for a in attrs.get("annotations") or [] if isinstance(a, dict))


def _frame_of(attrs: Any, index: int) -> list[dict[str, Any]]:
    if not isinstance(attrs, dict) or not isinstance(attrs.get("frames"), list):
        return []
    frames = attrs["frames"]
    if index >= len(frames) or not isinstance(frames[index], dict):
        return []
    return [a for a in frames[index].get("annotations") or [] if isinstance(a, dict)]
