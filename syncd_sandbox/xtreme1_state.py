"""The Xtreme1 sandbox's data: datasets, classes, items, upload records, and processing.

Everything is in memory behind one lock; archives are on disk in the object
store. Processing runs on background threads, at most
``max_concurrent_processing`` at once (the real backend runs two); the rest
wait ``UNSTARTED``.
"""

from __future__ import annotations

import random
import threading
import time
import unicodedata
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from syncd_sandbox.objectstore import ObjectStore
from syncd_sandbox.xtreme1_parser import (
    ArchiveFailed,
    ArchiveUnreadable,
    ParsedBatch,
    ParsedItem,
    parse_archive,
)

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


def _fold(name: str) -> str:
    """A name as MySQL 5.7's default ``utf8mb4_general_ci`` compares it.

    The stock deployment runs ``mysql:5.7`` and the tables declare only
    ``DEFAULT CHARSET = utf8mb4``, so names compare case- and accent-
    insensitively and ignore trailing spaces (PAD SPACE). This is an
    approximation of the collation's weights, good for Latin names.
    """
    decomposed = unicodedata.normalize("NFKD", name.rstrip(" "))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


class _Errors:
    """The upload's shared ``errorBuilder``: messages in the order they were added."""

    def __init__(self, first: list[str]) -> None:
        self._parts = list(first)
        self._lock = threading.Lock()

    def add(self, message: str) -> None:
        with self._lock:
            self._parts.append(message)

    def add_duplicate(self) -> None:
        # insertBatch appends it only when no "Duplicate" message is there yet.
        with self._lock:
            if "Duplicate" not in "".join(self._parts):
                self._parts.append("Duplicate data names;")

    def text(self) -> str:
        with self._lock:
            return "".join(self._parts)


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
            # Seconds one parse worker spends per frame (uploading its files,
            # thumbnails, render call), jittered 0.5x-1.5x: a folder of N
            # frames takes about N * delay / 5 on the five-thread pool.
            "parse_frame_delay": 0.0,
            "max_concurrent_processing": 2,
            "stall_processing": False,
            # The scheme://host[/prefix] of presigned PUT URLs (None: this sandbox's own
            # /minio). A benchmark points it at a faster receiver than this Starlette app.
            "presign_put_base": None,
            # [[requests, seconds], ...]: windows enforced with 429 (self-hosted
            # Xtreme1 has none; tests switch them on to prove the client's limiter)
            "rate_limits": None,
            "rate_limit_retry_after": True,
            # Pull traversals (syncd_sandbox.traversals): a pause longer than
            # this ends one; each reading request takes at least traversal_delay.
            "traversal_gap": 0.5,
            "traversal_delay": 0.0,
        }
        # UploadDataUseCase.parseExecutorService: five threads shared by every upload.
        self._parse_pool = ThreadPoolExecutor(5, thread_name_prefix="xtreme1-parse")
        self._rng = random.Random(1)
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
        self._parse_pool.shutdown(wait=False, cancel_futures=True)

    # --- queries -------------------------------------------------------------

    def class_names(self, dataset_id: int) -> dict[int, str]:
        return {c.id: c.name for c in self.classes.values() if c.dataset_id == dataset_id}

    def live_names(self, dataset_id: int, parent_id: int, kind: str) -> set[str]:
        """Names of live rows, folded as the unique key compares them (:func:`_fold`)."""
        return {
            _fold(i.name)
            for i in self.items.values()
            if i.dataset_id == dataset_id
            and i.parent_id == parent_id
            and i.type == kind
            and not i.deleted
        }

    def find_class(self, dataset_id: int, name: str, tool_type: str) -> ClassRow | None:
        """The class the unique key ``uk_dataset_id_name`` (dataset, name, tool type) matches.

        https://github.com/xtreme1-io/xtreme1/blob/v0.9.1/deploy/mysql/migration/V1__Create_tables.sql:
        ``name`` uses the table's default collation (case-insensitive, see
        :func:`_fold`); ``tool_type`` is ``utf8mb4_bin`` (exact).
        """
        with self.lock:
            for c in self.classes.values():
                if (
                    c.dataset_id == dataset_id
                    and c.tool_type == tool_type
                    and _fold(c.name) == _fold(name)
                ):
                    return c
            return None

    def ensure_class(self, dataset_id: int, name: str, tool_type: str) -> ClassRow:
        with self.lock:
            found = self.find_class(dataset_id, name, tool_type)
            if found is not None:
                return found
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
        except RuntimeError:
            if not self._stop:
                raise
            # closed mid-import (the server stopped): the parse pool takes no more work
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
        """Download, unpack and parse one archive the way ``UploadDataUseCase`` does.

        Source (v0.9.1): https://github.com/xtreme1-io/xtreme1/blob/v0.9.1/backend/src/main/java/ai/basic/x1/usecase/UploadDataUseCase.java
        (``commonParseUploadFile``, ``insertBatch``, ``saveScene``). Folders
        are parsed one after the other; each folder's rows share one
        ``createdAt``, taken when that folder's parsing starts; its data names
        are cut into batches of five that run on a pool of five threads shared
        by every upload, each batch inserting its rows when it ends, so ids
        follow completion order, not name order.
        """
        assert rec.object_key is not None
        path = self.store.path(BUCKET, rec.object_key)
        with self.lock:
            rec.total_file_size = path.stat().st_size
        self._step(rec, "DOWNLOADING")
        with self.lock:
            rec.downloaded_file_size = rec.total_file_size
        self._step(rec, "DOWNLOAD_COMPLETED")
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
        except ArchiveUnreadable:
            return  # "Download decompression file error" is logged; DOWNLOAD_COMPLETED for ever
        errors = _Errors(parsed.errors)
        total = sum(s.names for s in parsed.scenes)
        if total == 0:
            with self.lock:
                rec.status, rec.error_message = "FAILED", "Compressed package is empty"
            return
        self._step(rec, "PARSING")
        stem = PurePosixPath(rec.object_key).name.rsplit(".", 1)[0]
        source = "Ground Truth" if rec.result_type == "GROUND_TRUTH" else "Model Run"
        with self.lock:
            rec.total_data_num = total
        for scene in parsed.scenes:
            parent = 0
            if scene.name is not None:
                with self.lock:
                    # saveScene: the unique key (dataset, type, parent, name)
                    # compares names case-insensitively.
                    if _fold(scene.name) in self.live_names(rec.dataset_id, 0, "SCENE"):
                        errors.add(f"Duplicate scene names:{scene.name};")
                        continue
                    row = ItemRow(
                        self.next_id("item"), rec.dataset_id, scene.name, "SCENE", 0, now_seconds()
                    )
                    self.items[row.id] = row
                    parent = row.id
            if scene.names == 0:
                # saveScene ran first: the empty scene stays.
                errors.add(f"The file in {scene.name or stem} folder is empty;")
                continue
            created_at = now_seconds()  # one createdAt per folder, at parse start
            futures = [
                self._parse_pool.submit(
                    self._parse_batch, rec, batch, parent, stem, source, created_at, errors
                )
                for batch in scene.batches
            ]
            for f in futures:
                f.result()  # countDownLatch.await(): the next folder waits for this one
        with self.lock:
            rec.parsed_data_num = total
            rec.error_message = errors.text()
            rec.status = "PARSE_COMPLETED"

    def _parse_batch(
        self,
        rec: UploadRecord,
        batch: ParsedBatch,
        parent: int,
        stem: str,
        source: str,
        created_at: datetime,
        errors: _Errors,
    ) -> None:
        """One batch of five names: the work per frame, then one insert of its rows."""
        delay = float(self.config["parse_frame_delay"])
        names = max(1, len(batch.items))
        if delay > 0:
            # The work per frame (uploading its files, thumbnails, the point
            # cloud render call) varies; jitter lets batches finish out of order.
            time.sleep(sum(delay * self._rng.uniform(0.5, 1.5) for _ in range(names)))
        try:
            if not batch.decodable or not batch.items:
                return  # ImageIO threw inside the batch: "Handle data error", nothing inserted
            with self.lock:
                self._insert_batch(rec, batch.items, parent, stem, source, created_at, errors)
        finally:
            with self.lock:
                rec.parsed_data_num = min(
                    rec.total_data_num, rec.parsed_data_num + len(batch.items)
                )

    def _insert_batch(
        self,
        rec: UploadRecord,
        items: list[ParsedItem],
        parent: int,
        stem: str,
        source: str,
        created_at: datetime,
        errors: _Errors,
    ) -> None:
        """``insertBatch``: names that exist are left out, a clash in the insert loses all five.

        ``findByNames`` asks MySQL (case-insensitive collation) for existing
        names, but the Java filter then compares exactly: a name that differs
        only in case is kept, the insert hits the unique key, and the whole
        batch is dropped with ``DuplicateKeyException``.
        """
        existing = {
            i.name
            for i in self.items.values()
            if i.dataset_id == rec.dataset_id and i.parent_id == parent and not i.deleted
        }
        if any(_fold(it.name) in {_fold(n) for n in existing} for it in items):
            errors.add_duplicate()
        keep = [it for it in items if it.name not in existing]
        clash = self.live_names(rec.dataset_id, parent, "SINGLE_DATA")
        if any(_fold(it.name) in clash for it in keep):
            return  # DuplicateKeyException on the unique key: the whole batch is lost
        for item in keep:
            self._insert(rec, item, parent, stem, source, created_at)

    def _insert(
        self,
        rec: UploadRecord,
        item: ParsedItem,
        parent: int,
        stem: str,
        source: str,
        created_at: datetime,
    ) -> None:
        row = ItemRow(
            self.next_id("item"), rec.dataset_id, item.name, "SINGLE_DATA", parent, created_at
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
