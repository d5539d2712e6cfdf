"""The client side of a Google Cloud Storage resumable upload (docs/platforms/deepen.md).

Contract of :class:`ResumableUpload` (one session URI, one object of ``total`` bytes):

* :meth:`status` sends the status query (empty ``PUT``, ``Content-Range:
  bytes */total``) and returns how many bytes the server holds: 308 with
  ``Range: bytes=0-N`` → N + 1, 308 without ``Range`` → 0 (nothing yet; never
  read as one byte), 200/201 → complete (the object JSON is kept).
* :meth:`send` continues from what the server holds, in ``Content-Range``
  chunks of ``chunk_size`` (a multiple of 256 KiB; only the last chunk may
  be shorter). After each 308 it continues at the server's ``Range`` end,
  resending from its buffer whatever the server did not keep. Transient
  failures (network, 408/429/5xx, a 503 for a gap) are retried after a new
  status query, with backoff; the retry budget is refilled whenever the
  server persisted more, so a long upload over a flaky link keeps going, and
  a server that keeps nothing of three chunks in a row counts as a failure.
* 404, 410 (expired) and 499 (cancelled) raise UploadSessionExpired; other
  4xx raise PermanentError. The final object must have ``total`` bytes, and,
  when this call streamed the whole archive, the same MD5 as what was sent.
* Requests carry no ``Authorization``: the session URI is the credential.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from syncd.errors import PermanentError, TransientError, UploadSessionExpired
from syncd.remotes.base import OffsetSource
from syncd.remotes.http import status_error
from syncd.remotes.objectstore import transport_error

BLOCK = 256 * 1024
STALL_LIMIT = 3
_RANGE = re.compile(r"^bytes=0-(\d+)$")


@dataclass
class SendStats:
    """What one :meth:`ResumableUpload.send` did (for events and tests)."""

    resumed_from: int = 0
    bytes_sent: int = 0
    chunks: int = 0
    status_queries: int = 0
    retries: int = 0
    kept_less: int = 0  # replies where the server kept less than the chunk


class ResumableUpload:
    """One GCS resumable session (see module docstring)."""

    def __init__(
        self,
        client: httpx.Client,
        url: str,
        total: int,
        *,
        chunk_size: int,
        platform: str,
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
    ) -> None:
        if chunk_size <= 0 or chunk_size % BLOCK:
            raise ValueError(f"chunk_size must be a multiple of {BLOCK}, not {chunk_size}")
        self.client, self.url, self.total = client, url, total
        self.chunk_size, self.platform = chunk_size, platform
        self.max_retries, self.backoff_base, self.backoff_cap = (
            max_retries,
            backoff_base,
            backoff_cap,
        )
        self.object: dict[str, Any] | None = None
        self.stats = SendStats()
        self.held_most = 0  # the most the server has said it holds

    # --- one request ---------------------------------------------------------------

    def _put(self, content: bytes, content_range: str) -> httpx.Response:
        what = f"PUT upload session ({content_range})"
        try:
            # The body goes as a one-shot iterator with an explicit length: httpx
            # keeps a request's content reachable from a response <-> stream cycle
            # until the garbage collector runs, so bytes given as ``content`` would
            # keep every 8 MiB chunk alive; an exhausted generator holds nothing.
            return self.client.put(
                self.url,
                content=_once(content),
                headers={
                    "Content-Range": content_range,
                    "Content-Type": "application/zip",
                    "Content-Length": str(len(content)),
                },
            )
        except httpx.TransportError as exc:
            # The kit's one rule: an untrusted certificate is permanent, the rest transient.
            raise transport_error(exc, what, self.platform) from exc

    def _persisted(self, response: httpx.Response) -> int | None:
        """Bytes held after this reply, or None when the upload is complete."""
        code = response.status_code
        if code == 308:
            rng = response.headers.get("Range")
            if not rng:
                return 0  # nothing persisted yet
            m = _RANGE.match(rng.strip())
            if m is None:
                raise TransientError(
                    f"upload session: unreadable Range header {rng!r}", platform=self.platform
                )
            held = int(m.group(1)) + 1
            self.held_most = max(self.held_most, held)
            return held
        if code in (200, 201):
            try:
                obj = response.json()
            except ValueError:
                obj = {}
            self.object = obj if isinstance(obj, dict) else {}
            size = self.object.get("size")
            if size is not None and int(size) != self.total:
                raise PermanentError(
                    f"the stored object has {size} bytes, expected {self.total}",
                    platform=self.platform,
                )
            return None
        if code in (404, 410, 499):
            reason = {404: "unknown", 410: "expired", 499: "cancelled"}[code]
            raise UploadSessionExpired(
                f"the upload session is {reason} (HTTP {code}): a new one is needed",
                platform=self.platform,
                code=str(code),
            )
        transient = status_error(response, self.platform)
        if transient is not None:
            raise transient
        raise PermanentError(
            f"upload session: HTTP {code}: {response.text[:200]}",
            platform=self.platform,
            code=str(code),
        )

    def status(self) -> int | None:
        """Bytes the server holds (0: nothing yet), or None when the object is complete."""
        self.stats.status_queries += 1
        return self._persisted(self._put(b"", f"bytes */{self.total}"))

    # --- the whole upload ------------------------------------------------------------

    def send(self, body_from: OffsetSource, *, fresh: bool = False) -> dict[str, Any]:
        """Upload whatever the server lacks; returns the object JSON (see module docstring).

        ``fresh``: the session was opened by this process and nothing was sent
        to it yet, so the first status query is skipped (as Google's client
        does); every later attempt asks the server first.
        """
        failures = 0
        while True:
            before = self.held_most
            try:
                return self._attempt(body_from, skip_status=fresh)
            except TransientError as exc:
                fresh = False
                failures = 0 if self._progressed(before) else failures + 1
                if failures > self.max_retries:
                    raise
                self.stats.retries += 1
                wait = min(self.backoff_cap, self.backoff_base * 2 ** max(0, failures - 1))
                time.sleep(random.uniform(0, wait) if not isinstance(exc, _Gap) else 0)

    def _progressed(self, before: int) -> bool:
        """Did the server persist more since ``before``? (Bytes sent are no progress.)"""
        return self.held_most > before

    def _attempt(self, body_from: OffsetSource, *, skip_status: bool) -> dict[str, Any]:
        held = 0 if skip_status else self.status()
        if held is None:
            return self.object or {}
        self.stats.resumed_from = held if self.stats.chunks == 0 else self.stats.resumed_from
        whole = held == 0
        md5 = hashlib.md5() if whole else None
        stream: Iterator[bytes] = iter(body_from(held))
        pending = bytearray()
        pos = held  # archive offset of pending[0]
        ended = False
        stalls = 0  # chunks in a row of which the server kept nothing
        while True:
            while not ended and len(pending) < self.chunk_size:
                try:
                    piece = next(stream)
                except StopIteration:
                    ended = True
                    break
                if md5 is not None:
                    md5.update(piece)
                pending += piece
            if pos + len(pending) > self.total:
                raise PermanentError(
                    f"the archive is larger than the {self.total} bytes announced",
                    platform=self.platform,
                )
            last = ended and pos + len(pending) == self.total
            if ended and not last:
                raise PermanentError(
                    f"the archive ended at {pos + len(pending)} of {self.total} bytes",
                    platform=self.platform,
                )
            n = len(pending) if last and len(pending) <= self.chunk_size else self.chunk_size
            if n == 0:
                # Everything is held but the object was not finalised: ask again.
                held = self.status()
                if held is None:
                    return self.object or {}
                raise TransientError("the server holds every byte but did not finish")
            with memoryview(pending) as view:  # one copy of the chunk, not two
                chunk = bytes(view[:n])
            reply = self._put(chunk, f"bytes {pos}-{pos + n - 1}/{self.total}")
            self.stats.chunks += 1
            self.stats.bytes_sent += n
            if reply.status_code == 503 and "exceeds already uploaded size" in reply.text:
                raise _Gap(f"the server holds less than we thought: {reply.text[:120]}")
            held = self._persisted(reply)
            if held is None:
                if md5 is not None and self.object and self.object.get("md5Hash"):
                    sent = base64.b64encode(md5.digest()).decode()
                    if sent != self.object["md5Hash"]:
                        raise PermanentError(
                            f"the stored object's MD5 {self.object['md5Hash']} differs from "
                            f"the archive's {sent}",
                            platform=self.platform,
                        )
                return self.object or {}
            if held < pos or held > pos + n:
                # The server lost bytes before this chunk (or claims more): start over from it.
                raise TransientError(
                    f"the server holds {held} bytes after a chunk at {pos}..{pos + n - 1}",
                    platform=self.platform,
                )
            if held < pos + n:
                self.stats.kept_less += 1
            stalls = stalls + 1 if held == pos else 0
            if stalls >= STALL_LIMIT:
                raise TransientError(
                    f"the server kept none of the last {stalls} chunks at byte {pos}",
                    platform=self.platform,
                )
            del pending[: held - pos]
            pos = held


def _once(data: bytes) -> Iterator[bytes]:
    """``data`` as a body that lets go of it once sent (see :meth:`ResumableUpload._put`)."""
    yield data


class _Gap(TransientError):
    """503 "exceeds already uploaded size": resume from a fresh status query at once."""
