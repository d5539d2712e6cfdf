"""Deepen's (API v2) replies, as syncd reads them.

Sources: https://help.deepen.ai/documentation/api-and-sdk (datasets, files,
labels) and docs/platforms/deepen.md. The processing status vocabulary is
partly unverified: the values seen are recorded (``syncd check --live``
reports them).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictInt

from syncd.remotes.shapes import AnyId, Endpoint, Reply


class DatasetId(Reply):
    dataset_id: AnyId
    dataset_name: str


class DatasetIds(Reply):
    datasets: list[DatasetId]


class SessionFile(Reply):
    resumable_upload_url: str
    # Deepen sometimes sends a whole byte count as a float (18611529.0): accepted,
    # and read with deepen._whole.
    file_size: StrictInt | float | None = None


class Created(Reply):
    dataset_id: AnyId
    files: list[SessionFile] = Field(min_length=1)
    create_timestamp_millis: StrictInt | float | None = None


class DatasetInfo(Reply):
    processing_status: str
    processing_status_message: str | None = None
    pipeline_status: dict[str, Any] | None = None


class FileRow(Reply):
    file_id: AnyId
    status: str | None = None


class Files(Reply):
    files: list[FileRow]


class Label(Reply):
    label_id: AnyId
    label_type: str | None = None
    label_category_id: str | None = None
    label_set_id: AnyId | None = None
    attributes: dict[str, Any] | None = None


class FileLabel(Label):
    file_id: AnyId


class Labels(Reply):
    # per file with labels_with_file_ids_order=true; one list (each label names its
    # file) is the endpoint's plain form, also accepted
    labels: dict[str, list[Label] | None] | list[FileLabel]


GROUPING = "labels grouping"


def labels_per_file(data: Any) -> Any:
    """The plain form (one list) grouped per file, as syncd asks for it."""
    labels = data.get("labels")
    if not isinstance(labels, list):
        return data
    per_file: dict[str, list[Any]] = {}
    for lab in labels:
        per_file.setdefault(str(lab["file_id"]), []).append(lab)
    return {**data, "labels": per_file}


def _grouping(data: Any) -> dict[str, str]:
    labels = data.get("labels") if isinstance(data, dict) else None
    if isinstance(labels, list):
        return {GROUPING: "one list, each label with its file_id"}
    return {GROUPING: "per file (labels_with_file_ids_order)"}


def _status(data: Any) -> dict[str, str]:
    status = data.get("processing_status") if isinstance(data, dict) else None
    return {"processing status": str(status)} if status else {}


ENDPOINTS = (
    Endpoint(
        "GET /clients/{c}/datasets_ids", DatasetIds, "{datasets: [{dataset_id, dataset_name}]}"
    ),
    Endpoint(
        "POST /clients/{c}/datasets",
        Created,
        "{dataset_id, files: [{resumable_upload_url}], create_timestamp_millis}",
    ),
    Endpoint(
        "GET /datasets/{id}",
        DatasetInfo,
        "{processing_status, processing_status_message, pipeline_status}",
        variant=_status,
    ),
    Endpoint("GET /datasets/{id}/files", Files, "{files: [{file_id, status}]}"),
    Endpoint(
        "GET /datasets/{id}/labels",
        Labels,
        "{labels: {file_id: [{label_id, label_type, label_category_id}]}} or "
        "{labels: [{file_id, label_id, …}]}",
        normalize=labels_per_file,
        variant=_grouping,
    ),
)
