"""Upload, submit and follow processing, one package at a time.

Contract of :func:`run_once` (packages in ``packed`` … ``processing`` whose
retry time has come, oldest first):

* ``packed → uploading`` is committed before the first byte is sent. The
  archive is streamed from the files (checked against what was packed before
  and after streaming); a file that changed sends the package back to
  ``detected`` to be packed again, so changed content is never submitted.
  A crash in ``uploading`` uploads again from the start (a new object).
* A remote with resumable uploads (:mod:`syncd.pipeline.resumable`) keeps its
  session across crashes: ``uploading`` after a restart continues it from
  what the platform holds.
* Submitting is not idempotent (unless the remote says ``submit_is_idempotent``:
  it checks the platform itself), so ``submit_started_at`` is committed before
  the request and the serial right after it. After a crash in between, the
  platform is asked first: when every data item of the package already exists,
  the earlier submit arrived and the package is ``done``; when none exists and
  ``processing_timeout`` has passed since the submit, it is submitted again
  (the platform skips names that already exist, so even a late first import
  cannot create an item twice); otherwise it waits.
* Processing is polled every ``poll_interval``; the platform's final status
  decides ``done`` (errors the platform reported are kept in
  ``platform_errors`` and logged as ``package.platform_errors``) or
  ``failed`` (its reason kept). A record whose progress (status, bytes
  downloaded, items parsed) does not change for ``processing_timeout`` fails.
* Transient errors keep the state and retry with backoff; permanent errors
  end in ``failed`` with the reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Literal

from sqlmodel import col, delete, select

from syncd import failpoints
from syncd.errors import Cancelled, LocalDataError, NotFoundError, PermanentError, TransientError
from syncd.pipeline import resumable
from syncd.pipeline.archive import open_archive, verify_files
from syncd.pipeline.backoff import schedule_retry
from syncd.pipeline.context import SyncContext
from syncd.pipeline.pack import fail
from syncd.pipeline.readahead import read_ahead
from syncd.remotes.base import Upload, capabilities, push_mode
from syncd.store import FINAL_STATES, Package, PackageFile, utcnow

ACTIVE_STATES = ("packed", "uploading", "uploaded", "submitted", "processing")


def run_once(ctx: SyncContext) -> int:
    """Advance every due package as far as it goes now; returns the number of packages touched."""
    with ctx.store.read() as s:
        due = s.exec(
            select(Package)
            .where(
                Package.sync == ctx.name,
                col(Package.state).in_(ACTIVE_STATES),
                Package.next_attempt_at <= time.time(),
                ctx.owned(),
            )
            .order_by(col(Package.id))
        ).all()
    for pkg in due:
        if ctx.stop.is_set():
            break
        assert pkg.id is not None
        # Claimed row by row: two daemons never upload the same package.
        if not ctx.store.coord.claim(pkg.id):
            continue
        try:
            advance(ctx, pkg)
        finally:
            ctx.store.coord.release(pkg.id)
    return len(due)


def advance(ctx: SyncContext, pkg: Package) -> None:
    """Move one package forward until it has to wait, finishes or fails."""
    files_mode = push_mode(ctx.remote) == "files"
    try:
        while not ctx.stop.is_set():
            if files_mode:
                # Platforms that take files, not archives: syncd.pipeline.push_files.
                from syncd.pipeline import push_files

                if pkg.state in ("packed", "uploading"):
                    nxt = push_files.upload(ctx, pkg)
                elif pkg.state in ("uploaded", "submitted", "processing"):
                    nxt = push_files.register(ctx, pkg)
                else:
                    return
            elif pkg.state in ("packed", "uploading"):
                nxt = _upload(ctx, pkg)
            elif pkg.state == "uploaded":
                nxt = _submit(ctx, pkg)
            elif pkg.state in ("submitted", "processing"):
                nxt = _poll(ctx, pkg)
            else:
                return
            if nxt is None:
                return
            pkg = nxt
    except TransientError as exc:
        if ctx.cancel.is_set():
            _checkpoint(ctx, pkg, str(exc))
        else:
            schedule_retry(ctx, pkg, str(exc))
    except Cancelled as exc:
        _checkpoint(ctx, pkg, str(exc))
    except PermanentError as exc:
        fail(ctx, pkg, str(exc))


def _checkpoint(ctx: SyncContext, pkg: Package, reason: str) -> None:
    """The drain deadline cut a step short: its committed state is where the next start resumes."""
    with ctx.store.tx() as tx:
        tx.note("package.checkpointed", pkg, reason=reason)


def _files(ctx: SyncContext, pkg: Package) -> list[PackageFile]:
    with ctx.store.read() as s:
        return list(
            s.exec(
                select(PackageFile)
                .where(PackageFile.package_id == pkg.id)
                .order_by(col(PackageFile.id))
            ).all()
        )


def _ref(pkg: Package) -> dict[str, object]:
    return dict(json.loads(pkg.upload_ref)) if pkg.upload_ref else {}


def _repack(ctx: SyncContext, pkg: Package, reason: str) -> None:
    """The unit changed under a packed package: forget its file list, settle again."""
    with ctx.store.tx() as tx:
        fresh = tx.session.get(Package, pkg.id)
        if fresh is None or fresh.state in FINAL_STATES:
            return
        tx.session.exec(delete(PackageFile).where(col(PackageFile.package_id) == pkg.id))
        fresh.last_error = reason
        fresh.upload_ref = None
        fresh.archive_bytes = None
        tx.transition(fresh, "detected", reason=reason)


def _upload(ctx: SyncContext, pkg: Package) -> Package | None:
    assert ctx.cfg.folder is not None
    if pkg.state == "packed":
        with ctx.store.tx() as tx:
            fresh = tx.session.get(Package, pkg.id)
            assert fresh is not None
            fresh.submit_started_at = None
            tx.transition(
                fresh, "uploading", archive=fresh.archive_name, archive_bytes=fresh.archive_bytes
            )
            pkg = fresh
    files = _files(ctx, pkg)
    ref = _ref(pkg)
    classes = ref.get("classes")
    class_ids = {str(k): str(v) for k, v in classes.items()} if isinstance(classes, dict) else {}
    folder = ctx.cfg.folder
    try:
        verify_files(folder, files)
    except LocalDataError as exc:
        _repack(ctx, pkg, str(exc))
        return None
    assert pkg.archive_name and pkg.archive_bytes is not None and pkg.remote_dataset_id

    def body() -> Iterator[bytes]:
        try:
            # Files are read and CRC-ed a few chunks ahead while the socket sends.
            for chunk in read_ahead(open_archive(folder, files, class_ids)):
                ctx.progress()
                if ctx.cancel.is_set():
                    raise Cancelled(f"{pkg.unit}: upload stopped by the drain deadline")
                yield chunk
        except OSError as exc:
            raise LocalDataError(
                f"{pkg.unit}: reading {exc.filename or 'a file'} failed: {exc.strerror}"
            ) from exc

    started = time.monotonic()
    try:
        if capabilities(ctx.remote).upload == "resumable":
            upload = resumable.upload(ctx, pkg, files, class_ids)
        else:
            upload = ctx.remote.upload_archive(
                pkg.remote_dataset_id, pkg.archive_name, pkg.archive_bytes, body
            )
        verify_files(folder, files)
    except LocalDataError as exc:
        _repack(ctx, pkg, str(exc))
        return None
    failpoints.reached("upload.sent")
    seconds = time.monotonic() - started
    with ctx.store.tx() as tx:
        fresh = tx.session.get(Package, pkg.id)
        assert fresh is not None
        fresh.upload_ref = json.dumps({**ref, **upload.ref})
        fresh.attempts = 0
        fresh.last_error = None
        tx.transition(
            fresh,
            "uploaded",
            archive=fresh.archive_name,
            archive_bytes=fresh.archive_bytes,
            files=fresh.file_count,
            seconds=round(seconds, 3),
            mb_per_s=round(fresh.archive_bytes / max(seconds, 1e-6) / 1e6, 1)
            if fresh.archive_bytes
            else 0,
            # resumable uploads: where this run started and what it sent
            **{
                k: v
                for k, v in upload.ref.items()
                if k in ("upload_resumed_from", "upload_bytes_sent")
            },
        )
        return fresh


def _item_names(ctx: SyncContext, pkg: Package) -> list[str]:
    return sorted({f.item_key for f in _files(ctx, pkg) if f.item_key})


def _age(iso: str | None) -> float:
    if not iso:
        return 0.0
    return time.time() - datetime.fromisoformat(iso).timestamp()


def _wait(ctx: SyncContext, pkg: Package) -> None:
    with ctx.store.tx() as tx:
        fresh = tx.session.get(Package, pkg.id)
        if fresh is not None:
            fresh.next_attempt_at = time.time() + ctx.poll_interval
            tx.session.add(fresh)


def _submit(ctx: SyncContext, pkg: Package) -> Package | None:
    dataset_id = pkg.remote_dataset_id
    assert dataset_id
    idempotent = capabilities(ctx.remote).submit_is_idempotent
    if (
        pkg.submit_started_at
        and not pkg.serial
        and not idempotent
        and _recover_submit(ctx, pkg) != "submit"
    ):
        return None
    with ctx.store.tx() as tx:
        fresh = tx.session.get(Package, pkg.id)
        assert fresh is not None
        fresh.submit_started_at = utcnow()
        tx.session.add(fresh)
        pkg = fresh
    upload = Upload(ref=_ref(pkg))
    result_type = ctx.cfg.result_type if pkg.has_results else None
    try:
        serial = ctx.remote.submit(dataset_id, upload, with_results=result_type)
    except TransientError as exc:
        if not exc.request_sent:
            with ctx.store.tx() as tx:
                fresh = tx.session.get(Package, pkg.id)
                assert fresh is not None
                fresh.submit_started_at = None
                tx.session.add(fresh)
        raise
    failpoints.reached("submit.sent")
    with ctx.store.tx() as tx:
        fresh = tx.session.get(Package, pkg.id)
        assert fresh is not None
        fresh.serial = serial
        fresh.attempts = 0
        fresh.last_error = None
        tx.transition(fresh, "submitted", serial=serial, result_type=result_type)
        return fresh


def _recover_submit(ctx: SyncContext, pkg: Package) -> Literal["submit", "wait", "done"]:
    """After a crash between submit and its serial: find out what the platform has."""
    assert pkg.remote_dataset_id
    names = _item_names(ctx, pkg)
    present = ctx.remote.existing_names(pkg.remote_dataset_id, names) if names else set()
    if names and len(present) == len(names):
        with ctx.store.tx() as tx:
            fresh = tx.session.get(Package, pkg.id)
            assert fresh is not None
            note = "the submit before the restart reached the platform: its items exist"
            tx.transition(fresh, "submitted", recovered=True, note=note)
            tx.transition(fresh, "processing", recovered=True)
            tx.transition(fresh, "done", recovered=True, items=len(names))
        return "done"
    if not present and _age(pkg.submit_started_at) >= ctx.cfg.processing_timeout:
        with ctx.store.tx() as tx:
            tx.note(
                "package.retry",
                pkg,
                reason="the submit before the restart left no trace within processing_timeout: submitting again",
            )
        return "submit"
    if not names:
        return "submit"
    _wait(ctx, pkg)
    return "wait"


def _poll(ctx: SyncContext, pkg: Package) -> Package | None:
    assert pkg.serial
    try:
        p = ctx.remote.processing(pkg.serial)
    except NotFoundError as exc:
        raise PermanentError(f"the platform does not know upload {pkg.serial}: {exc}") from exc
    with ctx.store.tx() as tx:
        fresh = tx.session.get(Package, pkg.id)
        assert fresh is not None
        counts = {"status": p.status, "items_total": p.items_total, "items_parsed": p.items_parsed}
        if p.state == "pending":
            if fresh.state == "submitted":
                tx.transition(fresh, "processing", serial=fresh.serial, **counts)
            progress = p.progress or p.status
            if p.message and fresh.progress != progress:
                # x15 hook: a status the remote does not know is shown, never waited on silently.
                fresh.last_error = p.message
                tx.event(
                    "package.processing_unknown",
                    level="error",  # `syncd status` lists recent errors
                    sync=ctx.name,
                    package_id=fresh.id,
                    unit=fresh.unit,
                    serial=fresh.serial,
                    status=p.status,
                    message=p.message,
                )
            if fresh.progress != progress or not fresh.progress_at:
                fresh.progress, fresh.progress_at = progress, utcnow()
            if _age(fresh.progress_at) >= ctx.cfg.processing_timeout:
                reason = (
                    f"processing made no progress for {ctx.cfg.processing_timeout:.0f}s "
                    f"(platform status {p.status}, serial {fresh.serial}); check the platform's "
                    "upload records, then touch the unit's files to send it again"
                )
                fresh.last_error = reason
                tx.transition(fresh, "failed", reason=reason, **counts)
                return None
            fresh.next_attempt_at = time.time() + ctx.poll_interval
            tx.session.add(fresh)
            return None
        if fresh.state == "submitted":
            tx.transition(fresh, "processing", serial=fresh.serial, **counts)
        if p.state == "failed":
            reason = f"the platform failed the import: {p.message or p.status}"
            fresh.last_error = reason
            tx.transition(fresh, "failed", reason=reason, serial=fresh.serial, **counts)
            return None
        if p.message:
            fresh.platform_errors = p.message
            tx.event(
                "package.platform_errors",
                level="warning",
                sync=ctx.name,
                package_id=fresh.id,
                unit=fresh.unit,
                serial=fresh.serial,
                platform_errors=p.message,
            )
        tx.transition(
            fresh,
            "done",
            serial=fresh.serial,
            platform_errors=p.message or None,
            seconds_since_detected=round(_age(fresh.created_at), 3),
            processing_seconds=round(_age(fresh.submit_started_at), 3)
            if fresh.submit_started_at
            else None,
            **counts,
        )
        return None
