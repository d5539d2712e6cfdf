"""Retries are logged quietly: a new error at once, the same one at most every 30 s with a count."""

from __future__ import annotations

import httpx
import pytest
from structlog.testing import capture_logs

from syncd.errors import PermanentError, TransientError
from syncd.remotes import http as http_mod
from syncd.remotes.http import Http


def make() -> Http:
    h = Http(httpx.Client(), platform="x", max_retries=30, backoff_base=0.0001, backoff_cap=0.0001)
    return h


def test_identical_errors_are_logged_once_then_recovered_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = make()
    tries = iter(range(1000))

    def flaky() -> str:
        n = next(tries)
        if n < 25:
            raise TransientError(f"GET /api/x: HTTP 503 (try {n})")
        return "ok"

    with capture_logs() as logs:
        assert h.call(flaky) == "ok"
    retries = [e for e in logs if e["event"] == "remote.retry"]
    recovered = [e for e in logs if e["event"] == "remote.recovered"]
    assert len(retries) == 1  # 25 identical failures within 30 s: one line
    assert recovered == [
        {"event": "remote.recovered", "platform": "x", "after_failures": 25, "log_level": "info"}
    ]


def test_a_new_kind_of_error_and_the_quiet_period_log_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = make()
    clock = [1000.0]
    monkeypatch.setattr(http_mod.time, "monotonic", lambda: clock[0])
    errors = ["HTTP 503", "HTTP 503", "connection reset", "connection reset"]

    def failing() -> str:
        clock[0] += 1
        raise TransientError(errors.pop(0) if errors else "connection reset")

    h.max_retries = 3
    with capture_logs() as logs, pytest.raises(TransientError):
        h.call(failing)
    assert [e["error"] for e in logs if e["event"] == "remote.retry"] == [
        "HTTP 503",
        "connection reset",
    ]
    clock[0] += 31  # past the quiet period: the same error is worth a line again, with the count
    errors[:] = ["connection reset"]
    h.max_retries = 0
    with capture_logs() as logs, pytest.raises(TransientError):
        h.call(failing)
    [line] = [e for e in logs if e["event"] == "remote.retry"]
    assert line["failures"] == 5


def test_permanent_errors_and_cancellation_are_never_retried() -> None:
    h = make()
    calls = []

    def permanent() -> None:
        calls.append(1)
        raise PermanentError("HTTP 400")

    with pytest.raises(PermanentError):
        h.call(permanent)

    def interrupted() -> None:
        calls.append(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        h.call(interrupted)
    assert len(calls) == 2


def test_non_idempotent_request_is_not_retried_once_it_was_sent() -> None:
    h = make()
    calls = []

    def submit() -> None:
        calls.append(1)
        raise TransientError("POST /api/data/upload: HTTP 502", request_sent=True)

    with pytest.raises(TransientError):
        h.call(submit, idempotent=False)
    assert len(calls) == 1

    def refused() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise TransientError("connection refused", request_sent=False)
        return "serial"

    assert h.call(refused, idempotent=False) == "serial"
