"""``[server]`` under a crowd of idle connections and a low ``ulimit -n``.

Hundreds of clients that connect and send nothing must not starve the
daemon: ``/healthz`` still answers within a second, and every stage keeps
working (a unit written meanwhile is uploaded) without logging an error.
"""

from __future__ import annotations

import resource
import select
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx

from syncd.sampledata import write_bulk_unit
from tests.conftest import wait_until, write_config
from tests.ops.test_http_metrics import free_port, value

NOFILE = 256
IDLE = 400


class IdleCrowd:
    """``IDLE`` connections that never send a byte; each one closed by the server is reopened."""

    def __init__(self, port: int) -> None:
        self.port, self.socks = port, list[socket.socket]()
        self.reconnects = self.failed = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _connect(self) -> None:
        s = socket.socket()
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", self.port))
        except OSError:
            s.close()
            self.failed += 1
            time.sleep(0.01)
            return
        self.socks.append(s)

    def _run(self) -> None:
        poll = select.poll()  # select() cannot watch descriptors above 1023
        registered: set[int] = set()
        while not self.stop.is_set():
            while len(self.socks) < IDLE and not self.stop.is_set():
                self._connect()
                if self.socks and self.socks[-1].fileno() not in registered:
                    registered.add(self.socks[-1].fileno())
                    poll.register(self.socks[-1], select.POLLIN)
            by_fd = {s.fileno(): s for s in self.socks}
            for fd, _ in poll.poll(200):  # readable: the server hung up (EOF or reset)
                poll.unregister(fd)
                registered.discard(fd)
                self.socks.remove(by_fd[fd])
                by_fd[fd].close()
                self.reconnects += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for s in self.socks:
            s.close()


def low_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def test_idle_connections_under_a_low_ulimit(tmp_path: Path, sandbox_url: str) -> None:
    port = free_port()
    folder = tmp_path / "in"
    folder.mkdir()
    cfg = write_config(
        tmp_path / "syncd.toml",
        sandbox_url,
        [
            {
                "name": "m",
                "dataset": f"crowd-{uuid.uuid4().hex[:8]}",
                "folder": folder,
                "dataset_type": "LIDAR_BASIC",
                "pull_interval": 2,
            }
        ],
    )
    cfg.write_text(f'[server]\nlisten = "127.0.0.1:{port}"\n' + cfg.read_text())
    log = tmp_path / "daemon.log"
    with log.open("ab") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "--config", str(cfg)],
            stdout=out,
            stderr=out,
            preexec_fn=low_nofile,
        )
    base = f"http://127.0.0.1:{port}"

    def healthz() -> httpx.Response | None:
        try:
            return httpx.get(base + "/healthz", timeout=1)
        except httpx.TransportError:
            return None

    crowd = None
    try:
        wait_until(lambda: (r := healthz()) is not None and r.status_code == 200, 90, "/healthz")
        crowd = IdleCrowd(port)
        # the crowd is in: more idle clients than the daemon has descriptors
        wait_until(lambda: crowd.reconnects > IDLE, 60, "the crowd pushing")
        for _ in range(5):
            started = time.monotonic()
            r = healthz()
            assert r is not None and r.status_code == 200, r
            assert time.monotonic() - started < 1.0
            time.sleep(0.5)
        # every stage still opens what it needs: files, the database, the platform
        write_bulk_unit(folder / "u1", total_bytes=200_000)

        def done() -> bool:
            try:
                r = httpx.get(base + "/metrics", timeout=5)
            except httpx.TransportError:
                return False
            return value(r.text, "syncd_packages", sync="m", state="done") == 1

        wait_until(done, 120, "the package uploaded while the crowd waits")
        r = healthz()
        assert r is not None and r.status_code == 200
    finally:
        if crowd is not None:
            crowd.close()
        daemon.terminate()
        daemon.wait(60)
    text = log.read_text()
    assert "Too many open files" not in text
    assert "stage_error" not in text
    assert "[error" not in text and '"level": "error"' not in text, text[-3000:]
