"""The end of a platform outage: waiting packages of that remote's syncs due at once, in the
transaction that records ``remote.reachable``, and the push loop woken."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.daemon import outage
from syncd.errors import StoreError
from syncd.pipeline.upload import ACTIVE_STATES
from syncd.remotes.reachability import Change
from syncd.store import Package, Store, utcnow
from syncd.store.due import REMOTE_STATES, retry_now
from tests.conftest import query

LATER = 10_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path, host="rig-a")
    yield s
    s.close()


def add(store: Store, sync: str, state: str, *, attempts: int, wait: float) -> int:
    with store.tx() as tx:
        now = utcnow()
        p = Package(
            sync=sync,
            unit=f"u{time.monotonic_ns()}",
            state=state,
            attempts=attempts,
            next_attempt_at=time.time() + wait,
            created_at=now,
            updated_at=now,
            state_changed_at=now,
        )
        tx.session.add(p)
        tx.session.flush()
        assert p.id is not None
        return p.id


def due_at(store: Store, pid: int) -> float:
    with store.read() as s:
        p = s.get(Package, pid)
        assert p is not None
        return p.next_attempt_at


def test_the_states_cover_every_upload_state() -> None:
    assert set(ACTIVE_STATES) <= set(REMOTE_STATES)


def test_only_packages_waiting_on_a_failure_of_those_syncs_become_due(store: Store) -> None:
    waiting = [add(store, "a", s, attempts=2, wait=LATER) for s in REMOTE_STATES]
    other_sync = add(store, "b", "uploading", attempts=2, wait=LATER)
    polling = add(store, "a", "processing", attempts=0, wait=LATER)  # no failure: a poll
    final = add(store, "a", "failed", attempts=3, wait=LATER)
    due_already = add(store, "a", "packed", attempts=1, wait=-5)
    now = time.time()
    with store.tx() as tx:
        assert retry_now(tx, store.coord, ["a"], now=now) == len(waiting)
    assert all(due_at(store, p) == now for p in waiting)
    for p in (other_sync, polling, final):
        assert due_at(store, p) > now + LATER / 2
    assert due_at(store, due_already) < now
    with store.read() as s:  # the attempts stay: failing again backs off from where it was
        assert {s.get(Package, p).attempts for p in waiting} == {2}  # type: ignore[union-attr]
    with store.tx() as tx:
        assert retry_now(tx, store.coord, [], now=now) == 0


class FakeCfg:
    def __init__(self, remote: str) -> None:
        self.remote = remote


class FakeContext:
    def __init__(self, name: str, remote: str) -> None:
        self.name = name
        self.cfg = FakeCfg(remote)


class FakeCore:
    """The parts of a DaemonCore that outage.changed uses."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.wake = threading.Event()
        self.contexts: list[Any] = [FakeContext("a", "lab"), FakeContext("b", "other")]
        self.recorded: list[tuple[str, str, dict[str, Any]]] = []
        self.logged: list[tuple[str, dict[str, Any]]] = []
        core = self

        class Log:
            def info(self, name: str, **fields: Any) -> None:
                core.logged.append((name, fields))

        self.log = Log()

    def record(self, name: str, level: str, **fields: Any) -> None:
        with self.store.tx() as tx:
            tx.event(name, level=level, **fields)


def test_the_end_of_an_outage_is_recorded_with_the_packages_made_due(store: Store) -> None:
    core = FakeCore(store)
    mine = add(store, "a", "uploading", attempts=3, wait=LATER)
    theirs = add(store, "b", "uploading", attempts=3, wait=LATER)
    outage.changed(core, "lab", Change("lab", False, "refused", "GET /x: connection refused"))
    assert not core.wake.is_set()
    outage.changed(
        core,
        "lab",
        Change("lab", True, "refused", "…", seconds=61.5, failed_requests=9),
    )
    assert core.wake.is_set()
    assert due_at(store, mine) <= time.time() < due_at(store, theirs)
    rows = query(store.path, "SELECT event, level, fields FROM events ORDER BY id")
    assert [(e, lvl, json.loads(f)) for e, lvl, f in rows] == [
        (
            "remote.unreachable",
            "warning",
            {"remote": "lab", "kind": "refused", "error": "GET /x: connection refused"},
        ),
        (
            "remote.reachable",
            "info",
            {"remote": "lab", "outage_seconds": 61.5, "failed_requests": 9, "packages_due": 1},
        ),
    ]


def test_a_store_that_cannot_be_written_still_wakes_the_loop(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = FakeCore(store)

    def broken() -> Any:
        raise StoreError("database is locked")

    monkeypatch.setattr(store, "tx", broken)
    outage.changed(core, "lab", Change("lab", True, "dns", "…", seconds=3.0, failed_requests=2))
    assert core.wake.is_set()
    assert core.logged == [
        (
            "remote.reachable",
            {
                "remote": "lab",
                "outage_seconds": 3.0,
                "failed_requests": 2,
                "store_error": "database is locked",
            },
        )
    ]


def test_a_probe_sees_the_end_of_an_outage_when_nothing_else_asks(store: Store) -> None:
    """Nothing sends requests (no pull due, packages backing off for minutes): the probe
    asks the platform's address every poll_interval and ends the outage within seconds."""
    import http.server
    import socket
    from types import SimpleNamespace

    from syncd.remotes.http import Http, make_client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there yet
    url = f"http://127.0.0.1:{port}"
    core = FakeCore(store)
    core.stop = threading.Event()  # type: ignore[attr-defined]
    core.cfg = SimpleNamespace(  # type: ignore[attr-defined]
        remotes={"lab": SimpleNamespace(poll_interval=0.2, url=url)}
    )
    http_ = Http(make_client(timeout=2.0, remote="lab"), platform="x", remote="lab")
    outage.watch(core, "lab", SimpleNamespace(http=http_))  # type: ignore[arg-type]
    try:
        assert http_.probe(url) is False  # refused: the outage starts, and its probe
        assert http_.reachability.unreachable

        class NotFound(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(404)  # an answer all the same: something serves there
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), NotFound)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            assert core.wake.wait(15), "the probe never saw the platform come back"
        finally:
            server.shutdown()
            server.server_close()
        assert not http_.reachability.unreachable
        events = [e for (e,) in query(store.path, "SELECT event FROM events ORDER BY id")]
        assert events == ["remote.unreachable", "remote.reachable"]
    finally:
        core.stop.set()  # type: ignore[attr-defined]
        http_.client.close()
