"""Xtreme1 (self-hosted, open source): the reference backend.

Wire facts come from ``shared/remote-apis/xtreme1.md`` (backend v0.9.1):
``{code, message, data}`` envelope where only HTTP 200 *and* ``code == "OK"``
is success; Bearer auth; presigned PUT of the raw zip (no Authorization
header) → ``POST /data/upload`` with the *accessUrl* → poll the upload record
by serial; offset-paged lists with no ``lastId``, ordered scenes first.

Sections (docs/writing-a-backend.md): errors, wire shapes, the backend.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from syncd.config import Xtreme1Config
from syncd.errors import (
    AuthError,
    NotFoundError,
    PermanentError,
    RemoteRejected,
    TransientError,
)
from syncd.remotes.base import (
    ByteSource,
    Capabilities,
    ItemPage,
    Processing,
    RemoteDataset,
    RemoteItem,
    RemoteLabel,
    RemoteObject,
    Upload,
)
from syncd.remotes.http import describe, platform_clients, status_error
from syncd.remotes.objectstore import ObjectStore

PLATFORM = "xtreme1"
PAGE_SIZE = 500  # Xtreme1 has no upper bound on pageSize; 500 keeps replies small
RESULT_BATCH = 100  # ids per getDataAndResult call (DESIGN: batches of at most 100)

# 500 UNKNOWN replies whose message shows *our* request was malformed: retrying
# cannot help, so they are permanent (notes §2 and §10).
_CLIENT_BUG_MARKERS = (
    "MissingServletRequestParameter",
    "HttpMessageNotReadable",
    "HttpRequestMethodNotSupported",
    "HttpMediaTypeNotSupported",
    "MethodArgumentTypeMismatch",
)
_NOT_FOUND_CODES = {"NOT_FOUND", "DATASET_NOT_FOUND", "DATA_NOT_FOUND"}


# --- errors -------------------------------------------------------------------------------


def classify(response: httpx.Response) -> Any:
    """Map one Xtreme1 reply to its ``data`` payload or raise our error."""
    where = describe(response.request)
    if response.status_code == 401:
        raise AuthError(
            f"{where}: the token was refused (HTTP 401): create a new API token in "
            "Xtreme1 (avatar → API token) and update the remote's token",
            platform=PLATFORM,
            code="LOGIN_STATUS_TIMEOUT",
        )
    if response.status_code == 404:
        raise PermanentError(
            f"{where}: HTTP 404: the url does not lead to Xtreme1's API "
            "(use the nginx address, e.g. http://host:8190)",
            platform=PLATFORM,
            code="404",
        )
    if response.status_code != 200:
        if response.status_code == 500:
            try:
                message = str(json.loads(response.content).get("message") or "")
            except (ValueError, AttributeError, UnicodeDecodeError):
                message = ""
            if any(marker in message for marker in _CLIENT_BUG_MARKERS):
                raise PermanentError(
                    f"{where}: the platform rejected the request: {message[:300]}",
                    platform=PLATFORM,
                    code="UNKNOWN",
                )
        transient = status_error(response, PLATFORM)
        if transient is not None:
            raise transient
        raise PermanentError(f"{where}: unexpected HTTP {response.status_code}", platform=PLATFORM)
    envelope = _json(response)
    if not isinstance(envelope, dict) or "code" not in envelope:
        raise TransientError(f"{where}: the reply is not an Xtreme1 envelope", platform=PLATFORM)
    code = str(envelope.get("code"))
    if code == "OK":
        return envelope.get("data")
    message = str(envelope.get("message") or code)
    if code in _NOT_FOUND_CODES:
        raise NotFoundError(f"{where}: {code}: {message}", platform=PLATFORM, code=code)
    if code == "LOGIN_STATUS_TIMEOUT":
        raise AuthError(f"{where}: the token was refused", platform=PLATFORM, code=code)
    raise RemoteRejected(f"{where}: {code}: {message}", platform=PLATFORM, code=code)


def _json(response: httpx.Response) -> Any:
    """Parse the body as JSON whatever the Content-Type says (``text/plain`` replies exist)."""
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        kind = response.headers.get("Content-Type", "unknown type").split(";")[0]
        raise TransientError(
            f"{describe(response.request)}: HTTP {response.status_code} with a body that is "
            f"not JSON ({kind}, {len(response.content)} bytes)",
            platform=PLATFORM,
        ) from None


# --- wire shapes --------------------------------------------------------------------------


def _color(name: str) -> str:
    h = sum(ord(c) * 131 for c in name) & 0xFFFFFF
    return f"#{h:06x}"


def _item(r: dict[str, Any]) -> RemoteItem:
    zip_path = None
    for directory in r.get("content") or []:
        for f in directory.get("files") or []:
            zp = (f.get("file") or {}).get("zipPath")
            if zp:
                zip_path = str(zp)
                break
        if zip_path:
            break
    parent = r.get("parentId")
    raw = {k: v for k, v in r.items() if k != "content"}
    return RemoteItem(
        id=str(r["id"]),
        dataset_id=str(r.get("datasetId", "")),
        name=str(r.get("name", "")),
        kind=str(r.get("type") or "SINGLE_DATA"),
        parent_id=str(parent) if parent not in (None, 0, "0") else None,
        annotation_status=r.get("annotationStatus"),
        status=r.get("status"),
        zip_path=zip_path,
        raw=raw,
    )


def _object(o: dict[str, Any]) -> RemoteObject:
    conf = o.get("modelConfidence")
    class_id = o.get("classId")
    return RemoteObject(
        remote_id=str(o["id"]) if o.get("id") is not None else None,
        class_name=o.get("className") or o.get("modelClass"),
        class_id=str(class_id) if class_id is not None else None,
        shape_type=o.get("type"),
        track_id=str(o["trackId"]) if o.get("trackId") is not None else None,
        track_name=str(o["trackName"]) if o.get("trackName") is not None else None,
        confidence=float(conf) if isinstance(conf, int | float) else None,
        geometry=o.get("contour") or {},
        attributes=o.get("classValues") or [],
    )


# --- the backend --------------------------------------------------------------------------


class Xtreme1Remote:
    """The Remote for one Xtreme1 installation (see :class:`syncd.remotes.base.Remote`)."""

    platform = PLATFORM
    capabilities = Capabilities(upload="archive", status_fingerprint=True)

    def __init__(self, name: str, cfg: Xtreme1Config, token: str) -> None:
        self.name = name
        self.cfg = cfg
        self.api = cfg.url + "/api"
        # The object store must never see the API token: a client without auth.
        self.http, self._put_client = platform_clients(name, cfg, PLATFORM, f"Bearer {token}")
        self.store = ObjectStore(self._put_client, self.http, PLATFORM)

    def close(self) -> None:
        self.http.client.close()
        self._put_client.close()

    def _get(self, path: str, **params: Any) -> Any:
        return self.http.request("GET", self.api + path, classify, params=params)

    def _post(self, path: str, body: Any) -> Any:
        return self.http.request("POST", self.api + path, classify, json=body)

    # --- datasets -------------------------------------------------------------------------

    def check(self) -> str:
        page = self._get("/dataset/findByPage", pageNo=1, pageSize=1)
        return f"xtreme1 at {self.cfg.url}: token accepted, {page.get('total', 0)} datasets"

    def find_dataset(self, name: str) -> RemoteDataset | None:
        # `name` filters with SQL LIKE, and names compare case-insensitively:
        # keep the exact match, else the one the platform treats as equal.
        matches: list[dict[str, Any]] = []
        page_no = 1
        while True:
            page = self._get("/dataset/findByPage", pageNo=page_no, pageSize=100, name=name)
            rows = page.get("list") or []
            matches += [r for r in rows if str(r.get("name", "")).lower() == name.lower()]
            if len(rows) < 100:
                break
            page_no += 1
        exact: list[dict[str, Any]] = [r for r in matches if r.get("name") == name] or matches
        if not exact:
            return None
        r = exact[0]
        return RemoteDataset(id=str(r["id"]), name=str(r["name"]), type=r.get("type"), raw=r)

    def ensure_dataset(self, name: str, dataset_type: str) -> tuple[RemoteDataset, bool]:
        found = self.find_dataset(name)
        if found is not None:
            return found, False
        try:
            data = self._post("/dataset/create", {"name": name, "type": dataset_type})
        except RemoteRejected as exc:
            if exc.code != "DATASET_NAME_DUPLICATED":
                raise
            found = self.find_dataset(name)
            if found is None:
                raise
            return found, False
        return RemoteDataset(
            id=str(data["id"]), name=data["name"], type=data.get("type"), raw=data
        ), True

    def bind_classes(self, dataset_id: str, classes: dict[str, str]) -> dict[str, str]:
        def current() -> dict[str, str]:
            rows = self._get(f"/datasetClass/findAll/{dataset_id}") or []
            return {str(r["name"]): str(r["id"]) for r in rows}

        have = current()
        missing = [n for n in classes if n not in have]
        for class_name in missing:
            try:
                # Creation returns data null: the id is learned from findAll below.
                self._post(
                    "/datasetClass/create",
                    {
                        "datasetId": int(dataset_id),
                        "name": class_name,
                        "color": _color(class_name),
                        "toolType": classes[class_name],
                    },
                )
            except RemoteRejected as exc:
                if "DUPLICATE" not in (exc.code or ""):
                    raise
        if missing:
            have = current()
        lost = [n for n in classes if n not in have]
        if lost:
            raise RemoteRejected(
                f"classes {lost} could not be created in dataset {dataset_id}", platform=PLATFORM
            )
        return {n: have[n] for n in classes}

    def existing_names(self, dataset_id: str, names: Sequence[str]) -> set[str]:
        wanted = {n.lower(): n for n in names}
        found: set[str] = set()
        if len(wanted) <= 20:
            for lower, original in wanted.items():
                page = self._get(
                    "/data/findByPage", datasetId=dataset_id, pageNo=1, pageSize=100, name=original
                )
                if any(str(r.get("name", "")).lower() == lower for r in page.get("list") or []):
                    found.add(original)
            return found
        for rows in self._top_level_pages(dataset_id):
            for r in rows:
                hit = wanted.get(str(r.get("name", "")).lower())
                if hit is not None:
                    found.add(hit)
        return found

    # --- upload ---------------------------------------------------------------------------

    def upload_archive(
        self, dataset_id: str, file_name: str, size: int, body: ByteSource
    ) -> Upload:
        def presign() -> dict[str, Any]:
            return dict(
                self._get("/data/generatePresignedUrl", fileName=file_name, datasetId=dataset_id)
            )

        def put(urls: dict[str, Any]) -> None:
            self.store.put(str(urls["presignedUrl"]), file_name, size, body, "application/zip")

        # A URL can expire while we wait (backoff, a slow link): the kit asks for a fresh one.
        urls = self.store.with_fresh_url(f"PUT {file_name}", presign, put)
        return Upload(ref={"accessUrl": urls["accessUrl"], "fileName": file_name})

    def submit(self, dataset_id: str, upload: Upload, *, with_results: str | None) -> str:
        body: dict[str, Any] = {
            "fileUrl": upload.ref["accessUrl"],
            "datasetId": int(dataset_id),
            "source": "LOCAL",
            "dataFormat": "XTREME1",
        }
        if with_results:
            # Without resultType the backend ignores result/*.json (notes §3.3).
            body["resultType"] = with_results
        # Not idempotent: a failure after sending is left to the caller's recovery.
        serial = self.http.request(
            "POST", self.api + "/data/upload", classify, json=body, idempotent=False
        )
        return str(serial)

    def processing(self, serial: str) -> Processing:
        rows = self._get("/data/findUploadRecordBySerialNumbers", serialNumbers=serial) or []
        if not rows:
            raise NotFoundError(f"upload record {serial} is unknown", platform=PLATFORM)
        r = rows[0]
        status = str(r.get("status"))
        message = str(r.get("errorMessage") or "").strip()
        state = {"PARSE_COMPLETED": "done", "FAILED": "failed"}.get(status, "pending")
        return Processing(
            state=state,  # type: ignore[arg-type]
            status=status,
            message=message,
            items_total=r.get("totalDataNum"),
            items_parsed=r.get("parsedDataNum"),
            progress=f"{status}/{r.get('downloadedFileSize')}/{r.get('parsedDataNum')}",
        )

    # --- listing and labels ---------------------------------------------------------------

    def _top_level_pages(
        self,
        dataset_id: str,
        *,
        newest_first: bool = False,
        max_pages: int | None = None,
        parent_id: str = "0",
    ) -> Iterator[list[dict[str, Any]]]:
        page_no = 1
        while max_pages is None or page_no <= max_pages:
            page = self._get(
                "/data/findByPage",
                datasetId=dataset_id,
                parentId=parent_id,
                pageNo=page_no,
                pageSize=PAGE_SIZE,
                sortField="CREATED_AT",
                ascOrDesc="DESC" if newest_first else "ASC",
            )
            rows = page.get("list") or []
            if rows:
                yield rows
            if len(rows) < PAGE_SIZE:
                return
            page_no += 1

    def frames(self, dataset_id: str, scene_id: str) -> list[RemoteItem]:
        """Every frame of one scene."""
        return [
            _item(r) for rows in self._top_level_pages(dataset_id, parent_id=scene_id) for r in rows
        ]

    def new_items(self, dataset_id: str, cursor: str | None) -> Iterator[ItemPage]:
        """Top-level items with an id above ``cursor`` (plus one page of overlap), with frames.

        Xtreme1 has no ``lastId``: the cursor is the highest top-level id seen.
        Pages are read newest first (scenes come before single frames in every
        order), stopping after one page that holds nothing new in the single
        frames; the overlap page catches items of two imports that committed
        out of id order. Callers skip items they already hold.
        """
        last = int(cursor) if cursor else 0
        if last == 0:
            # First traversal: oldest first, committed page by page.
            for rows in self._top_level_pages(dataset_id):
                yield from self._pages(dataset_id, rows, last)
            return
        fresh: dict[int, dict[str, Any]] = {}
        for rows in self._top_level_pages(dataset_id, newest_first=True):
            fresh.update({int(r["id"]): r for r in rows if int(r["id"]) > last - PAGE_SIZE})
            singles = [r for r in rows if r.get("type") != "SCENE"]
            if singles and all(int(r["id"]) <= last for r in singles):
                break  # this page is the overlap: everything older is known
        yield from self._pages(dataset_id, [fresh[k] for k in sorted(fresh)], last)

    def _pages(self, dataset_id: str, rows: list[dict[str, Any]], last: int) -> Iterator[ItemPage]:
        """Batches of at most 100 top-level items (ascending id), each scene with its frames."""
        rows = sorted(rows, key=lambda r: int(r["id"]))
        for start in range(0, len(rows), RESULT_BATCH):
            chunk = rows[start : start + RESULT_BATCH]
            items: list[RemoteItem] = []
            for r in chunk:
                item = _item(r)
                items.append(item)
                if item.kind == "SCENE" and int(item.id) > last:
                    # Older scenes' frames are re-listed by the pull's re-check.
                    items.extend(self.frames(dataset_id, item.id))
            top = max(last, max(int(r["id"]) for r in chunk))
            yield ItemPage(items=items, cursor=str(top))

    def all_items(self, dataset_id: str) -> Iterator[list[RemoteItem]]:
        for rows in self._top_level_pages(dataset_id):
            items: list[RemoteItem] = []
            for r in rows:
                item = _item(r)
                items.append(item)
                if item.kind == "SCENE":
                    items.extend(self.frames(dataset_id, item.id))
            yield items

    def status_fingerprint(self, dataset_id: str) -> str | None:
        """The dataset's status counters: they move when an item arrives, goes or is submitted.

        Xtreme1 moves an item to ANNOTATED or INVALID on submit (notes §7) and
        the notes know of no way back, so equal counters mean that no status
        changed (see StatusFingerprint; the full sweep covers the rest).
        """
        d = self._get(f"/dataset/{dataset_id}/statistics/dataStatus") or {}
        keys = ("itemCount", "annotatedCount", "notAnnotatedCount", "invalidCount")
        return "/".join(str(d.get(k)) for k in keys)

    def item_states(self, dataset_id: str, item_ids: Sequence[str]) -> dict[str, RemoteItem]:
        out: dict[str, RemoteItem] = {}
        for start in range(0, len(item_ids), RESULT_BATCH):
            ids = ",".join(item_ids[start : start + RESULT_BATCH])
            for r in self._get("/data/getDataStatusByIds", dataIds=ids) or []:
                item = RemoteItem(
                    id=str(r["id"]),
                    dataset_id=str(r.get("datasetId", dataset_id)),
                    name=str(r.get("name", "")),
                    kind="",
                    parent_id=None,
                    annotation_status=r.get("annotationStatus"),
                    status=r.get("status"),
                    zip_path=None,
                    raw=r,
                )
                out[item.id] = item
        return out

    def labels(self, dataset_id: str, item_ids: Sequence[str]) -> list[RemoteLabel]:
        if len(item_ids) > RESULT_BATCH:
            raise ValueError(f"at most {RESULT_BATCH} ids per call")
        if not item_ids:
            return []
        data = (
            self._get("/data/getDataAndResult", datasetId=dataset_id, dataIds=",".join(item_ids))
            or {}
        )
        out: list[RemoteLabel] = []
        for result in data.get("results") or []:
            objects = [_object(o) for o in result.get("objects") or []]
            out.append(
                RemoteLabel(
                    item_id=str(result.get("dataId")),
                    source=str(result.get("sourceName") or "Ground Truth"),
                    raw=result,
                    objects=objects,
                )
            )
        return out
