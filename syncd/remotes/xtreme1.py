"""Xtreme1 (self-hosted, open source): the reference backend.

Wire facts come from docs/platforms/xtreme1.md (backend v0.9.1):
``{code, message, data}`` envelope where only HTTP 200 *and* ``code == "OK"``
is success; Bearer auth; presigned PUT of the raw zip (no Authorization
header) → ``POST /data/upload`` with the *accessUrl* → poll the upload record
by serial; offset-paged lists with no ``lastId``, ordered scenes first.

Sections (docs/writing-a-backend.md): errors, wire shapes, the backend.
"""

from __future__ import annotations

import json
import unicodedata
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
    Upload,
)
from syncd.remotes.fanout import fan_out
from syncd.remotes.http import describe, platform_clients, status_error
from syncd.remotes.objectstore import ObjectStore
from syncd.remotes.shapes import check_reply
from syncd.remotes.shapes.xtreme1 import ENDPOINTS
from syncd.remotes.xtreme1_objects import remote_object

PLATFORM = "xtreme1"
PAGE_SIZE = 500  # Xtreme1 has no upper bound on pageSize; 500 keeps replies small
RESULT_BATCH = 100  # ids per getDataAndResult call (docs/platforms/xtreme1.md)

# 500 UNKNOWN replies whose message shows *our* request was malformed: retrying
# cannot help, so they are permanent (docs/platforms/xtreme1.md, "Known quirks").
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


def _parse_cursor(cursor: str | None) -> tuple[int, int | None]:
    """``"<last>:<total>"`` (or a bare ``"<last>"``) → (last, total or None)."""
    if not cursor:
        return 0, None
    last, _, total = cursor.partition(":")
    return int(last), int(total) if total else None


def _fold(name: str) -> str:
    """A class name as Xtreme1's database compares it.

    The stock deployment runs ``mysql:5.7`` and ``dataset_class`` declares only
    ``DEFAULT CHARSET = utf8mb4``: collation ``utf8mb4_general_ci``, which
    ignores case, accents and trailing spaces. This approximates its weights
    (good for Latin names).
    """
    decomposed = unicodedata.normalize("NFKD", name.rstrip(" "))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _class_match(rows: list[dict[str, Any]], name: str, tool: str) -> str | None:
    """The id of the class ``name`` of this tool type (exact spelling first), or None."""
    same_tool = sorted(
        (r for r in rows if str(r.get("toolType")) == tool), key=lambda r: int(r["id"])
    )
    for r in same_tool:
        if str(r.get("name")) == name:
            return str(r["id"])
    for r in same_tool:
        if _fold(str(r.get("name"))) == _fold(name):
            return str(r["id"])
    return None


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
        data = self.http.request("GET", self.api + path, classify, params=params)
        return check_reply(ENDPOINTS, PLATFORM, "GET", path, data)

    def _post(self, path: str, body: Any) -> Any:
        data = self.http.request("POST", self.api + path, classify, json=body)
        return check_reply(ENDPOINTS, PLATFORM, "POST", path, data)

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
        """The dataset's class per name and tool type, created where Xtreme1 has none.

        Contract:
        - Names match the way Xtreme1's unique key ``uk_dataset_id_name``
          (dataset, name, tool type) compares them: the tool type exactly, the
          name case-insensitively (MySQL 5.7's default collation, see
          :func:`_fold`). ``car`` binds to an existing ``Car`` of the same
          tool type; an exact spelling wins when both exist.
        - At most one create per (folded name, tool type); a create answered
          ``NAME_DUPLICATED`` (someone else made it) is looked up again.
        - Returns ``name → id`` for every requested name; RemoteRejected when
          a class can neither be found nor created.

        Sources (v0.9.1): ``deploy/mysql/migration/V1__Create_tables.sql``
        (``dataset_class``), ``backend/.../usecase/DatasetClassUseCase.java``
        (``saveDatasetClass`` turns DuplicateKeyException into NAME_DUPLICATED),
        https://github.com/xtreme1-io/xtreme1/tree/v0.9.1.
        """
        rows = self._classes(dataset_id)
        bound: dict[str, str] = {}
        to_create: dict[tuple[str, str], str] = {}
        for name, tool in classes.items():
            hit = _class_match(rows, name, tool)
            if hit is not None:
                bound[name] = hit
            else:
                to_create.setdefault((_fold(name), tool), name)
        for (_, tool), name in to_create.items():
            try:
                # Creation returns data null: the id is learned from findAll below.
                self._post(
                    "/datasetClass/create",
                    {
                        "datasetId": int(dataset_id),
                        "name": name,
                        "color": _color(name),
                        "toolType": tool,
                    },
                )
            except RemoteRejected as exc:
                if "DUPLICATE" not in (exc.code or ""):
                    raise
        if to_create:
            rows = self._classes(dataset_id)
        lost: list[str] = []
        for name, tool in classes.items():
            if name in bound:
                continue
            hit = _class_match(rows, name, tool)
            if hit is None:
                lost.append(name)
            else:
                bound[name] = hit
        if lost:
            raise RemoteRejected(
                f"classes {lost} could not be created in dataset {dataset_id}", platform=PLATFORM
            )
        return bound

    def _classes(self, dataset_id: str) -> list[dict[str, Any]]:
        rows = self._get(f"/datasetClass/findAll/{dataset_id}") or []
        return [r for r in rows if isinstance(r, dict) and r.get("id") is not None]

    def existing_names(self, dataset_id: str, names: Sequence[str]) -> set[str]:
        wanted = {n.lower(): n for n in names}
        found: set[str] = set()
        if len(wanted) <= 20:

            def exists(name: tuple[str, str]) -> bool:
                lower, original = name
                page = self._get(
                    "/data/findByPage", datasetId=dataset_id, pageNo=1, pageSize=100, name=original
                )
                return any(str(r.get("name", "")).lower() == lower for r in page.get("list") or [])

            # one round trip for the lot, not one per name (a WAN costs 20-150 ms each)
            lookups = list(wanted.items())
            return {o for (_, o), hit in zip(lookups, fan_out(exists, lookups), strict=True) if hit}
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
            # Without resultType the backend ignores result/*.json (docs/platforms/xtreme1.md).
            body["resultType"] = with_results
        # Not idempotent: a failure after sending is left to the caller's recovery.
        serial = self.http.request(
            "POST", self.api + "/data/upload", classify, json=body, idempotent=False
        )
        return str(check_reply(ENDPOINTS, PLATFORM, "POST", "/data/upload", serial))

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
        for rows, _ in self._listing(
            dataset_id, newest_first=newest_first, max_pages=max_pages, parent_id=parent_id
        ):
            yield rows

    def _listing(
        self,
        dataset_id: str,
        *,
        newest_first: bool = False,
        max_pages: int | None = None,
        parent_id: str = "0",
    ) -> Iterator[tuple[list[dict[str, Any]], int]]:
        """Pages of ``data/findByPage`` by ``created_at``, each with the reply's ``total``.

        The backend orders ``type DESC, created_at <dir>, id ASC``
        (``selectDataByPageOrder`` in
        https://github.com/xtreme1-io/xtreme1/blob/v0.9.1/backend/src/main/resources/mybatis/mapper/DataInfoMapper.xml):
        scenes first, and ``id`` ascending inside one ``created_at`` even when
        newest first. Empty pages are not yielded.
        """
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
                yield rows, int(page.get("total") or 0)
            if len(rows) < PAGE_SIZE:
                return
            page_no += 1

    def frames(self, dataset_id: str, scene_id: str) -> list[RemoteItem]:
        """Every frame of one scene."""
        return [
            _item(r) for rows in self._top_level_pages(dataset_id, parent_id=scene_id) for r in rows
        ]

    def new_items(self, dataset_id: str, cursor: str | None) -> Iterator[ItemPage]:
        """Top-level items not seen before ``cursor``, with the frames of new scenes.

        Contract:
        - The cursor is ``"<last>:<total>"``: the highest top-level id seen and
          the listing's ``total`` when the walk that wrote it began (a bare
          ``"<last>"`` from older versions reads as an unknown total).
        - An unchanged dataset costs one request: page 1, newest first.
        - A walk reads on, newest first, while a page holds an id above
          ``last`` *or* fewer such ids were found than the listing grew by
          (``total`` now minus ``total`` in the cursor); it stops at the end.
          Without a total in the cursor it reads every page once.
        - Single items up to ``PAGE_SIZE`` ids below ``last`` are yielded too
          (batches that commit out of id order); callers skip items they hold.
        - Scenes at or below ``last`` are not yielded: their late frames come
          from the pull's re-check of unfinished scenes, which lists frames
          whenever the status counters (``itemCount`` counts frames) moved.

        Why: Xtreme1 stamps every frame of a folder with one ``created_at``
        taken when the folder's parsing starts, and inserts them for minutes
        in batches of five whose ids follow completion order
        (``UploadDataUseCase.commonParseUploadFile``). Newest first, the
        listing puts a folder's frames in id order under that one timestamp,
        so frames inserted after a pull sort *behind* the ones it saw, possibly
        pages down. Stopping at the first page of known ids (the old walk)
        left them to the next full sweep. The listing's ``total`` says how many
        rows are missing at the cost of no extra request; following upload
        records would only cover syncd's own uploads, and reading every page
        while a page holds new ids alone misses frames behind a full page of
        known ones. Limits, covered by the full sweep: deletions between two
        cycles hide as many additions from the count (then only the "page
        holds a new id" rule finds them), and a scene row that commits out of
        id order. While a folder is being parsed a walk may read to the end of
        the listing; an unchanged cycle reads one page.
        """
        last, known_total = _parse_cursor(cursor)
        if last == 0:
            # First traversal: oldest first, committed page by page; a last,
            # empty page records the total seen when the walk began.
            first_total: int | None = None
            top = 0
            for rows, total in self._listing(dataset_id):
                first_total = total if first_total is None else first_total
                for page in self._pages(dataset_id, rows, top, frames_above=0):
                    top = _parse_cursor(page.cursor)[0]
                    yield page
            if first_total is not None:
                yield ItemPage(items=[], cursor=f"{top}:{first_total}")
            return
        fresh: dict[int, dict[str, Any]] = {}
        found = 0
        walk_total: int | None = None
        for rows, total in self._listing(dataset_id, newest_first=True):
            if walk_total is None:
                walk_total = total
            unseen = [r for r in rows if int(r["id"]) > last]
            found += len(unseen)
            fresh.update({int(r["id"]): r for r in unseen})
            fresh.update(
                {
                    int(r["id"]): r
                    for r in rows
                    if r.get("type") != "SCENE" and int(r["id"]) > last - PAGE_SIZE
                }
            )
            if known_total is None:
                continue  # no count to trust (older cursor, walk cut short): read it all
            if not unseen and found >= walk_total - known_total:
                break  # everything the count promised is found, the rest is known
        if walk_total is None:
            return  # an empty listing
        if not fresh:
            if walk_total != known_total:
                yield ItemPage(items=[], cursor=f"{last}:{walk_total}")
            return
        yield from self._pages(dataset_id, list(fresh.values()), last, total=walk_total)

    def _pages(
        self,
        dataset_id: str,
        rows: list[dict[str, Any]],
        last: int,
        *,
        total: int | None = None,
        frames_above: int | None = None,
    ) -> Iterator[ItemPage]:
        """Batches of at most 100 top-level items (ascending id), scenes above
        ``frames_above`` (default ``last``) with their frames.

        Every batch's cursor but the last leaves ``total`` out, so a walk cut
        short is read in full next time.
        """
        floor = last if frames_above is None else frames_above
        rows = sorted(rows, key=lambda r: int(r["id"]))
        for start in range(0, len(rows), RESULT_BATCH):
            chunk = rows[start : start + RESULT_BATCH]
            items: list[RemoteItem] = []
            for r in chunk:
                item = _item(r)
                items.append(item)
                if item.kind == "SCENE" and int(item.id) > floor:
                    items.extend(self.frames(dataset_id, item.id))
            top = last = max(last, max(int(r["id"]) for r in chunk))
            end = start + RESULT_BATCH >= len(rows)
            cursor = f"{top}:{total}" if end and total is not None else str(top)
            yield ItemPage(items=items, cursor=cursor)

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

        Xtreme1 moves an item to ANNOTATED or INVALID on submit
        (docs/platforms/xtreme1.md) and knows of no way back, so equal counters mean that no status
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
            objects = [remote_object(o) for o in result.get("objects") or []]
            out.append(
                RemoteLabel(
                    item_id=str(result.get("dataId")),
                    source=str(result.get("sourceName") or "Ground Truth"),
                    raw=result,
                    objects=objects,
                )
            )
        return out
