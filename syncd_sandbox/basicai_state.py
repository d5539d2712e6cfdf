"""The BasicAI Cloud sandbox's data: datasets, items (data, scenes), sources, results.

Everything is in memory behind one lock; uploaded files live in the shared
object store. Ids come from one counter, so every new item sorts after every
older one: ``listItemById`` walks them in id order and a traversal that is
under way sees items added meanwhile at its end (the guide's "continuity").

Where the public guide does not say what a body or a listing holds (marked
under "Still a guess" in docs/platforms/basicai.md), the sandbox accepts
exactly what :mod:`syncd.remotes.basicai` sends and rejects anything else with
``ILLEGAL_PARAM``: the two must be corrected together against a real account.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from syncd_sandbox.objectstore import ObjectStore
from syncd_sandbox.ratelimit import RateWindows

BUCKET = "basicai-prod-app-default"
TEAM_ID = 7
# The guide: per API key, 100/s, 3000/min, 72000/h, 864000/day.
RATE_WINDOWS: list[tuple[int, float]] = [
    (100, 1.0),
    (3000, 60.0),
    (72000, 3600.0),
    (864000, 86400.0),
]
DATASET_TYPES = ("LIDAR", "LIDAR_BASIC", "LIDAR_FUSION", "IMAGE", "AV")
MAX_PRESIGN_BYTES = 1 << 30  # presigned URLs are for files up to 1 GB (the guide)
GROUND_TRUTH = 1  # the source id of the dataset's own (annotators') results


class Business(Exception):
    """Becomes HTTP 200 with a non-OK ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class DatasetRow:
    id: int
    name: str
    type: str


@dataclass
class ItemRow:
    id: int
    dataset_id: int
    name: str
    type: str  # DATA | SCENE
    parent_id: int | None
    files: list[dict[str, Any]] = field(default_factory=list)
    annotation_status: str = "NOT_ANNOTATED"
    # source id → the result of that source (instances + classifications)
    results: dict[int, dict[str, Any]] = field(default_factory=dict)

    def dto(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "datasetId": self.dataset_id,
            "name": self.name,
            "type": self.type,
            "parentId": self.parent_id,
            "annotationStatus": self.annotation_status,
            "files": self.files,
        }


@dataclass
class SourceRow:
    id: int
    name: str
    type: str  # DATA_FLOW (annotators) | MODEL


class BasicAIState:
    """All sandbox state: one API key, its rate windows, the object store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.lock = threading.RLock()
        self.datasets: dict[int, DatasetRow] = {}
        self.items: dict[int, ItemRow] = {}
        self.sources: dict[int, SourceRow] = {
            GROUND_TRUTH: SourceRow(GROUND_TRUTH, "Ground Truth", "DATA_FLOW")
        }
        self.requests: dict[str, int] = {}
        self.add_calls: list[dict[str, Any]] = []
        self.limits = RateWindows(RATE_WINDOWS)
        # results_shape: "nested" ({dataId, results: [...]}) or "flat" (one entry per item and
        # source, as the export format's result files); dataset_type_naming: "export"
        # (LIDAR_FUSION, LIDAR_BASIC) or "worked_example" (LIDAR) in dataset listings. Both
        # are shapes the public docs show: tests prove syncd reads either.
        self.config: dict[str, Any] = {
            "license_expired": False,
            "results_shape": "nested",
            "dataset_type_naming": "export",
        }
        self._next = {"dataset": 0, "item": 1000, "source": 1}

    def new_id(self, kind: str) -> int:
        with self.lock:
            self._next[kind] += 1
            return self._next[kind]

    def set_windows(self, windows: list[tuple[int, float]]) -> None:
        with self.lock:
            self.limits = RateWindows(windows)

    # --- datasets ------------------------------------------------------------------

    def dataset(self, dataset_id: int) -> DatasetRow:
        row = self.datasets.get(dataset_id)
        if row is None:
            raise Business("RESOURCE_NOT_FOUND", f"dataset {dataset_id} not found")
        return row

    def create_dataset(self, name: str, type_: str) -> DatasetRow:
        with self.lock:
            if any(d.name.lower() == name.lower() for d in self.datasets.values()):
                raise Business("NAME_DUPLICATED", f"dataset name {name!r} already exists")
            row = DatasetRow(self.new_id("dataset"), name, type_)
            self.datasets[row.id] = row
            return row

    # --- data ----------------------------------------------------------------------------

    def top_names(self, dataset_id: int) -> set[str]:
        return {
            i.name.lower()
            for i in self.items.values()
            if i.dataset_id == dataset_id and i.parent_id is None
        }

    def check_files(self, files: Any) -> list[dict[str, Any]]:
        """The ``files`` of one data entry, each an uploaded object of the declared size."""
        if not isinstance(files, list) or not files:
            raise Business("ILLEGAL_PARAM", "files must be a non-empty array")
        out = []
        for f in files:
            if not isinstance(f, dict):
                raise Business("ILLEGAL_PARAM", "each file must be an object")
            for key in ("deviceName", "filename", "path", "size"):
                if f.get(key) in (None, ""):
                    raise Business("ILLEGAL_PARAM", f"file.{key} must not be empty")
            key = str(f["path"])
            obj = self.store.objects.get(f"{BUCKET}/{key}")
            if obj is None:
                raise Business("RESOURCE_NOT_FOUND", f"no uploaded object at {key}")
            if obj.size != f["size"]:
                raise Business(
                    "ILLEGAL_PARAM", f"{key}: size {f['size']} but {obj.size} bytes were uploaded"
                )
            out.append(
                {
                    "deviceName": str(f["deviceName"]),
                    "filename": str(f["filename"]),
                    "path": key,
                    "size": obj.size,
                }
            )
        return out

    def _prelabels(self, files: list[dict[str, Any]]) -> dict[str, Any] | None:
        for f in files:
            if f["deviceName"] == "result":
                try:
                    doc = json.loads(self.store.path(BUCKET, f["path"]).read_bytes())
                except (OSError, ValueError):
                    raise Business("ILLEGAL_FORMAT", f"{f['filename']}: not JSON") from None
                objects = (
                    doc.get("instances", doc.get("objects")) if isinstance(doc, dict) else None
                )
                if not isinstance(objects, list):
                    raise Business("ILLEGAL_FORMAT", f"{f['filename']}: no objects list")
                return {"instances": objects, "classificationValues": []}
        return None

    def add_data(
        self, dataset_id: int, entries: list[Any], *, scene: str | None = None
    ) -> list[ItemRow]:
        """Validate every entry first, then create them all (all or nothing)."""
        with self.lock:
            self.dataset(dataset_id)
            taken = self.top_names(dataset_id)
            seen: set[str] = set()
            checked: list[tuple[str, list[dict[str, Any]]]] = []
            if scene is not None and scene.lower() in taken:
                raise Business("NAME_DUPLICATED", f"scene {scene!r} already exists")
            for e in entries:
                if not isinstance(e, dict) or not isinstance(e.get("name"), str) or not e["name"]:
                    raise Business("ILLEGAL_PARAM", "each data entry needs a name")
                name = e["name"]
                if name.lower() in seen or (scene is None and name.lower() in taken):
                    raise Business("NAME_DUPLICATED", f"data name {name!r} already exists")
                seen.add(name.lower())
                checked.append((name, self.check_files(e.get("files"))))
            created: list[ItemRow] = []
            parent: int | None = None
            if scene is not None:
                row = ItemRow(self.new_id("item"), dataset_id, scene, "SCENE", None)
                self.items[row.id] = row
                created.append(row)
                parent = row.id
            for name, files in checked:
                row = ItemRow(self.new_id("item"), dataset_id, name, "DATA", parent, files)
                pre = self._prelabels(files)
                if pre is not None:
                    row.results[GROUND_TRUTH] = pre
                self.items[row.id] = row
                created.append(row)
            return created

    def seed(
        self, dataset_id: int, items: int, objects: int, annotated_every: int = 0
    ) -> list[int]:
        """Add ``items`` point-cloud data items with ``objects`` ground-truth boxes each.

        The fast path for benchmarks: the rows ``batchAddData`` would create,
        without uploaded objects. Every ``annotated_every``-th item is
        ANNOTATED (0: none). Returns the new item ids.
        """
        created: list[int] = []
        with self.lock:
            self.dataset(dataset_id)
            for n in range(items):
                name = f"seed-{n:06d}"
                files = [
                    {
                        "deviceName": "lidar_point_cloud_0",
                        "filename": f"{name}.pcd",
                        "path": f"upload/team_{TEAM_ID}/seed/{dataset_id}/{name}.pcd",
                        "size": 812345,
                    }
                ]
                row = ItemRow(self.new_id("item"), dataset_id, name, "DATA", None, files)
                if objects:
                    row.results[GROUND_TRUTH] = {
                        "instances": [
                            {
                                "id": f"{row.id}-{k}",
                                "type": "3D_BOX",
                                "className": ("Car", "Pedestrian")[k % 2],
                                "trackId": f"t-{k}",
                                "trackName": str(k),
                                "contour": {
                                    "center3D": {"x": 1.5 * k, "y": -2.0 + k, "z": 0.8},
                                    "size3D": {"x": 4.5, "y": 1.9, "z": 1.6},
                                    "rotation3D": {"x": 0, "y": 0, "z": 0.1 * k},
                                    "pointN": 100 + k,
                                    "points": [],
                                },
                            }
                            for k in range(objects)
                        ],
                        "classificationValues": [],
                    }
                if annotated_every and n % annotated_every == 0:
                    row.annotation_status = "ANNOTATED"
                self.items[row.id] = row
                created.append(row.id)
        return created

    # --- annotation (the admin API plays the annotator) ---------------------------------

    def annotate(self, item_id: int, instances: list[Any], source: str | None, done: bool) -> None:
        with self.lock:
            item = self.items[item_id]
            sid = GROUND_TRUTH
            if source:
                found = [s.id for s in self.sources.values() if s.name == source]
                if found:
                    sid = found[0]
                else:
                    sid = self.new_id("source")
                    self.sources[sid] = SourceRow(sid, source, "MODEL")
            item.results[sid] = {"instances": instances, "classificationValues": []}
            if done and sid == GROUND_TRUTH:
                item.annotation_status = "ANNOTATED"
                if item.parent_id is not None:
                    frames = [i for i in self.items.values() if i.parent_id == item.parent_id]
                    if all(f.annotation_status == "ANNOTATED" for f in frames):
                        self.items[item.parent_id].annotation_status = "ANNOTATED"

    def remove(self, item_id: int) -> None:
        with self.lock:
            for i in [i for i in self.items.values() if i.parent_id == item_id]:
                del self.items[i.id]
            self.items.pop(item_id, None)

    def result_dto(self, item: ItemRow, sid: int) -> dict[str, Any]:
        src = self.sources[sid]
        r = item.results[sid]
        return {
            "version": 1,
            "dataId": item.id,
            "sourceId": src.id,
            "sourceType": src.type,
            "validity": "VALID",
            "classificationValues": r["classificationValues"],
            "instances": r["instances"],
        }
