"""Logging: structlog set up once, JSON lines or console, secrets redacted.

Contract:

* :func:`configure` is called once by the CLI. ``format="auto"`` renders for
  people when stderr is a TTY and JSON lines otherwise. Logs go to stderr.
* Every state change is logged by :class:`syncd.store.Store` *after* its
  transaction commits, under a stable event name (see :data:`EVENTS`), so a
  log line never claims something the database does not hold.
* :func:`redact` removes secrets from any value before it is printed or
  stored: fields named like tokens, ``Authorization`` headers, ``token=``
  query parameters and presigned-URL signatures.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

# Stable event names: users grep and alert on these. Add, never rename.
EVENTS = frozenset(
    {
        "daemon.started",
        "daemon.stopping",
        "daemon.stopped",
        "daemon.stage_error",
        "daemon.stage_recovered",
        "daemon.drain_deadline",
        "daemon.drain_timeout",
        "daemon.stage_stalled",
        "daemon.stage_unstalled",
        "daemon.reloaded",
        "daemon.reload_failed",
        "dataset.resolved",
        "dataset.created",
        "classes.bound",
        "package.detected",
        "package.settled",
        "package.packing",
        "package.packed",
        "package.uploading",
        "package.uploaded",
        "package.submitted",
        "package.processing",
        "package.done",
        "package.failed",
        "package.retry",
        "package.retry_requested",
        "package.checkpointed",
        "package.platform_errors",
        "package.renamed",
        "package.split",
        "package.converted",
        "package.prelabels_skipped",
        "package.processing_unknown",
        "package.upload_session",
        "package.upload_session_expired",
        "watch.fallback_polling",
        "watch.restarted",
        "watch.overflow",
        "unit.refused",
        "unit.files_skipped",
        "remote.retry",
        "remote.recovered",
        "pull.started",
        "pull.page_committed",
        "pull.items_deleted",
        "pull.finished",
        "pull.failed",
        "pull.skipped",
        "lease.acquired",
        "store.presence_lost",
    }
)

_SECRET_KEYS = re.compile(r"(?i)^(token|api_?key|authorization|password|secret|x-amz-signature)$")
_URL_SECRET = re.compile(
    r"(?i)((?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|token|GoogleAccessId|sig|upload_id)=)[^&\s\"']+"
)
_BEARER = re.compile(r"(?i)\b(Bearer|ApiKey|APIKey|Token)\s+[A-Za-z0-9._~+/=-]{8,}")
# user:password@ in a URL (a database_url quoted by a driver error)
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@")
REDACTED = "***"


def redact_text(text: str) -> str:
    """Remove URL signatures, ``token=`` parameters and bearer tokens from a string."""
    text = _URL_PASSWORD.sub(r"\1" + REDACTED + "@", text)
    return _BEARER.sub(r"\1 " + REDACTED, _URL_SECRET.sub(r"\1" + REDACTED, text))


def redact(value: Any) -> Any:
    """A copy of ``value`` with every secret replaced by ``***`` (dicts, lists, strings)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and _SECRET_KEYS.match(k) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _redact_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
    return redact(event_dict)  # type: ignore[no-any-return]


def configure(fmt: str = "auto", level: str = "info") -> None:
    """Set up structlog for the process (idempotent)."""
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if console
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            _redact_processor,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(**bind: Any) -> Any:
    """A structlog logger with ``bind`` fields attached."""
    return structlog.get_logger("syncd").bind(**bind)
