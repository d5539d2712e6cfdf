"""The optional HTTP listener (``[server] listen``): ``/healthz`` and ``/metrics``.

Contract:

* ``GET /healthz``: 200 with ``{"status": "ok", ...}`` while every stage is
  alive (see :mod:`syncd.health`: the push loop, the watcher, the scheduler
  and every pull's last cycle recent); 503 with the stale stages otherwise.
* ``GET /metrics``: the daemon's metrics registry in Prometheus' text format
  (the official client's WSGI app).
* Anything else: 404. Only GET and HEAD.
* The server runs in daemon threads (one per request) and never touches the
  state except through read-only queries.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from syncd.health import Heartbeats

StartResponse = Callable[..., Any]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log; say nothing."""


def make_app(
    heartbeats: Heartbeats, registry: CollectorRegistry
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The WSGI application (exposed for tests)."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
        if path == "/metrics":
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            stale = heartbeats.stale()
            body = {
                "status": "stalled" if stale else "ok",
                "stale": [str(s) for s in stale],
                "stages": heartbeats.ages(),
            }
            start_response(
                "503 Service Unavailable" if stale else "200 OK",
                [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
            )
            return [json.dumps(body).encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /healthz or /metrics\n"]

    return app


class HttpServer:
    """The listener in a background thread."""

    def __init__(
        self, host: str, port: int, heartbeats: Heartbeats, registry: CollectorRegistry
    ) -> None:
        self._server = make_server(
            host,
            port,
            make_app(heartbeats, registry),
            server_class=_ThreadingServer,
            handler_class=_QuietHandler,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="syncd-http", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
