"""Replies from a platform that answers badly: too much, too slowly, too deeply nested.

A fake platform on a raw socket sends a 300 MB reply, one byte every 2 s, or
JSON nested 200 000 levels deep. syncd reads a bounded amount, gives up at
its deadline and names the endpoint in each error.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd.errors import PermanentError, TransientError
from syncd.remotes.http import API_REPLY_MAX, Http, make_client

Reply = Callable[[socket.socket], None]


@pytest.fixture
def platform() -> Iterator[Callable[[Reply], str]]:
    """Serve every connection with the given reply function; yields a URL factory."""
    servers: list[socket.socket] = []
    stop = threading.Event()

    def start(reply: Reply) -> str:
        srv = socket.create_server(("127.0.0.1", 0))
        srv.settimeout(0.2)
        servers.append(srv)

        def loop() -> None:
            while not stop.is_set():
                try:
                    conn, _ = srv.accept()
                except OSError:
                    continue
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

        def serve(conn: socket.socket) -> None:
            with conn:
                conn.recv(65536)  # the request head (a GET has no body)
                with contextlib.suppress(OSError):  # the client gave up: that is the point
                    reply(conn)

        threading.Thread(target=loop, daemon=True).start()
        return f"http://127.0.0.1:{srv.getsockname()[1]}"

    yield start
    stop.set()
    for s in servers:
        s.close()


def head(conn: socket.socket, length: int | None = None) -> None:
    extra = f"Content-Length: {length}\r\n" if length is not None else ""
    conn.sendall(
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}Connection: close\r\n\r\n".encode()
    )


def http(timeout: float) -> Http:
    return Http(make_client(timeout=timeout), platform="fake", max_retries=0)


def as_json(response: httpx.Response) -> Any:
    return json.loads(response.content)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "no-length"])
def test_a_300_mb_reply_is_refused_with_bounded_memory(
    platform: Callable[[Reply], str], declared: bool
) -> None:
    total = 300 * 1024 * 1024
    block = b"1," * (512 * 1024)

    def huge(conn: socket.socket) -> None:
        head(conn, total if declared else None)
        conn.sendall(b"[")
        sent = 1
        while sent < total:
            conn.sendall(block)
            sent += len(block)

    url = platform(huge)
    tracemalloc.start()
    try:
        with pytest.raises(PermanentError) as err:
            http(5).request("GET", f"{url}/api/data/findByPage", as_json)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "GET /api/data/findByPage: the reply is too large" in str(err.value)
    assert err.value.code == "reply_too_large"
    assert peak < API_REPLY_MAX * 3 + 8 * 1024 * 1024  # the body, its copy, and change


def test_a_trickle_ends_at_the_deadline(platform: Callable[[Reply], str]) -> None:
    def trickle(conn: socket.socket) -> None:
        head(conn)
        for _ in range(1000):
            conn.sendall(b" ")
            time.sleep(2)

    url = platform(trickle)
    timeout = 3.0
    started = time.monotonic()
    with pytest.raises(TransientError) as err:
        http(timeout).request("GET", f"{url}/api/dataset/findByPage", as_json)
    took = time.monotonic() - started
    assert "GET /api/dataset/findByPage: the reply was still arriving after its deadline" in str(
        err.value
    )
    assert 3 * timeout <= took < 4 * timeout + 2


def test_deeply_nested_json_is_a_clear_error(platform: Callable[[Reply], str]) -> None:
    body = b"[" * 200_000 + b"]" * 200_000

    def nested(conn: socket.socket) -> None:
        head(conn, len(body))
        conn.sendall(body)

    url = platform(nested)
    with pytest.raises(TransientError) as err:
        http(5).request("GET", f"{url}/api/data/getDataStatusByIds", as_json)
    assert str(err.value) == (
        "GET /api/data/getDataStatusByIds: the reply's JSON is nested too deeply to read"
    )


def test_an_ordinary_reply_reads_as_before(platform: Callable[[Reply], str]) -> None:
    body = json.dumps({"code": "OK", "data": list(range(1000))}).encode()

    def ok(conn: socket.socket) -> None:
        head(conn, len(body))
        conn.sendall(body)

    assert http(5).request("GET", f"{platform(ok)}/api/x", as_json)["data"][-1] == 999


# The child reports its own peak (VmHWM, reset at exec): the kernel's ru_maxrss of a
# child also counts the forked copy of this test process before exec, which is
# hundreds of MB late in a full test run.
_PEAK = """
import atexit, runpy, sys
path = sys.argv.pop(1)
def peak():
    with open("/proc/self/status") as f, open(path, "w") as out:
        out.write(next(l for l in f if l.startswith("VmHWM:")).split()[1])
atexit.register(peak)
sys.argv[0] = "syncd"
runpy.run_module("syncd", run_name="__main__", alter_sys=True)
"""


def check_against(url: str, tmp_path: Path) -> tuple[int, str, float, int]:
    """``syncd check`` (timeout 5s) against ``url``: exit code, stderr,
    seconds taken and peak RSS in bytes."""
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(
        f'[state]\ndir = "{tmp_path / "state"}"\n'
        f'[remotes.fake]\nplatform = "xtreme1"\nurl = "{url}"\ntoken = "t"\n'
        'timeout = "5s"\n'
        '[[syncs]]\nname = "s"\nremote = "fake"\ndataset = "d"\npush = false\n'
    )
    peak = tmp_path / "peak-kb"
    started = time.monotonic()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.run(
            [sys.executable, "-c", _PEAK, str(peak), "check", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            check=False,
        )
        err.seek(0)
        text = err.read().decode()
    return proc.returncode, text, time.monotonic() - started, int(peak.read_text()) * 1024


def test_syncd_check_against_a_huge_and_a_trickling_platform(
    platform: Callable[[Reply], str], tmp_path: Path
) -> None:
    def huge(conn: socket.socket) -> None:
        head(conn)
        block = b" " * (1024 * 1024)
        for _ in range(300):
            conn.sendall(block)

    code, err, _, rss = check_against(platform(huge), tmp_path)
    assert code != 0 and "the reply is too large" in err, err[-2000:]
    assert rss <= 150 * 1024 * 1024

    def trickle(conn: socket.socket) -> None:
        head(conn)
        for _ in range(1000):
            conn.sendall(b" ")
            time.sleep(2)

    code, err, took, _ = check_against(platform(trickle), tmp_path)
    assert code != 0 and "the reply was still arriving after its deadline" in err, err[-2000:]
    # check tries twice (max_retries=1), each try ends after 3 read timeouts (15 s)
    assert took < 2 * 3 * 5 + 10
