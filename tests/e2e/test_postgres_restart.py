"""``syncd run`` on a PostgreSQL store through a restart of the server, as operators do them.

Units arrive before, during and after ``pg_ctl restart -m fast`` and after
``pg_ctl stop -m immediate`` (every server process killed, crash recovery at
the next start) followed by ``pg_ctl start``. The daemon never exits; every
unit is done exactly once (the platform's own counters, ``invariants``),
within seconds of the server's return rather than at the next full rescan;
the outage is one ``store.unavailable`` and one ``store.available``, not a
``daemon.stage_error`` per stage; ``syncd health`` says healthy while the
server is away and afterwards. Two daemons on one store take their hosts and
presences back, one of them the pull lease, and keep every unit once.

Each test has a server of its own: restarting the session's would cut the
connections of other tests.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.daemon.loop import RESCAN_SECONDS
from syncd.sampledata import write_fusion_unit
from syncd.store.pg_coordinator import HOST, PRESENCE
from tests.conftest import SandboxProcess, query, run_cli, wait_until, write_config
from tests.e2e.test_fleet import BOX, lease_host, start
from tests.e2e.test_fleet import _assert_exactly_once as fleet_exactly_once
from tests.postgres_support import Cluster, own_cluster
from tests.reliability.invariants import assert_exactly_once, assert_mirror_matches, dataset_id

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    yield from own_cluster()


DATASET = "restart"
FLEET_DATASET = "fleet"  # what test_fleet's checks look at
# From the server's return to the last unit done: a few loop passes plus an
# upload and the sandbox's processing take a few seconds; 60 s leaves room on a
# loaded machine and is still far below the full rescan (RESCAN_SECONDS, 300 s)
# that a unit dropped by a failed step would have waited for.
BACK_WITHIN = 60.0
assert BACK_WITHIN < RESCAN_SECONDS


def unit(folder: Path, k: int) -> int:
    """Unit ``k``, written under a hidden name and renamed in place; returns its items."""
    stage = folder / f".stage_{k}"
    items = len(write_fusion_unit(stage, frames=1 + k % 3, cameras=0, seed=k))
    stage.rename(folder / f"unit_{k:02d}")
    return items


def done_units(db: str) -> set[str]:
    return {u for (u,) in query(db, "SELECT DISTINCT unit FROM packages WHERE state = 'done'")}


def log_events(log: Path, name: str) -> list[dict[str, object]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("event") == name:
            out.append(rec)
    return out


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_units_around_a_database_restart_are_done_once(
    tmp_path: Path, cluster: Cluster, sandbox_proc: SandboxProcess, mode: str
) -> None:
    db = cluster.database()
    folder = tmp_path / "in"
    folder.mkdir()
    cfg = write_config(
        tmp_path / "syncd.toml",
        sandbox_proc.url,
        [{"name": "s", "dataset": DATASET, "folder": folder, "pull_interval": 1}],
        database_url=db,
    )
    log = tmp_path / "daemon.log"
    expected = unit(folder, 0) + unit(folder, 1)  # before the start
    daemon = start(cfg, log)
    try:
        wait_until(lambda: done_units(db) == {"unit_00", "unit_01"}, 120, "the first units")
        expected += unit(folder, 2)  # just before the restart: picked up, maybe not scanned yet

        # During: units keep arriving while the server goes down and comes back.
        arriving = threading.Event()
        written: list[int] = []

        def keep_writing() -> None:
            k = 3
            while not arriving.is_set() and k < 12:
                written.append(unit(folder, k))
                k += 1
                time.sleep(0.05)

        writer = threading.Thread(target=keep_writing)
        writer.start()
        if mode == "fast":
            cluster.restart("fast")
        else:
            # down long enough for every part of the daemon (push loop, pulls) to notice
            cluster.shut_down("immediate")
            gone = time.monotonic()
            # waiting for the database is no stall: the container stays healthy
            health = run_cli("health", "--config", str(cfg))
            assert health.returncode == 0, health.stdout + health.stderr
            time.sleep(max(0.0, 3.0 - (time.monotonic() - gone)))
            cluster.start()
        back = time.monotonic()
        arriving.set()
        writer.join()
        expected += sum(written)
        n = 3 + len(written)
        expected += unit(folder, n)  # after
        units = {f"unit_{k:02d}" for k in range(n + 1)}

        wait_until(lambda: done_units(db) == units, BACK_WITHIN, "every unit after the restart")
        took = time.monotonic() - back
        wait_until(
            lambda: query(db, "SELECT COUNT(*) FROM events WHERE event = 'store.available'")[0][0],
            BACK_WITHIN,
            "store.available",
        )
        assert daemon.poll() is None, "the daemon exited during the restart"
        health = run_cli("health", "--config", str(cfg))
        assert health.returncode == 0, health.stdout + health.stderr
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=60)
    assert code == 0

    figures = assert_exactly_once(db, folder, sandbox_proc.url, DATASET, expected_items=expected)
    # One outage, reported once: logged when it began, written to events once back.
    rows = query(
        db,
        "SELECT event, level, fields, ts FROM events "
        "WHERE event IN ('store.unavailable', 'store.available') ORDER BY id",
    )
    assert [(r[0], r[1]) for r in rows] == [
        ("store.unavailable", "warning"),
        ("store.available", "info"),
    ], rows
    down, up = json.loads(rows[0][2]), json.loads(rows[1][2])
    assert "state.database_url" in down["error"] and down["error"] == up["error"]
    assert 0 < up["outage_seconds"] < BACK_WITHIN and up["failures"] >= 1
    assert rows[0][3] < rows[1][3]  # the unavailable row keeps the time it happened
    assert [e["error"] for e in log_events(log, "store.unavailable")] == [down["error"]]
    assert len(log_events(log, "store.available")) == 1
    # the outage is not every stage's error
    assert not log_events(log, "daemon.stage_error"), log_events(log, "daemon.stage_error")
    print(f"{mode}: {figures}; every unit done {took:.1f} s after the server was back; {up}")


def locks_held(cluster: Cluster, namespace: int) -> int:
    return int(
        cluster.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            f"AND classid = {namespace} AND objsubid = 2"
        )[0][0]
    )


def test_two_daemons_keep_their_guarantees_through_a_restart(
    tmp_path: Path, cluster: Cluster, sandbox_proc: SandboxProcess
) -> None:
    """Two machines on one store: the restart ends both presences at once (every claim
    and lease free for a moment). Afterwards each holds its host again, one holds the
    pull lease, every unit of each machine is done once, and the mirror keeps up."""
    db = cluster.database()
    hosts = ("rig-a", "rig-b")
    folders = {h: tmp_path / h / "in" for h in hosts}
    configs, logs = {}, {}
    expected = 0
    for n, h in enumerate(hosts):
        folders[h].mkdir(parents=True)
        expected += unit(folders[h], 10 * n)
        configs[h] = write_config(
            tmp_path / h / "syncd.toml",
            sandbox_proc.url,
            [
                {
                    "name": "fleet",
                    "dataset": FLEET_DATASET,
                    "dataset_type": "LIDAR_BASIC",
                    "folder": folders[h],
                    "pull_interval": 1,
                }
            ],
            database_url=db,
            host=h,
        )
        logs[h] = tmp_path / h / "daemon.log"
    daemons = {h: start(configs[h], logs[h]) for h in hosts}
    try:
        wait_until(
            lambda: len(query(db, "SELECT 1 FROM packages WHERE state = 'done'")) == 2,
            120,
            "the first unit of each machine",
        )
        wait_until(lambda: lease_host(db), 30, "a pull lease holder")
        ds = dataset_id(sandbox_proc.url, FLEET_DATASET)
        for item in sandbox_proc.admin("GET", f"/datasets/{ds}/items")["items"]:
            sandbox_proc.admin(
                "POST", "/annotate", json={"dataId": item["id"], "objects": [BOX], "submit": True}
            )
        cluster.shut_down("immediate")
        for n, h in enumerate(hosts):  # arriving while the server is away
            expected += unit(folders[h], 10 * n + 1)
        time.sleep(3)
        cluster.start()
        for n, h in enumerate(hosts):
            expected += unit(folders[h], 10 * n + 2)

        wait_until(
            lambda: (
                query(db, "SELECT COUNT(*) FROM packages WHERE state NOT IN ('done', 'failed')")
                == [(0,)]
                and len(query(db, "SELECT 1 FROM packages WHERE state = 'done'")) == 6
            ),
            BACK_WITHIN,
            "every unit of both machines after the restart",
        )
        # each daemon is present and holds its host again; one pulls
        wait_until(lambda: locks_held(cluster, HOST) == 2, 30, "both host locks taken back")
        assert locks_held(cluster, PRESENCE) == 2
        holder = wait_until(lambda: lease_host(db), 30, "a pull lease holder after the restart")
        assert holder in hosts
        items = sandbox_proc.admin("GET", f"/datasets/{ds}/items")["items"]
        for item in items:  # labelled after the restart: pulled by the holder now
            sandbox_proc.admin(
                "POST", "/annotate", json={"dataId": item["id"], "objects": [BOX], "submit": True}
            )
        wait_until(
            lambda: (
                query(
                    db,
                    "SELECT COUNT(DISTINCT remote_item_id) FROM labels "
                    "WHERE deleted_at IS NULL AND object_count > 0",
                )
                == [(len(items),)]
            ),
            BACK_WITHIN,
            "every label in the mirror",
        )
        assert all(p.poll() is None for p in daemons.values()), "a daemon exited"
    finally:
        for p in daemons.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = {h: p.wait(timeout=60) for h, p in daemons.items()}
    assert codes == {h: 0 for h in hosts}
    fleet_exactly_once(db, sandbox_proc, folders, expected)
    assert_mirror_matches(db, sandbox_proc.url, FLEET_DATASET)
    assert query(db, "SELECT COUNT(*) FROM packages WHERE claimed_by IS NOT NULL") == [(0,)]
    for h in hosts:
        text = logs[h].read_text(errors="replace")
        assert "Traceback" not in text, h
        assert len(log_events(logs[h], "store.unavailable")) == 1, h
        assert len(log_events(logs[h], "store.available")) == 1, h
