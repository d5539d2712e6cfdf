"""Chaos: the daemon is killed with SIGKILL at random moments, 30+ times, and still gets it right.

The workload is 20+ units (some large, some with pre-labels in ``result/``,
one scene), arriving while the daemon runs, plus scheduled pulls while an
annotator labels items on the platform. Up to four packages are in flight at
once (``upload_concurrency = 4``), so kills land with several uploads,
submits and processing polls under way. After every kill the daemon is
restarted; after the last one it is left to finish. Then the platform is
compared with the folder and the mirror (see ``invariants``), and the
cursor is checked never to have moved backwards.

It runs on both engines: the SQLite file, and a PostgreSQL store (a
throwaway cluster; fewer kills there, the same checks). ``test_chaos_pg_restart``
runs the same workload and checks (``chaos_config``, ``observe``,
``run_to_the_end``) with kills during restarts of the PostgreSQL server.

Replay a failure with ``SYNCD_CHAOS_SEED=<the printed seed>``; change the
number of kills with ``SYNCD_CHAOS_KILLS``.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from syncd.sampledata import write_bulk_unit, write_fusion_unit, write_scene_unit
from tests.conftest import SandboxProcess, query, wait_until, write_config
from tests.reliability.invariants import (
    assert_exactly_once,
    assert_mirror_matches,
    assert_no_secrets,
    database_text,
    dataset_id,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DATASET = "chaos"


def make_unit(folder: Path, k: int, rng: random.Random) -> int:
    """Write unit ``k`` (staged under a hidden name, then renamed); returns its top-level items."""
    stage = folder / f".stage_{k}"
    kind = k % 5
    if kind == 0:
        write_bulk_unit(stage, total_bytes=rng.choice([12, 20, 30]) * 2**20, seed=k)
        items = len(list((stage / "lidar_point_cloud_0").iterdir()))
    elif kind == 1:
        write_scene_unit(stage, frames=3, cameras=0, seed=k)
        items = 1
    else:
        items = len(
            write_fusion_unit(
                stage, frames=rng.randint(1, 4), cameras=0, with_result=kind != 2, seed=k
            )
        )
    stage.rename(folder / f"unit_{k:02d}")
    return items


def start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "--config", str(cfg)], stdout=out, stderr=out
        )


class Annotator(threading.Thread):
    """Labels and submits items on the platform as they appear, like a busy annotation team."""

    def __init__(self, sandbox: SandboxProcess, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.sandbox, self.rng = sandbox, rng
        self.halt = threading.Event()
        self.done: set[int] = set()

    def run(self) -> None:
        while not self.halt.wait(0.3):
            try:
                ds = dataset_id(self.sandbox.url, DATASET)
                items = self.sandbox.admin("GET", f"/datasets/{ds}/items")["items"]
            except (StopIteration, OSError, KeyError):
                continue
            for item in items:
                # Scenes are labelled frame by frame, as in the real editor.
                skip = item["type"] == "SCENE" or self.rng.random() < 0.5
                if item["id"] in self.done or skip:
                    continue
                self.done.add(item["id"])
                obj = {
                    "type": "3D_BOX",
                    "className": "Car",
                    "contour": {
                        "center3D": {"x": 1, "y": 2, "z": 0},
                        "size3D": {"x": 4, "y": 2, "z": 1.5},
                        "rotation3D": {"x": 0, "y": 0, "z": 0.3},
                    },
                }
                self.sandbox.admin(
                    "POST",
                    "/annotate",
                    json={"dataId": item["id"], "objects": [obj], "submit": True},
                )


KILLS = 30  # on either engine


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_chaos_sigkill(
    tmp_path: Path, sandbox_proc: SandboxProcess, engine: str, request: pytest.FixtureRequest
) -> None:
    seed = int(os.environ.get("SYNCD_CHAOS_SEED") or random.SystemRandom().randrange(10**9))
    kills_wanted = int(os.environ.get("SYNCD_CHAOS_KILLS") or KILLS)
    url = request.getfixturevalue("pg_url") if engine == "postgresql" else None
    print(f"chaos seed {seed} (replay with SYNCD_CHAOS_SEED={seed})")
    rng = random.Random(seed)
    folder = tmp_path / "in"
    folder.mkdir()
    cfg = chaos_config(tmp_path, sandbox_proc.url, folder, url)
    db: Path | str = url or tmp_path / "state" / "syncd.db"
    log = tmp_path / "daemon.log"
    expected = sum(make_unit(folder, k, rng) for k in range(8))
    units = 8
    sandbox_proc.admin("POST", "/config", json={"processing_step_delay": 0.1})
    annotator = Annotator(sandbox_proc, random.Random(seed + 1))
    annotator.start()
    cursors: list[int] = []
    caught: Counter[str] = Counter()  # package states that a kill interrupted
    kills = 0
    try:
        while kills < kills_wanted:
            daemon = start(cfg, log)
            time.sleep(rng.uniform(0.2, 2.5))
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(timeout=30)
            kills += 1
            if units < 22 and rng.random() < 0.6:
                expected += make_unit(folder, units, rng)
                units += 1
            observe(db, caught, cursors)
        while units < 22:
            expected += make_unit(folder, units, rng)
            units += 1

        figures = run_to_the_end(
            cfg, db, log, folder, sandbox_proc, annotator, units, expected, cursors
        )
    finally:
        annotator.halt.set()
    print(f"chaos seed {seed}: {kills} kills survived, {units} units, {figures}, duplicates 0")
    print(f"kills that interrupted packages in each state: {dict(caught)}")


def max_uploads_at_once(db: Path | str) -> int:
    """The most packages between ``package.uploading`` and ``package.uploaded`` at one moment,
    from the events (event ids are commit order, so the count needs no clock)."""
    rows = query(
        db,
        "SELECT event, package_id FROM events "
        "WHERE event IN ('package.uploading', 'package.uploaded', 'daemon.started') ORDER BY id",
    )
    open_now: set[int] = set()
    most = 0
    for event, package in rows:
        if event == "daemon.started":
            open_now.clear()  # a kill cut the uploads in flight
        elif event == "package.uploading":
            open_now.add(package)
        else:
            open_now.discard(package)
        most = max(most, len(open_now))
    return most


def _labelled(db: Path | str) -> int:
    return int(
        query(
            db,
            "SELECT COUNT(DISTINCT remote_item_id) FROM labels WHERE deleted_at IS NULL "
            "AND source = 'Ground Truth' AND object_count > 0",
        )[0][0]
    )


def _labelled_on_platform(sandbox: SandboxProcess, ds: int) -> int:
    items = sandbox.admin("GET", f"/datasets/{ds}/items")["items"]
    return sum(1 for i in items if not i["deleted"] and i["sources"].get("Ground Truth"))


def _has_schema(db: Path | str) -> bool:
    """A kill can land before the first migration has committed: no tables yet."""
    if isinstance(db, str):
        return bool(query(db, "SELECT to_regclass('cursors') IS NOT NULL")[0][0])
    if not db.exists():
        return False
    try:
        return bool(query(db, "SELECT 1 FROM sqlite_master WHERE name = 'cursors'"))
    except sqlite3.DatabaseError:
        return False


def _started(db: Path | str) -> int:
    if not _has_schema(db):
        return 0
    return int(query(db, "SELECT COUNT(*) FROM events WHERE event = 'daemon.started'")[0][0])


def chaos_config(tmp_path: Path, sandbox_url: str, folder: Path, database_url: str | None) -> Path:
    """The chaos workload's config: one sync pushing ``folder`` and pulling every second."""
    return write_config(
        tmp_path / "syncd.toml",
        sandbox_url,
        [
            {
                "name": "chaos",
                "dataset": DATASET,
                "dataset_type": "LIDAR_BASIC",
                "folder": folder,
                "pull_interval": 1,
                "full_sweep_interval": 5,
                "processing_timeout": 60,
                "submit_uncertain_wait": 60,
            }
        ],
        database_url=database_url,
        remote_extra="upload_concurrency = 4",
    )


def observe(db: Path | str, caught: Counter[str], cursors: list[int]) -> None:
    """After a kill: the package states it interrupted, and the items cursor (never backwards)."""
    if _has_schema(db):
        caught.update(
            s
            for (s,) in query(
                db,
                "SELECT DISTINCT state FROM packages WHERE state NOT IN ('done', 'failed')",
            )
        )
        cursors += [
            int(v.split(":")[0])  # Xtreme1: "<highest top-level id>:<listing total>"
            for (v,) in query(db, "SELECT value FROM cursors WHERE name = 'items'")
        ]


def run_to_the_end(
    cfg: Path,
    db: Path | str,
    log: Path,
    folder: Path,
    sandbox_proc: SandboxProcess,
    annotator: Annotator,
    units: int,
    expected: int,
    cursors: list[int],
) -> dict[str, object]:
    """Start the daemon a last time, let it finish every unit and catch the mirror up,
    stop it, then check every invariant; returns the figures of ``assert_exactly_once``."""
    try:
        started = _started(db)
        daemon = start(cfg, log)
        try:
            # the daemon is up (signal handlers in place) before anything is judged
            wait_until(lambda: _started(db) > started, 60, "the last start")
            wait_until(
                lambda: (
                    query(
                        db, "SELECT COUNT(*) FROM packages WHERE state NOT IN ('done', 'failed')"
                    )[0][0]
                    == 0
                    and {
                        u
                        for (u,) in query(
                            db, "SELECT DISTINCT unit FROM packages WHERE state = 'done'"
                        )
                    }
                    == {f"unit_{k:02d}" for k in range(units)}
                ),
                300,
                "every unit to be done",
            )
            annotator.halt.set()
            annotator.join()
            ds = dataset_id(sandbox_proc.url, DATASET)
            platform_items = len(
                [
                    i
                    for i in sandbox_proc.admin("GET", f"/datasets/{ds}/items")["items"]
                    if not i["deleted"]
                ]
            )
            try:
                wait_until(
                    lambda: (
                        query(db, "SELECT COUNT(*) FROM items WHERE deleted_at IS NULL")[0][0]
                        == platform_items
                        and _labelled(db) >= _labelled_on_platform(sandbox_proc, ds)
                    ),
                    120,
                    "the mirror to catch up",
                )
            except AssertionError:
                mirror = query(db, "SELECT COUNT(*) FROM items WHERE deleted_at IS NULL")[0][0]
                raise AssertionError(
                    f"mirror: {mirror} items, {_labelled(db)} labelled; platform: {platform_items} items, "
                    f"{_labelled_on_platform(sandbox_proc, ds)} labelled"
                ) from None
        finally:
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=60) == 0
    finally:
        annotator.halt.set()

    figures = assert_exactly_once(db, folder, sandbox_proc.url, DATASET, expected_items=expected)
    assert_mirror_matches(db, sandbox_proc.url, DATASET)
    assert _labelled(db) == _labelled_on_platform(sandbox_proc, ds)
    cursors += [
        int(v.split(":")[0]) for (v,) in query(db, "SELECT value FROM cursors WHERE name = 'items'")
    ]
    assert cursors == sorted(cursors), f"the items cursor moved backwards: {cursors}"
    overlap = max_uploads_at_once(db)
    assert overlap >= 2, f"never two uploads at once ({overlap}): the test ran without concurrency"
    assert_no_secrets(
        {"daemon log": log.read_text(errors="replace"), "database": database_text(db)}
    )
    return figures
