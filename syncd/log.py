"""Logging: structlog set up once, JSON lines or console, secrets redacted.

Contract:

* :func:`configure` is called once by the CLI. ``format="auto"`` renders for
  people when stderr is a TTY and JSON lines otherwise. Logs go to stderr.
* Every state change is logged by :class:`syncd.store.Store` *after* its
  transaction commits, under a stable event name (see :data:`EVENTS`), so a
  log line never claims something the database does not hold.
* Libraries that log through the standard :mod:`logging` module (APScheduler,
  watchdog, httpx …) are routed through the same renderer: with JSON logs,
  every line on stderr is JSON. Their records at WARNING and above (or the
  configured level, if higher) become events named ``library.log`` with the
  library's ``logger`` and its ``message``.
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
# tests/test_event_names.py checks this list against the names the code emits
# (both ways) and against docs/events.md, which gives each event's fields.
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
        "daemon.heartbeat_unwritable",
        "daemon.supervisor_error",
        "once.giving_up",
        "once.timeout",
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
        "package.submit_uncertain",
        "package.platform_errors",
        "package.renamed",
        "package.split",
        "package.converted",
        "package.prelabels_skipped",
        "package.processing_unknown",
        "package.upload_session",
        "package.upload_session_expired",
        "package.files_skipped",
        "watch.fallback_polling",
        "watch.restarted",
        "watch.overflow",
        "unit.refused",
        "unit.files_skipped",
        "remote.retry",
        "remote.recovered",
        "remote.unreachable",
        "remote.reachable",
        "deepen.unexpected_file_name",
        "pull.page_committed",
        "pull.items_deleted",
        "pull.finished",
        "pull.failed",
        "pull.skipped",
        "lease.acquired",
        "store.presence_lost",
        "store.unavailable",
        "store.available",
        "library.log",
        "unit.skipped",
        "remote.plain_http",
        "config.token_file_shared",
        "state.loose_permissions",
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


def _library_event(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A standard-library record as our event: ``library.log`` with its logger and message."""
    event_dict["message"] = event_dict.pop("event", "")
    return {"event": "library.log", **event_dict}


class _LibraryHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler :func:`configure` installs (replaced, never stacked, on a second call).

    It writes to whatever ``sys.stderr`` is when a record comes, as our own
    loggers do, so a replaced stderr (a test's capture) is never written to
    after it was closed.
    """

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _stderr_logger(*_: Any) -> Any:
    """A structlog logger on the current ``sys.stderr`` (looked up per logger, not once)."""
    return structlog.PrintLogger(sys.stderr)


def _route_standard_logging(renderer: Any, level: int) -> None:
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            _library_event,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _redact_processor,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = _LibraryHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _LibraryHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Libraries' INFO lines (a job ran, a request was sent) are noise beside our
    # own events; their warnings and errors are worth a line.
    root.setLevel(max(logging.WARNING, level))


def configure(fmt: str = "auto", level: str = "info") -> None:
    """Set up structlog (and the standard ``logging`` root) for ``fmt`` and ``level``."""
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if console
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            _redact_processor,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    _route_standard_logging(renderer, numeric)


def get_logger(**bind: Any) -> Any:
    """A structlog logger with ``bind`` fields attached."""
    return structlog.get_logger("syncd").bind(**bind)
