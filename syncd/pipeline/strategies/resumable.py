"""The resumable strategy: the session is stored before a byte is sent; restarts continue it.

Contract of :meth:`ResumableStrategy.send` (a package in ``uploading`` whose
remote declares ``capabilities.upload == "resumable"``, a
:class:`~syncd.remotes.base.ResumableUploads`); everything else is the
archive strategy's (:mod:`syncd.pipeline.strategies.archive`). The record is
a :class:`~syncd.store.ResumableProgress`.

1. No session recorded: the attempt number is committed (``opening``)
   *before* the platform is asked for a session; the session's ref is
   committed right after (event ``package.upload_session``), before any byte
   is sent. A crash in between is healed by :meth:`find_upload` (the session
   opened under that attempt is looked up and kept); when nothing is found
   the attempt is recorded as abandoned and the next one opens.
2. With a session: :meth:`resume_upload` asks the platform how much it holds
   and sends the rest from that offset (:func:`syncd.pipeline.platform_archive.archive_at`), so a
   restart after ``kill -9`` re-sends at most what the platform did not keep.
3. The drain deadline (``ctx.cancel``) stops the stream between blocks
   (:class:`~syncd.errors.Cancelled`); the next start resumes the session.
4. A dead session (expired, cancelled, unknown, or older than a week) is
   recorded in ``abandoned`` with the reason (event
   ``package.upload_session_expired``) and a fresh one is opened.

Returns the record of the completed upload; the caller records ``uploaded``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from syncd import failpoints
from syncd.errors import UploadSessionExpired
from syncd.pipeline import platform_archive as platform_archives
from syncd.pipeline.context import SyncContext
from syncd.pipeline.strategies.archive import ArchiveStrategy
from syncd.pipeline.strategies.common import guarded
from syncd.remotes.base import ResumableUploads, Upload
from syncd.store import Package, PackageFile, Progress, ResumableProgress, utcnow

MAX_SESSIONS = 20  # a package that burns this many sessions has a problem a new one won't fix


def _save(
    ctx: SyncContext, pkg: Package, progress: ResumableProgress, event: str = "", **fields: Any
) -> None:
    with ctx.store.package_step(pkg.id, expect=("uploading",)) as step:
        step.record(progress)
        if event:
            step.note(event, level="warning" if event.endswith("expired") else "info", **fields)


def _public(session: dict[str, Any]) -> dict[str, Any]:
    """What of a session may appear in events: never its URI (the URI is a credential)."""
    return {k: v for k, v in session.items() if "url" not in k.lower()}


class ResumableStrategy(ArchiveStrategy):
    """One archive per package through resumable sessions (see module docstring)."""

    name = "resumable"
    progress_kind = ResumableProgress

    def send(
        self, ctx: SyncContext, pkg: Package, files: list[PackageFile], progress: Progress
    ) -> Progress:
        remote = ctx.remote
        assert isinstance(remote, ResumableUploads) and isinstance(progress, ResumableProgress)
        assert ctx.cfg.folder is not None and pkg.archive_name and pkg.archive_bytes is not None
        folder, size, name, class_ids = (
            ctx.cfg.folder,
            pkg.archive_bytes,
            pkg.archive_name,
            progress.classes,
        )
        group = ctx.dataset_id()

        def body_from(offset: int) -> Iterator[bytes]:
            # The session and what the platform holds are the checkpoint.
            # The archive in the platform's input format (Deepen's), from ``offset``.
            return guarded(
                ctx,
                pkg,
                lambda: platform_archives.archive_at(
                    ctx, folder, files, class_ids, offset, expected=size
                ),
            )

        while True:
            session = progress.session
            if session is None:
                abandoned = progress.abandoned
                if len(abandoned) >= MAX_SESSIONS:
                    raise UploadSessionExpired(
                        f"{len(abandoned)} upload sessions died for this package; last: "
                        f"{abandoned[-1].get('reason')}"
                    )
                attempt = len(abandoned) + 1
                found = None
                if progress.opening == attempt:
                    found = remote.find_upload(group, name, attempt)
                    if found is None:
                        abandoned.append(
                            {
                                "attempt": attempt,
                                "reason": "a session was being opened when syncd stopped; "
                                "none was found",
                                "at": utcnow(),
                            }
                        )
                        attempt += 1
                if found is None:
                    progress.opening = attempt
                    _save(ctx, pkg, progress)
                    failpoints.reached("upload.opening")
                    found = remote.open_upload(group, name, size, attempt)
                    failpoints.reached("upload.session_opened")
                progress.opening = None
                session = progress.session = found.ref
                _save(
                    ctx,
                    pkg,
                    progress,
                    "package.upload_session",
                    attempt=attempt,
                    archive_bytes=size,
                    **_public(session),
                )
            try:
                done = remote.resume_upload(Upload(ref=session), size, body_from)
            except UploadSessionExpired as exc:
                dead = {**_public(session), "reason": str(exc), "at": utcnow()}
                progress.abandoned.append(dead)
                progress.session = None
                _save(ctx, pkg, progress, "package.upload_session_expired", **dead)
                continue
            progress.remote = {**progress.remote, **done.ref}
            return progress
