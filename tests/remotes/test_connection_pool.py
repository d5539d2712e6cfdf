"""A remote's HTTP pools hold one kept-alive connection per request its settings allow in flight."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.receiver import Receiver
from syncd.config import RemoteConfig
from syncd.remotes.http import MIN_CONNECTIONS, platform_clients, pool_size


def remote(**kw: int) -> RemoteConfig:
    return RemoteConfig(platform="xtreme1", url="http://127.0.0.1:1", token="t", **kw)


def test_pool_size_is_transfers_times_packages_at_least_the_minimum() -> None:
    assert pool_size(remote(transfers=5, upload_concurrency=4)) == 20
    assert pool_size(remote(transfers=1, upload_concurrency=1)) == MIN_CONNECTIONS
    assert pool_size(remote()) == 8 * 3


@pytest.fixture(scope="module")
def sink() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def test_every_allowed_request_is_in_flight_at_once_and_its_connection_is_kept(
    sink: Receiver,
) -> None:
    cfg = remote(transfers=5, upload_concurrency=3)
    n = pool_size(cfg)
    _, store = platform_clients("pooled", cfg, "xtreme1", "Bearer t")
    # Each body waits until all n requests are sending: a pool smaller than n
    # would leave some queued and break the barrier.
    barrier = threading.Barrier(n, timeout=20)

    def body() -> Iterator[bytes]:
        barrier.wait()
        yield b"x" * 1000

    def put(i: int) -> int:
        return store.put(f"{sink.url}/b/{i}", content=body()).status_code

    before = sink.stats()["connections"]
    with store, ThreadPoolExecutor(n) as pool:
        for _ in range(3):
            assert list(pool.map(put, range(n))) == [200] * n
            barrier.reset()
        # three rounds of n requests over the same n connections (+1: this stats request's)
        assert sink.stats()["connections"] - before == n + 1
