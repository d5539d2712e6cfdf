"""The ``throttle`` fault's shared link: parallel requests share one rate, first come first served."""

from __future__ import annotations

from pytest import approx

from syncd_sandbox.faults import FaultRules, Link


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_chunks_queue_behind_each_other_on_one_link() -> None:
    clock = Clock()
    link = Link(1000.0, clock)
    # Two requests' chunks at the same instant: the second waits for the first.
    assert link.reserve(1000) == approx(1.0)
    assert link.reserve(500) == approx(1.5)
    clock.now += 1.5
    assert link.reserve(1000) == approx(1.0)  # the link is free again: only its own time
    clock.now += 10  # idle time is not saved up
    assert link.reserve(100) == approx(0.1)


def test_a_shared_rule_hands_every_match_the_same_link() -> None:
    rules = FaultRules()
    rules.add({"method": "PUT", "path": "^/s3/", "action": "throttle", "rate": 5e6,
               "shared": True, "delay": 0.05, "times": None})  # fmt: skip
    first, second = rules.take("PUT", "/s3/a"), rules.take("PUT", "/s3/b")
    assert first is not None and second is not None
    assert isinstance(first["link"], Link) and first["link"] is second["link"]
    assert first["link"].rate == 5e6 and first["delay"] == 0.05
    assert rules.take("GET", "/s3/a") is None


def test_an_unshared_rule_has_no_link() -> None:
    rules = FaultRules()
    rules.add({"path": "^/minio/", "action": "throttle", "rate": 1e6})
    rule = rules.take("PUT", "/minio/x")
    assert rule is not None and "link" not in rule
