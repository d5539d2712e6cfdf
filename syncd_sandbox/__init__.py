"""Local servers that speak each platform's API faithfully (tests, demo, benchmarks).

:func:`serve` runs one until SIGTERM/SIGINT and prints ``READY <url>`` once it
accepts connections; :func:`run_in_thread` runs one in a background thread for
in-process tests.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

PLATFORMS = ("xtreme1", "basicai", "deepen", "segments")


class SandboxProcess:
    """``syncd sandbox PLATFORM`` as a separate process, started and waited for READY.

    ``url`` is its base URL; :meth:`stop` ends it. Its stderr goes to ``log``
    (or is kept in a pipe). Used by ``syncd demo`` and the end-to-end tests.
    """

    def __init__(
        self, platform: str, *, token: str, data_dir: Path, log: Path | None = None
    ) -> None:
        import subprocess

        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "syncd",
                "sandbox",
                platform,
                "--port",
                "0",
                "--token",
                token,
                "--data-dir",
                str(data_dir),
            ],
            stdout=subprocess.PIPE,
            stderr=log.open("w") if log else subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("READY "):
            self.proc.kill()
            err = self.proc.stderr.read() if self.proc.stderr else f"see {log}"
            raise RuntimeError(f"the {platform} sandbox did not start: {line or err}")
        self.url = line.split(" ", 1)[1]

    def stop(self) -> None:
        import subprocess

        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def create_app(platform: str, token: str, data_dir: Path) -> Any:
    if platform == "xtreme1":
        from syncd_sandbox.xtreme1 import create_app as xtreme1_app

        return xtreme1_app(token, data_dir)
    if platform == "basicai":
        from syncd_sandbox.basicai import create_app as basicai_app

        return basicai_app(token, data_dir)
    if platform == "deepen":
        from syncd_sandbox.deepen import create_app as deepen_app

        return deepen_app(token, data_dir)
    if platform == "segments":
        from syncd_sandbox.segments import create_app as segments_app

        return segments_app(token, data_dir)
    raise ValueError(f"unknown sandbox platform {platform!r}; known: {', '.join(PLATFORMS)}")


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, announce: bool) -> None:
        super().__init__(config)
        self.announce = announce
        self.url = ""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if sockets:
            port = sockets[0].getsockname()[1]
            scheme = "https" if self.config.ssl_certfile else "http"
            self.url = f"{scheme}://127.0.0.1:{port}"
            if self.announce:
                print(f"READY {self.url}", flush=True)


def _socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this: a response's header and body writes must
    # not wait for delayed ACKs (40 ms per kept-alive request otherwise).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def _config(
    app: Any, tls: tuple[Path, Path] | None = None, *, lifespan: bool = True
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        ssl_certfile=str(tls[0]) if tls else None,
        ssl_keyfile=str(tls[1]) if tls else None,
        loop="asyncio",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="on" if lifespan else "off",
        timeout_keep_alive=30,
    )


def serve(
    platform: str, *, port: int, token: str, host: str = "127.0.0.1", data_dir: Path | None = None
) -> None:
    """Serve ``platform`` until SIGTERM/SIGINT; prints ``READY http://127.0.0.1:<port>``."""
    tmp = None
    if data_dir is None:
        tmp = tempfile.mkdtemp(prefix="syncd-sandbox-")
        data_dir = Path(tmp)
    try:
        app = create_app(platform, token, data_dir)
        sock = _socket(host, port)
        server = _Server(_config(app), announce=True)
        # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the
        # signal; a no-op handler makes that a clean exit 0.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        server.run(sockets=[sock])
    finally:
        sys.stdout.flush()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def serve_in_thread(
    app: Any, tls: tuple[Path, Path] | None = None, *, port: int = 0, lifespan: bool = True
) -> Iterator[str]:
    """Serve an ASGI app on a free loopback port in a thread; yields its base URL.

    ``tls``: (certificate, key) PEM files to serve HTTPS instead of HTTP.
    ``port``: that port instead of a free one. ``lifespan=False``: the app's
    startup and shutdown are not run, so stopping this server leaves the app's
    state alive (the caller closes it): serving the same ``app`` again on the
    same port is a platform restarted with its data (the outage tests).
    """
    sock = _socket("127.0.0.1", port)
    server = _Server(_config(app, tls, lifespan=lifespan), announce=False)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    # ``started`` turns true inside uvicorn's startup, a moment before our
    # override has set the URL: wait for the URL itself.
    while not server.url and time.monotonic() < deadline:
        time.sleep(0.01)
    if not server.url:
        raise RuntimeError("the sandbox did not start")
    try:
        yield server.url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextlib.contextmanager
def run_in_thread(
    platform: str, *, token: str, data_dir: Path, tls: tuple[Path, Path] | None = None
) -> Iterator[str]:
    """Run a sandbox on a free loopback port in a thread; yields its base URL."""
    with serve_in_thread(create_app(platform, token, data_dir), tls) as url:
        yield url
