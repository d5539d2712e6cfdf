"""Pull: datasets, items and labels from the platform into the mirror.

Contract of :func:`run_once` for one sync:

1. **New items** by cursor (the highest top-level id seen, where the platform
   has no ``lastId``): each page of items and their labels is upserted and
   the cursor moved in one transaction (``pull.page_committed``). A crash
   loses at most the page in flight, which is read again. The next page and
   its labels are fetched (read-only) in a thread while the current page is
   written; bulk rows go in with one ``executemany`` per table (driver cursor,
   SQL compiled for the session's dialect).
2. **Unfinished items** (not yet annotated) are re-checked every cycle: their
   labels, compared by content hash (only changes are written), and their
   status; scenes not yet annotated have their frames listed again. Where
   the remote offers a :class:`StatusFingerprint` (read first in the cycle)
   and it equals the one of the last complete cycle, and no new item came,
   no status changed on the platform: statuses and frames are not fetched,
   so an unchanged cycle costs one request per 100 unfinished items plus a
   few.
0. **Changed labels** first, where the remote offers
   :class:`~syncd.remotes.base.ChangedLabels`: the items whose labels changed
   after its own cursor (``labels``), committed page by page with it, so
   edits to finished items arrive without waiting for the sweep.
3. **Full sweep** every ``full_sweep_interval``: every item is listed and
   every label re-read, so edits to finished items arrive and items gone
   from the platform get ``deleted_at`` (rows are never dropped).

Labels are one row per item and source (raw JSON + sha256 of its canonical
form); a changed label has its ``objects`` rows replaced.

A fleet sharing one store pulls each sync on one daemon at a time: the cycle
runs only while this daemon holds the lease ``pull:<sync>``
(:mod:`syncd.store.coordination`; always granted on SQLite), and every
transaction that commits pulled rows checks the lease first, so a daemon that
lost it commits nothing more.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from sqlmodel import Session, SQLModel, col, delete, select, update

from syncd.errors import ReplyShapeError
from syncd.log import get_logger
from syncd.pipeline.context import SyncContext
from syncd.pipeline.readahead import read_ahead
from syncd.remotes.base import (
    ChangedLabels,
    ItemPage,
    RemoteItem,
    RemoteLabel,
    StatusFingerprint,
    capabilities,
)
from syncd.store import Cursor, Item, Label, Object, Tx, utcnow
from syncd.store.bulk import insert_many

BATCH = 100
FINISHED = ("ANNOTATED", "INVALID")
CURSOR_ITEMS = "items"
CURSOR_LABELS = "labels"
CURSOR_SWEEP = "full_sweep_at"
CURSOR_LAST_PULL = "last_pull_at"
CURSOR_FINGERPRINT = "status_fingerprint"
# The encoders json.dumps(..., sort_keys=True) would build on every call (millions of
# objects in a first mirror); same output.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_SORTED = json.JSONEncoder(sort_keys=True)
# Core tables for the bulk inserts: plain executemany, without the ORM's per-row work.
_LABELS = SQLModel.metadata.tables["labels"]
_OBJECTS = SQLModel.metadata.tables["objects"]
_ITEMS = SQLModel.metadata.tables["items"]


@dataclass
class PullStats:
    """What one pull did (returned, and logged in ``pull.finished``)."""

    pages: int = 0
    new_items: int = 0
    labels_changed: int = 0
    deleted: int = 0
    swept: bool = False
    requests: int = 0
    changed_items: set[str] = field(default_factory=set)
    skipped: bool = False  # another daemon of the fleet holds this sync's pull lease

    def changed(self) -> bool:
        return bool(self.new_items or self.labels_changed or self.deleted)


def canonical_json(raw: object) -> str:
    """The form a label is stored and hashed in: sorted keys, no spaces."""
    return _CANONICAL.encode(raw)


def label_hash(raw: dict[str, object]) -> str:
    return hashlib.sha256(canonical_json(raw).encode()).hexdigest()


def _get_cursor(session: Session, sync: str, name: str) -> str | None:
    row = session.get(Cursor, (sync, name))
    return row.value if row else None


def pull_lease(sync: str) -> str:
    """The lease that one daemon of a fleet holds to pull ``sync``."""
    return f"pull:{sync}"


def lease_name(ctx: SyncContext) -> str:
    return pull_lease(ctx.name)


def _set_cursor(tx: Tx, sync: str, name: str, value: str) -> None:
    row = tx.session.get(Cursor, (sync, name))
    if row is None:
        row = Cursor(sync=sync, name=name, value=value, updated_at=utcnow())
    row.value, row.updated_at = value, utcnow()
    tx.session.add(row)


class ItemRef(NamedTuple):
    """The mirror row of one item, as far as writing its labels needs it."""

    id: int
    remote: str


def upsert_items(
    tx: Tx, ctx: SyncContext, items: Iterable[RemoteItem]
) -> tuple[dict[str, ItemRef], int]:
    """Insert or update items; returns ``remote_id → row`` and the number of new rows.

    Written with one INSERT (executemany) for the new items and one UPDATE per
    known item: a first mirror inserts every item of the dataset.
    """
    remote = ctx.remote.name
    by_id = {i.id: i for i in items}  # a repeated id: the last listing wins
    existing = {
        r.remote_id: r
        for r in tx.session.exec(
            select(Item).where(Item.remote == remote, col(Item.remote_id).in_(list(by_id)))
        ).all()
    }
    now = utcnow()
    fresh: list[dict[str, Any]] = []
    for it in by_id.values():
        row = existing.get(it.id)
        if row is None:
            fresh.append(
                {
                    "remote": remote,
                    "sync": ctx.name,
                    "dataset_remote_id": it.dataset_id,
                    "remote_id": it.id,
                    "name": it.name,
                    "kind": it.kind,
                    "parent_remote_id": it.parent_id if it.kind else None,
                    "annotation_status": it.annotation_status,
                    "status": it.status,
                    "zip_path": it.zip_path,
                    "raw": json.dumps(it.raw, sort_keys=True, default=str) if it.kind else "{}",
                    "first_seen_at": now,
                    "updated_at": now,
                    "deleted_at": None,
                }
            )
            continue
        row.name = it.name or row.name
        row.kind = it.kind or row.kind
        row.parent_remote_id = it.parent_id if it.kind else row.parent_remote_id
        row.annotation_status = it.annotation_status or row.annotation_status
        row.status = it.status or row.status
        row.zip_path = it.zip_path or row.zip_path
        row.dataset_remote_id = it.dataset_id or row.dataset_remote_id
        if it.kind:
            row.raw = json.dumps(it.raw, sort_keys=True, default=str)
        row.deleted_at = None
        row.updated_at = now
        tx.session.add(row)
    tx.session.flush()
    refs = {rid: ItemRef(r.id, remote) for rid, r in existing.items() if r.id is not None}
    if fresh:
        insert_many(tx.session, _ITEMS, fresh)
        refs.update(_refs(tx.session, remote, [f["remote_id"] for f in fresh]))
    return refs, len(fresh)


def _refs(session: Session, remote: str, remote_ids: Sequence[str]) -> dict[str, ItemRef]:
    rows = session.exec(
        select(Item.id, Item.remote_id).where(
            Item.remote == remote, col(Item.remote_id).in_(remote_ids)
        )
    ).all()
    return {r[1]: ItemRef(r[0], remote) for r in rows if r[0] is not None}


def apply_labels(
    tx: Tx, rows: dict[str, ItemRef], fetched: Sequence[str], labels: Sequence[RemoteLabel]
) -> int:
    """Write the labels of the ``fetched`` items; returns how many labels changed.

    A source that no longer comes back for a fetched item is marked deleted.
    Rows are written with one statement per table and batch (executemany),
    not object by object: a first mirror writes millions of objects.
    """
    by_item: dict[str, list[RemoteLabel]] = {}
    for lab in labels:
        by_item.setdefault(lab.item_id, []).append(lab)
    item_ids = [rows[i].id for i in fetched if i in rows]
    current = {
        (lab.item_id, lab.source): lab
        for lab in tx.session.exec(select(Label).where(col(Label.item_id).in_(item_ids))).all()
    }
    now = utcnow()
    changed: list[tuple[ItemRef, RemoteLabel, str, str]] = []  # item, label, hash, raw JSON
    new_rows: list[dict[str, Any]] = []
    replaced: list[int] = []  # label ids whose objects are replaced or dropped
    checked: list[int] = []
    for rid in fetched:
        item = rows.get(rid)
        if item is None:
            continue
        seen_sources = set()
        for lab in by_item.get(rid, []):
            seen_sources.add(lab.source)
            raw = canonical_json(lab.raw)
            h = hashlib.sha256(raw.encode()).hexdigest()
            row = current.get((item.id, lab.source))
            if row is not None and row.hash == h and row.deleted_at is None:
                continue
            changed.append((item, lab, h, raw))
            values: dict[str, Any] = {
                "hash": h,
                "raw": raw,
                "updated_at": now,
                "deleted_at": None,
                "object_count": len(lab.objects),
            }
            if row is None:
                new_rows.append(
                    {
                        "item_id": item.id,
                        "remote": item.remote,
                        "remote_item_id": rid,
                        "source": lab.source,
                        **values,
                    }
                )
            else:
                assert row.id is not None
                replaced.append(row.id)
                tx.session.execute(update(Label).where(col(Label.id) == row.id).values(**values))
        for (item_pk, source), row in current.items():
            if item_pk == item.id and source not in seen_sources and row.deleted_at is None:
                assert row.id is not None
                replaced.append(row.id)
                tx.session.execute(
                    update(Label)
                    .where(col(Label.id) == row.id)
                    .values(deleted_at=now, object_count=0)
                )
                changed.append((item, RemoteLabel(rid, source, {}, []), "", ""))
        checked.append(item.id)
    if replaced:
        tx.session.execute(delete(Object).where(col(Object.label_id).in_(replaced)))
    if new_rows:
        insert_many(tx.session, _LABELS, new_rows)
    label_ids = {
        (r[1], r[2]): r[0]
        for r in tx.session.execute(
            select(Label.id, Label.item_id, Label.source).where(
                col(Label.item_id).in_([c[0].id for c in changed])
            )
        )
    }
    objects = [
        {
            "label_id": label_ids[(item.id, lab.source)],
            "item_id": item.id,
            "remote_object_id": o.remote_id,
            "class_name": o.class_name,
            "class_id": o.class_id,
            "shape_type": o.shape_type,
            "track_id": o.track_id,
            "track_name": o.track_name,
            "confidence": o.confidence,
            "geometry": _SORTED.encode(o.geometry),
            "attributes": _SORTED.encode(o.attributes),
        }
        for item, lab, _, _ in changed
        for o in lab.objects
    ]
    if objects:
        insert_many(tx.session, _OBJECTS, objects)
    if checked:
        tx.session.execute(update(Item).where(col(Item.id).in_(checked)).values(checked_at=now))
    return len(changed)


def _label_targets(items: Iterable[RemoteItem | Item]) -> list[str]:
    out = []
    for it in items:
        kind = it.kind
        rid = it.id if isinstance(it, RemoteItem) else it.remote_id
        if kind != "SCENE":
            out.append(str(rid))
    return out


def _commit_batch(
    ctx: SyncContext,
    dataset_id: str,
    items: list[RemoteItem],
    stats: PullStats,
    *,
    cursor: str | None = None,
    label_ids: list[str] | None = None,
    cursor_name: str = CURSOR_ITEMS,
    labels: list[RemoteLabel] | None = None,
) -> None:
    """Fetch labels for a batch (unless given, fetched for exactly its label targets) and
    write items, labels and (optionally) the cursor together."""
    targets = label_ids if label_ids is not None else _label_targets(items)
    if labels is None:
        labels = _fetch_labels(ctx, dataset_id, targets)
    with ctx.store.tx() as tx:
        ctx.store.coord.check_lease(tx, lease_name(ctx))
        rows, new = upsert_items(tx, ctx, items)
        if label_ids is not None:
            missing = [i for i in targets if i not in rows]
            if missing:
                rows.update(_refs(tx.session, ctx.remote.name, missing))
        changed = apply_labels(tx, rows, targets, labels)
        moved = cursor is not None and cursor != _get_cursor(tx.session, ctx.name, cursor_name)
        if moved and cursor is not None:
            _set_cursor(tx, ctx.name, cursor_name, cursor)
        stats.new_items += new
        stats.labels_changed += changed
        stats.pages += 1
        ctx.progress()
        if new or changed or moved:
            tx.event(
                "pull.page_committed",
                sync=ctx.name,
                items=len(items),
                new_items=new,
                labels_changed=changed,
                cursor=cursor,
                item_ids=[i.id for i in items][:100],
            )


def _new_pages(
    ctx: SyncContext, dataset_id: str, cursor: str | None
) -> Iterator[tuple[ItemPage, list[RemoteItem], list[RemoteLabel]]]:
    """Each page of new items after ``cursor``, its items not yet mirrored (scenes
    always), and their labels. Only reads: :func:`run_once` runs it a page ahead
    in a thread of its own while it writes the page before (pages never overlap)."""
    for page in ctx.remote.new_items(dataset_id, cursor):
        if ctx.stop.is_set():
            return
        with ctx.store.read() as s:
            known = set(
                s.exec(
                    select(Item.remote_id).where(
                        Item.remote == ctx.remote.name,
                        col(Item.remote_id).in_([i.id for i in page.items]),
                    )
                ).all()
            )
        fresh = [i for i in page.items if i.id not in known or i.kind == "SCENE"]
        yield page, fresh, _fetch_labels(ctx, dataset_id, _label_targets(fresh))


def _fetch_labels(ctx: SyncContext, dataset_id: str, targets: list[str]) -> list[RemoteLabel]:
    labels: list[RemoteLabel] = []
    for start in range(0, len(targets), BATCH):
        labels += ctx.remote.labels(dataset_id, targets[start : start + BATCH])
    return labels


def run_once(ctx: SyncContext, *, full_sweep: bool | None = None) -> PullStats:
    """One pull cycle for this sync (see module docstring).

    A reply syncd cannot read (:class:`~syncd.errors.ReplyShapeError`) ends the
    cycle before the page in flight is committed: ``pull.failed`` records the
    endpoint and field, the cursor stays where it was, and the error is raised
    (the daemon reports it and the next cycle asks again).
    """
    try:
        return _cycle(ctx, full_sweep)
    except ReplyShapeError as exc:
        with ctx.store.tx() as tx:
            tx.event(
                "pull.failed",
                level="error",
                sync=ctx.name,
                reason=str(exc),
                endpoint=exc.endpoint,
                field=exc.field,
                received=exc.received,
            )
        raise


def _cycle(ctx: SyncContext, full_sweep: bool | None) -> PullStats:
    stats = PullStats()
    if not ctx.cfg.pull:
        return stats
    if not ctx.store.coord.acquire(lease_name(ctx)):
        # another daemon of the fleet pulls this sync; it keeps it while it lives
        stats.skipped = True
        get_logger().debug("pull.skipped", sync=ctx.name, reason="another daemon holds the lease")
        return stats
    dataset_id = ctx.dataset_id()
    with ctx.store.read() as s:
        cursor = _get_cursor(s, ctx.name, CURSOR_ITEMS)
        last_sweep = _get_cursor(s, ctx.name, CURSOR_SWEEP)
        last_fingerprint = _get_cursor(s, ctx.name, CURSOR_FINGERPRINT)
    # Read before anything else: a status that changes after this read moves
    # the next cycle's fingerprint.
    caps = capabilities(ctx.remote)
    fingerprint = (
        cast(StatusFingerprint, ctx.remote).status_fingerprint(dataset_id)
        if caps.status_fingerprint
        else None
    )
    # 0. changed labels, where the remote lists items by change (its own cursor)
    fetched: set[str] = set()
    if caps.changed_labels:
        with ctx.store.read() as s:
            labels_cursor = _get_cursor(s, ctx.name, CURSOR_LABELS)
        for page in cast(ChangedLabels, ctx.remote).changed_items(dataset_id, labels_cursor):
            if ctx.stop.is_set():
                return stats
            _commit_batch(
                ctx, dataset_id, page.items, stats, cursor=page.cursor, cursor_name=CURSOR_LABELS
            )
            fetched.update(i.id for i in page.items)
    # 1. new items, page by page, cursor committed with each page; the next
    # page and its labels are fetched while this one is written
    pages = read_ahead(_new_pages(ctx, dataset_id, cursor), depth=1)
    try:
        for page, fresh, labels in pages:
            if ctx.stop.is_set():
                return stats
            _commit_batch(ctx, dataset_id, fresh, stats, cursor=page.cursor, labels=labels)
            fetched.update(i.id for i in fresh)
    finally:
        pages.close()  # stops the fetching thread when the loop ends early
    # 2. unfinished items: status and labels again
    moved = fingerprint is None or fingerprint != last_fingerprint or stats.new_items > 0
    _recheck(ctx, dataset_id, stats, skip=fetched, statuses=moved)
    # 3. the full sweep
    due = last_sweep is None or time.time() - float(last_sweep) >= ctx.cfg.full_sweep_interval
    if full_sweep if full_sweep is not None else (due and cursor is not None):
        _sweep(ctx, dataset_id, stats)
    with ctx.store.tx() as tx:
        ctx.store.coord.check_lease(tx, lease_name(ctx))
        _set_cursor(tx, ctx.name, CURSOR_LAST_PULL, utcnow())
        if fingerprint is not None and not ctx.stop.is_set():
            # Only a cycle that ran to its end vouches for the statuses it saw.
            _set_cursor(tx, ctx.name, CURSOR_FINGERPRINT, fingerprint)
        if last_sweep is None:
            _set_cursor(tx, ctx.name, CURSOR_SWEEP, str(time.time()))
        if stats.changed():
            tx.event(
                "pull.finished",
                sync=ctx.name,
                pages=stats.pages,
                new_items=stats.new_items,
                labels_changed=stats.labels_changed,
                deleted=stats.deleted,
                full_sweep=stats.swept,
            )
    return stats


def _recheck(
    ctx: SyncContext, dataset_id: str, stats: PullStats, *, skip: set[str], statuses: bool
) -> None:
    """Labels of every unfinished item again; their statuses and scene frames when ``statuses``.

    One request per batch of 100 items when nothing moved on the platform
    (``statuses`` False, see :class:`StatusFingerprint`), two when it did,
    plus a frame listing per unfinished scene.
    """
    with ctx.store.read() as s:
        rows = s.exec(
            select(Item.remote_id, Item.kind)
            .where(
                Item.sync == ctx.name,
                Item.remote == ctx.remote.name,
                col(Item.deleted_at).is_(None),
                (col(Item.annotation_status).is_(None))
                | (col(Item.annotation_status).not_in(FINISHED)),
            )
            .order_by(col(Item.id))
        ).all()
    rows = [r for r in rows if r[0] not in skip]
    scenes = [r[0] for r in rows if r[1] == "SCENE"] if statuses else []
    for scene_id in scenes:
        frames = ctx.remote.frames(dataset_id, scene_id)
        with ctx.store.read() as s:
            known = set(
                s.exec(
                    select(Item.remote_id).where(
                        Item.remote == ctx.remote.name,
                        col(Item.remote_id).in_([f.id for f in frames]),
                    )
                ).all()
            )
        new_frames = [f for f in frames if f.id not in known]
        if new_frames:
            _commit_batch(ctx, dataset_id, new_frames, stats)
    if not statuses:
        rows = [r for r in rows if r[1] != "SCENE"]  # a scene has no labels of its own
    for start in range(0, len(rows), BATCH):
        if ctx.stop.is_set():
            return
        batch = rows[start : start + BATCH]
        items = []
        if statuses:
            states = ctx.remote.item_states(dataset_id, [r[0] for r in batch])
            items = [
                RemoteItem(
                    id=s.id,
                    dataset_id=dataset_id,
                    name=s.name,
                    kind="",
                    parent_id=None,
                    annotation_status=s.annotation_status,
                    status=s.status,
                    zip_path=None,
                )
                for s in states.values()
                if s.annotation_status
            ]
        label_ids = [r[0] for r in batch if r[1] != "SCENE"]
        _commit_batch(ctx, dataset_id, items, stats, label_ids=label_ids)


def _sweep(ctx: SyncContext, dataset_id: str, stats: PullStats) -> None:
    live: set[str] = set()
    for items in ctx.remote.all_items(dataset_id):
        if ctx.stop.is_set():
            return
        live.update(i.id for i in items)
        _commit_batch(ctx, dataset_id, items, stats)
    with ctx.store.tx() as tx:
        ctx.store.coord.check_lease(tx, lease_name(ctx))
        gone = tx.session.exec(
            select(Item).where(
                Item.sync == ctx.name,
                Item.remote == ctx.remote.name,
                Item.dataset_remote_id == dataset_id,
                col(Item.deleted_at).is_(None),
            )
        ).all()
        now = utcnow()
        deleted = [r for r in gone if r.remote_id not in live]
        for r in deleted:
            r.deleted_at = now
            tx.session.add(r)
        stats.deleted += len(deleted)
        stats.swept = True
        _set_cursor(tx, ctx.name, CURSOR_SWEEP, str(time.time()))
        if deleted:
            tx.event(
                "pull.items_deleted",
                sync=ctx.name,
                count=len(deleted),
                item_ids=[r.remote_id for r in deleted][:100],
            )
