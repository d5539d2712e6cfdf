"""Several packages in flight: an upload that hangs or waits holds up neither detection,
packing, nor (below ``upload_concurrency``) the next package's upload.

The uploads are held on events inside the real remote (real HTTP to the sandbox
around them), so the tests count what is in flight instead of timing anything.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from syncd.config import load_config
from syncd.daemon import Daemon
from syncd.metrics import StateCollector
from syncd.remotes.base import ArchivePush
from syncd.sampledata import write_fusion_unit
from syncd.status import collect, render
from tests.conftest import query, wait_until, write_config
from tests.pipeline.conftest import Env


class HeldUploads:
    """Wraps ``upload_archive``: archives of a unit in ``hold`` wait until released; the
    most calls in flight at once is counted."""

    def __init__(self, remote: ArchivePush, hold: set[str]) -> None:
        self.hold = hold
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.entered: list[str] = []
        real = remote.upload_archive

        def upload_archive(dataset_id: str, file_name: str, size: int, body: Any) -> Any:
            unit = file_name.split("-", 1)[1].removesuffix(".zip")
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
                self.entered.append(unit)
            try:
                if unit in self.hold:
                    assert self.release.wait(60), "never released"
                return real(dataset_id, file_name, size, body)
            finally:
                with self.lock:
                    self.now -= 1

        remote.upload_archive = upload_archive  # type: ignore[method-assign]


def daemon(env: Env, concurrency: int) -> Daemon:
    path = write_config(
        env.tmp / "syncd.toml",
        env.url,
        [{"name": "s", "dataset": env.dataset, "folder": env.folder}],
        remote_extra=f"upload_concurrency = {concurrency}",
    )
    return Daemon(load_config(path))


@contextmanager
def running(d: Daemon) -> Iterator[None]:
    """``syncd run`` in a thread (no signal handlers there), stopped at the end."""
    thread = threading.Thread(target=d.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        d.stop.set()
        d.wake.set()
        thread.join(timeout=60)
        d.close()
    assert not thread.is_alive()


def states(env: Env) -> dict[str, str]:
    return dict(query(env.db, "SELECT unit, state FROM packages"))


def test_a_hung_upload_holds_up_neither_detection_nor_packing(env: Env) -> None:
    """One slot: unit b is detected, settled and packed while a's upload hangs; once a's
    transfer goes on, both finish. (One loop for every stage used to leave b unseen.)"""
    write_fusion_unit(env.folder / "a", frames=1, cameras=0, with_result=False)
    d = daemon(env, 1)
    held = HeldUploads(d.contexts[0].remote, {"a"})  # type: ignore[arg-type]
    with running(d):
        wait_until(lambda: held.entered == ["a"], 30, "a's upload to start")
        write_fusion_unit(env.folder / "b", frames=1, cameras=0, with_result=False)
        wait_until(lambda: states(env).get("b") == "packed", 30, "b to be packed")
        assert held.now == 1 and held.entered == ["a"]  # the one slot is a's
        assert [f.unit for f in d.uploads.snapshot()] == ["a"]
        held.release.set()
        wait_until(lambda: set(states(env).values()) == {"done"}, 60, "both done")
    assert held.most == 1
    assert len(env.calls()) == 2


def test_packages_in_flight_up_to_the_remotes_concurrency(env: Env) -> None:
    """Three slots, four units: three uploads at once, never four; all done exactly once.
    ``syncd status`` and the metrics show what is in flight."""
    for name in "abcd":
        write_fusion_unit(env.folder / name, frames=1, cameras=0, with_result=False)
    d = daemon(env, 3)
    held = HeldUploads(d.contexts[0].remote, set("abcd"))  # type: ignore[arg-type]
    with running(d):
        wait_until(lambda: held.now == 3, 30, "three uploads in flight")
        assert sorted(held.entered) == ["a", "b", "c"]  # oldest first
        assert states(env)["d"] == "packed"
        assert d.in_flight_by_remote() == {"sb": (3, 3)}
        gauges = {
            m.name: {tuple(s.labels.values()): s.value for s in m.samples}
            for m in StateCollector(
                d.store,
                syncs=lambda: ["s"],
                heartbeat_ages=dict,
                stalled=frozenset,
                last_pulls=dict,
                in_flight=d.in_flight_by_remote,
            ).collect()
        }
        assert gauges["syncd_packages_in_flight"] == {("sb",): 3}
        assert gauges["syncd_upload_slots"] == {("sb",): 3}
        # the supervisor writes the heartbeat file every few seconds; status reads it
        wait_until(
            lambda: len(collect(d.cfg)["syncs"]["s"]["in_flight"]) == 3, 15, "status to show it"
        )
        text = render(collect(d.cfg))
        assert text.count("IN FLIGHT package") == 3, text
        held.release.set()
        wait_until(lambda: set(states(env).values()) == {"done"}, 60, "all done")
    assert held.most == 3
    assert sorted(held.entered) == list("abcd")
    assert len(env.calls()) == 4
    assert len({c["fileName"] for c in env.calls()}) == 4  # each package submitted once


def test_a_push_pass_that_waits_gives_every_due_package_its_step(env: Env) -> None:
    """``Daemon.push_cycle`` (tests, scripts) returns when every due package had its step,
    more packages than slots included."""
    for name in "abc":
        write_fusion_unit(env.folder / name, frames=1, cameras=0, with_result=False)
    d = daemon(env, 2)
    try:
        held = HeldUploads(d.contexts[0].remote, set())  # type: ignore[arg-type]
        d.push_cycle()  # records what is there
        d.push_cycle()  # settles, packs, uploads and submits all three
        assert d.uploads.count() == 0
        assert held.most <= 2 and sorted(held.entered) == ["a", "b", "c"]
        assert len(env.calls()) == 3
    finally:
        d.close()


def test_packing_waits_for_the_end_of_its_remotes_outage(env: Env) -> None:
    """During an outage of the sync's remote the unit is detected and settled but not
    packed (packing asks the platform, and would hold up the loop for a retry series);
    the first answer lets it go on."""
    from syncd.errors import TransientError
    from syncd.remotes.http import reachability_of

    write_fusion_unit(env.folder / "a", frames=1, cameras=0, with_result=False)
    d = daemon(env, 2)
    try:
        tracker = reachability_of(d.contexts[0].remote)
        assert tracker is not None
        tracker.failed(TransientError("GET /api/x: 503", code="503"))
        sent = d.contexts[0].remote.http.requests_sent  # type: ignore[attr-defined]
        d.push_cycle()
        d.push_cycle()
        assert states(env) == {"a": "settled"}
        assert d.contexts[0].remote.http.requests_sent == sent  # type: ignore[attr-defined]
        tracker.succeeded()
        d.push_cycle()
        assert states(env)["a"] in ("submitted", "processing", "done")  # packed and sent
    finally:
        d.close()
