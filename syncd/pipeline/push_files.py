"""Per-file push: upload each data item's files, then register the items.

For remotes whose ``push_mode`` is ``"files"`` (BasicAI; Segments.ai alike):
the package's frozen file list is pushed file by file instead of as one
archive. :func:`syncd.pipeline.upload.advance` hands such packages here, step
by step; the states are the same as for archives.

Contract (a package's ``upload_ref`` JSON records every step, keyed by the
file's path in the unit and by the top-level name):

* ``packed → uploading`` is committed before the first byte. Then, one data
  item (a top-level name: a frame, an image or a whole ``scene_*``) at a time,
  the item's files not yet recorded are checked against what was packed,
  stored on the platform in one batch, checked again, and their refs
  committed in one transaction (``files``). A crash re-uploads only the
  files of the item in flight (storing an object twice is harmless: nothing
  points at the first copy). When every file is stored: ``uploaded``.
* ``uploaded → submitted`` is committed, then each item is registered once:
  its name is committed as ``registering`` before the request and its ids as
  ``registered`` right after. After a crash in between, the platform is asked
  whether the name exists before registering again, so nothing is registered
  twice. Single items are registered in batches of up to 100.
* Registration is synchronous on these platforms: once every item is
  registered, ``processing`` and ``done`` are committed together.
* Files that belong to no data item are not pushed: the platform stores files
  only as parts of items. ``package.files_skipped`` (warning) names them.
* A file that changed since packing sends the package back to ``detected``
  (as for archives); errors are handled by :func:`upload.advance`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any, cast

from syncd import failpoints
from syncd.errors import Cancelled, LocalDataError
from syncd.pipeline.archive import verify_files
from syncd.pipeline.context import SyncContext
from syncd.pipeline.safeopen import stream_packaged
from syncd.remotes.base import FilePushRemote, PushData, PushFile
from syncd.store import Package, PackageFile

READ_CHUNK = 1024 * 1024
REGISTER_BATCH = 100


def _remote(ctx: SyncContext) -> FilePushRemote:
    return cast(FilePushRemote, ctx.remote)


def is_scene(name: str) -> bool:
    return name.lower().startswith("scene_")


def items_of(files: list[PackageFile]) -> dict[str, list[PackageFile]]:
    """Top-level name → its files, in file order. Files of no item are not pushed."""
    out: dict[str, list[PackageFile]] = {}
    for f in files:
        if f.item_key:
            out.setdefault(f.item_key, []).append(f)
    return out


def _device(f: PackageFile) -> str:
    parts = PurePosixPath(f.arcname).parts
    return parts[-2] if len(parts) >= 2 else ""


def _filename(f: PackageFile) -> str:
    return PurePosixPath(f.arcname).name


def _frame(f: PackageFile) -> str:
    name = _filename(f)
    return name.rsplit(".", 1)[0] if "." in name else name


def _record(ctx: SyncContext, pkg: Package, **changes: Any) -> Package:
    """Merge ``changes`` into the package's ``upload_ref`` in one transaction."""
    with ctx.store.tx() as tx:
        fresh = tx.session.get(Package, pkg.id)
        assert fresh is not None
        ref = json.loads(fresh.upload_ref) if fresh.upload_ref else {}
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(ref.get(key), dict):
                ref[key] = {**ref[key], **value}
            else:
                ref[key] = value
        fresh.upload_ref = json.dumps(ref)
        tx.session.add(fresh)
        return fresh


def upload(ctx: SyncContext, pkg: Package) -> Package | None:
    """``packed``/``uploading`` → ``uploaded``: every item's files stored, refs recorded."""
    from syncd.pipeline.upload import _files, _ref, _repack

    assert ctx.cfg.folder is not None and pkg.remote_dataset_id
    folder, dataset_id = ctx.cfg.folder, pkg.remote_dataset_id
    if pkg.state == "packed":
        loose = [f.rel_path for f in _files(ctx, pkg) if not f.item_key]
        with ctx.store.tx() as tx:
            fresh = tx.session.get(Package, pkg.id)
            assert fresh is not None
            fresh.submit_started_at = None
            tx.transition(fresh, "uploading", files=fresh.file_count, bytes=fresh.total_bytes)
            if loose:
                # No data item to register them with: say so, never drop them silently.
                tx.event(
                    "package.files_skipped",
                    level="warning",
                    sync=ctx.name,
                    package_id=fresh.id,
                    unit=fresh.unit,
                    files=loose[:50],
                    count=len(loose),
                    reason="these files belong to no data item (no sensor folder with a "
                    "matching base name); the platform takes files only as parts of data items",
                )
            pkg = fresh
    started = time.monotonic()
    for files in items_of(_files(ctx, pkg)).values():
        stored = _ref(pkg).get("files")
        done = stored if isinstance(stored, dict) else {}
        todo = [f for f in files if f.rel_path not in done]
        if not todo:
            continue
        try:
            verify_files(folder, todo)
            refs = _remote(ctx).upload_files(dataset_id, [_push_file(ctx, f) for f in todo])
            verify_files(folder, todo)
        except LocalDataError as exc:
            _repack(ctx, pkg, str(exc))
            return None
        pkg = _record(ctx, pkg, files={f.rel_path: r for f, r in zip(todo, refs, strict=True)})
        failpoints.reached("upload.item_sent")
        if ctx.stop.is_set():
            return None
    seconds = time.monotonic() - started
    with ctx.store.tx() as tx:
        fresh = tx.session.get(Package, pkg.id)
        assert fresh is not None
        fresh.attempts = 0
        fresh.last_error = None
        tx.transition(
            fresh,
            "uploaded",
            files=fresh.file_count,
            bytes=fresh.total_bytes,
            seconds=round(seconds, 3),
        )
        return fresh


def _push_file(ctx: SyncContext, f: PackageFile) -> PushFile:
    assert ctx.cfg.folder is not None
    folder = ctx.cfg.folder

    def body() -> Iterator[bytes]:
        try:
            # opened without following links, checked on the descriptor (safeopen)
            for chunk in stream_packaged(folder, f, READ_CHUNK):
                ctx.progress()
                if ctx.cancel.is_set():
                    raise Cancelled(f"{f.unit}: upload stopped by the drain deadline")
                yield chunk
        except OSError as exc:
            raise LocalDataError(f"{f.unit}/{f.rel_path}: reading failed: {exc.strerror}") from exc

    return PushFile(
        key=f.rel_path, device=_device(f), filename=_filename(f), size=f.size, body=body
    )


def register(ctx: SyncContext, pkg: Package) -> Package | None:
    """``uploaded``/``submitted`` → ``done``: each item registered exactly once."""
    from syncd.pipeline.upload import _files, _ref

    dataset_id = pkg.remote_dataset_id
    assert dataset_id
    remote = _remote(ctx)
    if pkg.state == "uploaded":
        with ctx.store.tx() as tx:
            fresh = tx.session.get(Package, pkg.id)
            assert fresh is not None
            tx.transition(fresh, "submitted", items=fresh.item_count)
            pkg = fresh
    ref = _ref(pkg)
    stored = cast(dict[str, Any], ref.get("files") or {})
    registered = cast(dict[str, Any], ref.get("registered") or {})
    pending = [str(n) for n in cast(list[Any], ref.get("registering") or [])]
    if pending:
        # A crash between "registering" and "registered": did the request arrive?
        found = remote.find_names(dataset_id, pending)
        pkg = _record(ctx, pkg, registered=found, registering=[])
        registered = {**registered, **found}
    items = {n: fs for n, fs in items_of(_files(ctx, pkg)).items() if n not in registered}
    singles = [n for n in items if not is_scene(n)]
    scenes = [n for n in items if is_scene(n)]
    for start in range(0, len(singles), REGISTER_BATCH):
        names = singles[start : start + REGISTER_BATCH]
        data = [PushData(n, [stored[f.rel_path] for f in items[n]]) for n in names]
        pkg = _register(ctx, pkg, names, lambda d=data: remote.register(dataset_id, d, scene=None))
    for scene in scenes:
        frames: dict[str, list[dict[str, Any]]] = {}
        for f in items[scene]:
            frames.setdefault(_frame(f), []).append(stored[f.rel_path])
        data = [PushData(n, refs) for n, refs in frames.items()]
        pkg = _register(
            ctx, pkg, [scene], lambda s=scene, d=data: remote.register(dataset_id, d, scene=s)
        )
    with ctx.store.tx() as tx:
        fresh = tx.session.get(Package, pkg.id)
        assert fresh is not None
        fresh.attempts = 0
        fresh.last_error = None
        ids = json.loads(fresh.upload_ref or "{}").get("registered", {})
        # Registration is synchronous: processing ends as it starts.
        tx.transition(fresh, "processing", items=fresh.item_count, registered=len(ids))
        tx.transition(fresh, "done", items=fresh.item_count, registered=len(ids))
        return None


def _register(ctx: SyncContext, pkg: Package, names: list[str], send: Any) -> Package:
    pkg = _record(ctx, pkg, registering=names)
    failpoints.reached("register.before")
    ids: dict[str, str] = send()
    failpoints.reached("register.sent")
    return _record(ctx, pkg, registered=ids, registering=[])
