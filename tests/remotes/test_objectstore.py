"""The object-store kit: one TLS rule and one fresh-URL count for every backend that uses it.

Each backend is driven through its own upload method with both of its clients
answered by an in-process mock: the API hands out presigned URLs (or, for
Segments.ai, asset forms), the store fails in the way under test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from syncd.config import remote_config
from syncd.errors import PermanentError, TransientError
from syncd.remotes import build_remote
from syncd.remotes.base import PushFile, Remote
from syncd.remotes.http import Http
from syncd.remotes.objectstore import FRESH_URL_TRIES, ObjectStore, s3_code

TLS_FAILURE = (
    "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
    "self-signed certificate in certificate chain (_ssl.c:1000)"
)
EXPIRED = "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
STORE = "http://store.test"


@dataclass
class Counts:
    presigned: int = 0
    sent: int = 0


def _api(platform: str, counts: Counts) -> Callable[[httpx.Request], httpx.Response]:
    """The platform's API: every call that hands out an upload target is counted."""

    def handle(request: httpx.Request) -> httpx.Response:
        counts.presigned += 1
        n = counts.presigned
        if platform == "xtreme1":
            data = {"presignedUrl": f"{STORE}/put/{n}?sig=s", "accessUrl": f"{STORE}/put/{n}"}
            return httpx.Response(200, json={"code": "OK", "message": "", "data": data})
        if platform == "basicai":
            files = request.read().count(b"deviceName")
            data = [{"preSignedUrl": f"{STORE}/put/{n}?sig=s", "path": f"p/{n}"}] * files
            return httpx.Response(200, json={"code": "OK", "message": "", "data": data})
        form = {"url": f"{STORE}/post", "fields": {"key": f"k/{n}", "policy": "p"}}
        return httpx.Response(201, json={"url": f"{STORE}/k/{n}", "presignedPostFields": form})

    return handle


def _remote(platform: str, store: Callable[[httpx.Request], httpx.Response]) -> tuple[Any, Counts]:
    counts = Counts()
    remote: Any = build_remote(
        "lab", remote_config(platform=platform, url="http://api.test", token="t"), max_retries=2
    )
    remote.http.backoff_base = remote.http.backoff_cap = 0.0

    def counted(request: httpx.Request) -> httpx.Response:
        counts.sent += 1
        return store(request)

    remote.http.client._transport = httpx.MockTransport(_api(platform, counts))
    remote.store.client._transport = httpx.MockTransport(counted)
    return remote, counts


def _upload(platform: str, remote: Any) -> None:
    data = b"0123456789"
    if platform == "xtreme1":
        remote.upload_archive("1", "a.zip", len(data), lambda: iter([data]))
        return
    f = PushFile(
        key="u/camera_image_0/a.jpg",
        device="camera_image_0",
        filename="a.jpg",
        size=len(data),
        body=lambda: iter([data]),
    )
    remote.upload_files("o/d", [f])


KIT_BACKENDS = ["xtreme1", "basicai", "segments"]


@pytest.mark.parametrize("platform", KIT_BACKENDS)
def test_every_object_store_backend_uses_the_kit(platform: str) -> None:
    remote, _ = _remote(platform, lambda r: httpx.Response(204))
    try:
        assert isinstance(remote.store, ObjectStore)
        _upload(platform, remote)
    finally:
        remote.close()


@pytest.mark.parametrize("platform", KIT_BACKENDS)
def test_an_untrusted_certificate_is_permanent_and_not_retried(platform: str) -> None:
    def store(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(TLS_FAILURE, request=request)

    remote, counts = _remote(platform, store)
    try:
        with pytest.raises(PermanentError) as info:
            _upload(platform, remote)
    finally:
        remote.close()
    assert info.value.code == "tls" and "ca_bundle" in str(info.value)
    assert counts.sent == 1  # no retry: only a new ca_bundle can help
    assert "sig=" not in str(info.value)


@pytest.mark.parametrize("platform", KIT_BACKENDS)
def test_a_broken_connection_is_transient_and_retried(platform: str) -> None:
    def store(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    remote, counts = _remote(platform, store)
    try:
        with pytest.raises(TransientError):
            _upload(platform, remote)
    finally:
        remote.close()
    assert counts.sent == 3  # max_retries = 2


@pytest.mark.parametrize("platform", KIT_BACKENDS)
def test_an_expired_url_is_renewed_the_same_number_of_times(platform: str) -> None:
    remote, counts = _remote(platform, lambda r: httpx.Response(403, text=EXPIRED))
    try:
        with pytest.raises(TransientError, match=f"expired {FRESH_URL_TRIES} times in a row"):
            _upload(platform, remote)
    finally:
        remote.close()
    assert FRESH_URL_TRIES == 3
    assert counts.presigned == FRESH_URL_TRIES  # the first URL and two fresh ones
    assert counts.sent == FRESH_URL_TRIES  # an expired URL is not retried as it is


@pytest.mark.parametrize("platform", KIT_BACKENDS)
def test_one_expiry_costs_one_fresh_url(platform: str) -> None:
    replies = [httpx.Response(403, text=EXPIRED), httpx.Response(204)]
    remote, counts = _remote(platform, lambda r: replies.pop(0))
    try:
        _upload(platform, remote)
    finally:
        remote.close()
    assert (counts.presigned, counts.sent) == (2, 2)


@pytest.mark.parametrize("platform", KIT_BACKENDS)
def test_other_store_errors_name_the_s3_code(platform: str) -> None:
    body = "<Error><Code>EntityTooLarge</Code></Error>"
    remote, _ = _remote(platform, lambda r: httpx.Response(400, text=body))
    try:
        with pytest.raises(PermanentError, match="HTTP 400: EntityTooLarge") as info:
            _upload(platform, remote)
    finally:
        remote.close()
    assert info.value.code == "400"


def test_the_size_guard_refuses_a_file_that_grew() -> None:
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(204)))
    store = ObjectStore(client, Http(client, platform="x", max_retries=0), "x")
    with pytest.raises(TransientError, match=r"a\.zip grew beyond 4 bytes"):
        store.put(f"{STORE}/a", "a.zip", 4, lambda: iter([b"12345"]), "application/zip")
    with pytest.raises(TransientError, match=r"a\.jpg was 3 bytes, expected 4"):
        store.post_form(f"{STORE}/", {"key": "k"}, "a.jpg", "a.jpg", 4, lambda: iter([b"123"]))


def test_the_form_upload_carries_the_policy_fields_then_the_file() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(204)

    client = httpx.Client(transport=httpx.MockTransport(handle))
    store = ObjectStore(client, Http(client, platform="x", max_retries=0), "x")
    store.post_form(
        f"{STORE}/", {"key": "k/1", "policy": "p"}, "a.jpg", "u/a.jpg", 3, lambda: [b"abc"]
    )
    body = seen[0].content
    assert int(seen[0].headers["Content-Length"]) == len(body)
    assert body.index(b'name="key"') < body.index(b'name="policy"') < body.index(b"abc")
    assert b'name="file"; filename="a.jpg"' in body


def test_s3_code() -> None:
    assert s3_code(EXPIRED) == "AccessDenied"
    assert s3_code("") == "(empty body)"
    assert s3_code("plain words") == "plain words"


def test_remote_type_is_the_core_protocol() -> None:
    remote: Remote = build_remote(
        "lab", remote_config(platform="segments", url="http://api.test", token="t")
    )
    try:
        assert not hasattr(remote, "upload_archive") and not hasattr(remote, "find_import")
    finally:
        remote.close()


def test_the_resumable_session_follows_the_same_tls_rule() -> None:
    """Deepen's GCS session is not a presigned URL, but its transport errors map the same way."""
    from syncd.remotes.gcs_resumable import BLOCK, ResumableUpload

    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        raise httpx.ConnectError(TLS_FAILURE, request=request)

    client = httpx.Client(transport=httpx.MockTransport(handle))
    session = ResumableUpload(
        client, f"{STORE}/upload?upload_id=1", 10, chunk_size=BLOCK, platform="deepen"
    )
    with pytest.raises(PermanentError) as info:
        session.send(lambda offset: [b"0123456789"[offset:]], fresh=True)
    assert info.value.code == "tls" and len(sent) == 1
