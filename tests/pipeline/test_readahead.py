"""read_ahead: order kept, errors raised where they happened, bounded, stopped on close."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from syncd.pipeline.readahead import read_ahead


def test_items_in_order() -> None:
    assert list(read_ahead(iter(range(1000)), depth=3)) == list(range(1000))
    assert list(read_ahead([], depth=1)) == []


def test_producer_error_is_raised_at_its_place() -> None:
    def chunks() -> Iterator[bytes]:
        yield b"a"
        yield b"b"
        raise OSError(5, "Input/output error", "f.pcd")

    got: list[bytes] = []
    with pytest.raises(OSError, match="Input/output error"):
        for c in read_ahead(chunks(), depth=2):
            got.append(c)
    assert got == [b"a", b"b"]


def test_never_more_than_depth_ahead_and_stopped_when_consumer_stops() -> None:
    produced: list[int] = []
    closed = threading.Event()

    def chunks() -> Iterator[int]:
        try:
            for n in range(10_000):
                produced.append(n)
                yield n
        finally:
            closed.set()

    gen = read_ahead(chunks(), depth=2)
    assert next(gen) == 0
    time.sleep(0.3)  # the producer runs ahead as far as it may
    # one handed out, two queued, one produced and waiting for room
    assert len(produced) <= 4
    gen.close()
    assert closed.is_set()  # the producer's own cleanup ran (its files closed)
    assert not any(t.name == "syncd-read-ahead" for t in threading.enumerate())


def test_consumer_error_stops_the_producer() -> None:
    closed = threading.Event()

    def chunks() -> Iterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    with pytest.raises(RuntimeError):
        for n in read_ahead(chunks(), depth=4):
            if n == 10:
                raise RuntimeError("the socket broke")
    assert closed.is_set()


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="depth"):
        list(read_ahead([1], depth=0))
