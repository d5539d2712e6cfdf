"""A fleet: three daemons on one PostgreSQL store, each with its own folder, one dataset.

What must hold (issue "PostgreSQL as the shared store"):

* every unit of every machine is ``done`` exactly once on the platform, owned
  by the machine whose folder holds it (units of the same name on two
  machines are two units; colliding item names are renamed, never dropped);
* the pulls of one sync never run on two daemons at once: the sandbox records
  every pull traversal (per dataset and client) and sees no two overlap;
* when the daemon holding the pull lease is killed with SIGKILL, another one
  takes the lease over within two pull intervals, and the mirror keeps up.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from syncd.sampledata import write_fusion_unit
from tests.conftest import SandboxProcess, query, wait_until, write_config
from tests.reliability.invariants import dataset_id, local_files

pytestmark = [pytest.mark.e2e]

HOSTS = ("rig-a", "rig-b", "rig-c")
PULL_INTERVAL = 2.0
DATASET = "fleet"


def start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "--config", str(cfg)], stdout=out, stderr=out
        )


def lease_host(db: str) -> str | None:
    rows = query(db, "SELECT host FROM leases WHERE name = 'pull:fleet' AND holder IS NOT NULL")
    return str(rows[0][0]) if rows else None


def test_three_daemons_share_one_store(
    tmp_path: Path, pg_url: str, sandbox_proc: SandboxProcess
) -> None:
    db = pg_url
    # Each reading request of a pull takes a little while, so a pull cycle
    # spans long enough that two concurrent ones could not go unnoticed.
    sandbox_proc.admin(
        "POST", "/config", json={"traversal_delay": 0.05, "processing_step_delay": 0.05}
    )
    folders: dict[str, Path] = {}
    configs: dict[str, Path] = {}
    expected_items = 0
    for n, host in enumerate(HOSTS):
        folder = folders[host] = tmp_path / host / "in"
        folder.mkdir(parents=True)
        for k in range(3):
            # the same unit and frame names on every machine: three different units
            names = write_fusion_unit(
                folder / f"unit_{k:02d}", frames=2, cameras=0, seed=10 * n + k
            )
            expected_items += len(names)
        configs[host] = write_config(
            tmp_path / host / "syncd.toml",
            sandbox_proc.url,
            [
                {
                    "name": "fleet",
                    "dataset": DATASET,
                    "dataset_type": "LIDAR_BASIC",
                    "folder": folder,
                    "pull_interval": PULL_INTERVAL,
                    "full_sweep_interval": 4,
                }
            ],
            database_url=db,
            host=host,
        )
    logs = {h: tmp_path / h / "daemon.log" for h in HOSTS}
    daemons = {h: start(configs[h], logs[h]) for h in HOSTS}
    try:
        expected_units = {(h, f"unit_{k:02d}") for h in HOSTS for k in range(3)}
        wait_until(
            lambda: (
                query(db, "SELECT COUNT(*) FROM packages WHERE state NOT IN ('done', 'failed')")
                == [(0,)]
                and set(query(db, "SELECT host, unit FROM packages WHERE state = 'done'"))
                == expected_units
            ),
            240,
            "every unit of every machine to be done",
        )
        _assert_exactly_once(db, sandbox_proc, folders, expected_items)

        # The pull lease: one holder, and only it has pulled so far.
        holder = wait_until(lambda: lease_host(db), 30, "a pull lease holder")
        ds = dataset_id(sandbox_proc.url, DATASET)
        items = sandbox_proc.admin("GET", f"/datasets/{ds}/items")["items"]
        for item in items:
            sandbox_proc.admin(
                "POST", "/annotate", json={"dataId": item["id"], "objects": [BOX], "submit": True}
            )
        killed_at = time.time()
        daemons[holder].send_signal(signal.SIGKILL)
        daemons[holder].wait(timeout=30)
        successor = wait_until(
            lambda: (h := lease_host(db)) not in (None, holder) and h,
            30,
            "another daemon to take the pull lease over",
        )
        taken = query(
            db,
            "SELECT ts FROM events WHERE event = 'lease.acquired' AND host = ? ORDER BY id DESC",
            successor,
        )[0][0]
        takeover = datetime.fromisoformat(taken).timestamp() - killed_at
        print(f"pull lease: {holder} killed, {successor} took over after {takeover:.2f}s")
        assert takeover <= 2 * PULL_INTERVAL, f"takeover took {takeover:.2f}s"

        # The successor pulls: every label reaches the mirror.
        wait_until(
            lambda: (
                query(
                    db,
                    "SELECT COUNT(DISTINCT remote_item_id) FROM labels "
                    "WHERE deleted_at IS NULL AND object_count > 0",
                )
                == [(len(items),)]
            ),
            60,
            "the successor to pull every label",
        )
        mirror = {
            r[0]
            for r in query(
                db, "SELECT remote_id FROM items WHERE deleted_at IS NULL AND sync = 'fleet'"
            )
        }
        live = sandbox_proc.admin("GET", f"/datasets/{ds}/items")["items"]
        assert mirror == {str(i["id"]) for i in live if not i["deleted"]}

        # The killed machine comes back: it uploads nothing again.
        calls_before = len(sandbox_proc.admin("GET", "/counters")["data_upload_calls"])
        started = query(
            db, "SELECT COUNT(*) FROM events WHERE event = 'daemon.started' AND host = ?", holder
        )[0][0]
        daemons[holder] = start(configs[holder], logs[holder])
        wait_until(
            lambda: (
                query(
                    db,
                    "SELECT COUNT(*) FROM events WHERE event = 'daemon.started' AND host = ?",
                    holder,
                )[0][0]
                > started
            ),
            60,
            "the killed daemon to start again",
        )
        time.sleep(2 * PULL_INTERVAL)
        assert len(sandbox_proc.admin("GET", "/counters")["data_upload_calls"]) == calls_before

        report = sandbox_proc.admin("GET", "/traversals")
        traversals = [t for t in report["traversals"] if t["dataset"] == ds]
        clients = Counter(t["client"] for t in traversals)
        print(f"pull traversals per client: {dict(clients)}")
        assert report["overlaps"] == [], f"pulls overlapped: {report['overlaps'][:3]}"
        assert any(holder in c for c in clients) and any(successor in c for c in clients)
        assert len(traversals) >= 4
        assert lease_host(db) == successor, "a live holder keeps its lease"
    finally:
        for p in daemons.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = {h: p.wait(timeout=60) for h, p in daemons.items()}
    assert all(c == 0 for h, c in codes.items() if h != holder or c != -signal.SIGKILL), codes
    hosts = {r[0] for r in query(db, "SELECT DISTINCT host FROM events WHERE host IS NOT NULL")}
    assert hosts == set(HOSTS)
    assert query(db, "SELECT COUNT(*) FROM events WHERE host IS NULL") == [(0,)]
    assert query(db, "SELECT COUNT(*) FROM packages WHERE claimed_by IS NOT NULL") == [(0,)]
    for h in HOSTS:
        assert "Traceback" not in logs[h].read_text(errors="replace"), h


BOX: dict[str, Any] = {
    "type": "3D_BOX",
    "className": "Car",
    "contour": {
        "center3D": {"x": 1, "y": 2, "z": 0},
        "size3D": {"x": 4, "y": 2, "z": 1.5},
        "rotation3D": {"x": 0, "y": 0, "z": 0.3},
    },
}


def _assert_exactly_once(
    db: str, sandbox: SandboxProcess, folders: dict[str, Path], expected_items: int
) -> None:
    """Each machine's files in exactly one done package of that machine; each archive sent once."""
    for host, folder in folders.items():
        rows = query(
            db,
            "SELECT p.unit, f.rel_path FROM package_files f JOIN packages p ON p.id = f.package_id "
            "WHERE p.state = 'done' AND p.host = ?",
            host,
        )
        owners = Counter(rows)
        assert all(n == 1 for n in owners.values()), f"{host}: files in two packages"
        assert set(owners) == local_files(folder), f"{host}: packages differ from its folder"
    ds = dataset_id(sandbox.url, DATASET)
    calls = [
        c for c in sandbox.admin("GET", "/counters")["data_upload_calls"] if c["datasetId"] == ds
    ]
    per_archive = Counter(c["fileName"] for c in calls)
    assert all(n == 1 for n in per_archive.values()), f"archives sent twice: {per_archive}"
    archives = {a.lower() for (a,) in query(db, "SELECT archive_name FROM packages")}
    assert set(per_archive) == archives
    items = [i for i in sandbox.admin("GET", f"/datasets/{ds}/items")["items"] if not i["deleted"]]
    top = [i for i in items if not i.get("parentId")]
    assert len(top) == expected_items, f"{len(top)} items on the platform, {expected_items} sent"
    names = Counter(i["name"].lower() for i in top)
    assert all(n == 1 for n in names.values()), "duplicate names on the platform"
    datasets = sandbox.api("/dataset/findByPage", pageNo=1, pageSize=100, name=DATASET)["list"]
    assert len([d for d in datasets if d["name"] == DATASET]) == 1, "the dataset was made twice"
