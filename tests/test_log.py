"""Secrets never reach a log line or the events table."""

from __future__ import annotations

from syncd.log import redact, redact_text


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
