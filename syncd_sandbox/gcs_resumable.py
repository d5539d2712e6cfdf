"""A Google Cloud Storage style resumable-upload endpoint (docs/platforms/deepen.md).

Sessions are handed out by the platform (Deepen's dataset creation), never by
the client. Behaviour, strict where a client could get it wrong:

* single ``PUT`` without ``Content-Range`` → 200 + object JSON (the body must
  be exactly the declared size);
* chunk ``PUT`` with ``Content-Range: bytes a-b/total|*`` → 308 with
  ``Range: bytes=0-<last persisted>`` until complete, then 200 + object JSON;
* status query (empty ``PUT``, ``Content-Range: bytes */total|*``) → 308
  **without** ``Range`` when nothing is persisted, 308 with ``Range``
  otherwise, 200 when complete (``bytes */total`` with all bytes persisted
  finalises);
* a chunk that starts before the persisted end has its known bytes skipped;
  one that starts past it (a gap) gets 503 ``text/plain`` "… exceeds already
  uploaded size of N byte(s).";
* only whole 256 KiB blocks of a non-final chunk are persisted; with
  ``keep_fraction`` set (admin switch) only that fraction of a chunk, rounded
  down to a 256 KiB boundary, is kept — "the server kept less than it got";
* a chunk cut short (client died) keeps its received bytes down to a 256 KiB
  boundary;
* sessions live ``session_lifetime`` seconds (one week) by the sandbox clock,
  then every request gets ``expired_status`` (410); ``DELETE`` → 499 and
  the session answers 499 from then on; unknown sessions → 404.

Bytes stream to ``root/<bucket>/<name>`` on disk; memory stays flat.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

BLOCK = 256 * 1024
WEEK = 7 * 24 * 3600.0
_RANGE = re.compile(r"^bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)$")


@dataclass
class Session:
    """One resumable upload session."""

    upload_id: str
    bucket: str
    name: str
    size: int | None  # declared total, when the platform knows it
    created_at: float
    persisted: int = 0
    complete: bool = False
    cancelled: bool = False
    md5: str = ""
    chunks: int = 0
    status_queries: int = 0
    bytes_received: int = 0
    ranges: list[tuple[int, int]] = field(default_factory=list)  # (start, kept end) per chunk


class ResumableStore:
    """The sessions of one sandbox, and the admin switches the tests turn."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.sessions: dict[str, Session] = {}
        self.lock = threading.Lock()
        self.clock_offset = 0.0
        self.config: dict[str, Any] = {
            "session_lifetime": WEEK,
            "expired_status": 410,
            "keep_fraction": None,  # e.g. 0.5: keep half of each chunk (256 KiB aligned)
            "keep_times": None,  # how many chunks the switch applies to (None: all)
        }
        self.bytes_received = 0
        self.auth_headers_seen = 0
        self.unaligned_chunks = 0

    def now(self) -> float:
        return time.time() + self.clock_offset

    def path(self, s: Session) -> Path:
        return self.root / s.bucket / s.name

    def create(self, base: str, bucket: str, name: str, size: int | None) -> str:
        """Open a session for object ``bucket/name``; returns its URI under ``base``."""
        upload_id = "ADPyc" + secrets.token_urlsafe(48)
        with self.lock:
            self.sessions[upload_id] = Session(upload_id, bucket, name, size, self.now())
        p = self.root / bucket / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
        return (
            f"{base}/upload/storage/v1/b/{bucket}/o?uploadType=resumable"
            f"&name={quote(name, safe='')}&upload_id={upload_id}"
        )

    def object_json(self, s: Session) -> dict[str, Any]:
        return {
            "kind": "storage#object",
            "id": f"{s.bucket}/{s.name}/1",
            "bucket": s.bucket,
            "name": s.name,
            "size": str(s.persisted),
            "md5Hash": s.md5,
            "contentType": "application/zip",
            "timeCreated": datetime.fromtimestamp(s.created_at, UTC).isoformat(),
        }

    def _finalise(self, s: Session) -> None:
        md5 = hashlib.md5()
        with self.path(s).open("rb") as f:
            while block := f.read(4 * 1024 * 1024):
                md5.update(block)
        s.md5 = base64.b64encode(md5.digest()).decode()
        s.complete = True

    def _dead(self, s: Session | None) -> Response | None:
        if s is None:
            return PlainTextResponse("No such upload session.", status_code=404)
        if s.cancelled:
            return PlainTextResponse("Upload was cancelled.", status_code=499)
        if not s.complete and self.now() > s.created_at + float(self.config["session_lifetime"]):
            return PlainTextResponse(
                "The upload session has expired.", status_code=int(self.config["expired_status"])
            )
        return None

    def _persisted(self, s: Session) -> Response:
        if s.complete:
            return JSONResponse(self.object_json(s), status_code=200)
        headers = {"Content-Length": "0"}
        if s.persisted > 0:
            headers["Range"] = f"bytes=0-{s.persisted - 1}"
        return Response(status_code=308, headers=headers)

    def _keep_limit(self, s: Session, start: int, received_end: int, final: bool) -> int:
        """Where the persisted bytes of this chunk end (exclusive)."""
        fraction = self.config["keep_fraction"]
        times = self.config["keep_times"]
        if fraction is not None and (times is None or times > 0):
            if times is not None:
                self.config["keep_times"] = times - 1
            keep = int((received_end - start) * float(fraction)) // BLOCK * BLOCK
            return start + keep
        if final:
            return received_end
        return received_end // BLOCK * BLOCK

    async def handle(self, request: Request) -> Response:
        """``PUT`` / ``DELETE`` on a session URI."""
        upload_id = request.query_params.get("upload_id", "")
        if request.query_params.get("uploadType") != "resumable" or not upload_id:
            return PlainTextResponse("uploadType=resumable and upload_id are required", 400)
        if "authorization" in request.headers:
            # The session URI is the credential; a platform token must never go here.
            with self.lock:
                self.auth_headers_seen += 1
        with self.lock:
            s = self.sessions.get(upload_id)
            if s is not None and request.url.path != f"/upload/storage/v1/b/{s.bucket}/o":
                s = None
            dead = self._dead(s)
        if dead is not None or s is None:
            await _drain(request)
            assert dead is not None
            return dead
        if request.method == "DELETE":
            with self.lock:
                s.cancelled = True
            return PlainTextResponse("", status_code=499)
        if request.method != "PUT":
            return PlainTextResponse("Method not allowed", status_code=405)
        return await self._put(request, s)

    async def _put(self, request: Request, s: Session) -> Response:
        length_header = request.headers.get("content-length")
        if length_header is None or not length_header.isdigit():
            await _drain(request)
            return PlainTextResponse("Content-Length is required", status_code=411)
        length = int(length_header)
        crange = request.headers.get("content-range")
        if crange is None:
            # The single-request upload: the whole object at once.
            start, end_incl = 0, length - 1
            total: int | None = s.size if s.size is not None else length
            if length != total:
                await _drain(request)
                return PlainTextResponse(
                    f"the body has {length} bytes but the object has {total}", status_code=400
                )
        else:
            m = _RANGE.match(crange.strip())
            if m is None:
                await _drain(request)
                return PlainTextResponse(f"Invalid Content-Range: {crange}", status_code=400)
            total = None if m.group(3) == "*" else int(m.group(3))
            if total is not None and s.size is not None and total != s.size:
                await _drain(request)
                return PlainTextResponse(
                    f"Content-Range total {total} differs from the object size {s.size}", 400
                )
            if m.group(1) is None:  # status query
                if length != 0:
                    await _drain(request)
                    return PlainTextResponse("a status query has no body", status_code=400)
                with self.lock:
                    s.status_queries += 1
                    if (
                        not s.complete
                        and total is not None
                        and s.persisted == total
                        and s.persisted > 0
                    ):
                        self._finalise(s)
                    return self._persisted(s)
            start, end_incl = int(m.group(1)), int(m.group(2))
            if end_incl < start or end_incl - start + 1 != length:
                await _drain(request)
                return PlainTextResponse(
                    f"Content-Range {crange} does not match Content-Length {length}", 400
                )
            if total is not None and end_incl >= total:
                await _drain(request)
                return PlainTextResponse(f"Content-Range {crange} is past the end", 400)
        if s.complete:
            await _drain(request)
            with self.lock:
                return self._persisted(s)
        if start > s.persisted:
            await _drain(request)
            return PlainTextResponse(
                f"Invalid request. Content-Range start {start} exceeds already uploaded size "
                f"of {s.persisted} byte(s).",
                status_code=503,
            )
        final = total is not None and end_incl + 1 == total
        if not final and length % BLOCK:
            with self.lock:
                self.unaligned_chunks += 1
        return await self._write(request, s, start, length, final, total)

    async def _write(
        self, request: Request, s: Session, start: int, length: int, final: bool, total: int | None
    ) -> Response:
        received = 0
        cut_short = False
        skip = s.persisted - start  # bytes the server already holds
        path = self.path(s)
        with path.open("r+b") as f:
            f.truncate(s.persisted)
            f.seek(s.persisted)
            try:
                async for chunk in request.stream():
                    if skip > 0:
                        drop = min(skip, len(chunk))
                        skip -= drop
                        received += drop
                        chunk = chunk[drop:]
                    if chunk:
                        f.write(chunk)
                        received += len(chunk)
            except ClientDisconnect:
                cut_short = True
            f.flush()
            with self.lock:
                self.bytes_received += received
                s.bytes_received += received
                s.chunks += 1
                if received != length:
                    cut_short = True
                got_end = start + received
                limit = self._keep_limit(s, start, got_end, final and not cut_short)
                limit = max(s.persisted, min(limit, got_end))
                if cut_short:
                    limit = max(s.persisted, got_end // BLOCK * BLOCK)
                f.truncate(limit)
                s.ranges.append((start, limit))
                s.persisted = limit
                if total is not None and s.persisted == total and not cut_short:
                    self._finalise(s)
                    return JSONResponse(self.object_json(s), status_code=200)
                if cut_short:
                    return PlainTextResponse("Incomplete body", status_code=400)
                return self._persisted(s)


async def _drain(request: Request) -> None:
    try:
        async for _ in request.stream():
            pass
    except ClientDisconnect:
        pass
