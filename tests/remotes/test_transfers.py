"""Per-file pushes store up to ``transfers`` files at once, proven by counting.

The sandboxes' object store counts the uploads in flight (from the moment a
request arrives, before a ``delay`` fault holds it); the backends' presign
requests are counted by the sandbox too. The pool itself: results in order,
the first failure raised with its type, no thread left behind.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.config import BasicAIConfig, SegmentsConfig
from syncd.errors import Cancelled, LocalDataError, PermanentError, TransientError
from syncd.metrics import Metrics
from syncd.remotes.base import PushFile
from syncd.remotes.basicai import BasicAIRemote
from syncd.remotes.segments import SegmentsRemote
from syncd.remotes.transfers import Transfers
from syncd_sandbox import run_in_thread
from tests.conftest import TOKEN, admin_call

PRESIGN = "POST /api/v1/storage/batchGeneratePreSignedUploadUrl"


def transfer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "-transfer" in t.name]


# --- the pool ------------------------------------------------------------------------------


def test_results_come_in_submission_order() -> None:
    with Transfers[int](4, "p") as pool:
        for i in range(20):
            pool.submit(lambda i=i: (time.sleep(0.001 * (20 - i)), i)[1])
        assert pool.results() == list(range(20))
    assert not transfer_threads()


def test_the_transfers_in_flight_are_a_gauge_of_the_daemons_metrics() -> None:
    m = Metrics()
    gate = threading.Event()
    three = threading.Barrier(4)
    started = itertools.count(1)

    def held() -> int:
        if next(started) <= 3:
            three.wait(10)
        assert gate.wait(10)
        return 1

    def gauge() -> float | None:
        return m.registry.get_sample_value("syncd_transfers_in_flight", {"remote": "lab"})

    with m.bound(), Transfers[int](3, "p", remote="lab") as pool:
        for _ in range(5):
            pool.submit(held)
        three.wait(10)  # three jobs run, two wait for a slot
        assert gauge() == 3
        gate.set()
        assert pool.results() == [1] * 5
    assert gauge() == 0


def test_one_transfer_runs_each_job_at_once_in_the_calling_thread() -> None:
    seen: list[str] = []
    with Transfers[int](1, "p") as pool:
        for i in range(3):
            pool.submit(lambda i=i: (seen.append(threading.current_thread().name), i)[1])
            assert len(seen) == i + 1  # ran before submit returned
        assert pool.results() == [0, 1, 2]
    assert set(seen) == {threading.current_thread().name}


@pytest.mark.parametrize(
    "error",
    [
        PermanentError("p: refused", platform="p"),
        TransientError("p: still down", platform="p"),
        LocalDataError("u/a.pcd: reading failed"),
        Cancelled("drain deadline"),
    ],
)
def test_the_first_failure_is_raised_as_it_is_and_stops_the_rest(error: Exception) -> None:
    started = threading.Event()
    chunks_after_failure: list[int] = []

    def endless() -> Iterator[bytes]:
        while True:
            yield b"x"
            time.sleep(0.005)

    def slow(pool: Transfers[int]) -> int:
        started.set()
        for n, _ in enumerate(pool.body(endless)()):
            if n > 10_000:  # never: the failure below stops this job
                chunks_after_failure.append(n)
                break
        return 0

    def failing() -> int:
        started.wait(5)
        raise error

    with pytest.raises(type(error)) as info, Transfers[int](3, "p") as pool:
        pool.submit(lambda: slow(pool))
        pool.submit(failing)
        for _ in range(50):  # queued behind: never started
            pool.submit(lambda: 1)
        pool.results()
    assert info.value is error
    assert not chunks_after_failure
    assert not transfer_threads()


def test_a_failure_in_the_calling_thread_stops_the_jobs_in_flight() -> None:
    stopped = threading.Event()

    def endless() -> Iterator[bytes]:
        while True:
            yield b"x"
            time.sleep(0.005)

    def job(pool: Transfers[int]) -> int:
        try:
            for _ in pool.body(endless)():
                pass
        except Cancelled:
            stopped.set()
            raise
        return 0

    with pytest.raises(PermanentError), Transfers[int](2, "p") as pool:
        pool.submit(lambda: job(pool))
        time.sleep(0.05)
        raise PermanentError("presign refused", platform="p")
    assert stopped.is_set()
    assert not transfer_threads()


# --- the backends against their sandboxes -------------------------------------------------


def push_files(n: int, size: int = 3000) -> list[PushFile]:
    data = b"x" * size
    return [
        PushFile(
            key=f"camera_image_0/{i:04d}.png",
            device="camera_image_0",
            filename=f"{i:04d}.png",
            size=size,
            body=lambda: iter([data]),
        )
        for i in range(n)
    ]


@pytest.fixture
def basicai(tmp_path: Path) -> Iterator[str]:
    """A fresh sandbox per test: the most in flight is counted over its whole life."""
    with run_in_thread("basicai", token=TOKEN, data_dir=tmp_path) as url:
        yield url


@pytest.fixture
def segments(tmp_path: Path) -> Iterator[str]:
    with run_in_thread("segments", token=TOKEN, data_dir=tmp_path) as url:
        yield url


def slow_store(url: str, seconds: float = 0.2) -> None:
    """Every upload to the object store waits ``seconds`` (a long round trip)."""
    admin_call(
        url,
        "POST",
        "/faults",
        json={"path": "^/s3/", "action": "delay", "delay": seconds, "times": None},
    )


def basicai_upload(url: str, files: list[PushFile], transfers: int) -> list[dict[str, Any]]:
    cfg = BasicAIConfig(platform="basicai", url=url, token=TOKEN, transfers=transfers)
    r = BasicAIRemote("b", cfg, TOKEN)
    try:
        ds, _ = r.ensure_dataset("d", "IMAGE")
        return r.upload_files(ds.id, files)
    finally:
        r.close()


def segments_upload(url: str, files: list[PushFile], transfers: int) -> list[dict[str, Any]]:
    cfg = SegmentsConfig(
        platform="segments", url=url, token=TOKEN, transfers=transfers, max_retries=1
    )
    r = SegmentsRemote("s", cfg, TOKEN)
    try:
        ds, _ = r.ensure_dataset("d", "IMAGE")
        return r.upload_files(ds.id, files)
    finally:
        r.close()


def test_basicai_puts_up_to_transfers_files_at_once(basicai: str) -> None:
    slow_store(basicai)
    files = push_files(130)
    refs = basicai_upload(basicai, files, transfers=4)
    counters = admin_call(basicai, "GET", "/counters")
    assert 2 <= counters["uploads_in_flight_max"] <= 4
    assert counters["requests"][PRESIGN] == 2  # 100 files per presign request
    assert len(counters["puts"]) == 130
    assert [r["filename"] for r in refs] == [f.filename for f in files]  # in order
    assert len({r["path"] for r in refs}) == 130
    assert not transfer_threads()


def test_more_transfers_than_the_default_connections(basicai: str) -> None:
    """The store client has a connection for each transfer (more than the API client's 8)."""
    slow_store(basicai, 0.5)
    basicai_upload(basicai, push_files(36), transfers=12)
    assert 8 < admin_call(basicai, "GET", "/counters")["uploads_in_flight_max"] <= 12


def test_requests_on_transfer_threads_count_in_the_callers_metrics(basicai: str) -> None:
    m = Metrics()
    with m.bound():
        basicai_upload(basicai, push_files(30), transfers=4)
    api = admin_call(basicai, "GET", "/counters")["api_requests"]
    sent = m.registry.get_sample_value(
        "syncd_http_requests_total", {"remote": "b", "status": "200"}
    )
    assert sent == api + 30  # the API calls and every PUT


def test_basicai_with_one_transfer_puts_one_file_at_a_time(basicai: str) -> None:
    slow_store(basicai, 0.05)
    basicai_upload(basicai, push_files(12), transfers=1)
    counters = admin_call(basicai, "GET", "/counters")
    assert counters["uploads_in_flight_max"] == 1
    assert counters["requests"][PRESIGN] == 1
    assert len(counters["puts"]) == 12


def test_basicai_a_refused_put_fails_the_call_with_its_type(basicai: str) -> None:
    admin_call(  # before the delay: the first rule that matches a request applies
        basicai,
        "POST",
        "/faults",
        json={"method": "PUT", "path": r"/0007\.png$", "action": "status", "status": 400},
    )
    slow_store(basicai, 0.05)
    with pytest.raises(PermanentError, match="HTTP 400"):
        basicai_upload(basicai, push_files(40), transfers=4)
    assert not transfer_threads()
    # the files queued behind the failure were never sent
    assert len(admin_call(basicai, "GET", "/counters")["puts"]) < 40


def test_segments_posts_up_to_transfers_files_at_once(segments: str) -> None:
    slow_store(segments)
    files = push_files(24)
    refs = segments_upload(segments, files, transfers=4)
    counters = admin_call(segments, "GET", "/counters")
    assert 2 <= counters["uploads_in_flight_max"] <= 4
    assert len(counters["uploads"]) == 24
    assert [r["filename"] for r in refs] == [f.filename for f in files]
    assert not transfer_threads()


def test_segments_with_one_transfer_posts_one_file_at_a_time(segments: str) -> None:
    slow_store(segments, 0.05)
    segments_upload(segments, push_files(6), transfers=1)
    assert admin_call(segments, "GET", "/counters")["uploads_in_flight_max"] == 1
