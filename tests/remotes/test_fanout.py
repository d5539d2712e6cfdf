"""fan_out: independent reads at once, results in order, the first error as it is."""

from __future__ import annotations

import threading

import pytest

from syncd.errors import TransientError
from syncd.remotes.fanout import fan_out


def test_results_keep_the_order_of_the_items_and_run_at_once() -> None:
    four = threading.Barrier(4)

    def slow(i: int) -> int:
        four.wait(10)  # only passes if four calls run at the same time
        return i * i

    assert fan_out(slow, [1, 2, 3, 4], width=4) == [1, 4, 9, 16]


def test_width_one_runs_in_the_calling_thread() -> None:
    me = threading.current_thread().name
    assert fan_out(lambda _: threading.current_thread().name, [1, 2], width=1) == [me, me]


def test_the_first_error_is_raised_as_it_is_after_every_call_ended() -> None:
    ended: list[int] = []

    def call(i: int) -> int:
        if i == 2:
            raise TransientError("GET /x: 503", code="503")
        ended.append(i)
        return i

    with pytest.raises(TransientError, match="503"):
        fan_out(call, [1, 2, 3, 4, 5], width=3)
    assert sorted(ended) == [1, 3, 4, 5]
