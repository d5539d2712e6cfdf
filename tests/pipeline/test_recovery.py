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
    d = env.daemon(processing_timeout=1)
    crash_on_submit(d, after_platform_accepts=False)
    with contextlib.suppress(Crash):
        d.once(timeout=30)
    d.close()
    assert env.calls() == []
    code, _ = env.once(processing_timeout=1)
    assert code == 0
    assert query(env.db, "SELECT state FROM packages") == [("done",)]
    assert len(env.calls()) == 1
    reasons = query(env.db, "SELECT fields FROM events WHERE event = 'package.retry'")
    assert any("left no trace" in f for (f,) in reasons)
