"""The Deepen sandbox's data: datasets, their uploaded zip, preprocessing, files and labels.

Facts from Deepen's API pages (https://help.deepen.ai/documentation/api-reference/): a
dataset is created with the exact zip size and gets a GCS resumable session;
``process_uploaded_data`` needs the whole zip uploaded and the object's file
name; preprocessing (``files_uploaded``) takes a while, then ends
``files_getting_labelled`` (the files Deepen makes of the zip become
FileResources, see :mod:`syncd_sandbox.deepen_formats`) or
``preprocessing_error`` with ``processing_status_message`` naming what is
wrong with the zip. Labels carry ``label_id`` = ``<category>:<n>``,
``version`` and ``*_time_millis``.

Admin config (``/__sandbox/config``): ``processing_seconds``;
``file_size_as_float`` (replies carry ``file_size`` as ``18611529.0``, as
Deepen's sometimes do); ``status_override`` (a ``processing_status`` to report
instead of the real one, e.g. one syncd does not know).
"""

from __future__ import annotations

import secrets
import threading
import time
import zipfile
from dataclasses import dataclass, field
from typing import Any

from syncd_sandbox.deepen_formats import Invalid, file_ids
from syncd_sandbox.gcs_resumable import ResumableStore, Session

BUCKET = "deepen-uploads"


def millis() -> int:
    return int(time.time() * 1000)


@dataclass
class DatasetRow:
    dataset_id: str
    client_id: str
    name: str
    dataset_type: str
    dataset_format: str | None
    labelling_mode: str
    file_size: int
    file_type: str
    object_name: str
    upload_id: str
    upload_url: str
    created_millis: int
    processing_status: str = "files_to_be_uploaded"
    message: str = ""
    processing_started: float | None = None
    files: dict[str, str] = field(default_factory=dict)  # file_id → status
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)  # label_id → label
    counters: dict[str, int] = field(default_factory=dict)  # category → last n
    process_calls: int = 0
    deleted: bool = False

    @property
    def file_name(self) -> str:
        return self.object_name.rsplit("/", 1)[-1]


class DeepenState:
    """All datasets of the sandbox, under one lock."""

    def __init__(self, gcs: ResumableStore) -> None:
        self.gcs = gcs
        self.lock = threading.Lock()
        self.datasets: dict[str, DatasetRow] = {}
        self.requests: dict[str, int] = {}
        # labels_grouping: "per_file" honours labels_with_file_ids_order; "list" answers the
        # endpoint's plain form (one list, each label with its file_id) whatever is asked.
        self.config: dict[str, Any] = {
            "processing_seconds": 0.3,
            "file_size_as_float": False,
            "status_override": None,
            "labels_grouping": "per_file",
        }

    def create(self, base: str, client_id: str, body: dict[str, Any]) -> DatasetRow:
        dataset_id = secrets.token_hex(10)
        kind = body["dataset_type"]
        fmt = body.get("dataset_format")
        fixed = (
            "data.zip" if kind == "images" else "json_data.zip" if fmt == "json" else "3d_data.zip"
        )
        f = body["files"][0]
        object_name = f"{client_id}/{dataset_id}/{fixed}"
        url = self.gcs.create(base, BUCKET, object_name, int(f["file_size"]))
        row = DatasetRow(
            dataset_id=dataset_id,
            client_id=client_id,
            name=str(body["dataset_name"]),
            dataset_type=kind,
            dataset_format=fmt,
            labelling_mode=str(body.get("labelling_mode") or "frame_by_frame"),
            file_size=int(f["file_size"]),
            file_type=str(f["file_type"]),
            object_name=object_name,
            upload_id=url.rsplit("upload_id=", 1)[1],
            upload_url=url,
            created_millis=millis(),
        )
        with self.lock:
            self.datasets[dataset_id] = row
        return row

    def session(self, row: DatasetRow) -> Session:
        return self.gcs.sessions[row.upload_id]

    def advance(self, row: DatasetRow) -> None:
        """Finish preprocessing once ``processing_seconds`` have passed (called on reads)."""
        if row.processing_status != "files_uploaded" or row.processing_started is None:
            return
        if time.time() < row.processing_started + float(self.config["processing_seconds"]):
            return
        path = self.gcs.path(self.session(row))
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
        except (zipfile.BadZipFile, OSError) as exc:
            row.processing_status, row.message = "preprocessing_error", f"invalid zip file: {exc}"
            return
        if bad is not None:
            row.processing_status, row.message = "preprocessing_error", f"corrupt entry {bad}"
            return
        try:
            with zipfile.ZipFile(path) as z:
                files = file_ids(z, row.file_name, row.dataset_type, row.dataset_format)
        except Invalid as exc:
            row.processing_status, row.message = "preprocessing_error", str(exc)
            return
        row.files = dict.fromkeys(files, "labelling_in_progress")
        row.processing_status = "files_getting_labelled"

    def resource(self, row: DatasetRow) -> dict[str, Any]:
        self.advance(row)
        total = len(row.files)
        done = sum(1 for s in row.files.values() if s == "labelling_done")
        return {
            "dataset_id": row.dataset_id,
            "client_id": row.client_id,
            "dataset_name": row.name,
            "dataset_type": row.dataset_type,
            "dataset_format": row.dataset_format,
            "labelling_mode": row.labelling_mode,
            "processing_status": self.config["status_override"] or row.processing_status,
            "processing_status_message": row.message,
            "create_timestamp_millis": row.created_millis,
            "files": [
                {
                    "file_size": float(row.file_size)
                    if self.config["file_size_as_float"]
                    else row.file_size,
                    "file_type": row.file_type,
                    "resumable_upload_url": row.upload_url,
                }
            ],
            "pipeline_stage_status": {
                "Labelling": {
                    "done": done,
                    "failed": 0,
                    "in_progress": total - done,
                    "ready": 0,
                    "waiting": 0,
                }
            },
            "pipeline_status": {"Labelling": done, "__ALL_STAGES_DONE": done, "__TOTAL": total},
        }

    def annotate(self, row: DatasetRow, file_id: str, labels: list[dict[str, Any]]) -> list[str]:
        """Add or update labels of one file; a label with ``label_id`` updates it (version + 1)."""
        if file_id not in row.files:
            raise KeyError(file_id)
        ids = []
        now = millis()
        for spec in labels:
            category = str(spec.get("label_category_id") or "car")
            label_id = str(spec.get("label_id") or "")
            old = row.labels.get(label_id) if label_id else None
            if old is None:
                n = row.counters.get(category, 0) + 1
                row.counters[category] = n
                label_id = f"{category}:{n}"
                old = {
                    "label_id": label_id,
                    "file_id": file_id,
                    "label_category_id": category,
                    "create_time_millis": now,
                    "version": 0,
                    "stage_id": "Labelling",
                    "label_set_id": "default",
                    "sensor_id": spec.get("sensor_id", "lidar"),
                    "labeller_email": f"{row.client_id}@deepen.ai",
                    "attributes": {},
                }
            new = {**old, **spec, "label_id": label_id, "file_id": file_id}
            new["version"] = int(old["version"]) + 1
            new["update_time_millis"] = max(now, int(old.get("update_time_millis", 0)) + 1)
            row.labels[label_id] = new
            ids.append(label_id)
        return ids
