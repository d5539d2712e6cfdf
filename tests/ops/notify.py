"""A NOTIFY_SOCKET of our own: what systemd would receive from ``Type=notify`` services."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable


class NotifySocket:
    """An AF_UNIX datagram socket (abstract namespace) collecting ``(monotonic time, message)``."""

    def __init__(self) -> None:
        self.name = f"syncd-test-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.address = "@" + self.name  # the form systemd puts in NOTIFY_SOCKET
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode("latin-1")))

    def lines(self) -> list[tuple[float, str]]:
        """Every ``KEY=value`` line received, with its arrival time."""
        with self._lock:
            return [(t, line) for t, m in self.messages for line in m.split("\n") if line]

    def times(self, line: str) -> list[float]:
        return [t for t, got in self.lines() if got == line]

    def statuses(self) -> list[str]:
        return [got.removeprefix("STATUS=") for _, got in self.lines() if got.startswith("STATUS=")]

    def wait_for(self, check: Callable[[], object], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; received: {self.lines()[-20:]}")

    def close(self) -> None:
        self._closed.set()
        self.sock.close()
        self._thread.join(timeout=2)
