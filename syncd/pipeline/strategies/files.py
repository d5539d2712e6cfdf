"""The files strategy (per-file push): upload each data item's files, then register the items.

For remotes whose ``capabilities.upload`` is ``"files"`` (BasicAI,
Segments.ai): the package's frozen file list is pushed file by file instead
of as one archive. :func:`syncd.pipeline.upload.advance` hands such packages
to :class:`FilesStrategy` step by step; the states are the same as for
archives.

Contract (the package's :class:`~syncd.store.FilesProgress` records every
step, keyed by the file's path in the unit and by the top-level name):

* ``packed → uploading`` is committed before the first byte. Then the files
  not yet recorded go in batches of whole data items (a top-level name: a
  frame, an image or a whole ``scene_*``), items added until the batch holds
  at least :func:`batch_files` files (100, or 32 per transfer slot), so the
  remote's ``transfers`` slots never wait for a small item and a batch's
  tail, where slots empty, is rare. Each batch is checked against what was packed,
  handed to one ``upload_files`` call (which stores up to ``transfers`` files
  at once), checked again, and its refs committed in one transaction
  (``files``), in this thread: every store write stays here. The crash point
  ``upload.item_sent`` is reached once per item of the batch, after that
  commit. A crash re-uploads only the files of the batch in flight, the
  files whose refs were not committed (storing an object twice is harmless:
  nothing points at the first copy). ``stop`` is honoured between batches,
  ``cancel`` between chunks. When every file is stored: ``uploaded``.
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
  (as for archives); errors are handled by :func:`syncd.pipeline.upload.advance`.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from functools import partial
from pathlib import PurePosixPath
from typing import Any, TypeVar, cast

from syncd import failpoints
from syncd.errors import Cancelled, LocalDataError
from syncd.pipeline.archive import verify_files
from syncd.pipeline.context import SyncContext
from syncd.pipeline.strategies.common import package_files, repack
from syncd.remotes.base import FilePushRemote, PushData, PushFile
from syncd.safeopen import stream_packaged
from syncd.store import FilesProgress, Package, PackageFile

T = TypeVar("T")

READ_CHUNK = 1024 * 1024
REGISTER_BATCH = 100
# Files per upload_files call (whole items, so a batch may hold more): enough
# to keep every transfer slot busy and to fill a presign request (BasicAI takes
# 100 at once); few enough that a crash re-sends little.
BATCH_FILES = 100
# Per transfer slot: a batch ends with slots idling while its last files finish,
# so batches hold many rounds of transfers (8 slots: 256 files, three tails per
# thousand files instead of ten). A crash sends at most one batch again.
BATCH_ROUNDS = 32


def batch_files(transfers: int) -> int:
    """The fewest files a batch holds (see the module docstring)."""
    return max(BATCH_FILES, BATCH_ROUNDS * transfers)


# How often the strategy's thread relays the transfer threads' progress.
BEAT_SECONDS = 1.0


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


def _update(
    ctx: SyncContext, pkg: Package, expect: tuple[str, ...], change: Callable[[FilesProgress], None]
) -> Package:
    """Apply ``change`` to the package's :class:`~syncd.store.FilesProgress` in one transaction."""
    with ctx.store.package_step(pkg.id, expect=expect) as step:
        progress = step.progress(FilesProgress)
        change(progress)
        step.record(progress)
        return step.pkg


class FilesStrategy:
    """Batches of whole data items' files, then registration (see module docstring)."""

    name = "files"

    def upload(self, ctx: SyncContext, pkg: Package) -> Package | None:
        """``packed``/``uploading`` → ``uploaded``: every item's files stored, refs recorded."""
        assert ctx.cfg.folder is not None and pkg.remote_dataset_id
        folder, dataset_id = ctx.cfg.folder, pkg.remote_dataset_id
        if pkg.state == "packed":
            loose = [f.rel_path for f in package_files(ctx, pkg) if not f.item_key]
            with ctx.store.package_step(pkg.id, expect=("packed",)) as step:
                fresh = step.pkg
                fresh.submit_started_at = None
                step.advance("uploading", files=fresh.file_count, bytes=fresh.total_bytes)
                if loose:
                    # No data item to register them with: say so, never drop them silently.
                    step.event(
                        "package.files_skipped",
                        level="warning",
                        files=loose[:50],
                        count=len(loose),
                        reason="these files belong to no data item (no sensor folder with a "
                        "matching base name); the platform takes files only as parts of data items",
                    )
                pkg = fresh
        started = time.monotonic()
        done = FilesProgress.parse(pkg.upload_ref).files
        todo_items = [
            [f for f in files if f.rel_path not in done]
            for files in items_of(package_files(ctx, pkg)).values()
        ]
        moved = threading.Event()  # a chunk went out, on some transfer thread
        with ThreadPoolExecutor(1, thread_name_prefix="syncd-files") as helper:
            least = batch_files(ctx.transfers)
            for batch in _batches([t for t in todo_items if t], least):
                todo = [f for files in batch for f in files]
                try:
                    verify_files(folder, todo)
                    push = [_push_file(ctx, f, moved) for f in todo]
                    refs = _relaying(
                        ctx, helper, moved, partial(_remote(ctx).upload_files, dataset_id, push)
                    )
                    verify_files(folder, todo)
                except LocalDataError as exc:
                    repack(ctx, pkg, str(exc))
                    return None
                stored = {f.rel_path: r for f, r in zip(todo, refs, strict=True)}
                pkg = _update(ctx, pkg, ("uploading",), partial(_stored, refs=stored))
                for _ in batch:
                    failpoints.reached("upload.item_sent")
                if ctx.stop.is_set():
                    return None
        seconds = time.monotonic() - started
        with ctx.store.package_step(pkg.id, expect=("uploading",)) as step:
            fresh = step.pkg
            step.succeed(
                "uploaded",
                files=fresh.file_count,
                bytes=fresh.total_bytes,
                seconds=round(seconds, 3),
            )
            return fresh

    def finish(self, ctx: SyncContext, pkg: Package) -> Package | None:
        """``uploaded``/``submitted`` → ``done``: each item registered exactly once."""
        dataset_id = pkg.remote_dataset_id
        assert dataset_id
        remote = _remote(ctx)
        if pkg.state == "uploaded":
            with ctx.store.package_step(pkg.id, expect=("uploaded",)) as step:
                step.advance("submitted", items=step.pkg.item_count)
                pkg = step.pkg
        progress = FilesProgress.parse(pkg.upload_ref)
        stored, registered = progress.files, progress.registered
        if progress.registering:
            # A crash between "registering" and "registered": did the request arrive?
            found = remote.find_names(dataset_id, progress.registering)
            pkg = _update(ctx, pkg, REGISTERING, lambda p: _registered(p, found))
            registered = {**registered, **found}
        items = {
            n: fs for n, fs in items_of(package_files(ctx, pkg)).items() if n not in registered
        }
        singles = [n for n in items if not is_scene(n)]
        scenes = [n for n in items if is_scene(n)]
        for start in range(0, len(singles), REGISTER_BATCH):
            names = singles[start : start + REGISTER_BATCH]
            data = [PushData(n, [stored[f.rel_path] for f in items[n]]) for n in names]
            pkg = _register(
                ctx, pkg, names, lambda d=data: remote.register(dataset_id, d, scene=None)
            )
        for scene in scenes:
            frames: dict[str, list[dict[str, Any]]] = {}
            for f in items[scene]:
                frames.setdefault(_frame(f), []).append(stored[f.rel_path])
            data = [PushData(n, refs) for n, refs in frames.items()]
            pkg = _register(
                ctx, pkg, [scene], lambda s=scene, d=data: remote.register(dataset_id, d, scene=s)
            )
        with ctx.store.package_step(pkg.id, expect=REGISTERING) as step:
            fresh = step.pkg
            ids = step.progress(FilesProgress).registered
            fresh.attempts = 0
            fresh.last_error = None
            # Registration is synchronous: processing ends as it starts.
            if fresh.state == "submitted":
                step.advance("processing", items=fresh.item_count, registered=len(ids))
            step.advance("done", items=fresh.item_count, registered=len(ids))
            return None


# Registration runs in ``submitted``; ``processing`` is committed together with
# ``done``, so a package is never found there, but one would be finished alike.
REGISTERING = ("submitted", "processing")


def _stored(progress: FilesProgress, refs: dict[str, dict[str, Any]]) -> None:
    progress.files.update(refs)


def _registered(progress: FilesProgress, ids: dict[str, str]) -> None:
    progress.registered.update(ids)
    progress.registering = []


def _batches(items: list[list[PackageFile]], least: int) -> Iterator[list[list[PackageFile]]]:
    """Whole items, in order, grouped until a group holds at least ``least`` files."""
    batch: list[list[PackageFile]] = []
    count = 0
    for files in items:
        batch.append(files)
        count += len(files)
        if count >= least:
            yield batch
            batch, count = [], 0
    if batch:
        yield batch


def _relaying(
    ctx: SyncContext, helper: ThreadPoolExecutor, moved: threading.Event, send: Callable[[], T]
) -> T:
    """``send()`` on the ``helper`` thread; meanwhile this thread turns chunks sent by the
    transfer threads (``moved``) into heartbeats, since ``ctx.progress`` beats the stage of
    the thread that calls it. ``send``'s exception is raised here, unchanged."""
    future = helper.submit(contextvars.copy_context().run, send)  # the metrics bound here
    while not wait([future], timeout=BEAT_SECONDS).done:
        if moved.is_set():
            moved.clear()
            ctx.progress()
    ctx.progress()
    return future.result()


def _push_file(ctx: SyncContext, f: PackageFile, moved: threading.Event) -> PushFile:
    assert ctx.cfg.folder is not None
    folder = ctx.cfg.folder

    def body() -> Iterator[bytes]:
        try:
            # opened without following links, checked on the descriptor (safeopen)
            for chunk in stream_packaged(folder, f, READ_CHUNK):
                moved.set()  # relayed as a heartbeat by the strategy's thread (_relaying)
                if ctx.cancel.is_set():
                    raise Cancelled(f"{f.unit}: upload stopped by the drain deadline")
                yield chunk
        except OSError as exc:
            raise LocalDataError(f"{f.unit}/{f.rel_path}: reading failed: {exc.strerror}") from exc

    return PushFile(
        key=f.rel_path, device=_device(f), filename=_filename(f), size=f.size, body=body
    )


def _register(ctx: SyncContext, pkg: Package, names: list[str], send: Any) -> Package:
    def registering(progress: FilesProgress) -> None:
        progress.registering = names

    pkg = _update(ctx, pkg, REGISTERING, registering)
    failpoints.reached("register.before")
    ids: dict[str, str] = send()
    failpoints.reached("register.sent")
    return _update(ctx, pkg, REGISTERING, lambda p: _registered(p, ids))
