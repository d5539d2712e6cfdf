"""A fast HTTP/1.1 sink for upload benchmarks: takes any PUT/POST, discards the body, says 200.

The sandboxes' object stores are Starlette apps: they receive ≈ 300 MB/s on
this kind of machine, far below a MinIO on a 10 GbE link, so an upload
benchmark against them measures the sandbox. This receiver is what a fast
object store looks like to a client: it reads the body with ``recv_into`` in
a large buffer (a few Python calls per megabyte) and throws it away.

Contract:

* One process (``python -m bench.receiver``, started by :class:`Receiver`),
  one thread per connection, keep-alive (HTTP/1.1 rules: ``Connection:
  close`` ends it), ``Expect: 100-continue`` answered.
* A request body is framed by ``Content-Length`` or ``Transfer-Encoding:
  chunked`` (its chunks and trailers are parsed, not just skipped); a request
  with neither has no body. Any method and path is accepted; the reply is
  ``200`` with an ``ETag`` and no body, as S3/MinIO answer a presigned PUT.
* ``GET /__receiver/stats`` answers JSON ``{"requests": n, "bytes": b,
  "last": size, "connections": c}``: bodies completed, their bytes, the last
  body's size (the benchmark checks that the whole archive arrived) and the
  connections accepted (a client's keep-alive pool is counted by them).
* It checks nothing (no signature, no content): it only measures how fast a
  client sends.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import threading
from types import TracebackType

import httpx

# One recv_into takes whatever the kernel holds, up to this. The socket's own buffer is
# left to the kernel's autotuning (SO_RCVBUF would cap it at net.core.rmem_max).
BUFFER = 4 * 1024 * 1024
HEAD_MAX = 64 * 1024


class BadRequest(Exception):
    """The client broke HTTP/1.1 framing: the connection is answered 400 and closed."""


class _Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.bytes = 0
        self.last = 0
        self.connections = 0

    def add(self, size: int) -> None:
        with self.lock:
            self.requests += 1
            self.bytes += size
            self.last = size

    def json(self) -> bytes:
        with self.lock:
            return json.dumps(
                {
                    "requests": self.requests,
                    "bytes": self.bytes,
                    "last": self.last,
                    "connections": self.connections,
                }
            ).encode()


class _Conn:
    """One client connection: a receive buffer and the parsing of requests from it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray(BUFFER)
        self.view = memoryview(self.buf)
        self.start = self.end = 0  # unread bytes are buf[start:end]

    def _fill(self) -> None:
        """Receive more bytes after the unread ones; EOFError when the client closed."""
        if self.start == self.end:
            self.start = self.end = 0
        elif self.end == len(self.buf):  # compact: unread bytes to the front
            n = self.end - self.start
            self.buf[:n] = self.buf[self.start : self.end]
            self.start, self.end = 0, n
        got = self.sock.recv_into(self.view[self.end :])
        if not got:
            raise EOFError
        self.end += got

    def line(self, limit: int = HEAD_MAX) -> bytes:
        """The next CRLF-terminated line, without the CRLF."""
        while True:
            at = self.buf.find(b"\r\n", self.start, self.end)
            if at >= 0:
                out = bytes(self.buf[self.start : at])
                self.start = at + 2
                return out
            if self.end - self.start > limit:
                raise BadRequest("line too long")
            self._fill()

    def skip(self, n: int) -> None:
        """Consume and discard exactly ``n`` bytes."""
        while n > 0:
            if self.start == self.end:
                self._fill()
            take = min(n, self.end - self.start)
            self.start += take
            n -= take

    def head(self) -> tuple[str, str, dict[str, str]]:
        request = self.line()
        while not request:  # tolerated before a request line (RFC 9112 §2.2)
            request = self.line()
        parts = request.decode("latin-1").split(" ")
        if len(parts) != 3:
            raise BadRequest("bad request line")
        headers: dict[str, str] = {}
        while True:
            raw = self.line()
            if not raw:
                return parts[0], parts[1], headers
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep:
                raise BadRequest("bad header line")
            headers[name.strip().lower()] = value.strip()

    def body(self, headers: dict[str, str]) -> int:
        """Read and discard the request's body; returns its size."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            size = 0
            while True:
                line = self.line().split(b";", 1)[0].strip()
                try:
                    n = int(line, 16)
                except ValueError:
                    raise BadRequest("bad chunk size") from None
                if n == 0:
                    while self.line():  # trailers, up to the empty line
                        pass
                    return size
                self.skip(n)
                if self.line():
                    raise BadRequest("chunk not followed by CRLF")
                size += n
        length = headers.get("content-length")
        if length is None:
            return 0
        if not length.isdigit():
            raise BadRequest("bad Content-Length")
        self.skip(int(length))
        return int(length)


def _reply(sock: socket.socket, status: str, body: bytes = b"", extra: str = "") -> None:
    sock.sendall(
        (
            f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}"
            "Server: bench-receiver\r\n\r\n"
        ).encode()
        + body
    )


def _serve_conn(sock: socket.socket, stats: _Stats) -> None:
    conn = _Conn(sock)
    with contextlib.closing(sock):
        try:
            while True:
                method, target, headers = conn.head()
                if headers.get("expect", "").lower() == "100-continue":
                    sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                size = conn.body(headers)
                if method == "GET" and target.startswith("/__receiver/stats"):
                    _reply(sock, "200 OK", stats.json(), "Content-Type: application/json\r\n")
                else:
                    stats.add(size)
                    _reply(sock, "200 OK", extra=f'ETag: "{size:032x}"\r\n')
                if headers.get("connection", "").lower() == "close":
                    return
        except BadRequest as exc:
            with contextlib.suppress(OSError):
                _reply(sock, "400 Bad Request", str(exc).encode(), "Connection: close\r\n")
        except (EOFError, ConnectionError):
            return


def serve(listener: socket.socket) -> None:
    """Accept connections forever, one thread each."""
    stats = _Stats()
    while True:
        sock, _ = listener.accept()
        with stats.lock:
            stats.connections += 1
        threading.Thread(target=_serve_conn, args=(sock, stats), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.receiver", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    args = p.parse_args(argv)
    listener = socket.create_server((args.host, args.port), backlog=64)
    print(listener.getsockname()[1], flush=True)  # the one line Receiver waits for
    with contextlib.suppress(KeyboardInterrupt):
        serve(listener)
    return 0


class Receiver:
    """The receiver in a child process, for a ``with`` block; ``url`` is its base URL."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.receiver"], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        port = self.proc.stdout.readline().strip()
        if not port.isdigit():
            self.proc.kill()
            raise RuntimeError("the benchmark receiver did not start")
        self.url = f"http://127.0.0.1:{port}"

    def stats(self) -> dict[str, int]:
        r = httpx.get(f"{self.url}/__receiver/stats")
        r.raise_for_status()
        return {k: int(v) for k, v in r.json().items()}

    def __enter__(self) -> Receiver:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


if __name__ == "__main__":
    raise SystemExit(main())
