"""BasicAI replies map to our errors in one place; the client keeps within the windows."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from syncd.config import BasicAIConfig
from syncd.errors import (
    AuthError,
    NotFoundError,
    PermanentError,
    RateLimited,
    RemoteRejected,
    TransientError,
)
from syncd.remotes.basicai import BasicAIRemote, classify
from syncd_sandbox import run_in_thread
from tests.conftest import TOKEN, admin_call


def reply(status: int, content: str, headers: dict[str, str] | None = None) -> httpx.Response:
    req = httpx.Request("GET", "http://x/api/v1/dataset/list?pageNo=1")
    return httpx.Response(
        status,
        content=content.encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        request=req,
    )


def test_ok_in_either_case_returns_data() -> None:
    assert classify(reply(200, '{"code":"OK","message":"Ok","data":[1]}')) == [1]
    assert classify(reply(200, '{"code":"ok","message":"","data":{"list":[]}}')) == {"list": []}


@pytest.mark.parametrize(
    ("status", "body", "error", "code"),
    [
        (401, "", AuthError, "401"),
        (403, "<html>", AuthError, "403"),
        (404, "", PermanentError, "404"),
        (405, "", PermanentError, "405"),
        (400, "{}", PermanentError, "400"),
        (429, "", RateLimited, "429"),
        (502, "<html>bad gateway</html>", TransientError, "502"),
        (503, "", TransientError, "503"),
        (
            200,
            '{"code":"RESOURCE_NOT_FOUND","message":"gone","data":null}',
            NotFoundError,
            "RESOURCE_NOT_FOUND",
        ),
        (
            200,
            '{"code":"NAME_DUPLICATED","message":"dup","data":null}',
            RemoteRejected,
            "NAME_DUPLICATED",
        ),
        (
            200,
            '{"code":"ILLEGAL_PARAM","message":"limit","data":null}',
            RemoteRejected,
            "ILLEGAL_PARAM",
        ),
        (200, '{"code":"LICENSE_EXPIRED","message":"","data":null}', AuthError, "LICENSE_EXPIRED"),
        (200, '{"code":"ERROR","message":"Too many requests","data":null}', RateLimited, "ERROR"),
        (
            200,
            '{"code":"OPERATION_FAILED","message":"x","data":null}',
            RemoteRejected,
            "OPERATION_FAILED",
        ),
    ],
)
def test_replies_map_to_our_errors(
    status: int, body: str, error: type[Exception], code: str
) -> None:
    with pytest.raises(error) as info:
        classify(reply(status, body))
    assert getattr(info.value, "code", None) == code
    assert "pageNo" not in str(info.value)  # never the query string


def test_200_without_an_envelope_is_transient() -> None:
    with pytest.raises(TransientError):
        classify(reply(200, "<html>maintenance</html>"))
    with pytest.raises(TransientError):
        classify(reply(200, '{"list": []}'))


def test_a_429_is_retried_after_retry_after(tmp_path: Path) -> None:
    with run_in_thread("basicai", token=TOKEN, data_dir=tmp_path) as url:
        admin_call(
            url,
            "POST",
            "/faults",
            json={
                "path": "dataset/list",
                "action": "status",
                "status": 429,
                "headers": {"Retry-After": "0.1"},
                "times": 2,
            },
        )
        r = BasicAIRemote("b", BasicAIConfig(platform="basicai", url=url, token=TOKEN), TOKEN)
        try:
            assert "accepted" in r.check()
            assert r.http.requests_sent == 3
        finally:
            r.close()


def test_the_client_keeps_within_every_window(tmp_path: Path) -> None:
    """Windows scaled down (the real ones take an hour to fill): no 429 however hard we pull."""
    windows = [(10, 0.5), (25, 2.0)]
    with run_in_thread("basicai", token=TOKEN, data_dir=tmp_path) as url:
        admin_call(url, "POST", "/config", json={"rate_windows": [list(w) for w in windows]})
        limits = tuple(f"{n}/{s}s" for n, s in windows)
        cfg = BasicAIConfig(
            platform="basicai", url=url, token=TOKEN, max_retries=0, rate_limits=limits
        )
        r = BasicAIRemote("b", cfg, TOKEN)
        try:
            for _ in range(40):
                r.check()
        finally:
            r.close()
        counters = admin_call(url, "GET", "/counters")
    assert counters["rejected_429"] == 0 and counters["api_requests"] == 40
