"""The admin API every sandbox serves under ``/__sandbox/``, built in one place.

Each fake platform is an object with the :class:`Admin` surface; :func:`admin_routes`
turns it into the same four endpoints on every sandbox, plus the platform's own
extras (seeding, listings for tests, object paths):

* ``GET /__sandbox/counters`` — what the platform saw (requests, objects, …);
* ``POST /__sandbox/annotate`` — play the annotator (the body is the platform's own);
* ``POST|DELETE /__sandbox/faults`` — add a fault rule / clear them (:mod:`.faults`);
* ``POST /__sandbox/config`` — change settings at run time: a JSON object of
  keys the sandbox declares; an unknown key or a bad value is a 400 naming it,
  and nothing is changed; the reply is the whole current configuration.

None of these is part of a real platform's API; they exist so tests, the demo
and the benchmarks can steer and observe the fakes over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncd_sandbox.faults import FaultRules

Endpoint = Callable[[Request], Awaitable[Response]]


class ConfigError(ValueError):
    """A ``/__sandbox/config`` body the sandbox refuses (answered with 400)."""


class Admin(Protocol):
    """What a sandbox offers its admin API."""

    faults: FaultRules

    async def admin_counters(self, request: Request) -> Response: ...

    async def admin_annotate(self, request: Request) -> Response: ...

    def configure(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply ``changes`` (all or nothing) and return the whole configuration.

        Raises :class:`ConfigError` naming an unknown key or a bad value.
        """
        ...


def update_config(
    config: dict[str, Any],
    changes: dict[str, Any],
    *,
    special: dict[str, Callable[[Any], None]] | None = None,
    choices: dict[str, tuple[Any, ...]] | None = None,
) -> dict[str, Any]:
    """The usual :meth:`Admin.configure`: plain keys of ``config`` plus ``special`` setters.

    Every key is checked before anything changes; ``special`` maps keys that
    are not plain values (rate windows, a clock offset) to their setters;
    ``choices`` lists the values a key may take (the reply-shape switches).
    """
    special = special or {}
    unknown = set(changes) - set(config) - set(special)
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)}")
    for key, allowed in (choices or {}).items():
        if key in changes and changes[key] not in allowed:
            raise ConfigError(f"{key}: one of {list(allowed)}, not {changes[key]!r}")
    for key, value in changes.items():
        if key in special:
            special[key](value)
    config.update({k: v for k, v in changes.items() if k not in special})
    return dict(config)


def _config_endpoint(admin: Admin) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            return JSONResponse({"error": f"not JSON: {exc}"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "expected a JSON object"}, status_code=400)
        try:
            return JSONResponse(admin.configure(body))
        except (ConfigError, TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    return endpoint


def admin_routes(admin: Admin, extra: Sequence[Route] = ()) -> list[Route]:
    """The ``/__sandbox/`` routes of one sandbox: the shared four, then ``extra``."""
    return [
        Route("/__sandbox/counters", admin.admin_counters, methods=["GET"]),
        Route("/__sandbox/annotate", admin.admin_annotate, methods=["POST"]),
        Route("/__sandbox/faults", admin.faults.admin, methods=["POST", "DELETE"]),
        Route("/__sandbox/config", _config_endpoint(admin), methods=["POST"]),
        *extra,
    ]
