"""The one error-quieting rule: a repeated error is reported at most every 30 s, with a count."""

from __future__ import annotations

from syncd.quiet import Quiet


def test_a_repeated_error_is_reported_once_per_quiet_period_with_its_count() -> None:
    now = [1000.0]
    q = Quiet(30.0, clock=lambda: now[0])
    assert q.failed("pull:a", "GET /x: HTTP 503 (try 1)") == 1  # the first: at once
    now[0] += 1
    assert q.failed("pull:a", "GET /x: HTTP 503 (try 2)") is None  # same shape: quiet
    assert q.count("pull:a") == 2
    now[0] += 30
    assert q.failed("pull:a", "GET /x: HTTP 503 (try 3)") == 3  # the period is over
    assert q.failed("pull:a", "connection reset") == 4  # a new kind of error: at once
    assert q.failed("pull:b", "GET /x: HTTP 503") == 1  # keys are counted apart


def test_recovery_is_reported_once_and_starts_afresh() -> None:
    now = [0.0]
    q = Quiet(30.0, clock=lambda: now[0])
    assert q.succeeded("push") is None  # never failed: nothing to report
    q.failed("push", "disk full at 0x7f3a")
    q.failed("push", "disk full at 0x7f3b")  # an address is a number too
    assert q.stuck(2) == "push" and q.stuck(3) is None
    assert q.succeeded("push") == 2
    assert q.succeeded("push") is None  # once
    assert q.count("push") == 0 and q.stuck(1) is None
    assert q.failed("push", "disk full at 0x7f3a") == 1  # a new run reports at once


def test_the_mask_decides_what_counts_as_the_same_error() -> None:
    q = Quiet(30.0, mask=r"\d+", clock=lambda: 0.0)
    assert q.failed("k", "HTTP 503") == 1
    assert q.failed("k", "HTTP 502") is None
    assert q.failed("k", "at 0xab") == 3
    assert q.failed("k", "at 0xcd") == 4  # hex letters are not masked here
