"""The Segments.ai sandbox app: the REST API as the official Python SDK speaks it, strictly.

What it enforces (docs/platforms/segments.md):

* Served at the root (the SDK drops any path of its ``api_url``), on the SDK's
  exact paths: every endpoint ends in ``/`` except ``/user`` and
  ``/users/{name}``; a path without its slash is HTTP 404 (no redirect: a
  redirected POST would turn into a GET).
* ``Authorization: APIKey <key>`` on every API call (``GET /api_status/``
  too): none → 401 "Authentication credentials were not provided.", a wrong
  key → 401 "Invalid API key.".
* JSON bodies (``Content-Type: application/json``, else 415), gzip-compressed
  when ``Content-Encoding: gzip`` (the SDK's default for samples and labels).
* Django REST Framework's codes and bodies, which the SDK maps by their words:
  201 on creation (datasets, samples, labelsets, releases, assets, a new
  label), 200 on reads and updates, 204 on deletes; 400 ``{field: [msg]}``
  ("already exists" for duplicates); 404 "Not found."; 405 for another
  method; 429 "Request was throttled. Expected available in N seconds."
  with ``Retry-After`` when a rate window is full.
* Page-number paging (``per_page`` at most 1000, ``page``): a bare array, no
  total; a page past the end is 404 "Invalid page." (page 1 of nothing is
  ``[]``). Sorts ``name``, ``created_at``, ``priority``,
  ``gt_label__updated_at`` (NULLs first descending), ``-`` for descending.
* Assets: ``POST /assets/`` answers a presigned POST form (the 8 AWS fields
  the SDK requires); the form POST to ``/s3/<bucket>/`` checks the policy's
  signature, expiry, key, acl, Content-Type and size and answers 204 with an
  empty body, as S3 does. Objects are public-read at ``File.url``.
* Releases are built asynchronously: PENDING with a null URL, SUCCEEDED
  after ``release_seconds`` with a public release file in the release-file
  format (``structure-of-the-release-file.md``).

``/__sandbox/`` is the admin API (counters, annotator, config, faults); it is
not rate limited.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import mimetypes
import re
import secrets
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from syncd_sandbox.admin import admin_routes, update_config
from syncd_sandbox.faults import FaultMiddleware, FaultRules
from syncd_sandbox.objectstore import ObjectStore, StoredObject, UploadGauge, s3_error
from syncd_sandbox.segments_state import (
    BUCKET,
    GROUND_TRUTH,
    MAX_PER_PAGE,
    ORGANIZATION,
    USER,
    ApiError,
    AssetRow,
    DatasetRow,
    ReleaseRow,
    SampleRow,
    SegmentsState,
    invalid,
    not_found,
)

Handler = Callable[[Request], Awaitable[Response]]
POST_FIELDS = (
    "acl",
    "Content-Type",
    "key",
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "policy",
    "x-amz-signature",
)
MAX_ASSET_BYTES = 5 << 30  # S3's limit for one POST upload
POLICY_SECONDS = 3600


def reply(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(name, "A valid integer is required.") from None
    if value < 1:
        raise ApiError(404, "Invalid page.") if name == "page" else invalid(name, "Must be >= 1.")
    return value


def page_of(rows: list[Any], request: Request) -> list[Any]:
    """DRF page-number paging: ``per_page`` clamped to 1000; past the end is 404."""
    per_page = min(_int(request, "per_page", MAX_PER_PAGE), MAX_PER_PAGE)
    page = _int(request, "page", 1)
    start = (page - 1) * per_page
    if page > 1 and start >= len(rows):
        raise ApiError(404, "Invalid page.")
    return rows[start : start + per_page]


async def body_json(request: Request) -> Any:
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("application/json"):
        raise ApiError(415, f'Unsupported media type "{ctype}" in request.')
    raw = await request.body()
    encoding = request.headers.get("content-encoding", "").lower()
    if encoding == "gzip":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError):
            raise ApiError(400, "The body is not valid gzip.") from None
    elif encoding not in ("", "identity"):
        raise ApiError(415, f'Unsupported content encoding "{encoding}".')
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiError(400, "JSON parse error.") from None


async def body_object(request: Request) -> dict[str, Any]:
    body = await body_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, {"non_field_errors": ["Invalid data. Expected a dictionary."]})
    return body


# The alternate reply shapes (see segments_state.SegmentsState.config).
SHAPE_SWITCHES = {
    "bulk_existing": ("returned", "rejected", "omitted"),
    "full_label": ("listed", "summary"),
}


class SegmentsApp:
    """Route handlers over one :class:`SegmentsState`."""

    def __init__(self, token: str, data_dir: Path) -> None:
        self.token = token
        self.store = ObjectStore(data_dir / "objects")
        self.state = SegmentsState(self.store)
        self.faults = FaultRules()
        self._secret = secrets.token_bytes(32)

    def api(self, fn: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            st = self.state
            template = re.sub(r"/[0-9a-f-]{36}(?=/|$)", "/{uuid}", request.url.path)
            with st.lock:
                key = f"{request.method} {template}"
                st.requests[key] = st.requests.get(key, 0) + 1
            auth = request.headers.get("authorization")
            if auth is None:
                return reply({"detail": "Authentication credentials were not provided."}, 401)
            scheme, _, key_value = auth.partition(" ")
            if scheme != "APIKey" or key_value != self.token:
                return reply({"detail": "Invalid API key."}, 401)
            wait = st.limits.admit()
            if wait is not None:
                with st.lock:
                    st.requests["429"] = st.requests.get("429", 0) + 1
                seconds = max(1, int(wait + 0.999))
                return JSONResponse(
                    {"detail": f"Request was throttled. Expected available in {seconds} seconds."},
                    status_code=429,
                    headers={"Retry-After": str(seconds)},
                )
            try:
                return await fn(request)
            except ApiError as exc:
                return reply(exc.body, exc.status)

        return wrapped

    def base(self, request: Request) -> str:
        return f"{request.url.scheme}://{request.headers.get('host', 'localhost')}"

    def public_url(self, request: Request, key: str) -> str:
        return f"{self.base(request)}/s3/{BUCKET}/{key}"

    # --- users and status -------------------------------------------------------------

    async def api_status(self, request: Request) -> Response:
        return reply({})

    async def user(self, request: Request) -> Response:
        name = request.path_params.get("user", USER)
        return reply(self.state.user_dto(name))

    # --- datasets ------------------------------------------------------------------------

    def _dataset(self, request: Request) -> DatasetRow:
        return self.state.dataset(request.path_params["owner"], request.path_params["dataset"])

    async def datasets(self, request: Request) -> Response:
        owner = request.path_params.get("user", USER)
        if request.method == "POST":
            if "user" in request.path_params:
                raise ApiError(405, 'Method "POST" not allowed.')
            row = self.state.create_dataset(USER, await body_object(request))
            return reply(self.state.dataset_dto(row), 201)
        if owner not in (USER, ORGANIZATION):
            raise not_found()
        with self.state.lock:
            rows = sorted(
                (d for d in self.state.datasets.values() if d.owner == owner or owner == USER),
                key=lambda d: d.created_at,
            )
            return reply([self.state.dataset_dto(d) for d in page_of(rows, request)])

    async def org_datasets(self, request: Request) -> Response:
        if request.path_params["org"] != ORGANIZATION:
            raise not_found()
        row = self.state.create_dataset(ORGANIZATION, await body_object(request))
        return reply(self.state.dataset_dto(row), 201)

    async def dataset(self, request: Request) -> Response:
        row = self._dataset(request)
        if request.method == "DELETE":
            self.state.delete_dataset(row)
            return Response(status_code=204)
        if request.method == "PATCH":
            self.state.update_dataset(row, await body_object(request))
        with self.state.lock:
            return reply(self.state.dataset_dto(row))

    async def labelsets(self, request: Request) -> Response:
        row = self._dataset(request)
        if request.method == "POST":
            return reply(self.state.add_labelset(row, await body_object(request)).dto(), 201)
        return reply([ls.dto() for ls in row.labelsets.values()])

    async def labelset(self, request: Request) -> Response:
        row = self._dataset(request)
        ls = row.labelsets.get(request.path_params["name"])
        if ls is None:
            raise not_found()
        if request.method == "DELETE":
            if ls.name == GROUND_TRUTH:
                raise ApiError(400, "The ground-truth labelset cannot be deleted.")
            with self.state.lock:
                del row.labelsets[ls.name]
                mine = {u for u, s in self.state.samples.items() if s.dataset == row.full_name}
                for key in [k for k in self.state.labels if k[1] == ls.name and k[0] in mine]:
                    del self.state.labels[key]
            return Response(status_code=204)
        return reply(ls.dto())

    # --- samples ----------------------------------------------------------------------------

    def _sample_dto(self, s: SampleRow, labelset: str | None, full: bool) -> dict[str, Any]:
        out = s.dto()
        if labelset is not None:
            lab = self.state.labels.get((s.uuid, labelset))
            if full:
                out["label"] = lab.dto() if lab else None
            else:
                out["label"] = lab.summary() if lab else {"label_status": "UNLABELED"}
        return out

    async def samples(self, request: Request) -> Response:
        row = self._dataset(request)
        if request.method == "POST":
            body = await body_object(request)
            (sample,), _ = self.state.create_samples(row, [body], bulk=False)
            return reply(sample.dto(), 201)
        q = dict(request.query_params)
        labelset = q.get("labelset")
        full = q.get("include_full_label") in ("1", "true", "True")
        full = full and self.state.config["full_label"] == "listed"
        with self.state.lock:
            rows = page_of(self.state.list_samples(row, q), request)
            return reply([self._sample_dto(s, labelset, full) for s in rows])

    async def samples_bulk(self, request: Request) -> Response:
        row = self._dataset(request)
        body = await body_json(request)
        if request.method == "DELETE":
            uuids = body.get("uuids") if isinstance(body, dict) else None
            if not isinstance(uuids, list) or not uuids or len(uuids) > 1000:
                raise invalid("uuids", "Give 1 to 1000 sample uuids.")
            with self.state.lock:
                gone = [
                    self.state.samples[u]
                    for u in uuids
                    if u in self.state.samples and self.state.samples[u].dataset == row.full_name
                ]
                for s in gone:
                    self.state.delete_sample(s)
            return reply({"deleted_count": len(gone)})
        if not isinstance(body, list) or not body:
            raise ApiError(400, {"non_field_errors": ["Expected a non-empty list of samples."]})
        if len(body) > 1000:
            raise ApiError(400, {"non_field_errors": ["At most 1000 samples per request."]})
        mode = self.state.config["bulk_existing"]
        with self.state.lock:
            taken = {s.name for s in self.state.samples.values() if s.dataset == row.full_name}
        asked = {b.get("name") for b in body if isinstance(b, dict)}
        if mode == "rejected" and asked & taken:
            raise ApiError(400, {"name": ["A sample with this name already exists."]})
        rows, created = self.state.create_samples(row, body, bulk=True)
        if mode == "omitted":
            rows = [s for s in rows if s.name not in taken]
        return reply([s.dto() for s in rows], 201 if created else 200)

    async def sample(self, request: Request) -> Response:
        s = self.state.sample(request.path_params["uuid"])
        if request.method == "DELETE":
            self.state.delete_sample(s)
            return Response(status_code=204)
        if request.method == "PATCH":
            self.state.update_sample(s, await body_object(request))
        labelset = request.query_params.get("labelset")
        with self.state.lock:
            return reply(self._sample_dto(s, labelset, True))

    # --- labels --------------------------------------------------------------------------------

    async def label(self, request: Request) -> Response:
        s = self.state.sample(request.path_params["uuid"])
        labelset = request.path_params["labelset"]
        if request.method == "GET":
            return reply(self.state.label(s, labelset).dto())
        if request.method == "DELETE":
            with self.state.lock:
                self.state.label(s, labelset)
                del self.state.labels[(s.uuid, labelset)]
            return Response(status_code=204)
        body = await body_object(request)
        lab, created = self.state.put_label(
            s, labelset, body, by=USER, partial=request.method == "PATCH"
        )
        return reply(lab.dto(), 201 if created else 200)

    # --- releases --------------------------------------------------------------------------------

    def _release_file(self, row: DatasetRow, rel: ReleaseRow) -> dict[str, Any]:
        samples = []
        for s in sorted(
            (s for s in self.state.samples.values() if s.dataset == row.full_name),
            key=lambda s: s.seq,
        ):
            labels = {}
            for ls in row.labelsets:
                lab = self.state.labels.get((s.uuid, ls))
                labels[ls] = (
                    None
                    if lab is None
                    else {
                        "label_status": lab.label_status,
                        "label_type": lab.label_type,
                        "attributes": lab.attributes,
                        "score": lab.score,
                        "created_at": lab.created_at,
                        "created_by": lab.created_by,
                        "updated_at": lab.updated_at,
                    }
                )
            samples.append(
                {
                    "uuid": s.uuid,
                    "name": s.name,
                    "attributes": s.attributes,
                    "metadata": s.metadata,
                    "created_at": s.created_at,
                    "created_by": s.created_by,
                    "labels": labels,
                }
            )
        return {
            "name": rel.name,
            "description": rel.description,
            "created_at": rel.created_at,
            "dataset": {
                "name": row.name,
                "owner": row.owner,
                "task_type": row.task_type,
                "task_attributes": row.task_attributes,
                "labelsets": [
                    {"name": ls.name, "description": ls.description}
                    for ls in row.labelsets.values()
                ],
                "samples": samples,
            },
        }

    def _release_dto(self, request: Request, rel: ReleaseRow) -> dict[str, Any]:
        if rel.status == "PENDING" and time.monotonic() >= rel.ready_at:
            rel.status = "SUCCEEDED"
        return rel.dto(self.public_url(request, rel.key))

    async def releases(self, request: Request) -> Response:
        row = self._dataset(request)
        if request.method == "POST":
            body = await body_object(request)
            name = body.get("name")
            if not isinstance(name, str) or not name or "/" in name:
                raise invalid("name", "This field is required.")
            with self.state.lock:
                if (row.full_name, name) in self.state.releases:
                    raise ApiError(400, {"name": ["A release with this name already exists."]})
                rel = ReleaseRow(
                    uuid=str(uuid.uuid4()),
                    dataset=row.full_name,
                    name=name,
                    description=str(body.get("description") or ""),
                    created_at=self.state.stamp(),
                    ready_at=time.monotonic() + float(self.state.config["release_seconds"]),
                    samples_count=sum(
                        1 for s in self.state.samples.values() if s.dataset == row.full_name
                    ),
                    key="",
                )
                rel.key = f"releases/{rel.uuid}.json"
                # The snapshot is taken now; it becomes visible when the build "finishes".
                self._store(rel.key, json.dumps(self._release_file(row, rel)).encode())
                self.state.releases[(row.full_name, name)] = rel
                return reply(rel.dto(None), 201)
        with self.state.lock:
            rels = [r for k, r in self.state.releases.items() if k[0] == row.full_name]
            return reply([self._release_dto(request, r) for r in rels])

    async def release(self, request: Request) -> Response:
        row = self._dataset(request)
        key = (row.full_name, request.path_params["name"])
        with self.state.lock:
            rel = self.state.releases.get(key)
            if rel is None:
                raise not_found()
            if request.method == "DELETE":
                del self.state.releases[key]
                return Response(status_code=204)
            return reply(self._release_dto(request, rel))

    # --- assets and the object store --------------------------------------------------------------

    def _sign(self, policy_b64: str) -> str:
        return hmac.new(self._secret, policy_b64.encode(), hashlib.sha256).hexdigest()

    async def assets(self, request: Request) -> Response:
        body = await body_object(request)
        filename = body.get("filename")
        if not isinstance(filename, str) or not filename.strip():
            raise invalid("filename", "This field is required.")
        asset_id = str(uuid.uuid4())
        ext = Path(filename).suffix.lower()
        key = f"assets/{USER}/{asset_id}{ext}"
        ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        now = datetime.now(UTC)
        expires = time.time() + POLICY_SECONDS
        policy = {
            "expiration": datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "conditions": [
                {"bucket": BUCKET},
                {"key": key},
                {"acl": "public-read"},
                {"Content-Type": ctype},
                ["content-length-range", 0, MAX_ASSET_BYTES],
            ],
        }
        policy_b64 = base64.b64encode(json.dumps(policy).encode()).decode()
        with self.state.lock:
            self.state.assets[asset_id] = AssetRow(
                asset_id, filename, key, ctype, self.state.stamp(), expires
            )
            created = self.state.assets[asset_id].created_at
        return reply(
            {
                "uuid": asset_id,
                "filename": filename,
                "url": self.public_url(request, key),
                "created_at": created,
                "presignedPostFields": {
                    "url": f"{self.base(request)}/s3/{BUCKET}/",
                    "fields": {
                        "acl": "public-read",
                        "Content-Type": ctype,
                        "key": key,
                        "x-amz-algorithm": "AWS4-HMAC-SHA256",
                        "x-amz-credential": f"SANDBOXKEY/{now:%Y%m%d}/eu-west-2/s3/aws4_request",
                        "x-amz-date": now.strftime("%Y%m%dT%H%M%SZ"),
                        "policy": policy_b64,
                        "x-amz-signature": self._sign(policy_b64),
                    },
                },
            },
            201,
        )

    def _store(self, key: str, data: bytes) -> None:
        path = self.store.path(BUCKET, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        with self.state.lock:
            self.store.objects[f"{BUCKET}/{key}"] = StoredObject(
                len(data), hashlib.md5(data).hexdigest(), 1
            )

    async def s3_post(self, request: Request) -> Response:
        """An S3 POST-policy upload: form fields, then the ``file`` part."""
        if request.path_params["bucket"] != BUCKET:
            return s3_error(404, "NoSuchBucket", "The specified bucket does not exist.")
        if "authorization" in request.headers:
            return s3_error(400, "InvalidArgument", "POST requires exactly one auth mechanism.")
        if "content-length" not in request.headers:
            return s3_error(
                411, "MissingContentLength", "You must provide the Content-Length HTTP header."
            )
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return s3_error(
                412,
                "PreconditionFailed",
                "Bucket POST must be of the enclosure-type multipart/form-data",
            )
        async with request.form(max_part_size=1024 * 1024) as form:
            names = list(form.keys())
            missing = [f for f in POST_FIELDS if not isinstance(form.get(f), str)]
            if missing:
                return s3_error(
                    400,
                    "InvalidArgument",
                    f"Bucket POST must contain a field named '{missing[0]}'.",
                )
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                return s3_error(
                    400, "InvalidArgument", "POST requires exactly one file upload per request."
                )
            if names[-1] != "file":
                # S3 ignores fields after the file: a client that sends them there is wrong.
                return s3_error(
                    400, "InvalidArgument", "The file must be the last field of the form."
                )
            fields = {k: str(form.get(k)) for k in POST_FIELDS}
            if not hmac.compare_digest(self._sign(fields["policy"]), fields["x-amz-signature"]):
                return s3_error(
                    403,
                    "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you provided.",
                )
            policy = json.loads(base64.b64decode(fields["policy"]))
            expiration = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%S.000Z")
            if time.time() > expiration.replace(tzinfo=UTC).timestamp():
                return s3_error(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
            for cond in policy["conditions"]:
                if isinstance(cond, dict):
                    ((name, want),) = cond.items()
                    got = BUCKET if name == "bucket" else fields.get(name)
                    if got != want:
                        return s3_error(
                            403,
                            "AccessDenied",
                            f'Invalid according to Policy: Policy Condition failed: ["eq", "${name}", "{want}"]',
                        )
            key = fields["key"]
            path = self.store.path(BUCKET, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
            md5 = hashlib.md5()
            size = 0
            with tmp.open("wb") as out:
                while chunk := await upload.read(1024 * 1024):
                    md5.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            if size > MAX_ASSET_BYTES:
                tmp.unlink(missing_ok=True)
                return s3_error(
                    400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size"
                )
            shutil.move(tmp, path)
        with self.state.lock:
            name = f"{BUCKET}/{key}"
            prev = self.store.objects.get(name)
            self.store.objects[name] = StoredObject(
                size, md5.hexdigest(), (prev.puts if prev else 0) + 1
            )
            self.store.bytes_received += size
        return Response(status_code=204)

    async def s3_get(self, request: Request) -> Response:
        """Public-read objects (assets, release files): a plain GET, no signature."""
        bucket, key = request.path_params["bucket"], request.path_params["key"]
        if bucket != BUCKET or f"{BUCKET}/{key}" not in self.store.objects:
            return s3_error(
                404, "NoSuchKey", "The specified key does not exist.", f"/{bucket}/{key}"
            )
        return FileResponse(self.store.path(BUCKET, key))

    # --- admin -------------------------------------------------------------------------------------

    async def admin_counters(self, request: Request) -> Response:
        st = self.state
        with st.lock:
            per_ds: dict[str, int] = {}
            for s in st.samples.values():
                per_ds[s.dataset] = per_ds.get(s.dataset, 0) + 1
            return reply(
                {
                    "requests": dict(st.requests),
                    "api_requests": st.limits.admitted,
                    "rejected_429": st.limits.rejected,
                    "uploads": {k.split("/", 1)[1]: o.puts for k, o in self.store.objects.items()},
                    "created_samples": {k: list(v) for k, v in st.created_samples.items()},
                    "samples_per_dataset": per_ds,
                    "bytes_received": self.store.bytes_received,
                    "uploads_in_flight_max": self.store.uploads.most,
                }
            )

    async def admin_samples(self, request: Request) -> Response:
        full = f"{request.path_params['owner']}/{request.path_params['dataset']}"
        with self.state.lock:
            rows = sorted(
                (s for s in self.state.samples.values() if s.dataset == full), key=lambda s: s.seq
            )
            out = []
            for s in rows:
                labels = {
                    ls: lab.dto() for (u, ls), lab in self.state.labels.items() if u == s.uuid
                }
                out.append({**s.dto(), "labels": labels})
        return reply({"samples": out})

    async def admin_annotate(self, request: Request) -> Response:
        """The annotator: ``{sample_uuid, labelset?, attributes, label_status?, score?, by?}``."""
        body = json.loads(await request.body())
        try:
            s = self.state.sample(str(body["sample_uuid"]))
            lab, _ = self.state.put_label(
                s,
                str(body.get("labelset") or GROUND_TRUTH),
                {
                    "attributes": body.get("attributes"),
                    "label_status": body.get("label_status", "LABELED"),
                    "score": body.get("score"),
                },
                by=str(body.get("by") or "annotator"),
                partial=False,
            )
        except ApiError as exc:
            return reply(exc.body, exc.status)
        return reply(lab.dto())

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
    """The sandbox as an ASGI app; ``app.state.sandbox`` is the :class:`SegmentsApp`."""
    x = SegmentsApp(token, data_dir)
    a = x.api
    ds = "/datasets/{owner}/{dataset}"
    label = "/labels/{uuid}/{labelset}/"
    routes = [
        Route("/api_status/", a(x.api_status), methods=["GET"]),
        Route("/user", a(x.user), methods=["GET"]),
        Route("/users/{user}", a(x.user), methods=["GET"]),
        Route("/user/datasets/", a(x.datasets), methods=["GET", "POST"]),
        Route("/users/{user}/datasets/", a(x.datasets), methods=["GET"]),
        Route("/organizations/{org}/datasets/", a(x.org_datasets), methods=["POST"]),
        Route(f"{ds}/", a(x.dataset), methods=["GET", "PATCH", "DELETE"]),
        Route(f"{ds}/labelsets/", a(x.labelsets), methods=["GET", "POST"]),
        Route(f"{ds}/labelsets/{{name}}/", a(x.labelset), methods=["GET", "DELETE"]),
        Route(f"{ds}/samples/", a(x.samples), methods=["GET", "POST"]),
        Route(f"{ds}/samples_bulk/", a(x.samples_bulk), methods=["POST", "DELETE"]),
        Route(f"{ds}/releases/", a(x.releases), methods=["GET", "POST"]),
        Route(f"{ds}/releases/{{name}}/", a(x.release), methods=["GET", "DELETE"]),
        Route("/samples/{uuid}/", a(x.sample), methods=["GET", "PATCH", "DELETE"]),
        Route(label, a(x.label), methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route("/assets/", a(x.assets), methods=["POST"]),
        Route("/s3/{bucket}/", x.s3_post, methods=["POST"]),
        Route("/s3/{bucket}/{key:path}", x.s3_get, methods=["GET"]),
        *admin_routes(
            x,
            [
                Route(
                    "/__sandbox/datasets/{owner}/{dataset}/samples",
                    x.admin_samples,
                    methods=["GET"],
                )
            ],
        ),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            return reply({"detail": f'Method "{request.method}" not allowed.'}, 405)
        if exc.status_code == 404:
            return reply({"detail": "Not found."}, 404)
        return reply({"detail": str(exc.detail)}, exc.status_code)

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(UploadGauge, store=x.store),  # outermost: counts fault delays too
            Middleware(FaultMiddleware, rules=x.faults),
        ],
        exception_handlers={HTTPException: http_error},
    )
    # Exact paths: a missing slash is a 404, never a redirect (requests turns a
    # redirected POST into a GET).
    app.router.redirect_slashes = False
    app.state.sandbox = x
    return app
