"""The Xtreme1 sandbox app: the backend's API as the real v0.9.1 serves it behind nginx.

Routes live under ``/api`` (nginx strips it in the real deployment) and the
object store under ``/minio/`` on the same host, exactly as
docs/platforms/xtreme1.md describes: envelope, HTTP 200 business
errors, 500 ``UNKNOWN`` for malformed requests, 401 without a valid token,
presigned PUT URLs built from the request's Host header, ``accessUrl`` on
the internal ``minio:9000`` host. ``/__sandbox/`` is the admin API.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncd_sandbox.admin import admin_routes, update_config
from syncd_sandbox.faults import FaultMiddleware, FaultRules
from syncd_sandbox.objectstore import ObjectStore
from syncd_sandbox.ratelimit import RateWindows
from syncd_sandbox.traversals import TraversalLog
from syncd_sandbox.xtreme1_state import (
    BUCKET,
    INTERNAL,
    USER_ID,
    DatasetRow,
    ItemRow,
    UploadRecord,
    Xtreme1State,
    now_seconds,
)

Handler = Callable[[Request], Awaitable[Response]]
DATASET_TYPES = ("LIDAR_FUSION", "LIDAR_BASIC", "IMAGE", "TEXT")


class Unknown(Exception):
    """Becomes HTTP 500 with code UNKNOWN and a Java-ish message (docs/platforms/xtreme1.md)."""


class Business(Exception):
    """Becomes HTTP 200 with a non-OK code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def ok(data: Any) -> JSONResponse:
    return JSONResponse({"code": "OK", "message": "", "data": data})


def need(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if value is None or value == "":
        raise Unknown(
            f"org.springframework.web.bind.MissingServletRequestParameterException: Required request parameter '{name}' for method parameter type String is not present"
        )
    return value


def as_long(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise Unknown(
            f"org.springframework.web.method.annotation.MethodArgumentTypeMismatchException: Failed to convert value of type 'java.lang.String' to required type 'java.lang.Long'; For input string: \"{value}\" ({name})"
        ) from None


def ids_param(value: str | None) -> list[int]:
    return [as_long(v, "ids") for v in (value or "").split(",") if v.strip()]


async def body_json(request: Request) -> Any:
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("application/json"):
        raise Unknown(
            f"org.springframework.web.HttpMediaTypeNotSupportedException: Content type '{ctype or 'application/octet-stream'}' not supported"
        )
    try:
        return json.loads(await request.body())
    except ValueError:
        raise Unknown(
            "org.springframework.http.converter.HttpMessageNotReadableException: JSON parse error"
        ) from None


def page(
    rows: list[Any], request: Request, dto: Callable[[Any], Any] = lambda row: row
) -> dict[str, Any]:
    """One page of ``rows``; ``dto`` renders only the rows on the page."""
    page_no = as_long(request.query_params.get("pageNo", "1"), "pageNo")
    size = as_long(request.query_params.get("pageSize", "10"), "pageSize")
    start = max(0, (page_no - 1) * size)
    return {
        "pageSize": size,
        "pageNo": page_no,
        "total": len(rows),
        "list": [dto(row) for row in rows[start : start + size]],
    }


def parse_time(value: str) -> datetime:
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise Unknown(
            f"org.springframework.validation.BindException: cannot parse date '{value}'"
        ) from None


class Xtreme1App:
    """Route handlers over one :class:`Xtreme1State`."""

    def __init__(self, token: str, data_dir: Path) -> None:
        self.token = token
        self.store = ObjectStore(data_dir / "objects")
        self.state = Xtreme1State(self.store)
        self.faults = FaultRules()
        self.reads = TraversalLog()
        self._windows: RateWindows | None = None
        self._windows_spec: object = None

    # --- plumbing ------------------------------------------------------------------

    def api(self, fn: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            template = re.sub(r"/\d+(?=/|$)", "/{id}", request.url.path)
            with self.state.lock:
                key = f"{request.method} {template}"
                self.state.requests[key] = self.state.requests.get(key, 0) + 1
            auth = request.headers.get("authorization", "")
            token = auth.split(" ", 1)[1] if " " in auth else request.query_params.get("token", "")
            if token != self.token:
                return JSONResponse(
                    {
                        "code": "LOGIN_STATUS_TIMEOUT",
                        "message": "User login status timeout",
                        "data": None,
                    },
                    status_code=401,
                )
            limited = self._rate_limited()
            if limited is not None:
                return limited
            dataset = _traversed_dataset(request)
            started = time.monotonic()
            try:
                if dataset is not None:
                    await asyncio.sleep(float(self.state.config["traversal_delay"]))
                return await fn(request)
            except Business as exc:
                return JSONResponse({"code": exc.code, "message": str(exc), "data": None})
            except Unknown as exc:
                return JSONResponse(
                    {"code": "UNKNOWN", "message": str(exc), "data": None}, status_code=500
                )
            finally:
                if dataset is not None:
                    agent = request.headers.get("user-agent", "")
                    self.reads.record(dataset, agent, started, time.monotonic())

        return wrapped

    def _rate_limited(self) -> Response | None:
        """429 when a configured window is full (``Retry-After`` unless switched off)."""
        spec = self.state.config.get("rate_limits")
        if not spec:
            return None
        if self._windows is None or self._windows_spec != spec:
            self._windows, self._windows_spec = RateWindows([tuple(w) for w in spec]), spec
        wait = self._windows.admit()
        if wait is None:
            return None
        headers = {}
        if self.state.config.get("rate_limit_retry_after", True):
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return JSONResponse(
            {"code": "TOO_MANY_REQUESTS", "message": "Too many requests", "data": None},
            status_code=429,
            headers=headers,
        )

    def dataset(self, dataset_id: int) -> DatasetRow:
        row = self.state.datasets.get(dataset_id)
        if row is None:
            raise Business("DATASET_NOT_FOUND", "Dataset not found")
        return row

    def dataset_dto(self, d: DatasetRow) -> dict[str, Any]:
        items = [
            i
            for i in self.state.items.values()
            if i.dataset_id == d.id and not i.deleted and i.type == "SINGLE_DATA"
        ]
        annotated = sum(i.annotation_status == "ANNOTATED" for i in items)
        return {
            "id": d.id,
            "name": d.name,
            "type": d.type,
            "description": d.description,
            "annotatedCount": annotated,
            "notAnnotatedCount": len(items) - annotated,
            "invalidCount": 0,
            "itemCount": len(items),
            "createdAt": d.created_at.isoformat(),
            "datas": None,
        }

    def item_dto(self, i: ItemRow) -> dict[str, Any]:
        return {
            "id": i.id,
            "datasetId": i.dataset_id,
            "name": i.name,
            "type": i.type,
            "parentId": i.parent_id,
            "status": "VALID",
            "annotationStatus": i.annotation_status,
            "splitType": "NOT_SPLIT",
            "lockedBy": None,
            "firstDataId": None,
            "content": i.content,
        }

    # --- datasets and classes ---------------------------------------------------------

    async def dataset_create(self, request: Request) -> Response:
        body = await body_json(request)
        name, kind = body.get("name"), body.get("type")
        if not name or not kind:
            raise Business(
                "PARAM_ERROR",
                '["name name cannot be null"]' if not name else '["type type cannot be null"]',
            )
        if kind not in DATASET_TYPES:
            raise Unknown(
                f'org.springframework.http.converter.HttpMessageNotReadableException: Cannot deserialize value of type `DatasetTypeEnum` from String "{kind}"'
            )
        with self.state.lock:
            if any(d.name.lower() == str(name).lower() for d in self.state.datasets.values()):
                raise Business("DATASET_NAME_DUPLICATED", "Dataset name duplicated")
            row = DatasetRow(
                self.state.next_id("dataset"),
                str(name),
                kind,
                body.get("description"),
                now_seconds(),
            )
            self.state.datasets[row.id] = row
            return ok(self.dataset_dto(row))

    async def dataset_find(self, request: Request) -> Response:
        q = request.query_params
        if q.get("sortField") and not q.get("ascOrDesc"):
            raise Unknown("java.lang.NullPointerException: ascOrDesc")
        with self.state.lock:
            rows = sorted(self.state.datasets.values(), key=lambda d: d.id)
            if q.get("name"):
                rows = [d for d in rows if q["name"].lower() in d.name.lower()]
            if q.get("type"):
                rows = [d for d in rows if d.type == q["type"]]
            return ok(page(rows, request, self.dataset_dto))

    async def dataset_info(self, request: Request) -> Response:
        dataset_id = as_long(request.path_params["id"], "id")
        with self.state.lock:
            row = self.state.datasets.get(dataset_id)
            if row is None:
                raise Business("NOT_FOUND", "Not found")
            return ok(self.dataset_dto(row))

    async def dataset_stats(self, request: Request) -> Response:
        d = self.dataset(as_long(request.path_params["id"], "id"))
        dto = self.dataset_dto(d)
        objects = sum(
            len(o)
            for i in self.state.items.values()
            if i.dataset_id == d.id and not i.deleted
            for o in i.sources.values()
        )
        return ok(
            {
                "datasetId": d.id,
                "annotatedCount": dto["annotatedCount"],
                "notAnnotatedCount": dto["notAnnotatedCount"],
                "invalidCount": 0,
                "objectCount": objects,
                "itemCount": dto["itemCount"],
            }
        )

    async def dataset_delete(self, request: Request) -> Response:
        dataset_id = as_long(request.path_params["id"], "id")
        with self.state.lock:
            self.state.datasets.pop(dataset_id, None)
        return ok(None)

    async def class_find_all(self, request: Request) -> Response:
        dataset_id = as_long(request.path_params["id"], "datasetId")
        with self.state.lock:
            rows = [c for c in self.state.classes.values() if c.dataset_id == dataset_id]
            return ok(
                [
                    {
                        "id": c.id,
                        "datasetId": c.dataset_id,
                        "name": c.name,
                        "color": c.color,
                        "toolType": c.tool_type,
                        "toolTypeOptions": None,
                        "attributes": c.attributes,
                    }
                    for c in rows
                ]
            )

    async def class_create(self, request: Request) -> Response:
        """``DatasetClassController.create`` → ``DatasetClassUseCase.saveDatasetClass``.

        https://github.com/xtreme1-io/xtreme1/blob/v0.9.1/backend/src/main/java/ai/basic/x1/usecase/DatasetClassUseCase.java:
        the insert hits the unique key (dataset, name, tool type; the name
        case-insensitive) and ``DuplicateKeyException`` becomes
        ``NAME_DUPLICATED`` "name already exists" (HTTP 200). ``datasetId``,
        ``name`` and ``color`` are validated (``DatasetClassDTO``);
        ``toolType`` is not, and a missing one fails in the database (500).
        """
        body = await body_json(request)
        for key in ("datasetId", "name", "color"):
            if body.get(key) in (None, ""):
                raise Business("PARAM_ERROR", f'["{key} not allowed null!"]')
        if body.get("toolType") is None:
            raise Unknown(
                "org.springframework.dao.DataIntegrityViolationException: Column 'tool_type' cannot be null"
            )
        if body["toolType"] not in (
            "POLYGON",
            "BOUNDING_BOX",
            "POLYLINE",
            "KEY_POINT",
            "SEGMENTATION",
            "CUBOID",
        ):
            raise Unknown(
                f'org.springframework.http.converter.HttpMessageNotReadableException: Cannot deserialize value of type `ToolTypeEnum` from String "{body["toolType"]}"'
            )
        dataset_id, name, tool = int(body["datasetId"]), str(body["name"]), str(body["toolType"])
        with self.state.lock:
            # saveDatasetClass does not check the dataset: any id is accepted.
            if self.state.find_class(dataset_id, name, tool) is not None:
                raise Business("NAME_DUPLICATED", "name already exists")
            row = self.state.ensure_class(dataset_id, name, tool)
            row.color = str(body["color"])
        return ok(None)  # the real backend returns no class: callers list again

    # --- upload -------------------------------------------------------------------------

    async def presign(self, request: Request) -> Response:
        file_name = need(request, "fileName")
        dataset_id = as_long(need(request, "datasetId"), "datasetId")
        import uuid

        key = f"{USER_ID}/{dataset_id}/{uuid.uuid4().hex}/{file_name}"
        host = request.headers.get("host", "localhost")
        proto = request.headers.get("x-forwarded-proto", request.url.scheme)
        put_base = self.state.config.get("presign_put_base") or f"{proto}://{host}/minio"
        return ok(
            {
                "accessUrl": self.store.presign("GET", INTERNAL, BUCKET, key),
                "presignedUrl": self.store.presign("PUT", put_base, BUCKET, key),
            }
        )

    async def upload(self, request: Request) -> Response:
        body = await body_json(request)
        for key in ("fileUrl", "datasetId", "source"):
            if body.get(key) in (None, ""):
                raise Business("PARAM_ERROR", f'["{key} {key} cannot be null"]')
        if body["source"] not in ("LOCAL", "URL"):
            raise Unknown(
                f'org.springframework.http.converter.HttpMessageNotReadableException: Cannot deserialize value of type `DataUploadSourceEnum` from String "{body["source"]}"'
            )
        result_type = body.get("resultType")
        if result_type not in (None, "GROUND_TRUTH", "MODEL_RUN"):
            raise Unknown(
                f'org.springframework.http.converter.HttpMessageNotReadableException: Cannot deserialize value of type `ResultTypeEnum` from String "{result_type}"'
            )
        st = self.state
        serial = st.next_serial()
        file_url = str(body["fileUrl"])
        dataset_id = int(body["datasetId"])
        rec = UploadRecord(
            id=st.next_id("record"),
            serial=serial,
            dataset_id=dataset_id,
            file_url=file_url,
            object_key=None,
            result_type=result_type,
        )
        with st.lock:
            st.records[serial] = rec
            object_key = st.object_key_of(file_url)
            url_path = file_url.split("?", 1)[0].lower()
            st.upload_calls.append(
                {
                    "serial": serial,
                    "datasetId": dataset_id,
                    "fileName": url_path.rsplit("/", 1)[-1],
                    "objectKey": object_key,
                }
            )
            # The synchronous checks: failures still answer OK with the serial.
            if dataset_id not in st.datasets:
                rec.status, rec.error_message = "FAILED", "Dataset not found"
            elif object_key is None:
                rec.status, rec.error_message = "FAILED", "File url error"
            elif not url_path.endswith((".zip", ".tar")):
                rec.status, rec.error_message = "FAILED", "Incorrect file format"
            else:
                rec.object_key = object_key
        if rec.object_key is not None:
            st.enqueue(serial)
        # The reply's data is a JSON string (hutool-built envelope), sent as text/plain.
        return Response(
            json.dumps({"code": "OK", "message": "", "data": serial}), media_type="text/plain"
        )

    async def records(self, request: Request) -> Response:
        serials = [s for s in need(request, "serialNumbers").split(",") if s]
        with self.state.lock:
            return ok([self.state.records[s].dto() for s in serials if s in self.state.records])

    # --- items ----------------------------------------------------------------------------

    async def data_find(self, request: Request) -> Response:
        q = request.query_params
        if not q.get("datasetId"):
            raise Business("PARAM_ERROR", '["datasetId datasetId cannot be null"]')
        dataset_id = as_long(q["datasetId"], "datasetId")
        if q.get("sortField") and not q.get("ascOrDesc"):
            raise Unknown("java.lang.NullPointerException: ascOrDesc")
        sort_field = q.get("sortField", "NAME")
        if sort_field not in ("NAME", "CREATED_AT", "DATA_CONFIDENCE"):
            raise Unknown(f"org.springframework.validation.BindException: sortField '{sort_field}'")
        desc = q.get("ascOrDesc", "ASC").upper() == "DESC"
        parent = as_long(q.get("parentId", "0"), "parentId")
        with self.state.lock:
            rows = [
                i
                for i in self.state.items.values()
                if i.dataset_id == dataset_id and i.parent_id == parent and not i.deleted
            ]
            if q.get("name"):
                rows = [i for i in rows if q["name"].lower() in i.name.lower()]
            if q.get("ids"):
                wanted = set(ids_param(q["ids"]))
                rows = [i for i in rows if i.id in wanted]
            if q.get("annotationStatus"):
                rows = [i for i in rows if i.annotation_status == q["annotationStatus"]]
            if q.get("createStartTime"):
                start = parse_time(q["createStartTime"])
                rows = [i for i in rows if i.created_at >= start]
            if q.get("createEndTime"):
                end = parse_time(q["createEndTime"])
                rows = [i for i in rows if i.created_at <= end]
            # ORDER BY type DESC (an ENUM sorts by index: SCENE first), <sort field>, id ASC
            rows.sort(key=lambda i: i.id)
            if sort_field == "NAME":
                rows.sort(key=lambda i: i.name.lower(), reverse=desc)
            elif sort_field == "CREATED_AT":
                rows.sort(key=lambda i: i.created_at, reverse=desc)
            rows.sort(key=lambda i: 0 if i.type == "SCENE" else 1)
            return ok(page(rows, request, self.item_dto))

    async def data_info(self, request: Request) -> Response:
        with self.state.lock:
            item = self.state.items.get(as_long(request.path_params["id"], "id"))
            if item is None or item.deleted:
                raise Business("NOT_FOUND", "Not found")
            return ok(self.item_dto(item))

    async def data_list_by_ids(self, request: Request) -> Response:
        ids = ids_param(need(request, "dataIds"))
        with self.state.lock:
            return ok(
                [
                    self.item_dto(self.state.items[i])
                    for i in ids
                    if i in self.state.items and not self.state.items[i].deleted
                ]
            )

    async def data_status(self, request: Request) -> Response:
        ids = ids_param(need(request, "dataIds"))
        with self.state.lock:
            out = []
            for i in ids:
                item = self.state.items.get(i)
                if item is not None and not item.deleted:
                    out.append(
                        {
                            "id": item.id,
                            "datasetId": item.dataset_id,
                            "name": item.name,
                            "status": "VALID",
                            "annotationStatus": item.annotation_status,
                        }
                    )
            return ok(out)

    async def data_delete(self, request: Request) -> Response:
        body = await body_json(request)
        if not body.get("ids"):
            raise Business("PARAM_ERROR", '["ids ids cannot be empty"]')
        with self.state.lock:
            for i in body["ids"]:
                item = self.state.items.get(int(i))
                if item is not None:
                    item.deleted = True
                    for frame in self.state.items.values():
                        if frame.parent_id == item.id:
                            frame.deleted = True
        return ok(None)

    async def data_and_result(self, request: Request) -> Response:
        dataset = self.dataset(as_long(need(request, "datasetId"), "datasetId"))
        ids = ids_param(request.query_params.get("dataIds"))
        data, results = [], []
        with self.state.lock:
            names = self.state.class_names(dataset.id)
            for i in ids:
                item = self.state.items.get(i)
                if item is None or item.dataset_id != dataset.id:
                    continue  # deleted items are still returned (docs/platforms/xtreme1.md)
                entry: dict[str, Any] = {
                    "dataId": item.id,
                    "version": "Xtreme1 v0.6",
                    "name": item.name,
                    "type": dataset.type,
                }
                for f in item.files:
                    ref = {"filename": f["originalName"], "url": f["url"], "zipPath": f["zipPath"]}
                    if f["folder"].lower().startswith("lidar_point_cloud"):
                        entry.setdefault("lidarPointClouds", []).append(ref)
                    elif f["folder"].lower() == "camera_config":
                        entry["cameraConfig"] = ref
                    elif dataset.type == "IMAGE":
                        entry.setdefault("images", []).append({**ref, **f.get("extraInfo", {})})
                    else:
                        entry.setdefault("cameraImages", []).append(
                            {**ref, **f.get("extraInfo", {})}
                        )
                data.append(entry)
                for source, objects in item.sources.items():
                    out = []
                    for o in objects:
                        o = {k: v for k, v in o.items() if v is not None}
                        if isinstance(o.get("classId"), int) and o["classId"] in names:
                            o["className"] = names[o["classId"]]
                        out.append(o)
                    results.append(
                        {
                            "version": "Xtreme1 v0.6",
                            "dataId": item.id,
                            "sourceName": source,
                            "objects": out,
                        }
                    )
        return ok(
            {
                "version": "Xtreme1 v0.6",
                "datasetId": dataset.id,
                "datasetName": dataset.name,
                "exportTime": now_seconds().strftime("%Y%m%d%H%M%S"),
                "data": data,
                "results": results,
            }
        )

    async def flow_submit(self, request: Request) -> Response:
        item_id = as_long(request.path_params["id"], "id")
        if item_id not in self.state.items:
            raise Business("NOT_FOUND", "Not found")
        self.state.submit(item_id)
        return ok(None)

    # --- object store --------------------------------------------------------------------

    async def minio(self, request: Request) -> Response:
        bucket, key = request.path_params["bucket"], request.path_params["key"]
        if request.method == "PUT":
            return await self.store.put(request, bucket, key)
        return self.store.get(request, bucket, key)

    # --- admin ------------------------------------------------------------------------------

    async def admin_counters(self, request: Request) -> Response:
        st = self.state
        with st.lock:
            per_ds: dict[str, int] = {}
            for i in st.items.values():
                if not i.deleted:
                    per_ds[str(i.dataset_id)] = per_ds.get(str(i.dataset_id), 0) + 1
            return JSONResponse(
                {
                    "requests": dict(st.requests),
                    "puts": {k.split("/", 1)[1]: o.puts for k, o in self.store.objects.items()},
                    "data_upload_calls": list(st.upload_calls),
                    "items_per_dataset": per_ds,
                    "bytes_received": self.store.bytes_received,
                    "rate_limited": self._windows.rejected if self._windows else 0,
                }
            )

    async def admin_traversals(self, request: Request) -> Response:
        """Pull traversals per dataset and client, and the pairs that overlapped in time."""
        if request.method == "DELETE":
            self.reads.clear()
            return JSONResponse({"ok": True})
        return JSONResponse(self.reads.report(float(self.state.config["traversal_gap"])))

    async def admin_annotate(self, request: Request) -> Response:
        body = json.loads(await request.body())
        if int(body["dataId"]) not in self.state.items:
            return JSONResponse({"error": "no such item"}, status_code=404)
        self.state.annotate(
            int(body["dataId"]), list(body.get("objects") or []), bool(body.get("submit"))
        )
        return JSONResponse({"ok": True})

    async def admin_items(self, request: Request) -> Response:
        dataset_id = int(request.path_params["id"])
        with self.state.lock:
            rows = [
                {
                    **self.item_dto(i),
                    "deleted": i.deleted,
                    # not in the real DTO (no timestamps there): for tests of the ordering
                    "createdAt": i.created_at.isoformat(sep=" "),
                    "objects": i.sources.get("Ground Truth", []),
                    "sources": i.sources,
                }
                for i in sorted(self.state.items.values(), key=lambda i: i.id)
                if i.dataset_id == dataset_id
            ]
        return JSONResponse({"items": rows})

    async def admin_seed(self, request: Request) -> Response:
        """Bulk-create items with ground truth (benchmarks): ``{items, objects, annotated_every}``."""
        body = json.loads(await request.body())
        try:
            ids = self.state.seed(
                int(request.path_params["id"]),
                int(body["items"]),
                int(body.get("objects", 0)),
                int(body.get("annotated_every", 0)),
            )
        except KeyError:
            return JSONResponse({"error": "no such dataset"}, status_code=404)
        return JSONResponse({"created": len(ids), "first_id": ids[0] if ids else None})

    def configure(self, changes: dict[str, Any]) -> dict[str, Any]:
        """``/__sandbox/config``: the platform's settings (``xtreme1_state.Xtreme1State.config``)."""
        return update_config(self.state.config, changes)


def _traversed_dataset(request: Request) -> int | None:
    """The dataset a pull reads with this request, or None (uploads, name checks, admin)."""
    path, q = request.url.path, request.query_params
    try:
        if path == "/api/data/findByPage" and "name" not in q and q.get("datasetId"):
            return int(q["datasetId"])
        if path == "/api/data/getDataAndResult" and q.get("datasetId"):
            return int(q["datasetId"])
        m = re.fullmatch(r"/api/dataset/(\d+)/statistics/dataStatus", path)
        return int(m.group(1)) if m else None
    except ValueError:
        return None


def _lifespan(x: Xtreme1App) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        x.state.close()

    return lifespan


def create_app(token: str, data_dir: Path) -> Starlette:
    """The sandbox as an ASGI app; ``app.state.sandbox`` is the :class:`Xtreme1App`."""
    x = Xtreme1App(token, data_dir)
    a = x.api
    routes = [
        Route("/api/dataset/create", a(x.dataset_create), methods=["POST"]),
        Route("/api/dataset/findByPage", a(x.dataset_find), methods=["GET"]),
        Route("/api/dataset/info/{id}", a(x.dataset_info), methods=["GET"]),
        Route("/api/dataset/{id}/statistics/dataStatus", a(x.dataset_stats), methods=["GET"]),
        Route("/api/dataset/delete/{id}", a(x.dataset_delete), methods=["POST"]),
        Route("/api/datasetClass/findAll/{id}", a(x.class_find_all), methods=["GET"]),
        Route("/api/datasetClass/create", a(x.class_create), methods=["POST"]),
        Route("/api/data/generatePresignedUrl", a(x.presign), methods=["GET"]),
        Route("/api/data/upload", a(x.upload), methods=["POST"]),
        Route("/api/data/findUploadRecordBySerialNumbers", a(x.records), methods=["GET"]),
        Route("/api/data/findByPage", a(x.data_find), methods=["GET"]),
        Route("/api/data/info/{id}", a(x.data_info), methods=["GET"]),
        Route("/api/data/listByIds", a(x.data_list_by_ids), methods=["GET"]),
        Route("/api/data/getDataStatusByIds", a(x.data_status), methods=["GET"]),
        Route("/api/data/deleteBatch", a(x.data_delete), methods=["POST"]),
        Route("/api/data/getDataAndResult", a(x.data_and_result), methods=["GET"]),
        Route("/api/data/flow/submit/{id}", a(x.flow_submit), methods=["POST"]),
        Route("/minio/{bucket}/{key:path}", x.minio, methods=["PUT", "GET"]),
        *admin_routes(
            x,
            [
                Route("/__sandbox/traversals", x.admin_traversals, methods=["GET", "DELETE"]),
                Route("/__sandbox/datasets/{id}/items", x.admin_items, methods=["GET"]),
                Route("/__sandbox/datasets/{id}/seed", x.admin_seed, methods=["POST"]),
            ],
        ),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405 and request.url.path.startswith("/api/"):
            # Spring answers a wrong method with 500 UNKNOWN (docs/platforms/xtreme1.md).
            msg = f"org.springframework.web.HttpRequestMethodNotSupportedException: Request method '{request.method}' not supported"
            return JSONResponse({"code": "UNKNOWN", "message": msg, "data": None}, status_code=500)
        return JSONResponse(
            {
                "status": exc.status_code,
                "error": "Not Found" if exc.status_code == 404 else str(exc.detail),
                "path": request.url.path,
            },
            status_code=exc.status_code,
        )

    app = Starlette(
        routes=routes,
        middleware=[Middleware(FaultMiddleware, rules=x.faults)],
        exception_handlers={HTTPException: http_error},
        lifespan=_lifespan(x),
    )
    app.state.sandbox = x
    return app
