"""BasicAI Cloud's reply payloads (the ``data`` of the envelope), as syncd reads them.

Sources: BasicAI's OpenAPI guide (docs/platforms/basicai.md has the links).
Two places where the public docs show two plausible shapes, both accepted:

* ``batchDataAnnotationResult``: one entry per item with its results nested
  (``[{dataId, annotationStatus, results: [{sourceId, instances}]}]``), or one
  entry per item and source as in the export format's result files
  (``[{dataId, sourceId, instances}]``); the flat form is grouped per item.
* a dataset's ``type``: ``LIDAR`` (the guide's worked example) or
  ``LIDAR_FUSION``/``LIDAR_BASIC``/``IMAGE`` (the export docs).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictInt

from syncd.remotes.shapes import Endpoint, NumericId, Reply
from syncd.remotes.shapes.xtreme1 import ResultObject


class DatasetRow(Reply):
    id: NumericId
    name: str
    type: str | None = None


class DatasetPage(Reply):
    rows: list[DatasetRow] = Field(alias="list")
    total: StrictInt | None = None  # the guide: only on the first page


class DatasetRows(Reply):
    rows: list[DatasetRow] = Field(alias="list")


class ItemRow(Reply):
    id: NumericId
    name: str
    type: str | None = None
    parentId: NumericId | None = None
    annotationStatus: str | None = None
    status: str | None = None


class ItemRows(Reply):
    rows: list[ItemRow] = Field(alias="list")


class PresignedEntry(Reply):
    preSignedUrl: str
    path: str  # [unverified] the object key registration needs


class Created(Reply):
    id: NumericId
    name: str
    type: str | None = None


# BasicAI's instances are Xtreme1's objects (one parser reads both).
Instance = ResultObject


class SourceResult(Reply):
    sourceId: NumericId
    instances: list[Instance] | None = None


class NestedEntry(Reply):
    dataId: NumericId
    annotationStatus: str | None = None
    results: list[SourceResult]


class FlatEntry(SourceResult):
    dataId: NumericId


class Source(Reply):
    id: NumericId
    name: str | None = None


RESULTS = "results shape"
FLAT_MARK = "syncdFlat"  # set on entries grouped from the flat form


def _nested(entry: Any) -> bool:
    return isinstance(entry, dict) and "results" in entry


def results_variant(data: Any) -> dict[str, str]:
    if not data:
        return {}
    nested = _nested(data[0])
    return {
        RESULTS: "nested per item ({dataId, results: [...]})"
        if nested
        else "flat per item and source ({dataId, sourceId, instances})"
    }


def results_nested(data: Any) -> Any:
    """The flat form grouped per item (its status unknown: the item stays unfinished)."""
    if not data or _nested(data[0]):
        return data
    grouped: dict[str, dict[str, Any]] = {}
    for r in data:
        entry = grouped.setdefault(
            str(r["dataId"]),
            {"dataId": r["dataId"], "name": r.get("name", ""), "results": [], FLAT_MARK: True},
        )
        if r.get("annotationStatus") is not None:
            entry["annotationStatus"] = r["annotationStatus"]
        entry["results"].append(r)
    return list(grouped.values())


def neutral_type(kind: Any) -> str | None:
    """A dataset type in syncd's words: ``LIDAR`` (the worked example's name) may be
    fusion or basic, so it is left unknown (the sync's own ``dataset_type`` holds)."""
    if kind is None or kind == "LIDAR":
        return None
    return str(kind)


def _dataset_type(data: Any) -> dict[str, str]:
    rows = data.get("list") if isinstance(data, dict) else None
    types = sorted({str(r.get("type")) for r in rows or [] if isinstance(r, dict)})
    if not types:
        return {}
    style = "worked example" if "LIDAR" in types else "export docs"
    return {"dataset type": f"{', '.join(types)} ({style} naming)"}


ENDPOINTS = (
    Endpoint("GET /dataset/list", DatasetPage, "{list: [{id, name, type}], total: number}"),
    Endpoint(
        "GET /dataset/listById",
        DatasetRows,
        "{list: [{id, name, type}]}",
        variant=_dataset_type,
    ),
    Endpoint("POST /dataset/create", DatasetRow, "{id, name, type}"),
    Endpoint(
        "GET /dataset/listItem/{id}",
        ItemRows,
        "{list: [{id, name, type, parentId, annotationStatus}]}",
    ),
    Endpoint(
        "GET /dataset/listItemById/{id}",
        ItemRows,
        "{list: [{id, name, type, parentId, annotationStatus}]}",
    ),
    Endpoint(
        "POST /storage/batchGeneratePreSignedUploadUrl",
        list[PresignedEntry],
        "[{preSignedUrl, path}] one per file",
    ),
    Endpoint("POST /dataset/batchAddData/{id}", list[Created] | None, "[{id, name}]"),
    Endpoint("POST /dataset/addScene/{id}", list[Created] | None, "[{id, name, type}]"),
    Endpoint(
        "GET /dataset/batchDataAnnotationResult/{id}/",
        list[NestedEntry] | list[FlatEntry] | None,
        "[{dataId, annotationStatus, results: [{sourceId, instances}]}] or flat "
        "[{dataId, sourceId, instances}]",
        normalize=results_nested,
        variant=results_variant,
    ),
    Endpoint("GET /dataset/listAnnotationSource/{id}", list[Source] | None, "[{id, name}]"),
)
