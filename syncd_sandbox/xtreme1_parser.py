"""Xtreme1's archive parser, as the real backend applies it (docs/platforms/xtreme1.md).

:func:`parse_archive` reads a zip from disk (zip64-capable, member by member)
and returns what the backend would import: scenes and data items with their
files, result objects (only when a ``resultType`` was sent), and the
``;``-joined messages the backend writes into ``errorMessage``. Name
collisions with the dataset are decided later, by the state, which knows the
existing names.
"""

from __future__ import annotations

import json
import re
import struct
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

DATA_DIR = {
    "LIDAR_FUSION": re.compile(r"^lidar_point_cloud_\d$"),
    "LIDAR_BASIC": re.compile(r"^lidar_point_cloud_\d$"),
    "IMAGE": re.compile(r"^image_\d$"),
}
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
OBJECT_TYPES = {
    "3D_BOX",
    "2D_BOX",
    "2D_RECT",
    "BOUNDING_BOX",
    "POLYLINE",
    "POLYGON",
    "3D_SEGMENT_POINTS",
}


class ArchiveFailed(Exception):
    """The whole archive fails (the record ends FAILED with this message)."""


class ArchiveUnreadable(Exception):
    """The archive cannot be unpacked: the real backend leaves the record where it is."""


@dataclass
class ParsedFile:
    folder: str  # the sibling folder name, e.g. camera_image_0
    name: str
    zip_member: str
    size: int
    width: int | None = None
    height: int | None = None


@dataclass
class ParsedItem:
    name: str
    files: list[ParsedFile] = field(default_factory=list)
    objects: list[dict[str, Any]] | None = None  # None: no result file


@dataclass
class ParsedBatch:
    """Five consecutive data names, as ``ListUtil.split(dataNameList, 5)`` cuts them.

    ``items`` leaves out names skipped for duplicate files; ``decodable`` is
    False when one of its images cannot be decoded, which drops the batch.
    """

    items: list[ParsedItem] = field(default_factory=list)
    decodable: bool = True


@dataclass
class ParsedScene:
    name: str | None  # None: frames are top-level items
    names: int = 0  # data names found (the record's totalDataNum counts these)
    batches: list[ParsedBatch] = field(default_factory=list)

    @property
    def items(self) -> list[ParsedItem]:
        """The items that survive parsing (the batches that decode)."""
        return [i for b in self.batches if b.decodable for i in b.items]


@dataclass
class ParseResult:
    scenes: list[ParsedScene] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG or JPEG header, or None if it is not a decodable image."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return (w, h) if w and h else None
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            (length,) = struct.unpack(">H", data[i + 2 : i + 4])
            if marker in (0xC0, 0xC1, 0xC2):
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return (w, h)
            i += 2 + length
    return None


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else name


def parse_archive(
    path: Path, dataset_type: str, *, with_results: bool, class_ids: dict[int, str]
) -> ParseResult:
    """Parse an archive by the backend's rules; raises ArchiveFailed for whole-archive failures.

    An archive that cannot be opened raises :class:`ArchiveUnreadable`: the
    backend's ``DecompressionFileUtils.decompress`` throws an IOException that
    ``UploadDataUseCase.upload`` only logs, so the record never moves on.
    Entries whose path contains ``__MACOSX`` anywhere are skipped, and
    directory entries are folders of their own (an empty
    ``lidar_point_cloud_0/`` makes its parent a folder with no data), as
    unpacking them on disk does.
    """
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveUnreadable(str(exc)) from exc
    with zf:
        entries = [m for m in zf.infolist() if "__MACOSX" not in m.filename]
        dirs: dict[str, dict[str, zipfile.ZipInfo]] = {}
        for m in entries:
            p = PurePosixPath(m.filename)
            if m.is_dir():
                dirs.setdefault(str(p), {})
                continue
            for parent in p.parents:  # every folder on the way exists once unpacked
                dirs.setdefault(str(parent), {})
            dirs[str(p.parent)][p.name] = m
        pattern = DATA_DIR.get(dataset_type, DATA_DIR["LIDAR_FUSION"])
        scene_folders: dict[str, list[str]] = {}
        for d in dirs:
            p = PurePosixPath(d)
            if pattern.match(p.name.lower()):
                scene_folders.setdefault(str(p.parent), []).append(d)
        if not scene_folders:
            raise ArchiveFailed("The format of the compressed package is incorrect")
        result = ParseResult()
        for folder in sorted(scene_folders):
            result.scenes.append(
                _parse_scene(
                    zf,
                    dirs,
                    folder,
                    scene_folders[folder],
                    dataset_type,
                    with_results,
                    class_ids,
                    result.errors,
                )
            )
        return result


def _children(dirs: dict[str, dict[str, zipfile.ZipInfo]], folder: str) -> list[str]:
    return sorted(d for d in dirs if str(PurePosixPath(d).parent) == folder and d != folder)


def _parse_scene(
    zf: zipfile.ZipFile,
    dirs: dict[str, dict[str, zipfile.ZipInfo]],
    folder: str,
    data_dirs: list[str],
    dataset_type: str,
    with_results: bool,
    class_ids: dict[int, str],
    errors: list[str],
) -> ParsedScene:
    base = PurePosixPath(folder).name
    scene = ParsedScene(name=base if base.lower().startswith("scene_") else None)
    image = dataset_type == "IMAGE"
    names: set[str] = set()
    for d in data_dirs:
        for fname in dirs[d]:
            ext = PurePosixPath(fname).suffix.lower()
            if (image and ext in IMAGE_EXT) or (not image and ext == ".pcd"):
                names.add(_stem(fname))
    if image:
        siblings = [
            d
            for d in _children(dirs, folder)
            if re.match(r"^image_\d$", PurePosixPath(d).name.lower())
        ]
    else:
        siblings = [
            d
            for d in _children(dirs, folder)
            if re.match(
                r"^(camera_image.*|lidar_point_cloud.*|camera_config)$",
                PurePosixPath(d).name.lower(),
            )
        ]
    ordered = sorted(names)
    scene.names = len(ordered)
    for start in range(0, len(ordered), 5):
        batch = ParsedBatch()
        for name in ordered[start : start + 5]:
            item = _parse_item(zf, dirs, folder, name, siblings, with_results, class_ids, errors)
            if item is not None:
                batch.items.append(item)
        # The backend reads image sizes (ImageIO) inside the batch's task; one
        # undecodable image throws and the whole batch of five is lost.
        batch.decodable = all(_decode_images(zf, it) for it in batch.items)
        scene.batches.append(batch)
    return scene


def _parse_item(
    zf: zipfile.ZipFile,
    dirs: dict[str, dict[str, zipfile.ZipInfo]],
    folder: str,
    name: str,
    siblings: list[str],
    with_results: bool,
    class_ids: dict[int, str],
    errors: list[str],
) -> ParsedItem | None:
    """One data item, or None when a sibling folder holds two files for it."""
    item = ParsedItem(name=name)
    for d in siblings:
        dname = PurePosixPath(d).name
        low = dname.lower()
        matches = [
            m for fname, m in dirs[d].items() if _stem(fname) == name and _accepts(low, fname)
        ]
        if len(matches) > 1:
            # UploadDataUseCase.getSingleDataFiles: no ';' after this message.
            errors.append(f"There are duplicate files in {dname} folder,file name is {name}")
            return None
        if matches:
            m = matches[0]
            item.files.append(
                ParsedFile(
                    folder=dname,
                    name=PurePosixPath(m.filename).name,
                    zip_member=m.filename,
                    size=m.file_size,
                )
            )
    if with_results:
        item.objects = _result(zf, dirs, folder, name, class_ids, errors)
    return item


def _accepts(folder: str, fname: str) -> bool:
    ext = PurePosixPath(fname).suffix.lower()
    if folder.startswith("camera_image") or re.match(r"^image_\d$", folder):
        return ext in IMAGE_EXT
    if folder.startswith("lidar_point_cloud"):
        return ext == ".pcd"
    return ext == ".json"


def _decode_images(zf: zipfile.ZipFile, item: ParsedItem) -> bool:
    ok = True
    for f in item.files:
        if PurePosixPath(f.name).suffix.lower() in IMAGE_EXT:
            with zf.open(f.zip_member) as fh:
                size = image_size(fh.read(64 * 1024))
            if size is None:
                ok = False
            else:
                f.width, f.height = size
    return ok


def _result(
    zf: zipfile.ZipFile,
    dirs: dict[str, dict[str, zipfile.ZipInfo]],
    folder: str,
    name: str,
    class_ids: dict[int, str],
    errors: list[str],
) -> list[dict[str, Any]] | None:
    """``result/<name>.json`` right below the scene folder, objects checked and bound.

    ``UploadDataUseCase.handleDataResult`` walks ``loopFiles(sceneFolder, 2)``
    (depth 2: ``<scene>/result/<name>.json``), takes a file whose parent is
    called ``result`` (any case), whose name ends in ``.json`` (any case) and
    whose prefix equals the data name.
    """
    found = None
    for d, files in sorted(dirs.items()):
        p = PurePosixPath(d)
        if p.name.lower() != "result" or str(p.parent) != folder:
            continue
        for fname, member in sorted(files.items()):
            if fname.upper().endswith(".JSON") and _stem(fname) == name:
                found = member
                break
        if found is not None:
            break
    if found is None:
        return None
    try:
        doc = json.loads(zf.read(found))
    except ValueError:
        # The backend only logs "Handle result json error": no message, no objects.
        return None
    blocks = doc if isinstance(doc, list) else [doc]
    objects: list[dict[str, Any]] = []
    for block in blocks:
        if isinstance(block, dict):
            objects += [o for o in block.get("objects") or [] if isinstance(o, dict)]
    if not objects:
        errors.append(f"{name}.json the objects in the result file cannot be empty;")
        return []
    kept: list[dict[str, Any]] = []
    for o in objects:
        # verifyDataResult appends its message once per offending object.
        if o.get("type") not in OBJECT_TYPES:
            errors.append(f"{name}.json the objects exist object type error;")
            continue
        if not isinstance(o.get("contour"), dict):
            errors.append(f"{name}.json the objects exist object contour miss;")
            continue
        o = dict(o)
        o["id"], o["version"] = uuid.uuid4().hex, 0
        class_id = o.get("classId")
        if isinstance(class_id, int) and class_id in class_ids:
            o["className"] = class_ids[class_id]
        else:
            # A classId that is not one of this dataset's: the object arrives
            # unclassified, its className moved to modelClass
            # (UploadDataUseCase.processClassAttributes).
            o.pop("classId", None)
            o.pop("classValues", None)
            if "className" in o:
                o["modelClass"] = o.pop("className")
        kept.append(o)
    return kept
