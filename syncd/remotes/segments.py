"""Segments.ai: assets by presigned POST, samples by name, labels per labelset, page-number listing.

Wire facts come from the official SDK and the API docs
(docs/platforms/segments.md): the API at the root of ``url`` on the
SDK's exact paths (trailing slashes); ``Authorization: APIKey <key>``;
Django REST Framework replies (201 on creation, 400 ``{field: [msg]}`` with
"already exists" for duplicates, 404 "Not found." / "Invalid page."); bare
JSON arrays paged by ``page``/``per_page`` (at most 1000), no cursor, no
total.

Identifiers: a dataset is ``owner/name`` (its ``full_name``); an item is a
sample's uuid, or ``<uuid>/<n>`` for frame ``n`` of a sequence sample (a
``scene_*`` folder is one sample, its frames are items of the mirror).

Push (``capabilities.upload == "files"``, driven by :mod:`syncd.pipeline.push_files`):
every image and point cloud becomes an asset (``POST /assets/`` then the
presigned POST form); ``camera_config`` and ``result`` files are read, not
uploaded, and travel in the refs. Samples are created with
``samples_bulk``; a name that exists is never created twice: whether the
reply returns the existing sample, leaves it out or refuses it ("already
exists"), the missing names are looked up by name. Pre-labels are
``PUT`` into ``prelabel_labelset`` with ``label_status`` PRELABELED; a
sample that expects one carries ``metadata.syncd_prelabel`` and is not
reported by :meth:`find_names` until its label exists, so a crash between
creating the sample and its label ends with the label put on the next try.

Pull, three listings of ``GET /datasets/{id}/samples/`` with the labelset's
full labels (``labelset=…&include_full_label=1``):

* new samples: ``sort=-created_at`` down to the cursor, yielded oldest
  first; the first mirror walks ``sort=created_at`` page by page. The items
  cursor is the newest ``created_at`` seen, as integer microseconds since
  the epoch; equal times are read again (the pipeline skips known ids).
* changed labels (:class:`~syncd.remotes.base.ChangedLabels`, ground-truth
  only, the one labelset the ``gt_label__updated_at`` sort knows):
  ``sort=-gt_label__updated_at`` with every status but UNLABELED, down to
  the labels cursor minus :data:`OVERLAP_US` (updates may commit out of
  timestamp order; re-read labels hash equal and write nothing).
* the full sweep: every sample by ``sort=created_at``.

Labels are read from the listing when it carries the full label; a
listing that answers only the label's summary (no ``attributes``) is
followed by the label endpoint ``GET /labels/{uuid}/{labelset}/``.

Page-number listings shift when samples are deleted meanwhile (one may be
skipped at a page edge): the full sweep reads everything again. What the
listings return is kept per item (label and status, not the attributes) so
that ``labels``/``item_states`` for the same cycle cost no request.

[unverified] against the real service (the sandbox accepts exactly this):
``label_status`` filters the labelset named by ``labelset``; ``POST
/assets/`` may answer 200 or 201 (both accepted); ``samples_bulk`` matches
existing samples by name (the SDK's docstring says "already exist"); the
rate limits (unpublished; the client default is 20/s).

Sections (docs/writing-a-backend.md): errors, wire shapes, the backend
(what the listings said is kept in ``_Seen``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any

import httpx

from syncd.config import SegmentsConfig
from syncd.errors import (
    AuthError,
    ConfigError,
    NotFoundError,
    PermanentError,
    RateLimited,
    RemoteRejected,
    TransientError,
)
from syncd.remotes import segments_wire as wire
from syncd.remotes.base import (
    Capabilities,
    ItemPage,
    PushData,
    PushFile,
    RemoteDataset,
    RemoteItem,
    RemoteLabel,
    RemoteObject,
)
from syncd.remotes.fanout import fan_out
from syncd.remotes.http import describe, platform_clients, status_error
from syncd.remotes.objectstore import ObjectStore
from syncd.remotes.shapes import check_reply
from syncd.remotes.shapes.segments import ENDPOINTS
from syncd.remotes.transfers import Transfers

PLATFORM = wire.PLATFORM
GROUND_TRUTH = "ground-truth"
PER_PAGE = 1000  # the API's maximum (and the SDK's default)
BULK = 100  # samples per samples_bulk request
OVERLAP_US = 60_000_000  # the labels cursor re-reads this much of its past
LABEL_STATUSES = (
    "REVIEWED",
    "REVIEWING_IN_PROGRESS",
    "LABELED",
    "LABELING_IN_PROGRESS",
    "REJECTED",
    "PRELABELED",
    "SKIPPED",
    "VERIFIED",
)  # every status but UNLABELED: the samples that have a label
# Segments' label status → the pipeline's neutral annotation status (finished items are
# not re-checked every cycle; the labels cursor and the sweep still see their changes).
FINISHED = {
    "LABELED": "ANNOTATED",
    "REVIEWED": "ANNOTATED",
    "REVIEWING_IN_PROGRESS": "ANNOTATED",
    "VERIFIED": "ANNOTATED",
    "SKIPPED": "INVALID",
}


# --- errors -------------------------------------------------------------------------------


def classify(response: httpx.Response) -> Any:
    """Map one Segments reply to its parsed body (None when empty) or raise our error."""
    where = describe(response.request)
    status = response.status_code
    text = response.text[:500]
    if 200 <= status < 300:
        if not response.content:
            return None
        try:
            body = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            raise TransientError(
                f"{where}: HTTP {status} with a body that is not JSON", platform=PLATFORM
            ) from None
        if isinstance(body, dict) and "throttled" in str(body.get("detail", "")).lower():
            raise RateLimited(f"{where}: {body['detail']}", platform=PLATFORM, code=str(status))
        return body
    if status == 401:
        raise AuthError(
            f"{where}: the API key was refused (HTTP 401): create a key on your Segments.ai "
            "account page and update the remote's token",
            platform=PLATFORM,
            code="401",
        )
    if status == 403:
        raise AuthError(
            f"{where}: the API key may not do this (HTTP 403): {_detail(text)}",
            platform=PLATFORM,
            code="403",
        )
    transient = status_error(response, PLATFORM)
    if transient is not None:
        raise transient
    if status == 404:
        raise NotFoundError(f"{where}: {_detail(text)}", platform=PLATFORM, code="404")
    if status == 400 and "already exists" in text.lower():
        raise RemoteRejected(f"{where}: {_detail(text)}", platform=PLATFORM, code="NAME_DUPLICATED")
    raise RemoteRejected(
        f"{where}: HTTP {status}: {_detail(text)}", platform=PLATFORM, code=str(status)
    )


def _detail(text: str) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        return text[:200] or "(empty body)"
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return json.dumps(body)[:300]


# --- wire shapes --------------------------------------------------------------------------


def micros(stamp: str) -> int:
    """A Segments timestamp (ISO 8601, ``Z``) as integer microseconds since the epoch."""
    dt = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return int(dt.timestamp()) * 1_000_000 + dt.microsecond


@dataclass
class _Seen:
    """What the listings said of one sample: enough to answer labels and states."""

    name: str
    frames: list[str]
    scene: bool
    label: dict[str, Any] | None


def _label_micros(row: dict[str, Any]) -> int | None:
    label = row.get("label")
    if isinstance(label, dict) and label.get("updated_at"):
        return micros(str(label["updated_at"]))
    return None


def _items(
    dataset_id: str, uuid: str, entry: _Seen, row: dict[str, Any] | None
) -> list[RemoteItem]:
    """A sample as items: one, or a SCENE followed by one item per frame."""
    status = (entry.label or {}).get("label_status", "UNLABELED")
    neutral = FINISHED.get(status, status)
    raw = {k: v for k, v in (row or {}).items() if k not in ("label", "attributes")}
    head = RemoteItem(
        id=uuid,
        dataset_id=dataset_id,
        name=entry.name,
        kind="SCENE" if entry.scene else "SINGLE_DATA",
        parent_id=None,
        annotation_status=neutral,
        status=status,
        zip_path=None,
        raw=raw,
    )
    if not entry.scene:
        return [head]
    return [head] + [
        RemoteItem(
            id=f"{uuid}/{i}",
            dataset_id=dataset_id,
            name=name,
            kind="SINGLE_DATA",
            parent_id=uuid,
            annotation_status=neutral,
            status=status,
            zip_path=None,
            raw={"sample_uuid": uuid, "frame": i},
        )
        for i, name in enumerate(entry.frames)
    ]


def _object(a: dict[str, Any], sensor: str | None, names: dict[int, str] | None) -> RemoteObject:
    kind = str(a.get("type") or "")
    category = a.get("category_id")
    track = a.get("track_id")
    geometry = {
        k: v for k, v in a.items() if k not in ("id", "category_id", "track_id", "attributes")
    }
    if sensor is not None:
        geometry["sensor"] = sensor
    attrs = a.get("attributes")
    return RemoteObject(
        remote_id=str(a["id"]) if a.get("id") is not None else None,
        class_name=(names or {}).get(category) if isinstance(category, int) else None,
        class_id=str(category) if category is not None else None,
        shape_type=wire.SHAPES.get(kind, kind.upper() or None),
        track_id=str(track) if track is not None else None,
        track_name=None,
        confidence=None,
        geometry=geometry,
        attributes=[attrs] if attrs else [],
    )


# --- the backend --------------------------------------------------------------------------


class SegmentsRemote:
    """The Remote for one Segments.ai account (see :class:`syncd.remotes.base.FilePushRemote`)."""

    platform = PLATFORM
    capabilities = Capabilities(upload="files", changed_labels=True)
    per_page = PER_PAGE  # tests shrink it to page small datasets

    def __init__(self, name: str, cfg: SegmentsConfig, token: str) -> None:
        self.name = name
        self.cfg = cfg
        self.api = cfg.url
        # The asset store must never see the API key: a client without auth.
        self.http, self._upload_client = platform_clients(name, cfg, PLATFORM, f"APIKey {token}")
        self.store = ObjectStore(self._upload_client, self.http, PLATFORM, "asset store")
        self.labelset = cfg.labelset
        self.prelabel_labelset = cfg.prelabel_labelset
        self._owner: str | None = cfg.organization
        self._datasets: dict[str, dict[str, Any]] = {}
        self._seen: dict[str, dict[str, _Seen]] = {}  # dataset → sample uuid → what was listed
        self._lock = threading.Lock()

    def close(self) -> None:
        self.http.client.close()
        self._upload_client.close()

    def _call(self, method: str, path: str, *, idempotent: bool = True, **kwargs: Any) -> Any:
        data = self.http.request(method, self.api + path, classify, idempotent=idempotent, **kwargs)
        return check_reply(ENDPOINTS, PLATFORM, method, path.split("?")[0], data)

    def _owner_name(self) -> str:
        if self._owner is None:
            self._owner = str(self._call("GET", "/user")["username"])
        return self._owner

    # --- datasets -------------------------------------------------------------------------

    def check(self) -> str:
        user = self._call("GET", "/user")
        return f"segments at {self.cfg.url}: API key accepted, user {user.get('username')!r}"

    def _dataset(self, dataset_id: str, *, fresh: bool = False) -> dict[str, Any]:
        if fresh or dataset_id not in self._datasets:
            self._datasets[dataset_id] = self._call("GET", f"/datasets/{dataset_id}/")
        return self._datasets[dataset_id]

    def find_dataset(self, name: str) -> RemoteDataset | None:
        full = f"{self._owner_name()}/{name}"
        try:
            d = self._dataset(full, fresh=True)
        except NotFoundError:
            return None
        return RemoteDataset(id=str(d["full_name"]), name=str(d["name"]), type=None, raw=d)

    def ensure_dataset(self, name: str, dataset_type: str) -> tuple[RemoteDataset, bool]:
        found = self.find_dataset(name)
        created = False
        if found is None:
            task_type = self.cfg.task_type or wire.DEFAULT_TASK_TYPES[dataset_type]
            body = {
                "name": name,
                "description": "Synced by syncd.",
                "task_type": task_type,
                "task_attributes": {
                    "format_version": "0.1",
                    "categories": [
                        {"id": i, "name": c} for i, c in enumerate(self.cfg.categories, 1)
                    ],
                },
                "category": "other",
                "public": False,
            }
            path = (
                f"/organizations/{self.cfg.organization}/datasets/"
                if self.cfg.organization
                else "/user/datasets/"
            )
            try:
                self._call("POST", path, json=body, idempotent=False)
                created = True
            except RemoteRejected as exc:
                if exc.code != "NAME_DUPLICATED":
                    raise
            found = self.find_dataset(name)
            if found is None:
                raise TransientError(
                    f"dataset {name!r} was created but cannot be read", platform=PLATFORM
                )
        task = str(found.raw.get("task_type"))
        if not wire.task_fits(task, dataset_type):
            raise ConfigError(
                f"dataset_type: {dataset_type!r} units cannot go into Segments.ai dataset "
                f"{found.id!r} of task type {task!r}"
            )
        for labelset in {self.labelset, self.prelabel_labelset}:
            self._ensure_labelset(found.id, labelset)
        return found, created

    def _ensure_labelset(self, dataset_id: str, labelset: str) -> None:
        names = {ls["name"] for ls in self._dataset(dataset_id).get("labelsets") or []}
        if labelset in names:
            return
        try:
            self._call(
                "POST",
                f"/datasets/{dataset_id}/labelsets/",
                json={"name": labelset, "description": "syncd"},
            )
        except RemoteRejected as exc:
            if exc.code != "NAME_DUPLICATED":
                raise
        self._dataset(dataset_id, fresh=True)

    def _categories(self, dataset_id: str, *, fresh: bool = False) -> dict[str, int]:
        attrs = self._dataset(dataset_id, fresh=fresh).get("task_attributes") or {}
        return {str(c["name"]): int(c["id"]) for c in attrs.get("categories") or []}

    def bind_classes(self, dataset_id: str, classes: dict[str, str]) -> dict[str, str]:
        """Add the missing class names to the dataset's categories (one PATCH); name → id."""
        known = self._categories(dataset_id, fresh=True)
        missing = [c for c in classes if c not in known]
        if missing:
            attrs = dict(self._dataset(dataset_id).get("task_attributes") or {})
            cats = list(attrs.get("categories") or [])
            top = max(known.values(), default=0)
            cats += [{"id": top + i, "name": c} for i, c in enumerate(missing, 1)]
            attrs["categories"] = cats
            attrs.setdefault("format_version", "0.1")
            self._datasets[dataset_id] = self._call(
                "PATCH", f"/datasets/{dataset_id}/", json={"task_attributes": attrs}
            )
            known = self._categories(dataset_id)
        return {c: str(known[c]) for c in classes if c in known}

    def _lookup(self, dataset_id: str, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """name → sample (with the pre-label labelset's label summary) for the names that exist."""
        wanted = set(names)
        found: dict[str, dict[str, Any]] = {}
        base = {"labelset": self.prelabel_labelset, "sort": "name"}
        if len(wanted) <= 20:
            for n in sorted(wanted):
                for rows in self._pages(dataset_id, {**base, "name__contains": n}):
                    found.update({r["name"]: r for r in rows if r["name"] == n})
            return found
        for rows in self._pages(dataset_id, base):
            found.update({r["name"]: r for r in rows if r["name"] in wanted})
        return found

    def existing_names(self, dataset_id: str, names: Sequence[str]) -> set[str]:
        return set(self._lookup(dataset_id, names))

    def find_names(self, dataset_id: str, names: Sequence[str]) -> dict[str, str]:
        """Samples that exist *complete*: one still waiting for its pre-label is left out, so
        that registering it again puts the label (``samples_bulk`` returns the sample)."""
        out = {}
        for name, s in self._lookup(dataset_id, names).items():
            waiting = (s.get("metadata") or {}).get("syncd_prelabel") and (
                (s.get("label") or {}).get("label_status", "UNLABELED") == "UNLABELED"
            )
            if not waiting:
                out[name] = str(s["uuid"])
        return out

    # --- upload ---------------------------------------------------------------------------

    def upload_files(self, dataset_id: str, files: Sequence[PushFile]) -> list[dict[str, Any]]:
        """Each file on a pool, up to ``transfers`` at once: an asset and its POST upload,
        or (pre-labels, calibration) its JSON read into the ref."""
        with Transfers[dict[str, Any]](self.cfg.transfers, PLATFORM, remote=self.name) as pool:
            for f in files:
                pool.submit(partial(self._store_one, replace(f, body=pool.body(f.body))))
            return pool.results()

    def _store_one(self, f: PushFile) -> dict[str, Any]:
        if f.device == "result" or f.device == "camera_config":
            kind = "prelabel" if f.device == "result" else "calibration"
            data = b"".join(f.body())
            try:
                doc = json.loads(data)
            except (ValueError, UnicodeDecodeError) as exc:
                raise PermanentError(
                    f"{f.key}: not valid JSON ({exc})", platform=PLATFORM
                ) from None
            return {"kind": kind, "device": f.device, "filename": f.filename, "doc": doc}
        asset = self._asset(f)
        return {
            "kind": "asset",
            "device": f.device,
            "filename": f.filename,
            "url": asset["url"],
            "size": f.size,
        }

    def _asset(self, f: PushFile) -> dict[str, Any]:
        """An asset for the file (``POST /assets/``), then its presigned POST form."""

        def presign() -> dict[str, Any]:
            return dict(self._call("POST", "/assets/", json={"filename": f.filename}))

        def post(asset: dict[str, Any]) -> None:
            form = asset["presignedPostFields"]
            url, fields = str(form["url"]), dict(form["fields"])
            self.store.post_form(url, fields, f.filename, f.key, f.size, f.body)

        return self.store.with_fresh_url(f"POST {f.key}", presign, post)

    def register(
        self, dataset_id: str, data: Sequence[PushData], *, scene: str | None
    ) -> dict[str, str]:
        """Create the samples (idempotent by name) and put their pre-labels; name → uuid."""
        task = str(self._dataset(dataset_id).get("task_type"))
        if scene is not None:
            items = [(scene, [wire.Frame(d.name, d.files) for d in data], True)]
        else:
            items = [(d.name, [wire.Frame(d.name, d.files)], False) for d in data]
        categories = self._categories(dataset_id)
        bodies, labels = [], {}
        for name, frames, is_scene in items:
            attrs = wire.sample_attributes(task, name, frames, is_scene)
            label = wire.label_attributes(task, frames, categories, name)
            metadata: dict[str, Any] = {"source": "syncd"}
            if label is not None:
                metadata["syncd_prelabel"] = True
                labels[name] = label
            bodies.append({"name": name, "attributes": attrs, "metadata": metadata})
        out: dict[str, str] = {}
        for start in range(0, len(bodies), BULK):
            out.update(self._create_samples(dataset_id, bodies[start : start + BULK]))

        def put_label(item: tuple[str, dict[str, Any]]) -> None:
            name, label = item
            body = {"label_status": "PRELABELED", "attributes": label}
            self._call("PUT", f"/labels/{out[name]}/{self.prelabel_labelset}/", json=body)

        # One PUT per sample and no bulk form: several at once (idempotent, so a batch cut
        # short is simply sent again), as many as the remote's transfers.
        fan_out(put_label, list(labels.items()), self.cfg.transfers)
        return out

    def _create_samples(self, dataset_id: str, bodies: list[dict[str, Any]]) -> dict[str, str]:
        """``samples_bulk``, whatever it does with names that exist; name → uuid of every body.

        The SDK's docstring says existing samples come back unchanged, its
        Raises section that "already exists" is an error: an "already exists"
        refusal, or a reply without some names, is followed by a lookup by
        name, then the names still missing are created.
        """
        path = f"/datasets/{dataset_id}/samples_bulk/"
        out: dict[str, str] = {}
        for attempt in range(2):
            todo = [b for b in bodies if b["name"] not in out]
            if not todo:
                break
            try:
                rows = self._call("POST", path, json=todo) or []
            except RemoteRejected as exc:
                if exc.code != "NAME_DUPLICATED" or attempt:
                    raise
                rows = []
            out.update({str(r["name"]): str(r["uuid"]) for r in rows})
            missing = [b["name"] for b in bodies if b["name"] not in out]
            if missing:
                found = self._lookup(dataset_id, missing)
                out.update({n: str(s["uuid"]) for n, s in found.items()})
        missing = [b["name"] for b in bodies if b["name"] not in out]
        if missing:
            raise TransientError(
                f"samples_bulk: samples {missing[:5]} were neither created nor found by name",
                platform=PLATFORM,
            )
        return out

    # --- listing and labels ---------------------------------------------------------------

    def _pages(self, dataset_id: str, params: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        """Page-number traversal until a short page (or the API's "Invalid page.")."""
        page = 1
        while True:
            try:
                rows = self._call(
                    "GET",
                    f"/datasets/{dataset_id}/samples/",
                    params={"per_page": self.per_page, "page": page, **params},
                )
            except NotFoundError:
                if page == 1:
                    raise
                return  # the previous page was exactly full and the last
            rows = list(rows or [])
            if rows:
                yield rows
            if len(rows) < self.per_page:
                return
            page += 1

    def _listing(self, sort: str, **extra: Any) -> dict[str, Any]:
        return {"sort": sort, "labelset": self.labelset, "include_full_label": 1, **extra}

    def _remember(self, dataset_id: str, rows: list[dict[str, Any]]) -> list[RemoteItem]:
        """Keep what the rows say and turn them into items (a scene's frames follow it)."""
        out: list[RemoteItem] = []
        with self._lock:
            seen = self._seen.setdefault(dataset_id, {})
            for r in rows:
                frames = wire.frame_names(r)
                entry = _Seen(
                    name=str(r["name"]),
                    frames=frames,
                    scene=str(r["name"]).lower().startswith("scene_") or len(frames) > 1,
                    label=r.get("label") if isinstance(r.get("label"), dict) else None,
                )
                seen[str(r["uuid"])] = entry
                out += _items(dataset_id, str(r["uuid"]), entry, r)
        return out

    def _known(self, dataset_id: str, uuids: set[str]) -> dict[str, _Seen]:
        """What the listings said of these samples; the ones not listed in this process are
        read now (one sample each, or the whole dataset when many are missing)."""
        with self._lock:
            seen = dict(self._seen.get(dataset_id, {}))
        missing = uuids - set(seen)
        if len(missing) > 20:
            for rows in self._pages(dataset_id, self._listing("created_at")):
                self._remember(dataset_id, rows)
        else:
            for u in sorted(missing):
                try:
                    r = self._call("GET", f"/samples/{u}/", params={"labelset": self.labelset})
                except NotFoundError:
                    continue  # deleted: no state, no labels
                self._remember(dataset_id, [r])
        with self._lock:
            seen = self._seen.get(dataset_id, {})
            return {u: seen[u] for u in uuids if u in seen}

    def frames(self, dataset_id: str, scene_id: str) -> list[RemoteItem]:
        entry = self._known(dataset_id, {scene_id}).get(scene_id)
        if entry is None:
            return []
        return [i for i in _items(dataset_id, scene_id, entry, None) if i.parent_id == scene_id]

    def new_items(self, dataset_id: str, cursor: str | None) -> Iterator[ItemPage]:
        """Samples created at or after ``cursor`` (µs), oldest first; see the module docstring."""
        if cursor is None:
            last = 0
            for rows in self._pages(dataset_id, self._listing("created_at")):
                last = max(last, micros(rows[-1]["created_at"]))
                yield ItemPage(items=self._remember(dataset_id, rows), cursor=str(last))
            return
        since = int(cursor)
        newer: list[dict[str, Any]] = []
        for rows in self._pages(dataset_id, self._listing("-created_at")):
            newer += [r for r in rows if micros(r["created_at"]) >= since]
            if micros(rows[-1]["created_at"]) < since:
                break
        newer.reverse()
        for start in range(0, len(newer), self.per_page):
            rows = newer[start : start + self.per_page]
            last = max(since, micros(rows[-1]["created_at"]))
            yield ItemPage(items=self._remember(dataset_id, rows), cursor=str(last))

    def changed_items(self, dataset_id: str, cursor: str | None) -> Iterator[ItemPage]:
        """Samples whose ground-truth label changed at or after ``cursor`` minus the overlap (µs).

        Without a cursor: no items, and the cursor of the newest label now (the
        new-items listing of the same cycle reads every label). Another pull
        labelset has no such sort: nothing (its edits arrive with the sweep).
        """
        if self.labelset != GROUND_TRUTH:
            return
        params = self._listing("-gt_label__updated_at", label_status=",".join(LABEL_STATUSES))
        if cursor is None:
            rows = self._call(
                "GET",
                f"/datasets/{dataset_id}/samples/",
                params={"per_page": 1, "page": 1, **params},
            )
            newest = [micros(r["label"]["updated_at"]) for r in rows or [] if r.get("label")]
            yield ItemPage(items=[], cursor=str(newest[0] if newest else 0))
            return
        since = int(cursor) - OVERLAP_US
        changed: list[dict[str, Any]] = []
        for rows in self._pages(dataset_id, params):
            stamps = [(r, _label_micros(r)) for r in rows]
            changed += [r for r, t in stamps if t is not None and t >= since]
            if any(t is not None and t < since for _, t in stamps):
                break
        changed.sort(key=lambda r: _label_micros(r) or 0)
        for start in range(0, len(changed), self.per_page):
            rows = changed[start : start + self.per_page]
            last = max(int(cursor), _label_micros(rows[-1]) or 0)
            yield ItemPage(items=self._remember(dataset_id, rows), cursor=str(last))

    def all_items(self, dataset_id: str) -> Iterator[list[RemoteItem]]:
        with self._lock:
            self._seen[dataset_id] = {}  # the sweep rebuilds what is known
        for rows in self._pages(dataset_id, self._listing("created_at")):
            yield self._remember(dataset_id, rows)

    def item_states(self, dataset_id: str, item_ids: Sequence[str]) -> dict[str, RemoteItem]:
        known = self._known(dataset_id, {i.split("/", 1)[0] for i in item_ids})
        out = {}
        for item_id in item_ids:
            entry = known.get(item_id.split("/", 1)[0])
            if entry is None:
                continue
            status = (entry.label or {}).get("label_status", "UNLABELED")
            out[item_id] = RemoteItem(
                id=item_id,
                dataset_id=dataset_id,
                name=entry.name,
                kind="",
                parent_id=None,
                annotation_status=FINISHED.get(status, status),
                status=status,
                zip_path=None,
            )
        return out

    def _full_label(self, uuid: str, listed: dict[str, Any] | None) -> dict[str, Any] | None:
        """The sample's whole label: the listing's when it carried one, else from the label
        endpoint (``GET /labels/{uuid}/{labelset}/``); None when the sample has none.

        A listing may answer a label summary (no ``attributes``) although
        ``include_full_label`` was asked: reading it as a label without
        annotations would lose the label silently.
        """
        if listed is None or "attributes" in listed:
            return listed
        if listed.get("label_status", "UNLABELED") == "UNLABELED":
            return None  # a summary of no label
        try:
            full = self._call("GET", f"/labels/{uuid}/{self.labelset}/")
        except NotFoundError:
            return None  # unlabeled meanwhile
        return dict(full)

    def labels(self, dataset_id: str, item_ids: Sequence[str]) -> list[RemoteLabel]:
        known = self._known(dataset_id, {i.split("/", 1)[0] for i in item_ids})
        names: dict[int, str] | None = None
        out = []
        for item_id in item_ids:
            uuid, _, frame = item_id.partition("/")
            entry = known.get(uuid)
            label = self._full_label(uuid, entry.label) if entry is not None else None
            if entry is None or label is None:
                continue
            if names is None:
                names = {v: k for k, v in self._categories(dataset_id).items()}
            index = int(frame) if frame else 0
            count = len(entry.frames) if entry.scene else 1
            anns = list(wire.frame_annotations(label.get("attributes"), index, count))
            if any(a.get("category_id") not in names for _, a in anns):
                names = {v: k for k, v in self._categories(dataset_id, fresh=True).items()}
            raw = {k: v for k, v in label.items() if k != "attributes"}
            if entry.scene:
                raw["frame"] = index
                raw["annotations"] = [{"sensor": s, **a} for s, a in anns]
            else:
                raw["attributes"] = label.get("attributes")
            out.append(
                RemoteLabel(
                    item_id=item_id,
                    source=str(label.get("labelset") or self.labelset),
                    raw=raw,
                    objects=[_object(a, s, names) for s, a in anns],
                )
            )
        return out
