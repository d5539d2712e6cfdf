"""Rate-limit windows: config syntax, the client's limiter and the sandbox's enforcement."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from syncd.config import parse_config, parse_rate
from syncd.errors import ConfigError
from syncd.remotes.http import limiter_rates
from syncd_sandbox.ratelimit import RateWindows


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100/s", (100, 1.0)),
        ("3000/min", (3000, 60.0)),
        ("72000/h", (72000, 3600.0)),
        ("864000/d", (864000, 86400.0)),
        ("40/5s", (40, 5.0)),
        (" 7 / 2m ", (7, 120.0)),
    ],
)
def test_parse_rate(text: str, expected: tuple[int, float]) -> None:
    assert parse_rate(text) == expected


def _remote(**extra: object) -> dict[str, object]:
    return {"remotes": {"lab": {"platform": "xtreme1", "url": "http://x", "token": "t", **extra}}}


@pytest.mark.parametrize("bad", ["100", "0/s", "ten/s", "5/week", "5/0s"])
def test_bad_rate_names_key_and_value(bad: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(_remote(rate_limits=[bad]), base_dir=Path("."))
    assert "remotes.lab.rate_limits" in str(e.value) and repr(bad) in str(e.value)


def test_platform_defaults_and_override() -> None:
    cfg = parse_config(_remote(), base_dir=Path("."))
    assert cfg.remotes["lab"].windows() == [(20, 1.0)]
    cfg = parse_config(_remote(rate_limits=["3000/min", "100/s"]), base_dir=Path("."))
    assert cfg.remotes["lab"].windows() == [(3000, 60.0), (100, 1.0)]
    # the client's windows are sorted and a little longer than the platform's
    rates = limiter_rates([(3000, 60.0), (100, 1.0)])
    assert [(r.limit, r.interval) for r in rates] == [(100, 1040), (3000, 61220)]


def test_sandbox_windows_are_exact() -> None:
    w = RateWindows([(3, 1.0), (5, 10.0)])
    assert [w.admit(t) for t in (0.0, 0.1, 0.2)] == [None, None, None]
    assert w.admit(0.5) == pytest.approx(0.5)  # the 1 s window is full until t=1.0
    assert w.admit(1.0) is None and w.admit(1.05) == pytest.approx(0.05)
    assert w.admit(1.1) is None
    assert w.admit(1.5) == pytest.approx(8.5)  # now the 10 s window (5) is full until t=10.0
    assert w.admit(10.0) is None
    assert (w.admitted, w.rejected) == (6, 3)


def test_client_limiter_holds_every_window() -> None:
    from syncd.remotes.http import Limiter

    limiter = Limiter(limiter_rates([(5, 0.2), (8, 1.0)]))
    sandbox = RateWindows([(5, 0.2), (8, 1.0)])
    started = time.monotonic()
    for _ in range(12):
        limiter.try_acquire("x")
        assert sandbox.admit() is None
    # 12 requests with 8 per second allowed cannot take less than a second
    assert time.monotonic() - started >= 1.0
