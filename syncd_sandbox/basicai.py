"""The BasicAI Cloud sandbox app: the OpenAPI as BasicAI's guide writes it, strictly.

Routes live under ``/api/v1``; the object store under ``/s3/`` on the same
host. What it enforces (docs/platforms/basicai.md):

* ``Authorization: ApiKey <key>`` on every call, else HTTP 401 (no envelope);
  an expired licence answers ``LICENSE_EXPIRED`` in the envelope.
* GET and POST only: another method is HTTP 405; an unknown path HTTP 404.
* The ``{code, message, data}`` envelope with HTTP 200 for business errors
  (``RESOURCE_NOT_FOUND``, ``NAME_DUPLICATED``, ``ILLEGAL_PARAM`` …).
* ``pageNo``/``pageSize`` and ``lastId``/``limit`` within 1-100, ids in a
  query parameter at most 100, else ``ILLEGAL_PARAM``; ``total`` only on the
  first page; ``listItemById`` in id order, continuing after ``lastId``.
* The four rate-limit windows per key (100/s, 3000/min, 72000/h, 864000/day)
  with HTTP 429 and ``Retry-After`` (the exact signal is [unverified]).
* Presigned PUT URLs for files up to 1 GB; data registration checks each
  file's object exists with the declared size.

``/__sandbox/`` is the admin API (counters, annotator, config, faults); it is
not rate limited.
"""

from __future__ import annotations

import bisect
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncd_sandbox.admin import admin_routes, update_config
from syncd_sandbox.basicai_state import (
    BUCKET,
    DATASET_TYPES,
    MAX_PRESIGN_BYTES,
    TEAM_ID,
    BasicAIState,
    Business,
    ItemRow,
)
from syncd_sandbox.faults import FaultMiddleware, FaultRules
from syncd_sandbox.objectstore import ObjectStore, UploadGauge

Handler = Callable[[Request], Awaitable[Response]]
MAX_IDS = 100


def ok(data: Any) -> JSONResponse:
    return JSONResponse({"code": "OK", "message": "Ok", "data": data})


def bounded(request: Request, name: str, default: int) -> int:
    """A 1-100 paging parameter (``limit``, ``pageSize``)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Business("ILLEGAL_PARAM", f"{name} must be an integer") from None
    if not 1 <= value <= 100:
        raise Business("ILLEGAL_PARAM", f"{name} must be between 1 and 100")
    return value


def int_param(request: Request, name: str, *, required: bool = False) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if required:
            raise Business("ILLEGAL_PARAM", f"{name} is required")
        return None
    try:
        return int(raw)
    except ValueError:
        raise Business("ILLEGAL_PARAM", f"{name} must be an integer") from None


def id_list(request: Request, name: str) -> list[int]:
    raw = request.query_params.get(name) or ""
    try:
        ids = [int(v) for v in raw.split(",") if v.strip()]
    except ValueError:
        raise Business("ILLEGAL_PARAM", f"{name} must be ids separated by commas") from None
    if not ids:
        raise Business("ILLEGAL_PARAM", f"{name} is required")
    if len(ids) > MAX_IDS:
        raise Business("ILLEGAL_PARAM", f"at most {MAX_IDS} ids in {name}")
    return ids


def path_id(request: Request, name: str = "id") -> int:
    try:
        return int(request.path_params[name])
    except ValueError:
        raise Business("ILLEGAL_PARAM", f"{name} must be an integer") from None


async def body_json(request: Request) -> Any:
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise Business("ILLEGAL_FORMAT", "the body must be JSON (Content-Type: application/json)")
    try:
        return json.loads(await request.body())
    except ValueError:
        raise Business("ILLEGAL_FORMAT", "the body is not valid JSON") from None


def paged(rows: list[Any], request: Request) -> dict[str, Any]:
    page_no = int_param(request, "pageNo") or 1
    if page_no < 1:
        raise Business("ILLEGAL_PARAM", "pageNo must be at least 1")
    size = bounded(request, "pageSize", 10)
    out: dict[str, Any] = {"list": rows[(page_no - 1) * size : page_no * size]}
    if page_no == 1:
        out["total"] = len(rows)  # only on the first page (the guide)
    return out


def by_id(rows: list[Any], request: Request) -> dict[str, Any]:
    """``lastId``/``limit``: the records after ``lastId`` in id order, at most ``limit``."""
    last = int_param(request, "lastId")
    limit = bounded(request, "limit", 10)
    rows = sorted((r for r in rows if last is None or r["id"] > last), key=lambda r: r["id"])
    return {"list": rows[:limit]}


# The alternate reply shapes the public docs allow (see basicai_state.BasicAIState.config).
SHAPE_SWITCHES = {
    "results_shape": ("nested", "flat"),
    "dataset_type_naming": ("export", "worked_example"),
}


class BasicAIApp:
    """Route handlers over one :class:`BasicAIState`."""

    def __init__(self, token: str, data_dir: Path) -> None:
        self.token = token
        self.store = ObjectStore(data_dir / "objects")
        self.state = BasicAIState(self.store)
        self.faults = FaultRules()

    def api(self, fn: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            st = self.state
            template = re.sub(r"/\d+(?=/|$)", "/{id}", request.url.path)
            with st.lock:
                key = f"{request.method} {template}"
                st.requests[key] = st.requests.get(key, 0) + 1
            auth = request.headers.get("authorization", "")
            scheme, _, key_value = auth.partition(" ")
            if scheme != "ApiKey" or key_value != self.token:
                return JSONResponse({"error": "Unauthorized"}, status_code=401)
            wait = st.limits.admit()
            if wait is not None:
                with st.lock:
                    st.requests["429"] = st.requests.get("429", 0) + 1
                return JSONResponse(
                    {"error": "Too Many Requests"},
                    status_code=429,
                    headers={"Retry-After": f"{max(wait, 0.001):.3f}"},
                )
            try:
                if st.config["license_expired"]:
                    raise Business("LICENSE_EXPIRED", "License expired")
                return await fn(request)
            except Business as exc:
                return JSONResponse({"code": exc.code, "message": str(exc), "data": None})

        return wrapped

    # --- datasets -----------------------------------------------------------------------

    def dataset_dto(self, d: Any) -> dict[str, Any]:
        kind = d.type
        if self.state.config["dataset_type_naming"] == "worked_example" and kind in (
            "LIDAR_FUSION",
            "LIDAR_BASIC",
        ):
            kind = "LIDAR"  # the guide's worked example names the type so
        return {"id": d.id, "name": d.name, "type": kind}

    async def dataset_create(self, request: Request) -> Response:
        body = await body_json(request)
        if not isinstance(body, dict):
            raise Business("ILLEGAL_PARAM", "the body must be an object")
        name, type_ = body.get("name"), body.get("type")
        if not isinstance(name, str) or not name.strip():
            raise Business("ILLEGAL_PARAM", "name must not be empty")
        if type_ not in DATASET_TYPES:
            raise Business("ILLEGAL_PARAM", f"type must be one of {', '.join(DATASET_TYPES)}")
        return ok(self.dataset_dto(self.state.create_dataset(name, str(type_))))

    async def dataset_list(self, request: Request) -> Response:
        with self.state.lock:
            rows = [self.dataset_dto(d) for d in self.state.datasets.values()]
        return ok(paged(rows, request))

    async def dataset_list_by_id(self, request: Request) -> Response:
        with self.state.lock:
            rows = [self.dataset_dto(d) for d in self.state.datasets.values()]
        return ok(by_id(rows, request))

    async def dataset_info(self, request: Request) -> Response:
        return ok(self.dataset_dto(self.state.dataset(path_id(request))))

    # --- upload --------------------------------------------------------------------------

    async def presign(self, request: Request) -> Response:
        body = await body_json(request)
        if not isinstance(body, list) or not body:
            raise Business("ILLEGAL_PARAM", "the body must be a non-empty array of files")
        if len(body) > MAX_IDS:
            raise Business("ILLEGAL_PARAM", f"at most {MAX_IDS} files per call")
        host = request.headers.get("host", "localhost")
        out = []
        for f in body:
            if not isinstance(f, dict):
                raise Business("ILLEGAL_PARAM", "each file must be an object")
            for key in ("deviceName", "filename", "size"):
                if f.get(key) in (None, ""):
                    raise Business("ILLEGAL_PARAM", f"{key} must not be empty")
            size = f["size"]
            if not isinstance(size, int) or size < 0:
                raise Business("ILLEGAL_PARAM", "size must be a non-negative integer")
            if size > MAX_PRESIGN_BYTES:
                raise Business("ILLEGAL_PARAM", "files over 1 GB need a temporary access token")
            filename = str(f["filename"])
            if "/" in filename or filename in (".", ".."):
                raise Business("ILLEGAL_PARAM", "filename must be a plain file name")
            day = datetime.now(UTC).strftime("%Y%m%d")
            key = f"upload/team_{TEAM_ID}/{day}/{uuid.uuid4().hex}/{filename}"
            url = self.store.presign("PUT", f"http://{host}/s3", BUCKET, key, expires=3600)
            out.append({"preSignedUrl": url, "path": key})
        return ok(out)

    async def s3(self, request: Request) -> Response:
        bucket, key = request.path_params["bucket"], request.path_params["key"]
        if request.method == "PUT":
            return await self.store.put(request, bucket, key)
        return self.store.get(request, bucket, key)

    # --- data ---------------------------------------------------------------------------------

    def _record(self, kind: str, dataset_id: int, names: list[str]) -> None:
        with self.state.lock:
            self.state.add_calls.append({"call": kind, "datasetId": dataset_id, "names": names})

    def _created(self, rows: list[ItemRow]) -> list[dict[str, Any]]:
        return [{"id": r.id, "name": r.name, "type": r.type, "parentId": r.parent_id} for r in rows]

    async def add_data(self, request: Request) -> Response:
        body = await body_json(request)
        rows = self.state.add_data(path_id(request), [body])
        self._record("addData", path_id(request), [r.name for r in rows])
        return ok(self._created(rows)[0])

    async def batch_add_data(self, request: Request) -> Response:
        body = await body_json(request)
        entries = body.get("dataList") if isinstance(body, dict) else None
        if not isinstance(entries, list) or not entries:
            raise Business("ILLEGAL_PARAM", "dataList must be a non-empty array")
        if len(entries) > MAX_IDS:
            raise Business("ILLEGAL_PARAM", f"at most {MAX_IDS} data per call")
        rows = self.state.add_data(path_id(request), entries)
        self._record("batchAddData", path_id(request), [r.name for r in rows])
        return ok(self._created(rows))

    async def add_scene(self, request: Request) -> Response:
        body = await body_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"]:
            raise Business("ILLEGAL_PARAM", "name must not be empty")
        entries = body.get("dataList") or []
        if not isinstance(entries, list):
            raise Business("ILLEGAL_PARAM", "dataList must be an array")
        rows = self.state.add_data(path_id(request), entries, scene=body["name"])
        self._record("addScene", path_id(request), [rows[0].name])
        return ok(self._created(rows))

    async def remove_data(self, request: Request) -> Response:
        dataset_id = path_id(request)
        with self.state.lock:
            self.state.dataset(dataset_id)
            item = self.state.items.get(path_id(request, "dataId"))
            if item is None or item.dataset_id != dataset_id:
                raise Business("RESOURCE_NOT_FOUND", "data not found")
            self.state.remove(item.id)
        return ok(None)

    def _items(self, dataset_id: int) -> list[ItemRow]:
        self.state.dataset(dataset_id)
        return [i for i in self.state.items.values() if i.dataset_id == dataset_id]

    async def list_item(self, request: Request) -> Response:
        # Current level only; `parentId` and `name` as filters are [unverified].
        dataset_id = path_id(request)
        parent = int_param(request, "parentId")
        name = request.query_params.get("name")
        with self.state.lock:
            rows = [
                i.dto()
                for i in sorted(self._items(dataset_id), key=lambda i: i.id)
                if i.parent_id == parent and (name is None or i.name.lower() == name.lower())
            ]
        return ok(paged(rows, request))

    async def list_item_by_id(self, request: Request) -> Response:
        # Every level, in id order (the guide: "for traversal and processing of all data").
        # Only the page is built: a traversal of a large dataset stays linear.
        dataset_id = path_id(request)
        last = int_param(request, "lastId")
        limit = bounded(request, "limit", 10)
        st = self.state
        with st.lock:
            st.dataset(dataset_id)
            ids = sorted(st.items)  # already in order: ids only grow
            rows = []
            for item_id in ids[bisect.bisect_right(ids, last) if last is not None else 0 :]:
                item = st.items[item_id]
                if item.dataset_id == dataset_id:
                    rows.append(item.dto())
                    if len(rows) == limit:
                        break
        return ok({"list": rows})

    # --- results ------------------------------------------------------------------------------

    async def list_sources(self, request: Request) -> Response:
        dataset_id = path_id(request)
        with self.state.lock:
            used = {sid for i in self._items(dataset_id) for sid in i.results}
            rows = [
                {"id": s.id, "name": s.name, "type": s.type}
                for s in self.state.sources.values()
                if s.id in used or s.type == "DATA_FLOW"
            ]
        return ok(rows)

    def _results(self, dataset_id: int, ids: list[int], source: int | None) -> list[Any]:
        out = []
        with self.state.lock:
            self.state.dataset(dataset_id)
            for data_id in ids:
                item = self.state.items.get(data_id)
                if item is None or item.dataset_id != dataset_id or item.type != "DATA":
                    continue  # removed or unknown data are absent from the answer
                results = [
                    self.state.result_dto(item, sid)
                    for sid in sorted(item.results)
                    if source is None or sid == source
                ]
                if self.state.config["results_shape"] == "flat":
                    # one entry per item and source, as the export's result files
                    out += [{"dataId": item.id, **r} for r in results]
                    continue
                out.append(
                    {
                        "dataId": item.id,
                        "name": item.name,
                        "annotationStatus": item.annotation_status,
                        "results": results,
                    }
                )
        return out

    async def data_result(self, request: Request) -> Response:
        found = self._results(
            path_id(request), [path_id(request, "dataId")], int_param(request, "sourceId")
        )
        if not found:
            raise Business("RESOURCE_NOT_FOUND", "data not found")
        return ok(found[0])

    async def batch_data_result(self, request: Request) -> Response:
        ids = id_list(request, "dataIds")
        return ok(self._results(path_id(request), ids, int_param(request, "sourceId")))

    # --- admin ----------------------------------------------------------------------------------

    async def admin_counters(self, request: Request) -> Response:
        st = self.state
        with st.lock:
            per_ds: dict[str, int] = {}
            for i in st.items.values():
                per_ds[str(i.dataset_id)] = per_ds.get(str(i.dataset_id), 0) + 1
            return JSONResponse(
                {
                    "requests": dict(st.requests),
                    "api_requests": st.limits.admitted,
                    "rejected_429": st.limits.rejected,
                    "puts": {k.split("/", 1)[1]: o.puts for k, o in self.store.objects.items()},
                    "add_calls": list(st.add_calls),
                    "items_per_dataset": per_ds,
                    "bytes_received": self.store.bytes_received,
                    "uploads_in_flight_max": self.store.uploads.most,
                }
            )

    async def admin_annotate(self, request: Request) -> Response:
        body = json.loads(await request.body())
        if int(body["dataId"]) not in self.state.items:
            return JSONResponse({"error": "no such item"}, status_code=404)
        self.state.annotate(
            int(body["dataId"]),
            list(body.get("objects") or []),
            body.get("source"),
            bool(body.get("submit")),
        )
        return JSONResponse({"ok": True})

    async def admin_items(self, request: Request) -> Response:
        dataset_id = int(request.path_params["id"])
        if request.method == "POST":
            # Bulk items without files, for traversal tests: {"names": [...]}.
            body = json.loads(await request.body())
            with self.state.lock:
                rows = []
                for name in body["names"]:
                    row = ItemRow(self.state.new_id("item"), dataset_id, name, "DATA", None)
                    self.state.items[row.id] = row
                    rows.append(row.id)
            return JSONResponse({"ids": rows})
        with self.state.lock:
            out = [
                {**i.dto(), "results": {str(k): v for k, v in i.results.items()}}
                for i in sorted(self.state.items.values(), key=lambda i: i.id)
                if i.dataset_id == dataset_id
            ]
        return JSONResponse({"items": out})

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
        except Business:
            return JSONResponse({"error": "no such dataset"}, status_code=404)
        return JSONResponse({"created": len(ids), "first_id": ids[0] if ids else None})

    async def admin_remove(self, request: Request) -> Response:
        self.state.remove(int(request.path_params["id"]))
        return JSONResponse({"ok": True})

    def configure(self, changes: dict[str, Any]) -> dict[str, Any]:
        """``/__sandbox/config``: the state's settings, plus ``rate_windows`` ([[n, seconds], …])."""
        return update_config(
            self.state.config,
            changes,
            special={
                "rate_windows": lambda w: self.state.set_windows([(int(n), float(s)) for n, s in w])
            },
            choices=SHAPE_SWITCHES,
        )


def create_app(token: str, data_dir: Path) -> Starlette:
    """The sandbox as an ASGI app; ``app.state.sandbox`` is the :class:`BasicAIApp`."""
    x = BasicAIApp(token, data_dir)
    a = x.api
    v1 = "/api/v1"
    routes = [
        Route(f"{v1}/dataset/create", a(x.dataset_create), methods=["POST"]),
        Route(f"{v1}/dataset/list", a(x.dataset_list), methods=["GET"]),
        Route(f"{v1}/dataset/listById", a(x.dataset_list_by_id), methods=["GET"]),
        Route(f"{v1}/dataset/info/{{id}}", a(x.dataset_info), methods=["GET"]),
        Route(f"{v1}/storage/batchGeneratePreSignedUploadUrl", a(x.presign), methods=["POST"]),
        Route(f"{v1}/dataset/addData/{{id}}", a(x.add_data), methods=["POST"]),
        Route(f"{v1}/dataset/batchAddData/{{id}}", a(x.batch_add_data), methods=["POST"]),
        Route(f"{v1}/dataset/addScene/{{id}}", a(x.add_scene), methods=["POST"]),
        Route(f"{v1}/dataset/removeData/{{id}}/{{dataId}}", a(x.remove_data), methods=["POST"]),
        Route(f"{v1}/dataset/listItem/{{id}}", a(x.list_item), methods=["GET"]),
        Route(f"{v1}/dataset/listItemById/{{id}}", a(x.list_item_by_id), methods=["GET"]),
        Route(f"{v1}/dataset/listAnnotationSource/{{id}}", a(x.list_sources), methods=["GET"]),
        Route(
            f"{v1}/dataset/dataAnnotationResult/{{id}}/{{dataId}}",
            a(x.data_result),
            methods=["GET"],
        ),
        # The guide writes a "/" before the query; both spellings are served.
        Route(
            f"{v1}/dataset/batchDataAnnotationResult/{{id}}/",
            a(x.batch_data_result),
            methods=["GET"],
        ),
        Route(
            f"{v1}/dataset/batchDataAnnotationResult/{{id}}",
            a(x.batch_data_result),
            methods=["GET"],
        ),
        Route("/s3/{bucket}/{key:path}", x.s3, methods=["PUT", "GET"]),
        *admin_routes(
            x,
            [
                Route("/__sandbox/datasets/{id}/items", x.admin_items, methods=["GET", "POST"]),
                Route("/__sandbox/datasets/{id}/seed", x.admin_seed, methods=["POST"]),
                Route("/__sandbox/items/{id}/remove", x.admin_remove, methods=["POST"]),
            ],
        ),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(UploadGauge, store=x.store),  # outermost: counts fault delays too
            Middleware(FaultMiddleware, rules=x.faults),
        ],
        exception_handlers={HTTPException: http_error},
    )
    app.state.sandbox = x
    return app
