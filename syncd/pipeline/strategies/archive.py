"""The archive strategy: one zip through ``upload_archive``, then submit and follow processing.

Contract (``capabilities(remote).upload == "archive"``; the resumable
strategy shares everything but how the bytes are sent):

* ``packed → uploading`` is committed before the first byte is sent. The
  archive is streamed from the files (:func:`syncd.pipeline.archive.open_archive`,
  checked against what was packed before and after streaming); a file that
  changed sends the package back to ``detected`` to be packed again, so
  changed content is never submitted. A crash in ``uploading`` uploads again
  from the start (a new object). ``uploaded`` is committed with the remote's
  ref (:class:`~syncd.store.ArchiveProgress`).
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
* Errors are raised to :func:`syncd.pipeline.upload.advance` (retry or fail).
"""

from __future__ import annotations

import time
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from syncd import failpoints
from syncd.errors import LocalDataError, NotFoundError, PermanentError, TransientError
from syncd.pipeline.archive import open_archive, verify_files
from syncd.pipeline.context import SyncContext
from syncd.pipeline.readahead import read_ahead
from syncd.pipeline.strategies.common import guarded, package_files, repack
from syncd.remotes.base import Upload, archive_push, capabilities
from syncd.store import ArchiveProgress, Package, PackageFile, PackageMoved, Progress, utcnow

# Chunks (1 MiB each: zipstream's READ_BUFFER) read and CRC-ed ahead of the socket:
# 16 MiB is ~10 ms at 1.5 GB/s, more than a scheduler time slice, so neither the reading
# thread nor the sending one waits when the other is descheduled on a busy machine
# (4 GiB into bench/receiver.py: 2.0 GB/s instead of 1.2-1.5 at depth 4; peak RSS +8 MB).
READ_AHEAD_CHUNKS = 16

# Keys of a resumable upload's ref that the ``package.uploaded`` event carries:
# where this run started and what it sent.
RESUME_KEYS = ("upload_resumed_from", "upload_bytes_sent")


def _age(iso: str | None) -> float:
    if not iso:
        return 0.0
    return time.time() - datetime.fromisoformat(iso).timestamp()


class ArchiveStrategy:
    """One archive per package (see module docstring)."""

    name = "archive"
    progress_kind: type[Progress] = ArchiveProgress

    # --- packed / uploading → uploaded ----------------------------------------------

    def upload(self, ctx: SyncContext, pkg: Package) -> Package | None:
        assert ctx.cfg.folder is not None
        if pkg.state == "packed":
            with ctx.store.package_step(pkg.id, expect=("packed",)) as step:
                step.pkg.submit_started_at = None
                step.advance(
                    "uploading", archive=step.pkg.archive_name, archive_bytes=step.pkg.archive_bytes
                )
                pkg = step.pkg
        files = package_files(ctx, pkg)
        progress = self.progress_kind.parse(pkg.upload_ref)
        folder = ctx.cfg.folder
        try:
            verify_files(folder, files)
        except LocalDataError as exc:
            repack(ctx, pkg, str(exc))
            return None
        assert pkg.archive_name and pkg.archive_bytes is not None and pkg.remote_dataset_id
        started = time.monotonic()
        try:
            progress = self.send(ctx, pkg, files, progress)
            verify_files(folder, files)
        except LocalDataError as exc:
            repack(ctx, pkg, str(exc))
            return None
        failpoints.reached("upload.sent")
        seconds = time.monotonic() - started
        with ctx.store.package_step(pkg.id, expect=("uploading",)) as step:
            fresh = step.pkg
            step.record(progress)
            step.succeed(
                "uploaded",
                archive=fresh.archive_name,
                archive_bytes=fresh.archive_bytes,
                files=fresh.file_count,
                seconds=round(seconds, 3),
                mb_per_s=round(fresh.archive_bytes / max(seconds, 1e-6) / 1e6, 1)
                if fresh.archive_bytes
                else 0,
                **{k: v for k, v in progress.remote.items() if k in RESUME_KEYS},
            )
            return fresh

    def send(
        self, ctx: SyncContext, pkg: Package, files: list[PackageFile], progress: Progress
    ) -> Progress:
        """Store the archive on the platform; returns the record of the stored archive."""
        assert ctx.cfg.folder is not None and pkg.remote_dataset_id and pkg.archive_name
        assert pkg.archive_bytes is not None
        folder, class_ids = ctx.cfg.folder, progress.classes
        upload = archive_push(ctx.remote).upload_archive(
            pkg.remote_dataset_id,
            pkg.archive_name,
            pkg.archive_bytes,
            # Files are read and CRC-ed ahead while the socket sends.
            lambda: guarded(
                ctx,
                pkg,
                lambda: read_ahead(open_archive(folder, files, class_ids), depth=READ_AHEAD_CHUNKS),
            ),
        )
        progress.remote = {**progress.remote, **upload.ref}
        return progress

    # --- uploaded / submitted / processing → done / failed ---------------------------

    def finish(self, ctx: SyncContext, pkg: Package) -> Package | None:
        if pkg.state == "uploaded":
            return self._submit(ctx, pkg)
        return self._poll(ctx, pkg)

    def _submit(self, ctx: SyncContext, pkg: Package) -> Package | None:
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
        with ctx.store.package_step(pkg.id, expect=("uploaded",)) as step:
            step.pkg.submit_started_at = utcnow()
            pkg = step.pkg
        upload = Upload(ref=self.progress_kind.parse(pkg.upload_ref).flat())
        result_type = ctx.cfg.result_type if pkg.has_results else None
        try:
            serial = archive_push(ctx.remote).submit(dataset_id, upload, with_results=result_type)
        except TransientError as exc:
            if not exc.request_sent:
                with ctx.store.package_step(pkg.id, expect=("uploaded",)) as step:
                    step.pkg.submit_started_at = None
            raise
        failpoints.reached("submit.sent")
        with ctx.store.package_step(pkg.id, expect=("uploaded",)) as step:
            step.pkg.serial = serial
            step.succeed("submitted", serial=serial, result_type=result_type)
            return step.pkg

    def _poll(self, ctx: SyncContext, pkg: Package) -> Package | None:
        assert pkg.serial
        try:
            p = archive_push(ctx.remote).processing(pkg.serial)
        except NotFoundError as exc:
            raise PermanentError(f"the platform does not know upload {pkg.serial}: {exc}") from exc
        with ctx.store.package_step(pkg.id, expect=("submitted", "processing")) as step:
            fresh = step.pkg
            counts: dict[str, Any] = {
                "status": p.status,
                "items_total": p.items_total,
                "items_parsed": p.items_parsed,
            }
            if fresh.state == "submitted":
                step.advance("processing", serial=fresh.serial, **counts)
            if p.state == "pending":
                progress = p.progress or p.status
                if p.message and fresh.progress != progress:
                    # A status the remote does not know is shown, never waited on silently.
                    fresh.last_error = p.message
                    step.event(
                        "package.processing_unknown",
                        level="error",  # `syncd status` lists recent errors
                        serial=fresh.serial,
                        status=p.status,
                        message=p.message,
                    )
                if fresh.progress != progress or not fresh.progress_at:
                    fresh.progress, fresh.progress_at = progress, utcnow()
                if _age(fresh.progress_at) >= ctx.cfg.processing_timeout:
                    step.fail(
                        f"processing made no progress for {ctx.cfg.processing_timeout:.0f}s "
                        f"(platform status {p.status}, serial {fresh.serial}); check the "
                        "platform's upload records, then touch the unit's files to send it again",
                        **counts,
                    )
                    return None
                step.wait(ctx.poll_interval)
                return None
            if p.state == "failed":
                step.fail(
                    f"the platform failed the import: {p.message or p.status}",
                    serial=fresh.serial,
                    **counts,
                )
                return None
            if p.message:
                fresh.platform_errors = p.message
                step.event(
                    "package.platform_errors",
                    level="warning",
                    serial=fresh.serial,
                    platform_errors=p.message,
                )
            step.advance(
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


def _item_names(ctx: SyncContext, pkg: Package) -> list[str]:
    return sorted({f.item_key for f in package_files(ctx, pkg) if f.item_key})


UNCERTAIN = "submit uncertain"


def _recover_submit(ctx: SyncContext, pkg: Package) -> Literal["submit", "wait", "done"]:
    """A submit that may have reached the platform (a crash after it was sent, or an error
    reply after the request went out, such as a proxy's 502/503): find out what it has.

    Asked again every ``poll_interval``: when every data item of the package
    exists, the submit arrived and the package is ``done`` at once; when none
    exists after ``submit_uncertain_wait`` since the submit, it is submitted
    again (names are unique in a dataset, so a late first import and a second
    submit never make an item twice); when some exist, the import is under way
    and the rest is awaited for ``processing_timeout``, after which the package
    is ``done`` with the missing names kept in ``platform_errors`` (Xtreme1
    drops batches it cannot decode). While it waits, ``last_error`` says what
    is known, what syncd waits for and until when (``syncd status``), and one
    ``package.submit_uncertain`` event says it when the wait starts.
    """
    assert pkg.remote_dataset_id
    names = _item_names(ctx, pkg)
    if not names:
        return "submit"
    present = ctx.remote.existing_names(pkg.remote_dataset_id, names)
    waited = _age(pkg.submit_started_at)
    missing = sorted(set(names) - present)
    if not missing or (present and waited >= ctx.cfg.processing_timeout):
        with ctx.store.package_step(pkg.id, expect=("uploaded",)) as step:
            note = "the submit before the restart reached the platform: its items exist"
            step.advance("submitted", recovered=True, note=note)
            step.advance("processing", recovered=True)
            step.pkg.last_error = None
            if missing:
                step.pkg.platform_errors = (
                    f"{len(missing)} of {len(names)} data items never appeared after an "
                    f"uncertain submit: {', '.join(missing[:10])}"
                )
            step.advance(
                "done",
                recovered=True,
                items=len(present),
                platform_errors=step.pkg.platform_errors if missing else None,
            )
        return "done"
    if not present and waited >= ctx.cfg.submit_uncertain_wait:
        with ctx.store.package_step(pkg.id, expect=("uploaded",)) as step:
            step.note(
                "package.retry",
                reason="the earlier submit left no trace within submit_uncertain_wait "
                f"({ctx.cfg.submit_uncertain_wait:.0f}s): submitting again",
            )
        return "submit"
    started = pkg.submit_started_at or ""
    if present:
        until = _at(started, ctx.cfg.processing_timeout)
        plan = f"the import is under way: waiting for the rest until {until}"
    else:
        until = _at(started, ctx.cfg.submit_uncertain_wait)
        plan = f"if none appears by {until}, syncd submits again"
    reason = (
        f"{UNCERTAIN}: the submit of {started[:19]}Z may have reached the platform; "
        f"{len(present)} of {len(names)} data items exist; asking again every "
        f"{ctx.poll_interval:g}s and finishing the package once all exist; {plan}"
    )
    with suppress(PackageMoved), ctx.store.package_step(pkg.id) as step:
        if not (step.pkg.last_error or "").startswith(UNCERTAIN):
            step.note(
                "package.submit_uncertain",
                submit_started_at=started,
                items_present=len(present),
                items=len(names),
                waits_until=until,
                then="wait for the rest" if present else "submit again",
            )
        step.pkg.last_error = reason
        step.wait(ctx.poll_interval)
    return "wait"


def _at(iso: str, seconds: float) -> str:
    """``iso`` plus ``seconds``, as a UTC time for people."""
    if not iso:
        return "unknown"
    when = datetime.fromisoformat(iso) + timedelta(seconds=seconds)
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
