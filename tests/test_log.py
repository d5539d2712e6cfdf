"""Log lines: secrets never reach a log line or the events table; every line is JSON."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from syncd.log import configure, get_logger, redact, redact_text


def test_presigned_signature_redacted() -> None:
    url = "http://h/minio/x.zip?X-Amz-Algorithm=AWS4&X-Amz-Credential=abc%2F1&X-Amz-Signature=deadbeef"
    out = redact_text(url)
    assert "deadbeef" not in out and "abc%2F1" not in out and "X-Amz-Algorithm=AWS4" in out


def test_bearer_and_token_fields_redacted() -> None:
    out = redact(
        {
            "token": "abc",
            "headers": {"Authorization": "Bearer eyJhbGciOiJIUzUxMiJ9.x.y"},
            "n": 1,
            "msg": "used ?token=zzz",
        }
    )
    assert out["token"] == "***"
    assert out["headers"]["Authorization"] == "***"
    assert "zzz" not in out["msg"] and out["n"] == 1


def test_plain_text_kept() -> None:
    assert redact_text("package 3 uploaded 12 bytes") == "package 3 uploaded 12 bytes"


def test_database_url_password_is_redacted() -> None:
    text = "state.database_url: postgresql+psycopg://syncd:s3cret@db:5432/fleet: refused"
    assert redact_text(text) == (
        "state.database_url: postgresql+psycopg://syncd:***@db:5432/fleet: refused"
    )


def test_library_logging_is_json_when_the_format_is_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """APScheduler, watchdog and httpx log through ``logging``: their lines must be JSON too."""
    configure("json", "info")
    configure("json", "info")  # a second call replaces the handler, never stacks it
    try:
        logging.getLogger("apscheduler.scheduler").warning(
            "Execution of job %r skipped: maximum number of running instances reached (%d)",
            "pull front-lidar",
            1,
        )
        logging.getLogger("apscheduler.executors").info("Running job (info is not shown)")
        logging.getLogger("httpx").error("GET https://x.example/?token=s3cret failed")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("watchdog.observers").exception("observer died")
        get_logger().info("daemon.started")
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln]
        records = [json.loads(ln) for ln in lines]  # every line is JSON
    finally:
        for h in list(logging.getLogger().handlers):
            if type(h).__name__ == "_LibraryHandler":
                logging.getLogger().removeHandler(h)
        structlog.reset_defaults()  # the other tests run with structlog's defaults
    assert [r["event"] for r in records] == [
        "library.log",
        "library.log",
        "library.log",
        "daemon.started",
    ]
    skipped, failed, died = records[:3]
    assert skipped["logger"] == "apscheduler.scheduler"
    assert skipped["level"] == "warning"
    assert "maximum number of running instances reached (1)" in skipped["message"]
    assert "s3cret" not in failed["message"] and failed["level"] == "error"
    assert "RuntimeError: boom" in died["exception"]
