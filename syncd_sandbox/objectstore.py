"""A disk-backed object store with S3-style presigned URLs, for the sandboxes.

Strict like S3/MinIO where it matters to a client: the signature and the
expiry are checked, errors are S3 XML, a PUT needs ``Content-Length`` (no
chunked uploads), a presigned request must not carry a second credential
(``Authorization`` header → 400, as real S3 answers), and a body cut short
is never stored. Bodies stream to disk in large blocks, never into memory.

:class:`UploadGauge` counts the uploads (PUT/POST under ``/s3/``) in flight,
from the moment a request arrives (before any fault delays it) until its reply
is sent, and keeps the most seen at once: tests prove a client's concurrency
by this count, never by wall time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

WRITE_BLOCK = 4 * 1024 * 1024
# Hashes and writes received blocks while the event loop reads the next ones.
_SINK = ThreadPoolExecutor(max_workers=4, thread_name_prefix="objectstore-sink")


@dataclass
class StoredObject:
    size: int
    md5: str
    puts: int


def s3_error(status: int, code: str, message: str, resource: str = "") -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<Resource>{resource}</Resource><RequestId>{secrets.token_hex(8).upper()}</RequestId></Error>"
    )
    return Response(body, status_code=status, media_type="application/xml")


class InFlight:
    """Requests being served now and the most at once; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0

    @contextmanager
    def one(self) -> Iterator[None]:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            yield
        finally:
            with self._lock:
                self.now -= 1


class UploadGauge:
    """ASGI middleware: counts the object store's uploads (PUT or POST under ``/s3/``)
    in ``store.uploads``. Listed first, it sees a request before a fault delays it."""

    def __init__(self, app: ASGIApp, store: ObjectStore) -> None:
        self.app, self.store = app, store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in ("PUT", "POST")
            and scope["path"].startswith("/s3/")
        ):
            with self.store.uploads.one():
                await self.app(scope, receive, send)
            return
        await self.app(scope, receive, send)


class ObjectStore:
    """Objects under ``root/<bucket>/<key>``; presigned URLs signed with a private secret."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self.objects: dict[str, StoredObject] = {}
        self.bytes_received = 0
        self.uploads = InFlight()  # counted by UploadGauge
        self.clock = time.time  # tests may replace it to expire URLs

    def path(self, bucket: str, key: str) -> Path:
        return self.root / bucket / key

    def _sign(self, method: str, bucket: str, key: str, date: str, expires: int) -> str:
        msg = f"{method}\n/{bucket}/{key}\n{date}\n{expires}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def presign(self, method: str, base: str, bucket: str, key: str, expires: int = 604800) -> str:
        """``base`` is scheme://host[/prefix]; the URL is ``base/bucket/key?X-Amz-…``."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        date = now.strftime("%Y%m%dT%H%M%SZ")
        query = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"minioadmin/{now:%Y%m%d}/us-east-1/s3/aws4_request",
            "X-Amz-Date": date,
            "X-Amz-Expires": str(expires),
            "X-Amz-SignedHeaders": "host",
            "X-Amz-Signature": self._sign(method, bucket, key, date, expires),
        }
        return f"{base}/{bucket}/{quote(key)}?{urlencode(query)}"

    def check(self, request: Request, method: str, bucket: str, key: str) -> Response | None:
        """None when the presigned request is valid, else the S3 error response."""
        resource = f"/{bucket}/{key}"
        if "authorization" in request.headers:
            return s3_error(
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
                resource,
            )
        q = request.query_params
        needed = (
            "X-Amz-Algorithm",
            "X-Amz-Date",
            "X-Amz-Expires",
            "X-Amz-Signature",
            "X-Amz-Credential",
        )
        if not all(q.get(k) for k in needed):
            return s3_error(403, "AccessDenied", "Access Denied.", resource)
        try:
            expires = int(q["X-Amz-Expires"])
            signed_at = (
                datetime.strptime(q["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
            )
        except ValueError:
            return s3_error(
                400,
                "AuthorizationQueryParametersError",
                "X-Amz-Date must be in the ISO8601 Long Format",
                resource,
            )
        good = self._sign(method, bucket, key, q["X-Amz-Date"], expires)
        if not hmac.compare_digest(good, q["X-Amz-Signature"]):
            return s3_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
                resource,
            )
        if self.clock() > signed_at + expires:
            return s3_error(403, "AccessDenied", "Request has expired", resource)
        return None

    async def put(self, request: Request, bucket: str, key: str) -> Response:
        """Handle a presigned PUT: verify, then stream the body to disk."""
        denied = self.check(request, "PUT", bucket, key)
        if denied is not None:
            return denied
        length_header = request.headers.get("content-length")
        if (
            length_header is None
            or "chunked" in request.headers.get("transfer-encoding", "").lower()
        ):
            return s3_error(
                411,
                "MissingContentLength",
                "You must provide the Content-Length HTTP header.",
                f"/{bucket}/{key}",
            )
        length = int(length_header)
        final = self.path(bucket, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.part")
        md5 = hashlib.md5()
        received = 0
        buf = bytearray()
        pending: list[asyncio.Future[Any]] = []
        loop = asyncio.get_running_loop()

        async def settle() -> None:
            done = await asyncio.gather(*pending, return_exceptions=True)
            pending.clear()
            for outcome in done:
                if isinstance(outcome, BaseException):
                    raise outcome

        try:
            with tmp.open("wb", buffering=0) as f:
                try:
                    async for chunk in request.stream():
                        received += len(chunk)
                        buf += chunk
                        if len(buf) >= WRITE_BLOCK:
                            # At most one block in flight (memory stays flat). Hashing
                            # and writing run on two threads at once, off the event
                            # loop; both release the GIL on large blocks, so the loop
                            # keeps receiving meanwhile.
                            await settle()
                            pending += [
                                loop.run_in_executor(_SINK, md5.update, buf),
                                loop.run_in_executor(_SINK, f.write, buf),
                            ]
                            buf = bytearray()
                finally:
                    await settle()  # never leave a block in flight past the file's close
                if buf:
                    md5.update(buf)
                    f.write(buf)
        except ClientDisconnect:
            tmp.unlink(missing_ok=True)
            return Response(status_code=400)
        with self._lock:
            self.bytes_received += received
        if received != length:
            tmp.unlink(missing_ok=True)
            return s3_error(
                400,
                "IncompleteBody",
                "You did not provide the number of bytes specified by the Content-Length HTTP header.",
                f"/{bucket}/{key}",
            )
        os.replace(tmp, final)
        digest = md5.hexdigest()
        name = f"{bucket}/{key}"
        with self._lock:
            prev = self.objects.get(name)
            self.objects[name] = StoredObject(
                size=received, md5=digest, puts=(prev.puts if prev else 0) + 1
            )
        return Response(status_code=200, headers={"ETag": f'"{digest}"'})

    def get(self, request: Request, bucket: str, key: str) -> Response:
        denied = self.check(request, "GET", bucket, key)
        if denied is not None:
            return denied
        path = self.path(bucket, key)
        if not path.is_file():
            return s3_error(
                404, "NoSuchKey", "The specified key does not exist.", f"/{bucket}/{key}"
            )
        return FileResponse(path)

    def exists(self, bucket: str, key: str) -> bool:
        return f"{bucket}/{key}" in self.objects
