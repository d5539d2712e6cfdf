"""Resumable uploads: the session is stored before a byte is sent; restarts continue it.

Contract of :func:`upload` (a package in ``uploading`` whose remote has the
:class:`~syncd.remotes.base.ResumableUploads` capability):

1. No session in ``packages.upload_ref``: the attempt number is committed
   (``opening``) *before* the platform is asked for a session; the session's
   ref is committed right after (event ``package.upload_session``), before any
   byte is sent. A crash in between is healed by :meth:`find_upload` (the
   session opened under that attempt is looked up and kept); when nothing is
   found the attempt is recorded as abandoned and the next one opens.
2. With a session: :meth:`resume_upload` asks the platform how much it holds
   and sends the rest from that offset (:func:`syncd.formats.archives.archive_at`), so a
   restart after ``kill -9`` re-sends at most what the platform did not keep.
3. The drain deadline (``ctx.cancel``) stops the stream between blocks
   (:class:`~syncd.errors.Cancelled`); the next start resumes the session.
4. A dead session (expired, cancelled, unknown, or older than a week) is
   recorded in ``upload_ref.abandoned`` with the reason (event
   ``package.upload_session_expired``) and a fresh one is opened.

Returns the completed upload's ref; the caller records ``uploaded``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from syncd import failpoints
from syncd.errors import Cancelled, LocalDataError, UploadSessionExpired
from syncd.formats import archives as platform_archives  # x15 hook
from syncd.pipeline.context import SyncContext
from syncd.remotes.base import ResumableUploads, Upload
from syncd.store import Package, PackageFile, utcnow

MAX_SESSIONS = 20  # a package that burns this many sessions has a problem a new one won't fix


def _save(
    ctx: SyncContext, pkg: Package, ref: dict[str, Any], event: str = "", **fields: Any
) -> None:
    with ctx.store.tx() as tx:
        fresh = tx.session.get(Package, pkg.id)
        assert fresh is not None
        fresh.upload_ref = json.dumps(ref)
        tx.session.add(fresh)
        if event:
            tx.event(
                event,
                level="warning" if event.endswith("expired") else "info",
                sync=ctx.name,
                package_id=pkg.id,
                unit=pkg.unit,
                from_state=fresh.state,
                to_state=fresh.state,
                **fields,
            )


def _public(session: dict[str, Any]) -> dict[str, Any]:
    """What of a session may appear in events: never its URI (the URI is a credential)."""
    return {k: v for k, v in session.items() if "url" not in k.lower()}


def upload(
    ctx: SyncContext, pkg: Package, files: list[PackageFile], class_ids: dict[str, str]
) -> Upload:
    """Upload ``pkg``'s archive through a resumable session (see module docstring)."""
    remote = ctx.remote
    assert isinstance(remote, ResumableUploads)
    assert ctx.cfg.folder is not None and pkg.archive_name and pkg.archive_bytes is not None
    folder, size, name = ctx.cfg.folder, pkg.archive_bytes, pkg.archive_name
    group = ctx.dataset_id()
    ref: dict[str, Any] = dict(json.loads(pkg.upload_ref)) if pkg.upload_ref else {}

    def body_from(offset: int) -> Iterator[bytes]:
        try:
            # x15 hook: the archive in the platform's input format (Deepen), from ``offset``.
            for chunk in platform_archives.archive_at(
                ctx, folder, files, class_ids, offset, expected=size
            ):
                ctx.progress()
                if ctx.cancel.is_set():
                    # The session and what the platform holds are the checkpoint.
                    raise Cancelled(f"{pkg.unit}: upload stopped by the drain deadline")
                yield chunk
        except OSError as exc:
            raise LocalDataError(
                f"{pkg.unit}: reading {exc.filename or 'a file'} failed: {exc.strerror}"
            ) from exc

    while True:
        session = ref.get("session")
        if not isinstance(session, dict):
            abandoned = list(ref.get("abandoned") or [])
            if len(abandoned) >= MAX_SESSIONS:
                raise UploadSessionExpired(
                    f"{len(abandoned)} upload sessions died for this package; last: "
                    f"{abandoned[-1].get('reason')}"
                )
            attempt = len(abandoned) + 1
            found = None
            if ref.get("opening") == attempt:
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
                    ref["abandoned"] = abandoned
                    attempt += 1
            if found is None:
                ref["opening"] = attempt
                _save(ctx, pkg, ref)
                failpoints.reached("upload.opening")
                found = remote.open_upload(group, name, size, attempt)
                failpoints.reached("upload.session_opened")
            ref.pop("opening", None)
            session = ref["session"] = found.ref
            _save(
                ctx,
                pkg,
                ref,
                "package.upload_session",
                attempt=attempt,
                archive_bytes=size,
                **_public(session),
            )
        try:
            done = remote.resume_upload(Upload(ref=session), size, body_from)
        except UploadSessionExpired as exc:
            dead = {**_public(session), "reason": str(exc), "at": utcnow()}
            ref["abandoned"] = [*(ref.get("abandoned") or []), dead]
            ref.pop("session")
            _save(ctx, pkg, ref, "package.upload_session_expired", **dead)
            continue
        return Upload(ref={**ref, **done.ref})
