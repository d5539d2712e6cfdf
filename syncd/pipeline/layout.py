"""How a unit's files form the platform's data items, and how items are named.

Mirrors the platform's own archive parser (docs/platforms/xtreme1.md, "Archive layout"):
a *scene folder* is the parent of a ``lidar_point_cloud_N`` or ``image_N``
folder; its data names are the base names of the point clouds (or images);
a file joins an item when it lies in a ``camera_image*``,
``lidar_point_cloud*``, ``camera_config``, ``image_N`` or ``result`` folder of
that scene folder and its base name equals the data name.

Contract:

* :func:`group_items` returns *groups*: the smallest sets of files that must
  travel in one archive. A top-level item is a group; a ``scene_*`` folder is
  one group (splitting a scene would make the platform skip the second half as
  a duplicate scene). Files that belong to no item form one extra group.
* :func:`split_groups` packs groups into parts of at most ``max_bytes``,
  never splitting a group (a group larger than the limit gets a part alone).
* :func:`plan_names` makes every top-level name unique against the names the
  platform and other packages already hold, case-insensitively (the
  platform's rule), by suffixing ``_<unit>`` then ``_2``, ``_3``…, keeping a
  ``scene_`` prefix in front.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from syncd.pipeline.scan import FileStat

_DATA_DIR = re.compile(r"^(lidar_point_cloud_\d|image_\d)$", re.IGNORECASE)
_SIBLING = re.compile(
    r"^(camera_image.*|lidar_point_cloud.*|camera_config|image_\d)$", re.IGNORECASE
)
_IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class Group:
    """Files that must travel together; ``name`` is the top-level platform name."""

    key: str  # stable identity: "<scene folder>/<data name>" or "<scene folder>"
    name: str | None  # top-level name on the platform (None: loose files, no item)
    scene: bool
    folder: str  # the scene folder, relative to the unit ("" = the unit root)
    files: list[FileStat] = field(default_factory=list)
    item_names: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def has_results(self) -> bool:
        return any(is_result(f.rel_path) for f in self.files)


def is_result(rel_path: str) -> bool:
    parts = PurePosixPath(rel_path).parts
    return len(parts) >= 2 and parts[-2].lower() == "result" and rel_path.lower().endswith(".json")


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else name


def group_items(files: Sequence[FileStat], unit: str, unit_is_scene: bool) -> list[Group]:
    """Partition a unit's files into groups (see module docstring).

    ``unit_is_scene``: the unit folder itself is named ``scene_*`` and will be
    the archive's wrapper folder, so its root is a scene folder.
    """
    scene_folders: dict[str, set[str]] = {}
    for f in files:
        p = PurePosixPath(f.rel_path)
        if len(p.parts) >= 2 and _DATA_DIR.match(p.parts[-2]):
            folder = str(p.parent.parent) if len(p.parts) > 2 else ""
            folder = "" if folder == "." else folder
            ext = p.suffix.lower()
            if ext == ".pcd" or (p.parts[-2].lower().startswith("image_") and ext in _IMAGE_EXT):
                scene_folders.setdefault(folder, set()).add(_stem(p.name))
    groups: dict[str, Group] = {}
    loose = Group(key="(other files)", name=None, scene=False, folder="")
    for f in files:
        g = _group_for(f, scene_folders, unit, unit_is_scene, groups)
        (g or loose).files.append(f)
    out = sorted(groups.values(), key=lambda g: g.key)
    if loose.files:
        out.append(loose)
    return out


def _is_scene_name(name: str) -> bool:
    return name.lower().startswith("scene_")


def _group_for(
    f: FileStat,
    scene_folders: dict[str, set[str]],
    unit: str,
    unit_is_scene: bool,
    groups: dict[str, Group],
) -> Group | None:
    p = PurePosixPath(f.rel_path)
    # The deepest scene folder that contains this file.
    for depth in range(len(p.parts) - 1, -1, -1):
        folder = "/".join(p.parts[:depth])
        if folder not in scene_folders:
            continue
        rest = p.parts[depth:]
        names = scene_folders[folder]
        scene_name = PurePosixPath(folder).name if folder else (unit if unit_is_scene else "")
        if scene_name and _is_scene_name(scene_name):
            g = groups.setdefault(
                folder, Group(key=folder or unit, name=scene_name, scene=True, folder=folder)
            )
            stem = _stem(rest[-1])
            if len(rest) >= 2 and stem in names and stem not in g.item_names:
                g.item_names.append(stem)
            return g
        stem = _stem(rest[-1])
        belongs = (len(rest) == 2 and _SIBLING.match(rest[0])) or (
            2 <= len(rest) <= 3 and rest[-2].lower() == "result"
        )
        if belongs and stem in names:
            key = f"{folder}/{stem}"
            g = groups.setdefault(key, Group(key=key, name=stem, scene=False, folder=folder))
            g.item_names = [stem]
            return g
        return None
    return None


def split_groups(groups: Sequence[Group], max_bytes: int) -> list[list[Group]]:
    """Greedy, order-preserving packing of groups into parts of at most ``max_bytes``."""
    parts: list[list[Group]] = []
    current: list[Group] = []
    size = 0
    for g in groups:
        if current and size + g.size > max_bytes:
            parts.append(current)
            current, size = [], 0
        current.append(g)
        size += g.size
    if current:
        parts.append(current)
    return parts


def plan_names(groups: Iterable[Group], taken: set[str], unit: str) -> dict[str, str]:
    """New names for groups whose top-level name is taken: ``{old: new}`` (case-insensitive)."""
    lower_taken = {t.lower() for t in taken}
    renames: dict[str, str] = {}
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", unit).strip("-") or "unit"
    for g in groups:
        if g.name is None:
            continue
        if g.name.lower() in lower_taken:
            candidate = f"{g.name}_{slug}"
            n = 2
            while candidate.lower() in lower_taken:
                candidate = f"{g.name}_{slug}_{n}"
                n += 1
            renames[g.name] = candidate
            lower_taken.add(candidate.lower())
        else:
            lower_taken.add(g.name.lower())
    return renames


def arcname_for(f: FileStat, group: Group, renames: dict[str, str], wrapper: str) -> str:
    """The file's path inside the archive, with the group's new name applied."""
    p = PurePosixPath(f.rel_path)
    if group.name is not None and group.name in renames:
        new = renames[group.name]
        if group.scene:
            if group.folder:
                parts = list(p.parts)
                depth = len(PurePosixPath(group.folder).parts)
                parts[depth - 1] = new
                p = PurePosixPath(*parts)
            else:
                wrapper = new
        else:
            p = p.with_name(new + p.name[len(group.name) :])
    return f"{wrapper}/{p}"
