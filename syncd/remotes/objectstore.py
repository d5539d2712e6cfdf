"""Uploads to an object store through presigned URLs: the one copy every backend uses.

Xtreme1 (MinIO) and BasicAI hand out presigned PUT URLs, Segments.ai a
presigned POST (an S3 form policy). The store is not the platform's API: its
replies are S3's (XML errors), and it must never see the API token, so these
requests go through the backend's second client, the one without credentials
(:func:`syncd.remotes.http.platform_clients`).

Contract:

* :meth:`ObjectStore.put` / :meth:`ObjectStore.post_form` send one file under
  the backend's retry policy (:meth:`syncd.remotes.http.Http.call`), with an
  exact ``Content-Length`` (object stores refuse chunked uploads) and the size
  guard of :func:`syncd.streams.exactly` (a file that changes while it is sent
  is a TransientError, never an object cut short). Both are harmless to
  repeat: each call overwrites or adds an object, nothing is registered.
* Replies: 2xx is success; 408/425/429/5xx are transient (retried);
  a 403 whose body says "expired" raises :class:`ExpiredUrl` (not retried with
  the same URL); any other status is a PermanentError naming the S3 error code
  of the XML body (:func:`s3_code`), never the URL.
* Transport failures (:func:`transport_error`): a timeout or a broken
  connection is transient; a TLS certificate that is not trusted is permanent
  (code ``tls``), for every backend and the same as for API calls in
  :meth:`syncd.remotes.http.Http.request`. Retrying cannot make a certificate
  trusted: the remote's ``ca_bundle`` must change, so the package fails at
  once with that advice instead of backing off for hours (``syncd retry``
  after the fix). Before this module BasicAI and Segments.ai retried it.
* :meth:`ObjectStore.with_fresh_url` asks the platform for a new URL when one
  expired, :data:`FRESH_URL_TRIES` tries in all (the first URL included), then
  raises a TransientError (the package backs off). A URL expires when it waited
  out a backoff or a slow link, so one fresh URL is normally enough; one more
  allows a second slow send; a URL that expires again at once means the
  clocks disagree, and asking faster does not help.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import httpx

from syncd.errors import PermanentError, RemoteError, TransientError
from syncd.log import get_logger
from syncd.remotes.base import ByteSource
from syncd.remotes.http import Http, is_tls_failure, status_error, transport_reason
from syncd.streams import exactly

T = TypeVar("T")

# Tries with a presigned URL, the first one included: see the module docstring.
FRESH_URL_TRIES = 3


class ExpiredUrl(Exception):
    """The presigned URL (or POST policy) expired before the upload: ask for a fresh one.

    Not a RemoteError on purpose: :meth:`Http.call` must not retry it with the
    same URL; :meth:`ObjectStore.with_fresh_url` catches it.
    """


def s3_code(xml_text: str) -> str:
    """The ``<Code>`` of an S3 XML error body, else the start of the body."""
    start, end = xml_text.find("<Code>"), xml_text.find("</Code>")
    if start >= 0 and end > start:
        return xml_text[start + 6 : end]
    return xml_text[:120] or "(empty body)"


def transport_error(exc: httpx.TransportError, what: str, platform: str) -> RemoteError:
    """The error for a request to the store that got no reply (see the module docstring)."""
    if isinstance(exc, httpx.TimeoutException):
        return TransientError(f"{what}: timed out", platform=platform)
    if is_tls_failure(exc):
        return PermanentError(f"{what}: {transport_reason(exc)}", platform=platform, code="tls")
    return TransientError(f"{what}: {transport_reason(exc)}", platform=platform)


def reply_error(response: httpx.Response, what: str, platform: str, store: str) -> None:
    """Raise for a store reply that is not a success; return on 2xx."""
    status = response.status_code
    if 200 <= status < 300:
        return
    transient = status_error(response, platform)
    if transient is not None:
        raise transient
    text = response.text[:500]
    if status == 403 and "expired" in text.lower():
        raise ExpiredUrl(f"{what}: the presigned URL expired")
    raise PermanentError(
        f"{what}: the {store} answered HTTP {status}: {s3_code(text)}",
        platform=platform,
        code=str(status),
    )


@dataclass(frozen=True)
class ObjectStore:
    """A backend's way to its object store: the credential-free client and the retry policy."""

    client: httpx.Client  # never carries the API token
    http: Http  # the backend's retry policy (and its quiet logging)
    platform: str
    store: str = "object store"  # how errors name it ("asset store" for Segments.ai)

    def put(self, url: str, what: str, size: int, body: ByteSource, content_type: str) -> None:
        """Presigned PUT of exactly ``size`` bytes (``body()`` is called once per try)."""
        self._send(
            f"PUT {what}",
            lambda: self.client.put(
                url,
                content=exactly(body(), size, what),
                headers={"Content-Length": str(size), "Content-Type": content_type},
            ),
        )

    def post_form(
        self,
        url: str,
        fields: dict[str, str],
        filename: str,
        what: str,
        size: int,
        body: ByteSource,
    ) -> None:
        """Presigned POST: the policy's ``fields``, then the file (an S3 form upload)."""

        def request() -> httpx.Response:
            head, tail, boundary = _form_parts(fields, filename)

            def stream() -> Iterator[bytes]:
                yield head
                yield from exactly(body(), size, what)
                yield tail

            return self.client.post(
                url,
                content=stream(),
                headers={
                    "Content-Type": f"multipart/form-data; boundary={boundary}",
                    "Content-Length": str(len(head) + size + len(tail)),
                },
            )

        self._send(f"POST {what}", request)

    def _send(self, label: str, request: Callable[[], httpx.Response]) -> None:
        """One logical request to the store under the retry policy; ``label`` names it."""

        def once() -> None:
            try:
                response = request()
            except httpx.TransportError as exc:
                raise transport_error(exc, label, self.platform) from exc
            reply_error(response, label, self.platform, self.store)

        self.http.call(once)

    def with_fresh_url(
        self,
        what: str,
        presign: Callable[[], T],
        send: Callable[[T], None],
        *,
        first: T | None = None,
    ) -> T:
        """``send(target)`` with ``first`` (or ``presign()``), then with fresh targets while the
        URL expired, :data:`FRESH_URL_TRIES` tries in all; returns the target that worked."""
        for _ in range(FRESH_URL_TRIES):
            target = presign() if first is None else first
            first = None
            try:
                send(target)
            except ExpiredUrl as exc:
                get_logger().warning("remote.retry", platform=self.platform, error=str(exc))
                continue
            return target
        raise TransientError(
            f"{what}: the presigned URL expired {FRESH_URL_TRIES} times in a row "
            "(is the platform's clock right?)",
            platform=self.platform,
        )


def form_quote(value: str) -> str:
    """A name or filename for a multipart header, escaped as browsers do (WHATWG HTML,
    "multipart/form-data encoding algorithm"): a quote or a line break must not end
    the header or start a new one."""
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def _form_parts(fields: dict[str, str], filename: str) -> tuple[bytes, bytes, str]:
    """The multipart head (the policy's fields, then the file part's header) and tail."""
    boundary = secrets.token_hex(16)
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{form_quote(k)}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    )
    content_type = fields.get("Content-Type", "application/octet-stream")
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{form_quote(filename)}"\r\nContent-Type: {content_type}\r\n\r\n'
    ).encode()
    return head, f"\r\n--{boundary}--\r\n".encode(), boundary
