"""What the Deepen sandbox's preprocessing accepts: Deepen's documented input formats.

Sources: https://help.deepen.ai/documentation/3d-input-output/3d-upload-json-format (JSON
frames at the zip root; images referenced by ``image_url``),
https://help.deepen.ai/documentation/3d-input-output/data-input-format-3d-pcd-upload-advanced-users-only
(``config.json`` with ``primary_sensor_id`` and ``sensors``; images named
``{pcd file name}.pcd.<ext>``) and the quickstart
https://help.deepen.ai/documentation/api-reference/deepen-ai-tools-api-reference
(image datasets; file ids are paths inside the zip).

Contract: :func:`file_ids` returns the file ids Deepen lists after
preprocessing (a JSON frame ``000042.json`` becomes ``000042.pcd``; a PCD keeps
its file name; an image keeps its path), or raises :class:`Invalid` with a
message naming the problem — the text the dataset's
``processing_status_message`` carries with ``preprocessing_error``.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import PurePosixPath
from typing import Any

IMAGE_EXTS = (".jpg", ".jpeg", ".png")
_NUM = (int, float)


class Invalid(Exception):
    """The zip is not in the dataset's format (the message says why)."""


def file_ids(z: zipfile.ZipFile, zip_name: str, dataset_type: str, fmt: str | None) -> list[str]:
    names = [
        i.filename
        for i in z.infolist()
        if not i.is_dir() and not i.filename.startswith("__MACOSX/")
    ]
    if dataset_type == "images":
        ids = sorted(n for n in names if n.lower().endswith(IMAGE_EXTS))
        if not ids:
            raise Invalid(f"no images (.jpg, .jpeg, .png) found in {zip_name}")
        return ids
    if fmt == "json":
        return _json_frames(z, names, zip_name)
    return _pcd_format(z, names, zip_name)


def _folders(names: list[str]) -> str:
    tops = sorted({n.split("/", 1)[0] + "/" for n in names if "/" in n})
    return ", ".join(tops[:6]) or "none"


def _is_num(v: Any) -> bool:
    return isinstance(v, _NUM) and not isinstance(v, bool) and math.isfinite(v)


def _vec(doc: Any, keys: str, where: str) -> list[float]:
    if not isinstance(doc, dict) or not all(_is_num(doc.get(k)) for k in keys):
        raise Invalid(f"{where} must be an object with numeric {', '.join(keys)}")
    return [float(doc[k]) for k in keys]


def _quat(doc: Any, where: str) -> None:
    q = _vec(doc, "xyzw", where)
    if abs(math.sqrt(sum(v * v for v in q)) - 1.0) > 1e-3:
        raise Invalid(f"{where} is not a unit quaternion")


def _json_frames(z: zipfile.ZipFile, names: list[str], zip_name: str) -> list[str]:
    present = set(names)
    frames = sorted(n for n in names if "/" not in n and n.lower().endswith(".json"))
    if not frames:
        raise Invalid(
            f"no frame JSON files at the root of {zip_name} (the JSON format wants one "
            f"<frame>.json per point-cloud frame at the zip root); folders found: {_folders(names)}"
        )
    cameras: int | None = None
    for name in frames:
        try:
            doc = json.loads(z.read(name))
        except (ValueError, UnicodeDecodeError) as exc:
            raise Invalid(f"{name} is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise Invalid(f"{name}: a frame must be a JSON object")
        missing = [
            k
            for k in ("timestamp", "points", "device_position", "device_heading", "images")
            if k not in doc
        ]
        if missing:
            raise Invalid(f"{name}: missing {', '.join(missing)}")
        if not _is_num(doc["timestamp"]):
            raise Invalid(f"{name}: timestamp must be a number (seconds)")
        _vec(doc["device_position"], "xyz", f"{name}: device_position")
        _quat(doc["device_heading"], f"{name}: device_heading")
        points = doc["points"]
        if not isinstance(points, list):
            raise Invalid(f"{name}: points must be a list")
        # Every point of small frames; a stride through big ones (the sandbox's CPU is shared).
        step = max(1, len(points) // 10_000)
        for n in range(0, len(points), step):
            p = points[n]
            _vec(p, "xyz", f"{name}: points[{n}]")
            if "i" in p and not _is_num(p["i"]):
                raise Invalid(f"{name}: points[{n}].i must be a number")
        images = doc["images"]
        if not isinstance(images, list):
            raise Invalid(f"{name}: images must be a list")
        if cameras is not None and len(images) != cameras:
            raise Invalid(f"{name}: {len(images)} images, other frames have {cameras}")
        cameras = len(images)
        for n, img in enumerate(images):
            where = f"{name}: images[{n}]"
            if not isinstance(img, dict):
                raise Invalid(f"{where} must be an object")
            _vec(img, ("fx", "fy", "cx", "cy", "timestamp"), where)  # type: ignore[arg-type]
            _vec(img.get("position"), "xyz", f"{where}.position")
            _quat(img.get("heading"), f"{where}.heading")
            url = img.get("image_url")
            if not isinstance(url, str) or not url.lower().endswith(IMAGE_EXTS):
                raise Invalid(f"{where}.image_url must name a .jpg, .jpeg or .png image")
            if not url.startswith(("http://", "https://")) and url not in present:
                raise Invalid(f"{where}.image_url {url} is not in {zip_name}")
    return [PurePosixPath(n).stem + ".pcd" for n in frames]


def _matrix(m: Any, where: str) -> None:
    if not (
        isinstance(m, list)
        and len(m) == 4
        and all(isinstance(r, list) and len(r) == 4 and all(map(_is_num, r)) for r in m)
    ):
        raise Invalid(f"{where} must be a 4x4 matrix (four rows of four numbers)")


def _pcd_format(z: zipfile.ZipFile, names: list[str], zip_name: str) -> list[str]:
    if "config.json" not in names:
        raise Invalid(
            f"config.json is missing at the root of {zip_name} (required by the PCD format); "
            f"folders found: {_folders(names)}"
        )
    try:
        cfg = json.loads(z.read("config.json"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"config.json is not valid JSON: {exc}") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("sensors"), dict):
        raise Invalid("config.json: sensors must be an object keyed by sensor id")
    primary = cfg.get("primary_sensor_id")
    sensors: dict[str, Any] = cfg["sensors"]
    if primary != "lidar" or not isinstance(sensors.get("lidar"), dict):
        raise Invalid("config.json: primary_sensor_id must be 'lidar', with a sensors.lidar entry")
    for sid, s in sensors.items():
        if not isinstance(s, dict) or not isinstance(s.get("content"), str):
            raise Invalid(f"config.json: sensors.{sid}.content must name the sensor's folder")
        if s.get("sensor_type", "camera" if sid != "lidar" else "lidar") not in ("lidar", "camera"):
            raise Invalid(f"config.json: sensors.{sid}.sensor_type must be lidar or camera")
    lidar = sensors["lidar"]
    prefix = lidar["content"].strip("/") + "/"
    clouds = sorted(
        n[len(prefix) :]
        for n in names
        if n.startswith(prefix) and "/" not in n[len(prefix) :] and n.lower().endswith(".pcd")
    )
    if not clouds:
        raise Invalid(f"no .pcd files in the LiDAR folder {prefix} of {zip_name}")
    for cam, fusion in (lidar.get("sensor_fusion") or {}).items():
        if cam not in sensors:
            raise Invalid(f"config.json: sensor_fusion names an unknown sensor {cam}")
        _matrix((fusion or {}).get("view_matrix"), f"config.json: sensor_fusion.{cam}.view_matrix")
    known = set(clouds)
    for sid, s in sensors.items():
        if sid == "lidar":
            continue
        ext = s.get("extension")
        if ext not in ("jpg", "jpeg", "png"):
            raise Invalid(f"config.json: sensors.{sid}.extension must be jpg or png")
        folder = s["content"].strip("/") + "/"
        for n in names:
            if n.startswith(folder) and "/" not in n[len(folder) :]:
                base = n[len(folder) :]
                pcd_name = base.removesuffix(f".{ext}")
                if base == pcd_name or pcd_name not in known:
                    raise Invalid(
                        f"{n}: camera images must be named <pcd file name>.{ext} "
                        f"after a point cloud in {prefix}"
                    )
    return clouds
