"""The files strategy's batches of whole items, and heartbeats while transfer threads send."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any, cast

import pytest

from syncd import metrics
from syncd.errors import Cancelled
from syncd.pipeline.context import SyncContext
from syncd.pipeline.strategies.files import _batches, _relaying
from syncd.store import PackageFile


def item(name: str, n: int) -> list[PackageFile]:
    return [
        PackageFile(
            package_id=1,
            sync="s",
            unit="u",
            rel_path=f"d{i}/{name}.bin",
            arcname=f"d{i}/{name}.bin",
            item_key=name,
            size=1,
            mtime_ns=0,
        )
        for i in range(n)
    ]


def test_batches_hold_whole_items_until_they_reach_the_size() -> None:
    items = [item(f"f{i}", 4) for i in range(30)] + [item("scene_01", 250)]
    batches = list(_batches(items, 100))
    assert [sum(len(i) for i in b) for b in batches] == [100, 20 + 250]
    assert [i for b in batches for i in b] == items  # every item once, in order
    assert list(_batches([item("a", 3)], 100)) == [[item("a", 3)]]
    assert list(_batches([], 100)) == []


def test_chunks_sent_on_other_threads_beat_the_callers_stage() -> None:
    caller = threading.get_ident()
    beats: list[int] = []
    ctx = cast(SyncContext, SimpleNamespace(progress=lambda: beats.append(threading.get_ident())))
    moved = threading.Event()

    def send() -> str:
        def transfer() -> None:
            for _ in range(25):  # 2.5 s of chunks, on a thread of its own
                moved.set()
                time.sleep(0.1)

        t = threading.Thread(target=transfer)
        t.start()
        t.join()
        return "refs"

    with ThreadPoolExecutor(1) as helper:
        assert _relaying(ctx, helper, moved, send) == "refs"
    assert len(beats) >= 2 and set(beats) == {caller}


def test_the_senders_error_reaches_the_caller_unchanged() -> None:
    ctx: Any = SimpleNamespace(progress=lambda: None)
    error = Cancelled("drain deadline")

    def send() -> None:
        raise error

    with ThreadPoolExecutor(1) as helper, pytest.raises(Cancelled) as info:
        _relaying(ctx, helper, threading.Event(), send)
    assert info.value is error


def test_the_sender_runs_in_the_callers_context() -> None:
    """The daemon's metrics are bound in a context variable of the strategy's thread."""
    ctx: Any = SimpleNamespace(progress=lambda: None)
    with metrics.Metrics().bound() as m, ThreadPoolExecutor(1) as helper:
        _relaying(ctx, helper, threading.Event(), lambda: metrics.http_request("r", 200))
    assert (
        m.registry.get_sample_value("syncd_http_requests_total", {"remote": "r", "status": "200"})
        == 1
    )
