"""Fault injection for the sandboxes, set at run time through the admin API.

A rule: ``{"method": "PUT" | "*", "path": "<regex on the path>", "action":
"status" | "delay" | "html" | "truncated_json" | "reset", "status": 503,
"headers": {...}, "body": "...", "delay": 2.0, "times": 1}``. A matching rule
fires ``times`` times (for ever when null) and is then dropped.

- ``status``: answer with that status, headers and body (the request body is
  read first, as a real server would).
- ``delay``: wait, then serve normally (a slow server; longer than the
  client's timeout makes it a timeout).
- ``html``: an HTML error page (status default 502), as proxies send.
- ``truncated_json``: HTTP 200 with JSON cut in the middle.
- ``reset``: read part of the body, start a response, then drop the
  connection (the client sees the connection break).
- ``throttle``: serve normally but read the request body at ``rate`` bytes
  per second (a slow uplink; the client's writes block as on a real one).
  Each request gets ``rate`` alone, unless ``"shared": true``: then every
  request the rule matches shares one link of ``rate`` bytes per second,
  first come first served (a bandwidth cap that parallel uploads cannot
  multiply; give it ``"times": null``). ``delay`` (seconds) waits before
  serving, as the ``delay`` action does, so one rule models a distant and
  narrow link (a request matches one rule only).
- ``reply_shape``: serve normally, then change the JSON reply's shape as an
  API change would: ``"edit": {"op": "rename" | "drop" | "string", "field":
  "data.list.*.id", "to": "ident"}`` renames the field, drops it, or sends
  its value as a string; ``*`` is every element of a list; ``edit`` may be
  a list of such edits. A field that is not there leaves the reply unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

EDIT_OPS = ("rename", "drop", "string")


def reshape(doc: Any, edit: dict[str, Any]) -> Any:
    """``doc`` with one field renamed, dropped or turned into a string (see ``reply_shape``)."""
    *path, last = str(edit["field"]).split(".")
    nodes = [doc]
    for part in path:
        step: list[Any] = []
        for n in nodes:
            if part == "*" and isinstance(n, list):
                step += n
            elif isinstance(n, dict) and part in n:
                step.append(n[part])
        nodes = step
    targets = [x for n in nodes for x in (n if last == "*" and isinstance(n, list) else [n])]
    for n in targets:
        if not isinstance(n, dict) or last not in n:
            continue
        if edit["op"] == "rename":
            n[str(edit["to"])] = n.pop(last)
        elif edit["op"] == "drop":
            del n[last]
        else:
            n[last] = str(n[last])
    return doc


class Link:
    """One shared link of ``rate`` bytes per second: each chunk waits for the ones before it.

    :meth:`reserve` books ``n`` bytes behind everything booked so far and
    returns how long the caller must wait before its chunk has passed. The
    clock is injectable (tests).
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.clock = rate, clock
        self._free_at = 0.0
        self._lock = threading.Lock()

    def reserve(self, n: int) -> float:
        with self._lock:
            now = self.clock()
            self._free_at = max(now, self._free_at) + n / self.rate
            return self._free_at - now


class FaultRules:
    """The active rules; thread-safe."""

    def __init__(self) -> None:
        self._rules: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, rule: dict[str, Any]) -> None:
        action = rule.get("action", "status")
        if action not in (
            "status",
            "delay",
            "html",
            "truncated_json",
            "reset",
            "throttle",
            "reply_shape",
        ):
            raise ValueError(f"unknown action {action!r}")
        if action == "reply_shape":
            edits = rule.get("edit")
            for edit in edits if isinstance(edits, list) and edits else [edits]:
                if (
                    not isinstance(edit, dict)
                    or edit.get("op") not in EDIT_OPS
                    or not isinstance(edit.get("field"), str)
                    or (edit["op"] == "rename" and not isinstance(edit.get("to"), str))
                ):
                    raise ValueError(
                        f"reply_shape needs edit {{op: {'|'.join(EDIT_OPS)}, field, to (rename)}}"
                        " or a list of them"
                    )
        re.compile(rule.get("path", ".*"))
        if action == "throttle" and rule.get("shared"):
            # Copies of the rule (take) share this one object: one link for all requests.
            rule = {**rule, "link": Link(max(1.0, float(rule.get("rate", 1e6))))}
        with self._lock:
            self._rules.append({"method": "*", "path": ".*", "times": 1, **rule, "action": action})

    async def admin(self, request: Request) -> Response:
        """The admin endpoint every sandbox serves at ``/__sandbox/faults``:
        POST adds one rule (400 naming what is wrong), DELETE clears them all."""
        if request.method == "DELETE":
            self.clear()
        else:
            try:
                self.add(json.loads(await request.body()))
            except (ValueError, re.error) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True})

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def take(self, method: str, path: str) -> dict[str, Any] | None:
        with self._lock:
            for rule in self._rules:
                if rule["method"] not in ("*", method) or not re.search(rule["path"], path):
                    continue
                if rule["times"] is not None:
                    rule["times"] -= 1
                    if rule["times"] <= 0:
                        self._rules.remove(rule)
                return dict(rule)
        return None


class FaultMiddleware:
    """ASGI middleware applying :class:`FaultRules` to every non-admin request."""

    def __init__(self, app: ASGIApp, rules: FaultRules) -> None:
        self.app, self.rules = app, rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/__sandbox"):
            await self.app(scope, receive, send)
            return
        rule = self.rules.take(scope["method"], scope["path"])
        if rule is None:
            await self.app(scope, receive, send)
            return
        action = rule["action"]
        if action == "delay":
            await asyncio.sleep(float(rule.get("delay", 1.0)))
            await self.app(scope, receive, send)
            return
        if action == "reply_shape":
            await self.app(scope, receive, _reshaping(send, rule["edit"]))
            return
        if action == "throttle":
            rate = max(1.0, float(rule.get("rate", 1e6)))
            link: Link | None = rule.get("link")
            await asyncio.sleep(float(rule.get("delay", 0.0)))

            async def slow_receive() -> Message:
                message = await receive()
                if message["type"] == "http.request":
                    n = len(message.get("body", b""))
                    await asyncio.sleep(link.reserve(n) if link is not None else n / rate)
                return message

            await self.app(scope, slow_receive, send)
            return
        if action == "reset":
            await _drain(receive, limit=int(rule.get("after_bytes", 64 * 1024)))
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"100")],
                }
            )
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise ConnectionResetError("fault injection: connection reset")
        await _drain(receive)
        status = int(
            rule.get("status", 502 if action == "html" else 503 if action == "status" else 200)
        )
        headers = dict(rule.get("headers") or {})
        if action == "html":
            body = (
                rule.get("body")
                or f"<html><head><title>{status} Bad Gateway</title></head><body><center><h1>{status} Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
            )
            headers.setdefault("Content-Type", "text/html")
        elif action == "truncated_json":
            body = rule.get("body") or '{"code":"OK","message":"","data":{"pageSize":10,"li'
            headers.setdefault("Content-Type", "application/json")
        else:
            body = rule.get("body") or ""
            headers.setdefault("Content-Type", "application/json")
        raw = body.encode()
        hdrs = [(k.lower().encode(), str(v).encode()) for k, v in headers.items()]
        hdrs.append((b"content-length", str(len(raw)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": hdrs})
        await send({"type": "http.response.body", "body": raw})


def _reshaping(send: Send, edit: dict[str, Any] | list[dict[str, Any]]) -> Send:
    """A ``send`` that holds the reply, edits its JSON body and sends it with its new length."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
            return
        if message["type"] != "http.response.body" or start is None:
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        raw = b"".join(chunks)
        with contextlib.suppress(ValueError):  # not JSON: sent as it was
            doc = json.loads(raw)
            for one in edit if isinstance(edit, list) else [edit]:
                doc = reshape(doc, one)
            raw = json.dumps(doc).encode()
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(raw)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": raw})

    return wrapped


async def _drain(receive: Receive, limit: int | None = None) -> None:
    seen = 0
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body") or (limit is not None and seen >= limit):
            return
