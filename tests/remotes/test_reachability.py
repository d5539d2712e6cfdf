"""Outages per remote: which failures start one, one start and one end whatever the threads.

Real sockets, not mocks: the classification reads the exceptions httpx and the
standard library actually raise for a refused connection, an unknown host, a
failed handshake, a silent server and a 503.
"""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from syncd.errors import PermanentError, RemoteError, TransientError
from syncd.remotes.http import Http, make_client, status_error, tls_context
from syncd.remotes.reachability import Change, Reachability, outage_kind
from syncd_sandbox import create_app, serve_in_thread
from tests.conftest import TOKEN


def _classify(response: httpx.Response) -> Any:
    error = status_error(response, "x")
    if error is not None:
        raise error
    if response.status_code >= 400:
        raise PermanentError(f"HTTP {response.status_code}", code=str(response.status_code))
    return response.json() if response.content else None


def _http(changes: list[Change], *, timeout: float = 5.0, verify: Any = None) -> Http:
    return Http(
        make_client(timeout=timeout, verify=verify),
        platform="x",
        max_retries=1,
        backoff_base=0.001,
        backoff_cap=0.001,
        reachability=Reachability("lab", changes.append),
    )


def _fail(h: Http, url: str) -> RemoteError:
    with pytest.raises(RemoteError) as info:
        h.request("GET", url, _classify)
    return info.value


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    app = create_app("xtreme1", TOKEN, tmp_path_factory.mktemp("reach"))
    with serve_in_thread(app) as url:
        yield url, app


def test_a_closed_port_is_a_refused_outage_that_the_next_answer_ends(
    sandbox: tuple[str, Any],
) -> None:
    url, _ = sandbox
    changes: list[Change] = []
    h = _http(changes)
    port = _closed_port()
    for _ in range(3):
        exc = _fail(h, f"http://127.0.0.1:{port}/api/x")
        assert isinstance(exc, TransientError) and outage_kind(exc) == "refused"
    assert [(c.reachable, c.kind, c.remote) for c in changes] == [(False, "refused", "lab")]
    assert "connection refused" in changes[0].error
    h.request("GET", f"{url}/__sandbox/counters", _classify)
    h.request("GET", f"{url}/__sandbox/counters", _classify)
    assert [c.reachable for c in changes] == [False, True]
    assert changes[1].failed_requests == 3 and changes[1].seconds >= 0
    assert not h.reachability.unreachable


def test_an_unknown_host_is_a_dns_outage() -> None:
    changes: list[Change] = []
    exc = _fail(_http(changes), "http://no-such-platform.invalid/api/x")
    assert outage_kind(exc) == "dns"
    assert [c.kind for c in changes] == ["dns"]


def test_https_to_a_plain_http_port_is_a_tls_outage(sandbox: tuple[str, Any]) -> None:
    url, _ = sandbox
    changes: list[Change] = []
    exc = _fail(_http(changes), url.replace("http://", "https://") + "/__sandbox/counters")
    assert isinstance(exc, TransientError)
    assert [c.kind for c in changes] == ["tls"]


def test_an_untrusted_certificate_fails_at_once_and_is_no_outage(tmp_path: Path) -> None:
    # A setting to change (ca_bundle), not something that passes: the package fails
    # with that advice (a PermanentError, as before), and no outage is announced.
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_pem, key_pem = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    app = create_app("xtreme1", TOKEN, tmp_path / "data")
    changes: list[Change] = []
    ca_pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    untrusting, trusted = _http(changes), _http(changes, verify=tls_context(ca_pem))
    with serve_in_thread(app, (cert_pem, key_pem)) as url:
        exc = _fail(untrusting, f"{url}/__sandbox/counters")
        assert isinstance(exc, PermanentError) and exc.code == "tls"
        assert changes == []
        trusted.request("GET", f"{url}/__sandbox/counters", _classify)
        untrusting.client.close()
        trusted.client.close()
    assert changes == []


def test_a_server_that_never_answers_is_a_timeout_outage() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # accepts (the kernel does), never replies
        port = listener.getsockname()[1]
        changes: list[Change] = []
        exc = _fail(_http(changes, timeout=0.2), f"http://127.0.0.1:{port}/api/x")
    assert outage_kind(exc) == "timeout"
    assert [c.kind for c in changes] == ["timeout"]


def test_503_for_a_while_is_one_outage_and_a_4xx_is_none(sandbox: tuple[str, Any]) -> None:
    url, _ = sandbox
    changes: list[Change] = []
    h = _http(changes)
    admin = httpx.Client(base_url=url)
    # 2 tries per request (max_retries=1): three requests fail, the fourth gets through
    admin.post("/__sandbox/faults", json={"path": "^/api/", "status": 503, "times": 6})
    try:
        for _ in range(3):
            assert outage_kind(_fail(h, f"{url}/api/dataset/findByPage")) == "http_5xx"
        assert [c.kind for c in changes] == ["http_5xx"]
        _fail(h, f"{url}/api/dataset/findByPage")  # 401 without the token: an answer
        assert [c.reachable for c in changes] == [False]  # a 4xx neither starts nor ends one
        admin.post("/__sandbox/faults", json={"path": "^/api/", "status": 404, "times": 1})
        assert outage_kind(_fail(h, f"{url}/api/dataset/findByPage")) is None
    finally:
        admin.delete("/__sandbox/faults")
        admin.close()
    h.request("GET", f"{url}/__sandbox/counters", _classify)
    assert [(c.reachable, c.failed_requests) for c in changes] == [(False, 0), (True, 3)]


def test_slow_or_rate_limited_replies_are_no_outage() -> None:
    assert outage_kind(TransientError("GET /x: HTTP 429", code="429")) is None
    assert outage_kind(TransientError("GET /x: too slow", code="reply_deadline")) is None
    assert outage_kind(TransientError("GET /x: HTTP 502", code="502")) == "http_5xx"
    assert outage_kind(PermanentError("GET /x: HTTP 500", code="500")) is None


def test_many_threads_failing_and_recovering_make_one_start_and_one_end() -> None:
    changes: list[Change] = []
    tracker = Reachability("lab", changes.append)
    refused = TransientError("connection refused")
    refused.__cause__ = httpx.ConnectError("[Errno 111] Connection refused")
    start = threading.Barrier(16)

    def worker(n: int) -> None:
        start.wait()
        for _ in range(200):
            tracker.failed(refused)
        if n % 2:
            tracker.succeeded()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Failures and successes interleave: outages start and end several times, but
    # always alternately, starting with a start, whatever thread saw them.
    assert changes and not changes[0].reachable
    assert all(a.reachable != b.reachable for a, b in itertools.pairwise(changes))
    ended = [c for c in changes if c.reachable]
    assert sum(c.failed_requests for c in ended) <= 16 * 200
    tracker.succeeded()
    tracker.succeeded()
    assert changes[-1].reachable and not tracker.unreachable
    before = len(changes)
    tracker.failed(refused)
    assert len(changes) == before + 1


def test_concurrent_failures_of_one_outage_start_it_once() -> None:
    changes: list[Change] = []
    tracker = Reachability("lab", changes.append)
    refused = TransientError("connection refused")
    refused.__cause__ = httpx.ConnectError("[Errno 111] Connection refused")
    start = threading.Barrier(16)

    def worker() -> None:
        start.wait()
        for _ in range(100):
            tracker.failed(refused)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(changes) == 1
    done = threading.Barrier(16)

    def succeed() -> None:
        done.wait()
        tracker.succeeded()

    threads = [threading.Thread(target=succeed) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [c.reachable for c in changes] == [False, True]
    assert changes[1].failed_requests == 1600


def test_a_failing_listener_does_not_fail_the_request(sandbox: tuple[str, Any]) -> None:
    url, _ = sandbox

    def broken(change: Change) -> None:
        raise RuntimeError("listener bug")

    h = Http(
        make_client(timeout=5.0),
        platform="x",
        max_retries=0,
        reachability=Reachability("lab", broken),
    )
    with pytest.raises(TransientError):
        h.request("GET", f"http://127.0.0.1:{_closed_port()}/x", _classify)
    assert h.request("GET", f"{url}/__sandbox/counters", _classify) is not None
