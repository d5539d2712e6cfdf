"""The catch-up scan at start: uploaded units whose directories did not change are
skipped, and whatever changed while the daemon was down is still found.

The daemon's first pass trusts directory stamps (no file added, removed or
renamed), the full scan right after stats every file (a file rewritten in
place under the same name). Together they find everything a full scan finds.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import syncd.daemon.loop
from syncd.pipeline import detect, stamps
from syncd.pipeline.scan import UnitSnapshot, dirs_unchanged, scan_unit
from syncd.sampledata import write_fusion_unit
from tests.conftest import query, wait_until
from tests.pipeline.conftest import Env


def _unit(folder: Path, name: str) -> None:
    (folder / name / "lidar").mkdir(parents=True)
    for n in range(3):
        (folder / name / "lidar" / f"{n}.pcd").write_bytes(b"p" * (n + 1))
    (folder / name / "calib.json").write_text("{}")


def _snap(folder: Path, name: str) -> UnitSnapshot:
    snap = scan_unit(folder, name, (".*",), None)
    assert snap is not None
    return snap


def _add_file(unit: Path) -> None:
    (unit / "lidar" / "9.pcd").write_bytes(b"new")


def _remove_file(unit: Path) -> None:
    (unit / "lidar" / "0.pcd").unlink()


def _rename_file(unit: Path) -> None:
    (unit / "lidar" / "0.pcd").rename(unit / "lidar" / "00.pcd")


def _replace_file(unit: Path) -> None:  # how editors and atomic writers save
    (unit / "lidar" / ".0.pcd.tmp").write_bytes(b"other")
    (unit / "lidar" / ".0.pcd.tmp").replace(unit / "lidar" / "0.pcd")


def _add_subdir(unit: Path) -> None:
    (unit / "camera").mkdir()


def _recreate_unit(unit: Path) -> None:
    shutil.rmtree(unit)
    _unit(unit.parent, unit.name)


@pytest.mark.parametrize(
    "change",
    [_add_file, _remove_file, _rename_file, _replace_file, _add_subdir, _recreate_unit],
    ids=lambda f: f.__name__.strip("_"),
)
def test_stamps_see_every_change_of_names(tmp_path: Path, change: Callable[[Path], None]) -> None:
    _unit(tmp_path, "u")
    stamped = _snap(tmp_path, "u").dirs
    assert [d.rel_path for d in stamped] == ["", "lidar"]
    assert dirs_unchanged(tmp_path, "u", stamped)
    change(tmp_path / "u")
    assert not dirs_unchanged(tmp_path, "u", stamped)


def test_stamps_do_not_see_writes_in_place(tmp_path: Path) -> None:
    """The documented blind spot, which the full scan after the catch-up covers."""
    _unit(tmp_path, "u")
    stamped = _snap(tmp_path, "u").dirs
    with (tmp_path / "u" / "lidar" / "0.pcd").open("ab") as f:
        f.write(b"more")
    assert dirs_unchanged(tmp_path, "u", stamped)
    assert not dirs_unchanged(tmp_path, "u", ())  # no stamps: never unchanged
    (tmp_path / "u").rename(tmp_path / "v")
    assert not dirs_unchanged(tmp_path, "u", stamped)  # the unit is gone


def test_what_is_not_stamped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _unit(tmp_path, "old")
    _unit(tmp_path, "linked")
    (tmp_path / "linked" / "alias.pcd").symlink_to(tmp_path / "linked" / "lidar" / "0.pcd")
    (tmp_path / "loose.pcd").write_bytes(b"x")
    later = time.time_ns() + 10**9  # a scan that starts one second from now
    assert stamps.worth_stamping(_snap(tmp_path, "old"), later + 2 * 10**9)
    # a directory changed within RACY_SECONDS of the scan: a change in the same
    # clock tick could keep its ctime
    assert not stamps.worth_stamping(_snap(tmp_path, "old"), later)
    # a symlink's target can change without the unit's directories changing
    assert not stamps.worth_stamping(_snap(tmp_path, "linked"), later + 10**10)
    assert not stamps.worth_stamping(_snap(tmp_path, "loose.pcd"), later + 10**10)


def _scanned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the units detect.run_once scans from now on."""
    seen: list[str] = []
    real = detect.scan_unit

    def counting(folder: Path, name: str, *a: Any, **kw: Any) -> UnitSnapshot | None:
        seen.append(name)
        return real(folder, name, *a, **kw)

    monkeypatch.setattr(detect, "scan_unit", counting)
    return seen


def _detected(env: Env) -> list[str]:
    """Units with a package not yet done (detected, or settled at once: settle_seconds 0)."""
    rows = query(env.db, "SELECT unit FROM packages WHERE state != 'done' ORDER BY unit")
    return [r[0] for r in rows]


def test_catch_up_skips_uploaded_units_and_finds_what_changed_while_down(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stamps, "RACY_SECONDS", 0.0)  # the units were written just now
    for n, name in enumerate(["added_to", "edited", "untouched", "vanishes"]):
        write_fusion_unit(env.folder / name, frames=2, cameras=0, with_result=False, seed=n)
    rc, _ = env.once()  # uploads every unit; its full scans stamp them
    assert rc == 0
    assert {r[0] for r in query(env.db, "SELECT unit FROM unit_stamps")} == {
        "added_to",
        "edited",
        "untouched",
        "vanishes",
    }
    # while the daemon is down
    write_fusion_unit(env.folder / "new_unit", frames=1, cameras=0, with_result=False, seed=9)
    write_fusion_unit(env.folder / "added_to" / "more", frames=1, cameras=0, with_result=False)
    edited = next((env.folder / "edited").rglob("*.pcd"))
    with edited.open("ab") as f:  # rewritten in place: same name, new size and mtime
        f.write(b"\n# appended\n")
    shutil.rmtree(env.folder / "vanishes")

    d = env.daemon()
    try:
        ctx = d.contexts[0]
        tracker = detect.SettleTracker()
        scanned = _scanned(monkeypatch)
        detect.run_once(ctx, tracker, None, catch_up=True)
        assert sorted(scanned) == ["added_to", "new_unit"]  # "untouched" was not listed
        assert _detected(env) == ["added_to", "new_unit"]
        # the full scan stats every file: the in-place edit is found there
        scanned.clear()
        detect.run_once(ctx, tracker, None)
        assert sorted(scanned) == ["added_to", "edited", "new_unit", "untouched"]
        assert _detected(env) == ["added_to", "edited", "new_unit"]
    finally:
        d.close()
    # units with an open package lose their stamps; a vanished unit's are forgotten
    assert [r[0] for r in query(env.db, "SELECT unit FROM unit_stamps")] == ["untouched"]


def test_catch_up_without_stamps_scans_everything_and_stamps_it(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database from before stamps (or a lost stamps table) costs one full scan."""
    monkeypatch.setattr(stamps, "RACY_SECONDS", 0.0)
    for n in range(3):
        write_fusion_unit(env.folder / f"u{n}", frames=1, cameras=0, with_result=False, seed=n)
    assert env.once()[0] == 0
    with sqlite3.connect(env.db) as con:
        con.execute("DELETE FROM unit_stamps")
    con.close()
    d = env.daemon()
    try:
        scanned = _scanned(monkeypatch)
        assert detect.run_once(d.contexts[0], detect.SettleTracker(), None, catch_up=True) == 0
        assert sorted(scanned) == ["u0", "u1", "u2"]
        scanned.clear()
        detect.run_once(d.contexts[0], detect.SettleTracker(), None, catch_up=True)
        assert scanned == []
    finally:
        d.close()


def test_the_daemon_catches_up_then_scans_fully_at_once_even_just_after_boot(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``syncd run``: a file rewritten in place while the daemon was down goes up
    without waiting for the 5-minute rescan, also when the machine booted a few
    seconds ago (the monotonic clock counts from boot)."""
    monkeypatch.setattr(stamps, "RACY_SECONDS", 0.0)
    write_fusion_unit(env.folder / "unit", frames=2, cameras=0, with_result=False, seed=3)
    assert env.once()[0] == 0
    edited = next((env.folder / "unit").rglob("*.pcd"))
    with edited.open("ab") as f:
        f.write(b"\n# appended while down\n")

    booted = time.monotonic() - 5.0  # as if the machine had booted 5 s ago
    clock = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if k[0] != "_"})
    clock.monotonic = lambda: time.monotonic() - booted
    monkeypatch.setattr(syncd.daemon.loop, "time", clock)
    d = env.daemon()
    passes: list[tuple[bool, bool, Any]] = []
    real_cycle = syncd.daemon.loop.push_cycle

    def recording(
        daemon: Any,
        dirty: Any = None,
        *,
        catch_up: bool = False,
        sweeps: Any = None,
        rescan: Any = frozenset(),
    ) -> None:
        passes.append((dirty is None, catch_up, rescan))
        real_cycle(daemon, dirty, catch_up=catch_up, sweeps=sweeps, rescan=rescan)

    monkeypatch.setattr(syncd.daemon.loop, "push_cycle", recording)
    t = threading.Thread(target=d.run)
    t.start()
    try:
        wait_until(
            lambda: query(env.db, "SELECT COUNT(*) FROM packages WHERE state = 'done'")[0][0] == 2,
            60,
            "the edited file's new package",
        )
    finally:
        d.stop.set()
        d.wake.set()
        t.join(timeout=60)
        d.close()
    # the catch-up, then a full scan of every sync on the next pass
    assert passes[:2] == [(True, True, frozenset()), (False, False, frozenset({"s"}))]
    files = query(
        env.db,
        "SELECT f.rel_path, f.size FROM package_files f JOIN packages p ON p.id = f.package_id"
        " WHERE p.id = (SELECT MAX(id) FROM packages)",
    )
    assert files == [(edited.relative_to(env.folder / "unit").as_posix(), os.path.getsize(edited))]


def test_a_full_scan_in_slices_lets_changed_units_go_first(env: Env) -> None:
    """The run loop's full scan is a sweep of short slices; units the watcher
    reports between two slices are scanned at once, and the sweep reaching
    them later never opens a second package."""
    for n in range(4):
        write_fusion_unit(env.folder / f"u{n}", frames=1, cameras=0, with_result=False, seed=n)
    d = env.daemon()
    try:
        ctx, tracker = d.contexts[0], detect.SettleTracker()
        sweep = detect.FullScan(ctx, tracker)
        # the watcher has something: the slice stops after one unit, whatever its budget
        assert sweep.step(60.0, interrupt=lambda: True) > 0
        assert _detected(env) == ["u0"]
        write_fusion_unit(env.folder / "late", frames=1, cameras=0, with_result=False, seed=7)
        detect.run_once(ctx, tracker, {"late", "u2"})  # what the watcher reports meanwhile
        assert _detected(env) == ["late", "u0", "u2"]
        slices = 1
        while not sweep.done:
            sweep.step(0.0)  # a zero budget: one unit per slice as well
            slices += 1
        assert slices == 4
        assert _detected(env) == ["late", "u0", "u1", "u2", "u3"]  # one package per unit
    finally:
        d.close()


def test_a_sweep_that_starts_does_not_hold_back_the_changed_units(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pass that starts the 5-minute full scan still scans what the watcher
    reported first, even a unit the sweep would reach last."""
    monkeypatch.setattr(syncd.daemon.loop, "SWEEP_SLICE_SECONDS", 0.0)  # one unit per slice
    for n in range(4):
        write_fusion_unit(env.folder / f"u{n}", frames=1, cameras=0, with_result=False, seed=n)
    write_fusion_unit(env.folder / "zz_late", frames=1, cameras=0, with_result=False, seed=9)
    d = env.daemon()
    try:
        sweeps: dict[str, detect.FullScan] = {}
        d.push_cycle({"s": {"zz_late"}}, sweeps=sweeps, rescan=frozenset({"s"}))
        assert "s" in sweeps and not sweeps["s"].done
        units = {r[0] for r in query(env.db, "SELECT unit FROM packages")}
        assert units == {"zz_late", "u0"}  # the reported unit, and the sweep's first slice
    finally:
        d.close()


def test_units_the_watcher_reported_survive_a_failed_scan(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan that fails (here: the database is restarting) hands the reported units back
    to the watcher; the next pass packages them, long before the next full scan."""
    from syncd.errors import StoreError
    from syncd.pipeline.watcher import FolderWatcher

    write_fusion_unit(env.folder / "arrived", frames=1, cameras=0, with_result=False, seed=1)
    d = env.daemon()
    d.watcher = FolderWatcher(threading.Event())
    d.watcher.add("s", env.folder, "poll", 1.0)
    real = detect.run_once
    failures = iter([StoreError("the database system is shutting down")])

    def flaky(*a: Any, **kw: Any) -> int:
        for exc in failures:
            raise exc
        return real(*a, **kw)

    monkeypatch.setattr(detect, "run_once", flaky)
    try:
        sweeps: dict[str, detect.FullScan] = {}  # no full scan running: it would find it too
        d.push_cycle({"s": {"arrived"}}, sweeps=sweeps)
        assert _detected(env) == []  # the scan failed: nothing yet
        again = d.watcher.take("s")
        assert again == {"arrived"}  # ... but the unit was handed back
        d.push_cycle({"s": again}, sweeps=sweeps)
        assert "arrived" in _detected(env)
    finally:
        d.close()


def test_a_failed_full_scan_is_started_again_on_the_next_pass(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syncd.errors import StoreError
    from syncd.pipeline.watcher import FolderWatcher

    d = env.daemon()
    d.watcher = FolderWatcher(threading.Event())
    d.watcher.add("s", env.folder, "poll", 1.0)

    def down(*a: Any, **kw: Any) -> detect.FullScan:
        raise StoreError("the database system is shutting down")

    monkeypatch.setattr(detect, "FullScan", down)
    try:
        d.push_cycle({"s": None}, sweeps={})
        assert d.watcher.take("s") is None  # None: scan the whole folder on the next pass
    finally:
        d.close()


def test_reading_a_units_files_does_not_mark_it_dirty(tmp_path: Path) -> None:
    """An upload reads every file of its unit: that is no change to detect. inotify
    delivers a folder's events in order, so once a later write is seen, an event
    for the earlier read would have been seen too."""
    from syncd.pipeline.watcher import FolderWatcher

    for unit in ("read", "written"):
        (tmp_path / unit).mkdir()
        (tmp_path / unit / "a.bin").write_bytes(b"x" * 1000)
    watcher = FolderWatcher(threading.Event())
    watcher.add("s", tmp_path, "native")
    watcher.start()
    try:
        assert watcher.using("s") == "native"
        for _ in range(3):
            (tmp_path / "read" / "a.bin").read_bytes()
        (tmp_path / "written" / "b.bin").write_bytes(b"y")
        seen: set[str] = set()
        for _ in range(500):
            seen |= watcher.take("s") or set()
            if "written" in seen:
                break
            time.sleep(0.01)
        assert seen == {"written"}
    finally:
        watcher.remove("s")
