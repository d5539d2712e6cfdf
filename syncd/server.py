"""The optional HTTP listener (``[server] listen``): ``/healthz`` and ``/metrics``.

Contract:

* ``GET /healthz``: 200 with ``{"status": "ok", ...}`` while every stage is
  alive (see :mod:`syncd.health`: the push loop, the watcher, the scheduler
  and every pull's last cycle recent); 503 with the stale stages otherwise.
* ``GET /metrics``: the daemon's metrics registry in Prometheus' text format
  (the official client's WSGI app).
* Anything else: 404. Only GET and HEAD.
* Bounded (:class:`_BoundedServer`): at most ``MAX_CONNECTIONS`` client
  connections at once (a new one pushes out the oldest still waiting for its
  request), ``REQUEST_TIMEOUT`` to send a request head of at most
  ``MAX_HEAD_BYTES`` and to take the answer, ``WORKERS`` threads answering,
  and no connection accepted unless ``FD_RESERVE`` descriptors stay free for
  the daemon's own files. Idle clients cost no thread; the daemon refuses
  clients rather than fail a stage.
* The server never touches the state except through read-only queries.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app

from syncd.health import Heartbeats

StartResponse = Callable[..., Any]

MAX_CONNECTIONS = 64  # open client sockets at once; the oldest waiting one is dropped for a new one
REQUEST_TIMEOUT = 5.0  # seconds from accept to a complete request head, and to send the answer
MAX_HEAD_BYTES = 16 * 1024  # a GET's request line and headers; more is not a client of ours
WORKERS = 4  # threads answering complete requests
FD_RESERVE = 64  # descriptors always left to the daemon's own files (database, watcher, uploads)


class _QuietHandler(WSGIRequestHandler):
    """Answers one request whose head was already read (``request`` = (socket, head bytes))."""

    def setup(self) -> None:
        sock, head = self.request
        self.connection = sock
        sock.settimeout(REQUEST_TIMEOUT)  # sendall: the whole answer within it
        self.rfile = io.BytesIO(head)
        self.wfile = sock.makefile("wb", buffering=0)

    def finish(self) -> None:
        self.wfile.close()

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log; say nothing."""


def _fd_headroom() -> int:
    """Descriptors still free under the soft ``RLIMIT_NOFILE``."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 30
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:
        return soft  # no /proc: the connection cap alone bounds us
    return soft - used


class _BoundedServer(WSGIServer):
    """One selector thread holds the waiting connections; a small pool answers.

    Idle connections cost a descriptor and no thread; there are at most
    ``MAX_CONNECTIONS`` of them (a new one pushes out the oldest, so a crowd of
    idle clients cannot keep ``/healthz`` out), each dropped after
    ``REQUEST_TIMEOUT``. A connection is accepted only while ``FD_RESERVE``
    descriptors stay free for the daemon's own files; otherwise it is closed
    at once. The daemon may refuse a client, never fail a stage for one.
    """

    allow_reuse_address = True
    request_queue_size = 128  # the listen backlog: a burst waits in the kernel, not refused

    def __init__(self, address: tuple[str, int], app: Any) -> None:
        super().__init__(address, _QuietHandler)
        self.set_app(app)
        self.socket.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._waiting: dict[socket.socket, tuple[float, bytearray]] = {}
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="syncd-http")
        self._busy = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.refused = 0  # connections closed unanswered (cap, descriptors, timeout, junk)

    def serve(self) -> None:
        self._selector.register(self.socket, selectors.EVENT_READ)
        while not self._stop.is_set():
            events = self._selector.select(timeout=0.2)
            # requests first: a crowd of new connections must not push out one that has spoken
            for key, _ in events:
                if key.fileobj is not self.socket and key.fileobj in self._waiting:
                    self._read(key.fileobj)
            if any(key.fileobj is self.socket for key, _ in events):
                self._accept()
            self._expire()
        for sock in list(self._waiting):
            self._drop(sock)
        self._selector.close()

    def _accept(self) -> None:
        for _ in range(16):  # a burst at most per wake-up: requests are read in between
            try:
                sock, addr = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # EMFILE and friends: the kernel keeps the connection queued
            if _fd_headroom() < FD_RESERVE:
                self.refused += 1
                sock.close()
                continue
            while len(self._waiting) >= MAX_CONNECTIONS:
                # the oldest waiting connection goes, unless its request is there
                oldest = next(iter(self._waiting))
                if not self._read(oldest):
                    self._drop(oldest)
            sock.setblocking(False)
            self._waiting[sock] = (time.monotonic(), bytearray())
            self._selector.register(sock, selectors.EVENT_READ, addr)

    def _read(self, sock: socket.socket) -> bool:
        """Read what arrived; True when the connection left the waiting set."""
        head = self._waiting[sock][1]
        try:
            data = sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data or len(head) + len(data) > MAX_HEAD_BYTES:
            self._drop(sock)
            return True
        head += data
        if b"\r\n\r\n" not in head and b"\n\n" not in head:
            return False
        addr = self._selector.get_key(sock).data
        self._selector.unregister(sock)
        del self._waiting[sock]
        with self._lock:
            if self._busy >= WORKERS * 4:
                self.refused += 1
                sock.close()
                return True
            self._busy += 1
        sock.setblocking(True)
        self._pool.submit(self._answer, sock, bytes(head), addr)
        return True

    def _answer(self, sock: socket.socket, head: bytes, addr: Any) -> None:
        try:
            _QuietHandler((sock, head), addr, self)  # type: ignore[arg-type]
        except OSError:
            pass  # the client went away or was too slow to take the answer
        finally:
            with self._lock:
                self._busy -= 1
            with contextlib.suppress(OSError):
                sock.close()

    def _expire(self) -> None:
        deadline = time.monotonic() - REQUEST_TIMEOUT
        for sock, (started, _) in list(self._waiting.items()):
            if started > deadline:
                break  # insertion order: the rest are younger
            self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        self.refused += 1
        self._waiting.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        sock.close()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.server_close()


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
        self._server = _BoundedServer((host, port), make_app(heartbeats, registry))
        self._thread = threading.Thread(target=self._server.serve, name="syncd-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def refused(self) -> int:
        """Connections closed without an answer (see :class:`_BoundedServer`)."""
        return self._server.refused

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.stop()
        if self._thread.is_alive():
            self._thread.join()
        self._server.close()
