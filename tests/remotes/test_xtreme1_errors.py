"""Xtreme1 replies map to our errors in one place; retries obey the policy."""

from __future__ import annotations

import httpx
import pytest

from syncd.config import Xtreme1Config
from syncd.errors import (
    AuthError,
    NotFoundError,
    PermanentError,
    RateLimited,
    RemoteRejected,
    TransientError,
)
from syncd.remotes.http import Http, retry_after_seconds
from syncd.remotes.xtreme1 import Xtreme1Remote, classify


def reply(
    status: int,
    content: bytes | str,
    ctype: str = "application/json",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    req = httpx.Request("GET", "http://x/api/dataset/findByPage?token=secret")
    return httpx.Response(
        status,
        content=content.encode() if isinstance(content, str) else content,
        headers={"Content-Type": ctype, **(headers or {})},
        request=req,
    )


def test_ok_envelope_returns_data_even_as_text_plain() -> None:
    assert (
        classify(
            reply(200, '{"code":"OK","message":"","data":"1800412349001234432"}', "text/plain")
        )
        == "1800412349001234432"
    )


@pytest.mark.parametrize(
    ("status", "body", "error", "code"),
    [
        (
            401,
            '{"code":"LOGIN_STATUS_TIMEOUT","message":"User login status timeout","data":null}',
            AuthError,
            "LOGIN_STATUS_TIMEOUT",
        ),
        (
            200,
            '{"code":"DATASET_NAME_DUPLICATED","message":"dup","data":null}',
            RemoteRejected,
            "DATASET_NAME_DUPLICATED",
        ),
        (200, '{"code":"NOT_FOUND","message":"x","data":null}', NotFoundError, "NOT_FOUND"),
        (
            200,
            '{"code":"PARAM_ERROR","message":"[\\"datasetId cannot be null\\"]","data":null}',
            RemoteRejected,
            "PARAM_ERROR",
        ),
        (
            500,
            '{"code":"UNKNOWN","message":"org.springframework.web.bind.MissingServletRequestParameterException: x","data":null}',
            PermanentError,
            "UNKNOWN",
        ),
        (
            500,
            '{"code":"UNKNOWN","message":"java.sql.SQLTransientConnectionException","data":null}',
            TransientError,
            "500",
        ),
        (502, "<html><body>Bad Gateway</body></html>", TransientError, "502"),
        (404, "<html>nope</html>", PermanentError, "404"),
    ],
)
def test_error_mapping(status: int, body: str, error: type[Exception], code: str) -> None:
    with pytest.raises(error) as e:
        classify(reply(status, body))
    assert getattr(e.value, "code", None) == code
    assert "secret" not in str(e.value)


def test_html_or_truncated_json_with_200_is_transient() -> None:
    with pytest.raises(TransientError, match="not JSON"):
        classify(reply(200, "<html>login</html>", "text/html"))
    with pytest.raises(TransientError, match="not JSON"):
        classify(reply(200, '{"code":"OK","da'))


def test_429_carries_retry_after() -> None:
    with pytest.raises(RateLimited) as e:
        classify(reply(429, "", headers={"Retry-After": "7"}))
    assert e.value.retry_after == 7.0
    assert retry_after_seconds(reply(429, "")) is None


def test_retries_transient_then_succeeds_and_never_retries_permanent() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if request.url.path.endswith("/flaky") and calls["n"] < 3:
            return httpx.Response(503, json={"code": "UNKNOWN"})
        if request.url.path.endswith("/denied"):
            return httpx.Response(401, json={"code": "LOGIN_STATUS_TIMEOUT"})
        return httpx.Response(200, json={"code": "OK", "message": "", "data": 42})

    http = Http(
        httpx.Client(transport=httpx.MockTransport(handler)),
        platform="xtreme1",
        max_retries=3,
        backoff_base=0.001,
        backoff_cap=0.01,
    )
    assert http.request("GET", "http://x/flaky", classify) == 42
    assert calls["n"] == 3
    calls["n"] = 0
    with pytest.raises(AuthError):
        http.request("GET", "http://x/denied", classify)
    assert calls["n"] == 1


def test_gives_up_after_max_retries() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        return httpx.Response(503, json={"code": "UNKNOWN"})

    http = Http(
        httpx.Client(transport=httpx.MockTransport(handler)),
        platform="xtreme1",
        max_retries=2,
        backoff_base=0.001,
        backoff_cap=0.01,
    )
    with pytest.raises(TransientError):
        http.request("GET", "http://x/a", classify)
    assert calls["n"] == 3


def test_put_never_carries_the_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("generatePresignedUrl"):
            return httpx.Response(
                200,
                json={
                    "code": "OK",
                    "data": {
                        "presignedUrl": "http://x/minio/b/k.zip?X-Amz-Signature=s",
                        "accessUrl": "http://minio:9000/b/k.zip?X-Amz-Signature=s",
                    },
                },
            )
        return httpx.Response(200)

    remote = Xtreme1Remote(
        "lab", Xtreme1Config(platform="xtreme1", url="http://x", token="tok"), "tok"
    )
    transport = httpx.MockTransport(handler)
    remote.http.client._transport = transport
    remote._put_client._transport = transport
    up = remote.upload_archive("1", "a.zip", 5, lambda: iter([b"hello"]))
    put = seen[-1]
    assert put.method == "PUT" and "authorization" not in put.headers
    assert put.headers["content-length"] == "5" and put.content == b"hello"
    assert seen[0].headers["authorization"] == "Bearer tok"
    assert up.ref["accessUrl"].startswith("http://minio:9000/")
