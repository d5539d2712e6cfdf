"""A crash between the platform accepting /data/upload and the serial being recorded."""

from __future__ import annotations

import contextlib

from syncd.daemon import Daemon
from syncd.remotes.base import Remote, Upload
from syncd.sampledata import write_fusion_unit
from tests.conftest import query
from tests.pipeline.conftest import Env


class Crash(BaseException):
    """Stands for kill -9: nothing after it runs (not an Exception, so no handler sees it)."""


def crash_on_submit(daemon: Daemon, *, after_platform_accepts: bool) -> None:
    remote: Remote = daemon.contexts[0].remote
    real = remote.submit

    def submit(dataset_id: str, upload: Upload, *, with_results: str | None) -> str:
        if after_platform_accepts:
            real(dataset_id, upload, with_results=with_results)
        raise Crash

    remote.submit = submit  # type: ignore[method-assign]


def test_submit_that_reached_the_platform_is_not_repeated(env: Env) -> None:
    write_fusion_unit(env.folder / "u", frames=2, cameras=1, with_result=True)
    d = env.daemon()
    crash_on_submit(d, after_platform_accepts=True)
    with contextlib.suppress(Crash):
        d.once(timeout=30)
    d.close()
    (state, serial, started) = query(
        env.db, "SELECT state, serial, submit_started_at FROM packages"
    )[0]
    assert state == "uploaded" and serial is None and started is not None
    assert len(env.calls()) == 1
    # restart: the daemon asks the platform first, finds the items, and does not submit again
    code, _ = env.once()
    assert code == 0
    assert query(env.db, "SELECT state FROM packages") == [("done",)]
    assert len(env.calls()) == 1
    assert sorted(i["name"] for i in env.remote_items()) == ["000001", "000002"]
    recovered = query(
        env.db, "SELECT to_state FROM events WHERE fields LIKE '%recovered%' ORDER BY id"
    )
    assert [r[0] for r in recovered] == ["submitted", "processing", "done"]


def test_submit_that_never_arrived_is_sent_after_the_timeout(env: Env) -> None:
    write_fusion_unit(env.folder / "u", frames=1, cameras=0, with_result=False)
    d = env.daemon(submit_uncertain_wait=1)
    crash_on_submit(d, after_platform_accepts=False)
    with contextlib.suppress(Crash):
        d.once(timeout=30)
    d.close()
    assert env.calls() == []
    code, _ = env.once(submit_uncertain_wait=1)
    assert code == 0
    assert query(env.db, "SELECT state FROM packages") == [("done",)]
    assert len(env.calls()) == 1
    reasons = query(env.db, "SELECT fields FROM events WHERE event = 'package.retry'")
    assert any("left no trace" in f for (f,) in reasons)


def test_an_uncertain_submit_finishes_as_soon_as_its_items_appear(env: Env) -> None:
    """A proxy's 503 after the request went out: the platform may have the import. syncd does
    not submit again; it says so (event, status) and asks every poll, finishing the package
    the moment its items exist, long before ``submit_uncertain_wait``."""
    import time

    from syncd.errors import TransientError
    from syncd.status import collect, render

    write_fusion_unit(env.folder / "u", frames=2, cameras=0, with_result=False)
    d = env.daemon(submit_uncertain_wait=3600)
    remote: Remote = d.contexts[0].remote
    real = remote.submit  # type: ignore[attr-defined]
    cut = [True]

    def submit(dataset_id: str, upload: Upload, *, with_results: str | None) -> str:
        serial = str(real(dataset_id, upload, with_results=with_results))
        if cut.pop() if cut else False:
            raise TransientError("HTTP 503 from the proxy", request_sent=True)
        return serial

    remote.submit = submit  # type: ignore[attr-defined]
    env.admin("POST", "/config", json={"stall_processing": True})  # no item appears yet
    try:
        deadline = time.monotonic() + 30  # the 503 is retried after a backoff
        while not query(env.db, "SELECT 1 FROM events WHERE event = 'package.submit_uncertain'"):
            assert time.monotonic() < deadline, query(env.db, "SELECT * FROM packages")
            d.push_cycle()  # the uncertain submit is looked into, not repeated
            time.sleep(0.2)
        report = render(collect(env.config()))
        env.admin("POST", "/config", json={"stall_processing": False})
        deadline = time.monotonic() + 60
        while query(env.db, "SELECT state FROM packages") != [("done",)]:
            assert time.monotonic() < deadline, query(env.db, "SELECT * FROM packages")
            time.sleep(0.2)
            d.push_cycle()
    finally:
        env.admin("POST", "/config", json={"stall_processing": False})
        d.close()
    assert len(env.calls()) == 1  # never submitted twice
    uncertain = query(env.db, "SELECT fields FROM events WHERE event = 'package.submit_uncertain'")
    assert len(uncertain) == 1 and '"then": "submit again"' in uncertain[0][0]
    assert "WAITING package" in report and "submit uncertain" in report
    assert query(env.db, "SELECT last_error FROM packages") == [(None,)]


def test_an_uncertain_submit_waits_visibly(env: Env) -> None:
    """Nothing arrived (the platform never got it): the wait is an event and a status line
    that say what syncd waits for and until when; no second submit before the wait ends."""
    write_fusion_unit(env.folder / "u", frames=1, cameras=0, with_result=False)
    d = env.daemon(submit_uncertain_wait=3600)
    crash_on_submit(d, after_platform_accepts=False)
    with contextlib.suppress(Crash):
        d.once(timeout=30)
    d.close()
    d = env.daemon(submit_uncertain_wait=3600)
    try:
        d.push_cycle()
        d.push_cycle()
    finally:
        d.close()
    from syncd.status import collect, render

    assert env.calls() == []
    events = query(env.db, "SELECT fields FROM events WHERE event = 'package.submit_uncertain'")
    assert len(events) == 1 and '"then": "submit again"' in events[0][0]
    (state, err) = query(env.db, "SELECT state, last_error FROM packages")[0]
    assert state == "uploaded"
    assert err.startswith("submit uncertain:") and "0 of 1 data items exist" in err
    assert "syncd submits again" in err
    text = render(collect(env.config()))
    assert "WAITING package" in text and "submit uncertain" in text
