"""Xtreme1's reply payloads (the ``data`` of the envelope), as syncd reads them.

Sources: backend v0.9.1 (https://github.com/xtreme1-io/xtreme1/tree/v0.9.1),
``DatasetController``, ``DataInfoController``, ``DatasetClassController``
and their DTOs; docs/platforms/xtreme1.md.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictInt

from syncd.remotes.shapes import AnyId, Endpoint, NumericId, Reply


class DatasetRow(Reply):
    id: NumericId
    name: str
    type: str | None = None


class DatasetPage(Reply):
    rows: list[DatasetRow] = Field(alias="list")
    total: StrictInt


class ClassRow(Reply):
    id: NumericId | None = None
    name: str
    toolType: str


class FileRef(Reply):
    zipPath: str | None = None


class ContentFile(Reply):
    file: FileRef | None = None


class ContentDir(Reply):
    files: list[ContentFile] | None = None


class DataRow(Reply):
    id: NumericId
    name: str
    type: str | None = None
    parentId: NumericId | None = None
    annotationStatus: str | None = None
    status: str | None = None
    content: list[ContentDir] | None = None


class DataPage(Reply):
    rows: list[DataRow] = Field(alias="list")
    total: StrictInt


class Presigned(Reply):
    presignedUrl: str
    accessUrl: str


class UploadRecord(Reply):
    status: str
    errorMessage: str | None = None
    totalDataNum: StrictInt | None = None
    parsedDataNum: StrictInt | None = None


class StatusCounts(Reply):
    itemCount: StrictInt
    annotatedCount: StrictInt
    notAnnotatedCount: StrictInt
    invalidCount: StrictInt


class DataStatus(Reply):
    id: NumericId
    annotationStatus: str | None = None
    status: str | None = None


class ResultObject(Reply):
    """An annotation object in Xtreme1's format, which BasicAI Cloud's results share
    (read by :func:`syncd.remotes.xtreme1_objects.remote_object`)."""

    id: AnyId | None = None
    type: str | None = None
    className: str | None = None
    classId: NumericId | None = None
    trackId: AnyId | None = None
    trackName: AnyId | None = None
    contour: dict[str, Any] | None = None
    classValues: list[Any] | None = None


class Result(Reply):
    dataId: NumericId
    sourceName: str | None = None
    objects: list[ResultObject] | None = None


class DataAndResult(Reply):
    results: list[Result]


def _dataset_type(data: Any) -> dict[str, str]:
    rows = data.get("list") if isinstance(data, dict) else None
    types = sorted({str(r.get("type")) for r in rows or [] if isinstance(r, dict)})
    return {"dataset type": ", ".join(types)} if types else {}


ENDPOINTS = (
    Endpoint(
        "GET /dataset/findByPage",
        DatasetPage,
        "{list: [{id, name, type}], total: number}",
        variant=_dataset_type,
    ),
    Endpoint("POST /dataset/create", DatasetRow, "{id, name, type}"),
    Endpoint("GET /datasetClass/findAll/{id}", list[ClassRow] | None, "[{id, name, toolType}]"),
    Endpoint(
        "GET /data/findByPage",
        DataPage,
        "{list: [{id, name, type, parentId, annotationStatus, content}], total: number}",
    ),
    Endpoint("GET /data/generatePresignedUrl", Presigned, "{presignedUrl, accessUrl}"),
    Endpoint("POST /data/upload", NumericId, "the upload's serial number"),
    Endpoint(
        "GET /data/findUploadRecordBySerialNumbers",
        list[UploadRecord] | None,
        "[{status, errorMessage, totalDataNum: number, parsedDataNum: number}]",
    ),
    Endpoint(
        "GET /dataset/{id}/statistics/dataStatus",
        StatusCounts,
        "{itemCount, annotatedCount, notAnnotatedCount, invalidCount: numbers}",
    ),
    Endpoint(
        "GET /data/getDataStatusByIds",
        list[DataStatus] | None,
        "[{id, annotationStatus, status}]",
    ),
    Endpoint(
        "GET /data/getDataAndResult",
        DataAndResult,
        "{results: [{dataId, sourceName, objects: [{type, className, contour}]}]}",
    ),
)
