"""The Xtreme1 sandbox's data: datasets, classes, items, upload records, and processing.

Everything is in memory behind one lock; archives are on disk in the object
store. Processing runs on background threads, at most
``max_concurrent_processing`` at once (the real backend runs two); the rest
wait ``UNSTARTED``.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from syncd_sandbox.objectstore import ObjectStore
from syncd_sandbox.xtreme1_parser import ArchiveFailed, ParsedItem, parse_archive

BUCKET = "xtreme1"
INTERNAL = "http://minio:9000"
USER_ID = 1


@dataclass
class DatasetRow:
    id: int
    name: str
    type: str
    description: str | None
    created_at: datetime


@dataclass
class ClassRow:
    id: int
    dataset_id: int
    name: str
    color: str
    tool_type: str
    attributes: Any = None


@dataclass
class ItemRow:
    id: int
    dataset_id: int
    name: str
    type: str  # SINGLE_DATA | SCENE
    parent_id: int
    created_at: datetime
    content: list[dict[str, Any]] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    annotation_status: str = "NOT_ANNOTATED"
    deleted: bool = False
    sources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # sourceName → objects


@dataclass
class UploadRecord:
    id: int
    serial: str
    dataset_id: int
    file_url: str
    object_key: str | None
    result_type: str | None
    status: str = "UNSTARTED"
    error_message: str = ""
    total_file_size: int = 0
    downloaded_file_size: int = 0
    total_data_num: int = 0
    parsed_data_num: int = 0

    def dto(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "serialNumber": self.serial,
            "errorMessage": self.error_message or None,
            "totalFileSize": self.total_file_size,
            "downloadedFileSize": self.downloaded_file_size,
            "totalDataNum": self.total_data_num,
            "parsedDataNum": self.parsed_data_num,
            "status": self.status,
        }


def now_seconds() -> datetime:
    # MySQL DATETIME keeps whole seconds: ties are broken by id.
    return datetime.now(UTC).replace(microsecond=0, tzinfo=None)


class Xtreme1State:
    """All sandbox state plus the processing workers."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.lock = threading.RLock()
        self.datasets: dict[int, DatasetRow] = {}
        self.classes: dict[int, ClassRow] = {}
        self.items: dict[int, ItemRow] = {}
        self.records: dict[str, UploadRecord] = {}
        self.requests: dict[str, int] = {}
        self.upload_calls: list[dict[str, Any]] = []
        self._ids = {"dataset": 0, "class": 0, "item": 0, "record": 0, "file": 9000}
        self._serial = 1800412349001234432
        self.config: dict[str, Any] = {
            "processing_step_delay": 0.05,
            "max_concurrent_processing": 2,
            "stall_processing": False,
            # [[requests, seconds], ...]: windows enforced with 429 (self-hosted
            # Xtreme1 has none; tests switch them on to prove the client's limiter)
            "rate_limits": None,
            "rate_limit_retry_after": True,
            # Pull traversals (syncd_sandbox.traversals): a pause longer than
            # this ends one; each reading request takes at least traversal_delay.
            "traversal_gap": 0.5,
            "traversal_delay": 0.0,
        }
        self._queue: list[str] = []
        self._cond = threading.Condition()
        self._active = 0
        self._stop = False
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="xtreme1-processing", daemon=True
        )
        self._dispatcher.start()

    def next_id(self, kind: str) -> int:
        with self.lock:
            self._ids[kind] += 1
            return self._ids[kind]

    def next_serial(self) -> str:
        with self.lock:
            self._serial += 7919
            return str(self._serial)

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()

    # --- queries -------------------------------------------------------------

    def class_names(self, dataset_id: int) -> dict[int, str]:
        return {c.id: c.name for c in self.classes.values() if c.dataset_id == dataset_id}

    def live_names(self, dataset_id: int, parent_id: int, kind: str) -> set[str]:
        return {
            i.name.lower()
            for i in self.items.values()
            if i.dataset_id == dataset_id
            and i.parent_id == parent_id
            and i.type == kind
            and not i.deleted
        }

    def ensure_class(self, dataset_id: int, name: str, tool_type: str) -> ClassRow:
        with self.lock:
            for c in self.classes.values():
                if c.dataset_id == dataset_id and c.name == name:
                    return c
            row = ClassRow(self.next_id("class"), dataset_id, name, "#7dfaf2", tool_type)
            self.classes[row.id] = row
            return row

    # --- upload processing ------------------------------------------------------

    def object_key_of(self, file_url: str) -> str | None:
        """The object key of an accessUrl this sandbox issued, else None ("File url error")."""
        u = urlparse(file_url)
        if f"{u.scheme}://{u.netloc}" != INTERNAL or not u.path.startswith(f"/{BUCKET}/"):
            return None
        key = unquote(u.path[len(BUCKET) + 2 :])
        return key if self.store.exists(BUCKET, key) else None

    def enqueue(self, serial: str) -> None:
        with self._cond:
            self._queue.append(serial)
            self._cond.notify_all()

    def _dispatch(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (
                    not self._queue or self._active >= int(self.config["max_concurrent_processing"])
                ):
                    self._cond.wait(0.2)
                if self._stop:
                    return
                serial = self._queue.pop(0)
                self._active += 1
            threading.Thread(target=self._run, args=(serial,), daemon=True).start()

    def _run(self, serial: str) -> None:
        try:
            self._process(self.records[serial])
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def _step(self, rec: UploadRecord, status: str) -> None:
        while self.config.get("stall_processing") and not self._stop:
            time.sleep(0.05)  # a record stuck for ever, as the real backend can leave one
        time.sleep(float(self.config["processing_step_delay"]))
        with self.lock:
            rec.status = status

    def _process(self, rec: UploadRecord) -> None:
        assert rec.object_key is not None
        path = self.store.path(BUCKET, rec.object_key)
        with self.lock:
            rec.total_file_size = path.stat().st_size
        self._step(rec, "DOWNLOADING")
        with self.lock:
            rec.downloaded_file_size = rec.total_file_size
        self._step(rec, "DOWNLOAD_COMPLETED")
        self._step(rec, "PARSING")
        dataset = self.datasets.get(rec.dataset_id)
        try:
            assert dataset is not None
            parsed = parse_archive(
                path,
                dataset.type,
                with_results=rec.result_type is not None,
                class_ids=self.class_names(rec.dataset_id),
            )
        except ArchiveFailed as exc:
            with self.lock:
                rec.status, rec.error_message = "FAILED", str(exc)
            return
        errors = list(parsed.errors)
        stem = PurePosixPath(rec.object_key).name.rsplit(".", 1)[0]
        source = "Ground Truth" if rec.result_type == "GROUND_TRUTH" else "Model Run"
        with self.lock:
            rec.total_data_num = sum(len(s.items) for s in parsed.scenes)
        for scene in parsed.scenes:
            parent = 0
            if scene.name is not None:
                with self.lock:
                    if scene.name.lower() in self.live_names(rec.dataset_id, 0, "SCENE"):
                        errors.append(f"Duplicate scene names:{scene.name};")
                        continue
                    row = ItemRow(
                        self.next_id("item"), rec.dataset_id, scene.name, "SCENE", 0, now_seconds()
                    )
                    self.items[row.id] = row
                    parent = row.id
            for item in scene.items:
                with self.lock:
                    if item.name.lower() in self.live_names(rec.dataset_id, parent, "SINGLE_DATA"):
                        if "Duplicate data names;" not in errors:
                            errors.append("Duplicate data names;")
                        continue
                    self._insert(rec, item, parent, stem, source)
                    rec.parsed_data_num += 1
        with self.lock:
            rec.error_message = "".join(errors)
            rec.status = "PARSE_COMPLETED"

    def _insert(
        self, rec: UploadRecord, item: ParsedItem, parent: int, stem: str, source: str
    ) -> None:
        row = ItemRow(
            self.next_id("item"), rec.dataset_id, item.name, "SINGLE_DATA", parent, now_seconds()
        )
        by_folder: dict[str, list[dict[str, Any]]] = {}
        for f in item.files:
            fid = self.next_id("file")
            kind = (
                "pcdFile" if f.name.lower().endswith(".pcd") else "imageFile" if f.width else "file"
            )
            info: dict[str, Any] = {
                "@type": kind,
                "id": fid,
                "originalName": f.name,
                "path": f"{USER_ID}/{rec.dataset_id}/{stem}/{f.zip_member}",
                "zipPath": f"{stem}/{f.zip_member}",
                "size": f.size,
                "url": f"/minio/{BUCKET}/{rec.object_key}#{f.zip_member}",
            }
            if f.width:
                info["extraInfo"] = {"width": f.width, "height": f.height}
            by_folder.setdefault(f.folder, []).append(
                {"name": f.name, "fileId": fid, "type": "file", "file": info}
            )
            row.files.append({"folder": f.folder, **info})
        row.content = [
            {"name": folder, "type": "directory", "files": files}
            for folder, files in sorted(by_folder.items())
        ]
        if item.objects:
            row.sources[source] = item.objects
        self.items[row.id] = row

    # --- admin -------------------------------------------------------------------------

    def annotate(self, data_id: int, objects: list[dict[str, Any]], submit: bool) -> None:
        with self.lock:
            item = self.items[data_id]
            bound = []
            for o in objects:
                o = dict(o)
                name = o.get("className")
                if name:
                    tool = {"3D_BOX": "CUBOID", "POLYGON": "POLYGON", "POLYLINE": "POLYLINE"}.get(
                        str(o.get("type")), "BOUNDING_BOX"
                    )
                    o["classId"] = self.ensure_class(item.dataset_id, str(name), tool).id
                o.setdefault("id", uuid.uuid4().hex)
                o.setdefault("version", 1)
                bound.append(o)
            item.sources["Ground Truth"] = bound
            if submit:
                self.submit(data_id)

    def seed(
        self, dataset_id: int, items: int, objects: int, annotated_every: int = 0
    ) -> list[int]:
        """Add ``items`` imported LIDAR_BASIC items with ``objects`` ground-truth boxes each.

        The fast path for benchmarks: the rows an import of one point cloud per
        item would create, without archives. Every ``annotated_every``-th item
        is ANNOTATED (0: none). Returns the new item ids.
        """
        classes = [self.ensure_class(dataset_id, n, "CUBOID") for n in ("Car", "Pedestrian")]
        stem = f"seed-{uuid.uuid4().hex[:8]}"
        created: list[int] = []
        with self.lock:
            if dataset_id not in self.datasets:
                raise KeyError(dataset_id)
            now = now_seconds()
            for n in range(items):
                row = ItemRow(
                    self.next_id("item"), dataset_id, f"{stem}-{n:06d}", "SINGLE_DATA", 0, now
                )
                fid = self.next_id("file")
                member = f"lidar_point_cloud_0/{row.name}.pcd"
                info: dict[str, Any] = {
                    "@type": "pcdFile",
                    "id": fid,
                    "originalName": f"{row.name}.pcd",
                    "path": f"{USER_ID}/{dataset_id}/{stem}/{member}",
                    "zipPath": f"{stem}/{member}",
                    "size": 812345,
                    "url": f"/minio/{BUCKET}/{USER_ID}/{dataset_id}/{stem}.zip#{member}",
                }
                row.files = [{"folder": "lidar_point_cloud_0", **info}]
                row.content = [
                    {
                        "name": "lidar_point_cloud_0",
                        "type": "directory",
                        "files": [
                            {
                                "name": info["originalName"],
                                "fileId": fid,
                                "type": "file",
                                "file": info,
                            }
                        ],
                    }
                ]
                if objects:
                    row.sources["Ground Truth"] = [
                        {
                            "id": uuid.uuid4().hex,
                            "version": 1,
                            "type": "3D_BOX",
                            "classId": classes[k % 2].id,
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
                    ]
                if annotated_every and n % annotated_every == 0:
                    row.annotation_status = "ANNOTATED"
                self.items[row.id] = row
                created.append(row.id)
        return created

    def submit(self, data_id: int) -> None:
        with self.lock:
            item = self.items[data_id]
            item.annotation_status = "ANNOTATED"
            if item.type == "SCENE":
                for frame in self.items.values():
                    if frame.parent_id == item.id:
                        frame.annotation_status = "ANNOTATED"
