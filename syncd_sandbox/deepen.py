"""The Deepen sandbox app: API v2 under ``/api/v2`` plus a GCS-style resumable endpoint.

Strict as Deepen's API pages (https://help.deepen.ai/documentation/api-reference/) describe it:
``Authorization: Bearer <token>`` on every API call (401 otherwise), plain JSON
without envelope, errors as HTTP status codes with ``{"error": …}``; the
dataset creation validates ``dataset_type`` / ``dataset_format`` /
``labelling_mode`` / ``files`` and hands out a resumable session URI on the
same host (:mod:`syncd_sandbox.gcs_resumable`); ``process_uploaded_data``
wants the whole zip uploaded and its object file name; a dataset is
processed once, and preprocessing accepts only Deepen's input formats
(:mod:`syncd_sandbox.deepen_formats`). ``/__sandbox/`` is the admin API: counters, faults, config
(GCS switches and processing time), the sandbox clock, annotate, objects.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncd_sandbox.admin import ConfigError, admin_routes
from syncd_sandbox.deepen_state import DatasetRow, DeepenState
from syncd_sandbox.faults import FaultMiddleware, FaultRules
from syncd_sandbox.gcs_resumable import ResumableStore

Handler = Callable[[Request], Awaitable[Response]]
CLIENT_ID = "sandbox-client"


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class BadRequest(Exception):
    """Becomes HTTP 400 with the message."""


class DeepenApp:
    """Route handlers over one :class:`DeepenState`."""

    def __init__(self, token: str, data_dir: Path) -> None:
        self.token = token
        self.gcs = ResumableStore(data_dir / "gcs")
        self.state = DeepenState(self.gcs)
        self.faults = FaultRules()

    def api(self, fn: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            template = re.sub(r"/datasets/[^/]+", "/datasets/{id}", request.url.path)
            template = re.sub(r"/files/.+?(/labels)?$", r"/files/{file}\1", template)
            with self.state.lock:
                key = f"{request.method} {template}"
                self.state.requests[key] = self.state.requests.get(key, 0) + 1
            if request.headers.get("authorization", "") != f"Bearer {self.token}":
                return error(401, "Unauthorized")
            if request.path_params.get("client") not in (None, CLIENT_ID):
                return error(403, "Forbidden: the token does not belong to this client")
            try:
                return await fn(request)
            except BadRequest as exc:
                return error(400, str(exc))

        return wrapped

    def dataset(self, request: Request) -> DatasetRow:
        row = self.state.datasets.get(request.path_params["id"])
        if row is None or row.deleted:
            raise _NotFound
        return row

    # --- datasets ----------------------------------------------------------------

    async def create_dataset(self, request: Request) -> Response:
        body = await _json(request)
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        name = body.get("dataset_name")
        if not isinstance(name, str) or not name:
            raise BadRequest("dataset_name is required")
        kind = body.get("dataset_type")
        if kind not in ("3d", "images", "video"):
            raise BadRequest(f"dataset_type must be 3d, images or video, not {kind!r}")
        fmt = body.get("dataset_format")
        if kind == "3d" and fmt not in ("json", "default"):
            raise BadRequest(f"dataset_format must be json or default for 3d, not {fmt!r}")
        mode = body.get("labelling_mode", "frame_by_frame")
        if mode not in ("frame_by_frame", "label_by_label"):
            raise BadRequest(f"labelling_mode {mode!r} is not known")
        files = body.get("files")
        if not isinstance(files, list) or len(files) != 1 or not isinstance(files[0], dict):
            raise BadRequest("files must hold exactly one file")
        size, ftype = files[0].get("file_size"), files[0].get("file_type")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise BadRequest("files[0].file_size must be the exact size in bytes")
        wanted = "video/mp4" if kind == "video" else "application/zip"
        if ftype != wanted:
            raise BadRequest(f"files[0].file_type must be {wanted} for {kind}")
        base = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
        row = self.state.create(base, request.path_params["client"], body)
        with self.state.lock:
            return JSONResponse(self.state.resource(row), status_code=201)

    async def list_datasets(self, request: Request) -> Response:
        with self.state.lock:
            rows = [r for r in self.state.datasets.values() if not r.deleted]
            return JSONResponse({r.dataset_id: self.state.resource(r) for r in rows})

    async def dataset_ids(self, request: Request) -> Response:
        with self.state.lock:
            rows = [r for r in self.state.datasets.values() if not r.deleted]
            return JSONResponse(
                {"datasets": [{"dataset_id": r.dataset_id, "dataset_name": r.name} for r in rows]}
            )

    async def dataset_info(self, request: Request) -> Response:
        row = self.dataset(request)
        if request.method == "DELETE":
            with self.state.lock:
                row.deleted = True
            return JSONResponse({"dataset_id": row.dataset_id, "deleted": True})
        with self.state.lock:
            return JSONResponse(self.state.resource(row))

    async def process(self, request: Request) -> Response:
        row = self.dataset(request)
        body = await _json(request)
        file_name = body.get("file_name") if isinstance(body, dict) else None
        if not isinstance(file_name, str) or not file_name:
            raise BadRequest("file_name is required")
        with self.state.lock:
            row.process_calls += 1
            session = self.state.session(row)
            if file_name != row.file_name:
                raise BadRequest(f"file {file_name} was not uploaded to this dataset")
            if not session.complete:
                raise BadRequest(
                    f"the upload of {file_name} is not complete "
                    f"({session.persisted} of {row.file_size} bytes)"
                )
            if row.processing_status != "files_to_be_uploaded":
                raise BadRequest(f"the dataset is already {row.processing_status}")
            row.processing_status = "files_uploaded"
            row.processing_started = time.time()
            return JSONResponse(self.state.resource(row))

    # --- files and labels ----------------------------------------------------------

    async def files(self, request: Request) -> Response:
        row = self.dataset(request)
        with self.state.lock:
            self.state.advance(row)
            return JSONResponse({"files": [self._file(row, f) for f in row.files]})

    def _file(self, row: DatasetRow, file_id: str) -> dict[str, Any]:
        return {
            "client_id": row.client_id,
            "dataset_id": row.dataset_id,
            "file_id": file_id,
            "status": row.files[file_id],
        }

    async def file_info(self, request: Request) -> Response:
        row = self.dataset(request)
        file_id = unquote(request.path_params["file"])
        with self.state.lock:
            self.state.advance(row)
            want_labels = file_id not in row.files and file_id.endswith("/labels")
            if want_labels:
                file_id = file_id.removesuffix("/labels")
            if file_id not in row.files:
                return error(404, f"file {file_id} not found")
            if want_labels:
                labels = [lab for lab in row.labels.values() if lab["file_id"] == file_id]
                return JSONResponse({"labels": labels})
            return JSONResponse(self._file(row, file_id))

    async def labels(self, request: Request) -> Response:
        row = self.dataset(request)
        q = request.query_params
        with self.state.lock:
            self.state.advance(row)
            labels = sorted(row.labels.values(), key=lambda lab: str(lab["label_id"]))
            grouped = self.state.config["labels_grouping"] == "per_file"
            if q.get("labels_with_file_ids_order") == "true" and grouped:
                per_file: dict[str, list[dict[str, Any]]] = {f: [] for f in row.files}
                for lab in labels:
                    per_file.setdefault(lab["file_id"], []).append(lab)
                return JSONResponse({"labels": per_file})
            if q.get("filter_existing_categories") == "true":
                return JSONResponse({"all_labels": labels})
            return JSONResponse({"labels": labels})

    # --- admin -------------------------------------------------------------------------

    async def admin_counters(self, request: Request) -> Response:
        with self.state.lock, self.gcs.lock:
            sessions = {
                r.dataset_id: {
                    "persisted": self.gcs.sessions[r.upload_id].persisted,
                    "complete": self.gcs.sessions[r.upload_id].complete,
                    "chunks": self.gcs.sessions[r.upload_id].chunks,
                    "status_queries": self.gcs.sessions[r.upload_id].status_queries,
                    "bytes_received": self.gcs.sessions[r.upload_id].bytes_received,
                    "ranges": self.gcs.sessions[r.upload_id].ranges,
                    "md5": self.gcs.sessions[r.upload_id].md5,
                    "name": r.name,
                    "processing_status": r.processing_status,
                    "process_calls": r.process_calls,
                    "deleted": r.deleted,
                }
                for r in self.state.datasets.values()
            }
            return JSONResponse(
                {
                    "requests": dict(self.state.requests),
                    "bytes_received": self.gcs.bytes_received,
                    "auth_headers_on_uploads": self.gcs.auth_headers_seen,
                    "unaligned_chunks": self.gcs.unaligned_chunks,
                    "datasets": sessions,
                }
            )

    async def admin_object(self, request: Request) -> Response:
        """Where the uploaded zip of a dataset is on disk, so tests can checksum it."""
        row = self.state.datasets.get(request.path_params["id"])
        if row is None:
            return error(404, "no such dataset")
        return JSONResponse({"path": str(self.gcs.path(self.state.session(row)))})

    def configure(self, changes: dict[str, Any]) -> dict[str, Any]:
        """``/__sandbox/config``: the upload endpoint's and the platform's settings, and
        ``clock_offset`` (seconds added to the upload endpoint's clock, to expire sessions)."""
        known = set(self.gcs.config) | set(self.state.config) | {"clock_offset"}
        unknown = set(changes) - known
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)}")
        if changes.get("labels_grouping", "per_file") not in ("per_file", "list"):
            raise ConfigError("labels_grouping: one of ['per_file', 'list']")
        with self.state.lock, self.gcs.lock:
            for k, v in changes.items():
                if k == "clock_offset":
                    self.gcs.clock_offset = float(v)
                elif k in self.gcs.config:
                    self.gcs.config[k] = v
                else:
                    self.state.config[k] = v
            return {**self.gcs.config, **self.state.config, "clock_offset": self.gcs.clock_offset}

    async def admin_annotate(self, request: Request) -> Response:
        """``{"dataset_id", "file_id", "labels": [...]}`` adds/updates; ``"delete": [ids]`` removes;
        ``"status"`` sets the file's status."""
        body = json.loads(await request.body())
        with self.state.lock:
            row = self.state.datasets.get(str(body.get("dataset_id")))
            if row is None:
                return error(404, "no such dataset")
            self.state.advance(row)
            file_id = str(body.get("file_id"))
            try:
                ids = self.state.annotate(row, file_id, list(body.get("labels") or []))
            except KeyError:
                return error(404, f"no file {file_id} in the dataset")
            for label_id in body.get("delete") or []:
                row.labels.pop(str(label_id), None)
            if body.get("status"):
                row.files[file_id] = str(body["status"])
            return JSONResponse({"label_ids": ids})


class _NotFound(Exception):
    pass


async def _json(request: Request) -> Any:
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise BadRequest("Content-Type must be application/json")
    try:
        return json.loads(await request.body())
    except ValueError:
        raise BadRequest("the body is not valid JSON") from None


def create_app(token: str, data_dir: Path) -> Starlette:
    """The sandbox as an ASGI app; ``app.state.sandbox`` is the :class:`DeepenApp`."""
    x = DeepenApp(token, data_dir)
    a = x.api
    v2 = "/api/v2"
    routes = [
        Route(f"{v2}/clients/{{client}}/datasets", a(x.create_dataset), methods=["POST"]),
        Route(f"{v2}/clients/{{client}}/datasets", a(x.list_datasets), methods=["GET"]),
        Route(f"{v2}/clients/{{client}}/datasets_ids", a(x.dataset_ids), methods=["GET"]),
        Route(f"{v2}/datasets/{{id}}", a(x.dataset_info), methods=["GET", "DELETE"]),
        Route(f"{v2}/datasets/{{id}}/process_uploaded_data", a(x.process), methods=["POST"]),
        Route(f"{v2}/datasets/{{id}}/files", a(x.files), methods=["GET"]),
        Route(f"{v2}/datasets/{{id}}/files/{{file:path}}", a(x.file_info), methods=["GET"]),
        Route(f"{v2}/datasets/{{id}}/labels", a(x.labels), methods=["GET"]),
        Route("/upload/storage/v1/b/{bucket}/o", x.gcs.handle, methods=["PUT", "DELETE", "POST"]),
        *admin_routes(x, [Route("/__sandbox/objects/{id}", x.admin_object, methods=["GET"])]),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return error(404, "Not Found")

    app = Starlette(
        routes=routes,
        middleware=[Middleware(FaultMiddleware, rules=x.faults)],
        exception_handlers={_NotFound: not_found},
    )
    app.state.sandbox = x
    return app
