"""BasicAI Cloud: per-file presigned uploads, ``lastId`` traversal, batch results.

Wire facts come from BasicAI's OpenAPI guide (docs/platforms/basicai.md has the links):
paths under ``/api/v1``; ``Authorization: ApiKey <key>``; GET and POST only;
the ``{code, message, data}`` envelope where only HTTP 200 *and* ``code``
``OK`` (compared case-insensitively: the guide's examples write ``ok``) is
success; ``lastId``/``limit`` traversal (1-100; a short page is the end);
at most 100 ids per query parameter; rate limits per key 100/s, 3000/min,
72000/h, 864000/day.

The guide leaves some request bodies and listing fields unknown. Every such
guess is in the section "unverified wire shapes" below, and nowhere else:
correct them there against a real account (the sandbox accepts exactly these).

Sections (docs/writing-a-backend.md): errors, wire shapes (the unverified
ones first), the backend.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import httpx

from syncd.config import BasicAIConfig
from syncd.errors import (
    AuthError,
    NotFoundError,
    PermanentError,
    RateLimited,
    RemoteRejected,
    TransientError,
)
from syncd.remotes.base import (
    Capabilities,
    ItemPage,
    PushData,
    PushFile,
    RemoteDataset,
    RemoteItem,
    RemoteLabel,
)
from syncd.remotes.fanout import fan_out
from syncd.remotes.http import describe, platform_clients, status_error
from syncd.remotes.objectstore import ObjectStore
from syncd.remotes.shapes import check_reply, seen
from syncd.remotes.shapes.basicai import ENDPOINTS, FLAT_MARK, RESULTS, neutral_type
from syncd.remotes.transfers import Transfers
from syncd.remotes.xtreme1_objects import remote_object

PLATFORM = "basicai"
LIMIT = 100  # lastId/limit and pageSize maximum (the guide)
ID_BATCH = 100  # ids per query parameter (the guide)
# Files per batchGeneratePreSignedUploadUrl call: the guide names no limit of its
# own; 100 is its bound for every list it takes or gives (ids, pages).
PRESIGN_BATCH = ID_BATCH
# The guide's four windows per API key, as (requests, seconds); the config's
# default (config.BasicAIConfig.default_rate_limits) says the same.
RATE_WINDOWS: list[tuple[int, float]] = [
    (100, 1.0),
    (3000, 60.0),
    (72000, 3600.0),
    (864000, 86400.0),
]
MAX_PRESIGN_BYTES = 1 << 30  # presigned URLs take files up to 1 GB (the guide)
_NOT_FOUND = {"RESOURCE_NOT_FOUND"}
_KEEP_SECONDS = 5.0


# --- errors -------------------------------------------------------------------------------


def classify(response: httpx.Response) -> Any:
    """Map one BasicAI reply to its ``data`` payload or raise our error."""
    where = describe(response.request)
    status = response.status_code
    if status == 401:
        raise AuthError(
            f"{where}: the API key was refused (HTTP 401): create a key in BasicAI's "
            "Profile Center (it may have expired or been revoked) and update the remote's token",
            platform=PLATFORM,
            code="401",
        )
    if status == 403:
        raise AuthError(
            f"{where}: the API key may not do this (HTTP 403): its user's role in the team "
            "decides what it can do",
            platform=PLATFORM,
            code="403",
        )
    if status in (404, 405):
        raise PermanentError(
            f"{where}: HTTP {status}: the url does not lead to BasicAI's OpenAPI "
            "(use e.g. https://open.basic.ai; syncd adds /api/v1)",
            platform=PLATFORM,
            code=str(status),
        )
    if status != 200:
        transient = status_error(response, PLATFORM)
        if transient is not None:
            raise transient
        raise PermanentError(f"{where}: HTTP {status}", platform=PLATFORM, code=str(status))
    try:
        envelope = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        raise TransientError(
            f"{where}: HTTP 200 with a body that is not JSON", platform=PLATFORM
        ) from None
    if not isinstance(envelope, dict) or "code" not in envelope:
        raise TransientError(f"{where}: the reply is not a BasicAI envelope", platform=PLATFORM)
    code = str(envelope.get("code")).upper()
    if code == "OK":
        return envelope.get("data")
    message = str(envelope.get("message") or code)
    if code in _NOT_FOUND:
        raise NotFoundError(f"{where}: {code}: {message}", platform=PLATFORM, code=code)
    if code == "LICENSE_EXPIRED":
        raise AuthError(
            f"{where}: LICENSE_EXPIRED: the team's BasicAI licence has expired; renew it",
            platform=PLATFORM,
            code=code,
        )
    if "LIMIT" in code or "too many" in message.lower() or "rate limit" in message.lower():
        # The guide does not say how a limited call is answered: back off on both signals.
        raise RateLimited(f"{where}: {code}: {message}", platform=PLATFORM, code=code)
    raise RemoteRejected(f"{where}: {code}: {message}", platform=PLATFORM, code=code)


# --- wire shapes ([unverified] ones: correct them here against a real account) ----------
#
# [unverified] The guide names addData / batchAddData / addScene but not their
# bodies; these follow its conventions (camelCase JSON, "submit details such
# as path, size …" after uploading) and the presign request's field names.


def presign_entry(f: PushFile) -> dict[str, Any]:
    """One item of the ``storage/batchGeneratePreSignedUploadUrl`` array (confirmed by the
    worked example)."""
    return {"deviceName": f.device, "filename": f.filename, "size": f.size}


def file_ref(f: PushFile, presigned: dict[str, Any]) -> dict[str, Any]:
    """[unverified] A stored file as registration wants it; ``path`` is the object key
    the presign reply returns beside ``preSignedUrl``."""
    return {
        "deviceName": f.device,
        "filename": f.filename,
        "path": presigned["path"],
        "size": f.size,
    }


def data_entry(d: PushData) -> dict[str, Any]:
    """[unverified] One data item in addData / batchAddData / addScene; pre-labels travel
    as a file whose ``deviceName`` is ``result``."""
    return {"name": d.name, "files": d.files}


def batch_add_body(data: Sequence[PushData]) -> dict[str, Any]:
    """[unverified] ``dataset/batchAddData`` body; the reply is the created ``[{id, name}]``."""
    return {"dataList": [data_entry(d) for d in data]}


def add_scene_body(scene: str, data: Sequence[PushData]) -> dict[str, Any]:
    """[unverified] ``dataset/addScene`` body; the reply lists the scene then its frames."""
    return {"name": scene, "dataList": [data_entry(d) for d in data]}


# [unverified] listItem filters: `parentId` (frames of a scene) and `name`.
# [unverified] batchDataAnnotationResult answers [{dataId, name, annotationStatus,
# results: [{sourceId, sourceType, instances, classificationValues, …}]}]; absent
# ids are gone. listAnnotationSource answers [{id, name, type}].


def _item(r: dict[str, Any], dataset_id: str) -> RemoteItem:
    parent = r.get("parentId")
    kind = str(r.get("type") or "DATA")
    return RemoteItem(
        id=str(r["id"]),
        dataset_id=str(r.get("datasetId") or dataset_id),
        name=str(r.get("name", "")),
        # neutral kinds: a BasicAI DATA is a single data item
        kind="SINGLE_DATA" if kind == "DATA" else kind,
        parent_id=str(parent) if parent not in (None, "", 0, "0") else None,
        annotation_status=r.get("annotationStatus"),
        status=r.get("status"),
        zip_path=None,
        raw={k: v for k, v in r.items() if k != "files"},
    )


# --- the backend --------------------------------------------------------------------------


class BasicAIRemote:
    """The Remote for one BasicAI Cloud team (see :class:`syncd.remotes.base.FilePushRemote`)."""

    platform = PLATFORM
    capabilities = Capabilities(upload="files")

    def __init__(self, name: str, cfg: BasicAIConfig, token: str) -> None:
        self.name = name
        self.cfg = cfg
        self.api = cfg.url + "/api/v1"
        # The object store must never see the API key: a client without auth.
        self.http, self._put_client = platform_clients(name, cfg, PLATFORM, f"ApiKey {token}")
        self.store = ObjectStore(self._put_client, self.http, PLATFORM)
        self._sources: dict[str, dict[str, str]] = {}  # dataset → source id → name
        # The last item_states answer, kept for the labels call that follows it.
        self._kept: tuple[tuple[str, tuple[str, ...]], float, list[dict[str, Any]]] | None = None

    def close(self) -> None:
        self.http.client.close()
        self._put_client.close()

    def _get(self, path: str, **params: Any) -> Any:
        params = {k: v for k, v in params.items() if v is not None}
        data = self.http.request("GET", self.api + path, classify, params=params)
        return check_reply(ENDPOINTS, PLATFORM, "GET", path, data)

    def _post(self, path: str, body: Any) -> Any:
        data = self.http.request("POST", self.api + path, classify, json=body)
        return check_reply(ENDPOINTS, PLATFORM, "POST", path, data)

    def _by_id(self, path: str, **params: Any) -> Iterator[list[dict[str, Any]]]:
        """``lastId``/``limit`` traversal: pages until one is shorter than the limit."""
        last: str | None = None
        while True:
            rows = (self._get(path, lastId=last, limit=LIMIT, **params) or {}).get("list") or []
            if rows:
                yield rows
            if len(rows) < LIMIT:
                return
            last = str(rows[-1]["id"])

    def _pages(self, path: str, **params: Any) -> Iterator[list[dict[str, Any]]]:
        page_no = 1
        while True:
            rows = (self._get(path, pageNo=page_no, pageSize=LIMIT, **params) or {}).get(
                "list"
            ) or []
            if rows:
                yield rows
            if len(rows) < LIMIT:
                return
            page_no += 1

    # --- datasets -------------------------------------------------------------------------

    def check(self) -> str:
        page = self._get("/dataset/list", pageNo=1, pageSize=1) or {}
        return f"basicai at {self.cfg.url}: API key accepted, {page.get('total', 0)} datasets"

    def find_dataset(self, name: str) -> RemoteDataset | None:
        matches = [
            r for rows in self._by_id("/dataset/listById") for r in rows if r.get("name") == name
        ]
        if not matches:
            return None
        r = matches[0]
        return RemoteDataset(
            id=str(r["id"]), name=str(r["name"]), type=neutral_type(r.get("type")), raw=r
        )

    def ensure_dataset(self, name: str, dataset_type: str) -> tuple[RemoteDataset, bool]:
        found = self.find_dataset(name)
        if found is not None:
            return found, False
        try:
            data = self._post("/dataset/create", {"name": name, "type": dataset_type})
        except RemoteRejected as exc:
            if exc.code != "NAME_DUPLICATED":
                raise
            found = self.find_dataset(name)
            if found is None:
                raise RemoteRejected(
                    f"dataset {name!r}: the name is taken (names compare case-insensitively): "
                    "choose another dataset name",
                    platform=PLATFORM,
                    code=exc.code,
                ) from exc
            return found, False
        return RemoteDataset(
            id=str(data["id"]), name=data["name"], type=neutral_type(data.get("type")), raw=data
        ), True

    def bind_classes(self, dataset_id: str, classes: dict[str, str]) -> dict[str, str]:
        # The guide has no ontology API: pre-labels carry their class names as they are.
        return {}

    def existing_names(self, dataset_id: str, names: Sequence[str]) -> set[str]:
        return set(self.find_names(dataset_id, names))

    def find_names(self, dataset_id: str, names: Sequence[str]) -> dict[str, str]:
        wanted = {n.lower(): n for n in names}
        found: dict[str, str] = {}
        if len(wanted) <= 20:

            def ids(name: tuple[str, str]) -> list[str]:
                lower, original = name
                return [
                    str(r["id"])
                    for rows in self._pages(f"/dataset/listItem/{dataset_id}", name=original)
                    for r in rows
                    if str(r.get("name", "")).lower() == lower
                ]

            # one round trip for the lot, not one per name (a WAN costs 20-150 ms each)
            lookups = list(wanted.items())
            for (_, original), hits in zip(lookups, fan_out(ids, lookups), strict=True):
                if hits:
                    found[original] = hits[-1]
            return found
        for rows in self._pages(f"/dataset/listItem/{dataset_id}"):
            for r in rows:
                hit = wanted.get(str(r.get("name", "")).lower())
                if hit is not None:
                    found[hit] = str(r["id"])
        return found

    # --- upload ---------------------------------------------------------------------------

    def upload_files(self, dataset_id: str, files: Sequence[PushFile]) -> list[dict[str, Any]]:
        """Presign in batches (this thread), PUT up to ``transfers`` files at once (a pool).

        The next batch is presigned while the previous one's PUTs run; a URL
        that expires while its file waits for a slot is renewed (``_put_one``).
        """
        for f in files:
            if f.size > MAX_PRESIGN_BYTES:
                raise PermanentError(
                    f"{f.key}: {f.size} bytes is over BasicAI's 1 GB limit for presigned "
                    "uploads (larger files need temporary access tokens, not yet offered)",
                    platform=PLATFORM,
                )
        with Transfers[dict[str, Any]](self.cfg.transfers, PLATFORM, remote=self.name) as pool:
            for start in range(0, len(files), PRESIGN_BATCH):
                chunk = list(files[start : start + PRESIGN_BATCH])
                urls = self._post(
                    "/storage/batchGeneratePreSignedUploadUrl", [presign_entry(f) for f in chunk]
                )
                if not isinstance(urls, list) or len(urls) != len(chunk):
                    raise TransientError(
                        "storage/batchGeneratePreSignedUploadUrl: the reply does not hold one URL per file",
                        platform=PLATFORM,
                    )
                for f, presigned in zip(chunk, urls, strict=True):
                    guarded = replace(f, body=pool.body(f.body))
                    pool.submit(partial(self._put_one, guarded, presigned))
            return pool.results()

    def _put_one(self, f: PushFile, presigned: dict[str, Any]) -> dict[str, Any]:
        def presign() -> dict[str, Any]:
            fresh = self._post("/storage/batchGeneratePreSignedUploadUrl", [presign_entry(f)])
            return dict(fresh[0])

        def put(target: dict[str, Any]) -> None:
            # Raw bytes with Content-Length (a multipart body would be stored verbatim).
            url = str(target["preSignedUrl"])
            self.store.put(url, f.key, f.size, f.body, "application/octet-stream")

        # A URL that expired while we waited: the kit asks for a fresh one.
        return file_ref(f, self.store.with_fresh_url(f"PUT {f.key}", presign, put, first=presigned))

    def register(
        self, dataset_id: str, data: Sequence[PushData], *, scene: str | None
    ) -> dict[str, str]:
        out: dict[str, str] = {}
        if scene is not None:
            rows = self._post(f"/dataset/addScene/{dataset_id}", add_scene_body(scene, data)) or []
            out.update({str(r["name"]): str(r["id"]) for r in rows if r.get("type") == "SCENE"})
            return out
        for start in range(0, len(data), ID_BATCH):
            chunk = data[start : start + ID_BATCH]
            rows = self._post(f"/dataset/batchAddData/{dataset_id}", batch_add_body(chunk)) or []
            out.update({str(r["name"]): str(r["id"]) for r in rows})
        return out

    # --- listing and labels ---------------------------------------------------------------

    def frames(self, dataset_id: str, scene_id: str) -> list[RemoteItem]:
        return [
            _item(r, dataset_id)
            for rows in self._pages(f"/dataset/listItem/{dataset_id}", parentId=scene_id)
            for r in rows
        ]

    def new_items(self, dataset_id: str, cursor: str | None) -> Iterator[ItemPage]:
        """Every item (scenes and their frames) after ``cursor`` by ``listItemById``.

        The cursor is the last id of the page: the next traversal continues
        right after it, also when items were added meanwhile.
        """
        last = cursor
        while True:
            page = self._get(f"/dataset/listItemById/{dataset_id}", lastId=last, limit=LIMIT) or {}
            rows = page.get("list") or []
            if rows:
                last = str(rows[-1]["id"])
                yield ItemPage(items=[_item(r, dataset_id) for r in rows], cursor=last)
            if len(rows) < LIMIT:
                return

    def all_items(self, dataset_id: str) -> Iterator[list[RemoteItem]]:
        for rows in self._by_id(f"/dataset/listItemById/{dataset_id}"):
            yield [_item(r, dataset_id) for r in rows]

    def _results(
        self, dataset_id: str, item_ids: Sequence[str], *, keep: bool = False
    ) -> list[dict[str, Any]]:
        """One ``batchDataAnnotationResult`` call; the pull's re-check asks for the states
        of a batch and then for its labels, so the answer is kept for that one next use."""
        if len(item_ids) > ID_BATCH:
            raise ValueError(f"at most {ID_BATCH} ids per call")
        if not item_ids:
            return []
        key = (dataset_id, tuple(item_ids))
        kept, self._kept = self._kept, None
        if (
            kept is not None
            and kept[0][0] == dataset_id
            and set(item_ids) <= set(kept[0][1])  # the re-check drops scenes from the batch
            and time.monotonic() - kept[1] < _KEEP_SECONDS
        ):
            wanted = set(item_ids)
            return [r for r in kept[2] if str(r.get("dataId")) in wanted]
        rows = list(
            self._get(
                f"/dataset/batchDataAnnotationResult/{dataset_id}/", dataIds=",".join(item_ids)
            )
            or []
        )
        if any(r.get(FLAT_MARK) for r in rows) or seen(PLATFORM).get(RESULTS, "").startswith(
            "flat"
        ):
            # The flat shape leaves out items without results: absence says nothing,
            # so they stay unfinished (deletions are found by the full sweep).
            held = {str(r["dataId"]) for r in rows}
            rows += [{"dataId": i, "results": []} for i in item_ids if i not in held]
        if keep:
            self._kept = (key, time.monotonic(), rows)
        return rows

    def item_states(self, dataset_id: str, item_ids: Sequence[str]) -> dict[str, RemoteItem]:
        out: dict[str, RemoteItem] = {}
        for start in range(0, len(item_ids), ID_BATCH):
            for r in self._results(dataset_id, item_ids[start : start + ID_BATCH], keep=True):
                item = RemoteItem(
                    id=str(r["dataId"]),
                    dataset_id=dataset_id,
                    name=str(r.get("name", "")),
                    kind="",
                    parent_id=None,
                    annotation_status=r.get("annotationStatus"),
                    status=None,
                    zip_path=None,
                )
                out[item.id] = item
        return out

    def _source_name(self, dataset_id: str, source_id: str) -> str:
        names = self._sources.get(dataset_id)
        if names is None or source_id not in names:
            rows = self._get(f"/dataset/listAnnotationSource/{dataset_id}") or []
            names = {str(r["id"]): str(r.get("name") or r["id"]) for r in rows}
            self._sources[dataset_id] = names
        return names.get(source_id, f"source {source_id}")

    def labels(self, dataset_id: str, item_ids: Sequence[str]) -> list[RemoteLabel]:
        out: list[RemoteLabel] = []
        for entry in self._results(dataset_id, item_ids):
            for result in entry.get("results") or []:
                source = self._source_name(dataset_id, str(result.get("sourceId")))
                out.append(
                    RemoteLabel(
                        item_id=str(entry["dataId"]),
                        source=source,
                        raw=result,
                        objects=[remote_object(o) for o in result.get("instances") or []],
                    )
                )
        return out
