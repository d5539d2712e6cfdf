"""``syncd demo``: the whole product path on this machine, in about a minute.

Starts the Xtreme1 sandbox, starts ``syncd run`` on ``config/demo.toml``,
drops realistic sample units into the watched folder, waits until they are
imported, plays the annotator on the sandbox, waits until the new labels are
in the mirror, stops everything and prints a SQL query over the mirror.
Everything lives under the ``--dir`` folder, which is wiped first.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from syncd.errors import SyncdError
from syncd.extras import require

TOKEN = "demo-token"
CONFIG = Path(__file__).resolve().parent.parent / "config" / "demo.toml"
QUERY = """SELECT item, scene, source, class_name, shape_type, track_id
FROM object_details ORDER BY item, source, class_name LIMIT 12"""


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float,
    daemon: subprocess.Popen[bytes] | None = None,
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if daemon is not None and daemon.poll() is not None:
            raise SyncdError(f"the daemon exited with {daemon.returncode} while waiting for {what}")
        time.sleep(0.5)
    raise SyncdError(f"timed out after {timeout:.0f}s waiting for {what}")


def _query(db: Path, sql: str, *args: Any) -> list[sqlite3.Row]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []  # tables not created yet
    finally:
        conn.close()


def annotate(url: str, dataset_id: str) -> int:
    """Play the annotator: two boxes on every frame, then submit. Returns frames labelled."""
    items = httpx.get(f"{url}/__sandbox/datasets/{dataset_id}/items", timeout=30).json()
    rows = items.get("items", items) if isinstance(items, dict) else items
    n = 0
    for it in rows:
        if it.get("type") == "SCENE" or it.get("deleted"):
            continue
        objects = [
            {
                "type": "3D_BOX",
                "className": cls,
                "trackId": f"annotator-{cls.lower()}",
                "trackName": cls,
                "contour": {
                    "center3D": {"x": 8.0 + i * 4, "y": -2.0 + i, "z": 0.9},
                    "size3D": {
                        "x": 4.4 if cls == "Car" else 0.6,
                        "y": 1.8 if cls == "Car" else 0.6,
                        "z": 1.6,
                    },
                    "rotation3D": {"x": 0, "y": 0, "z": 0.1 * i},
                    "pointN": 120,
                    "points": [],
                },
            }
            for i, cls in enumerate(("Car", "Pedestrian"))
        ]
        r = httpx.post(
            f"{url}/__sandbox/annotate",
            json={"dataId": it["id"], "objects": objects, "submit": True},
            timeout=30,
        )
        r.raise_for_status()
        n += 1
    return n


def run_demo(work: Path) -> int:
    """Run the demo in ``work`` (wiped first); returns the exit code."""
    from syncd.sampledata import write_demo_tree

    work = work.resolve()
    if work.exists():
        shutil.rmtree(work)
    (work / "incoming").mkdir(parents=True)
    say(f"working in {work}")
    try:
        sandbox = require("sandbox").SandboxProcess(
            "xtreme1", token=TOKEN, data_dir=work / "sandbox-objects", log=work / "sandbox.log"
        )
    except RuntimeError as exc:
        raise SyncdError(str(exc)) from None
    url = sandbox.url
    daemon: subprocess.Popen[bytes] | None = None
    db = work / "state" / "syncd.db"
    try:
        say(f"Xtreme1 sandbox serving at {url} (token {TOKEN})")
        env = {
            **os.environ,
            "SYNCD_DEMO_DIR": str(work),
            "SYNCD_DEMO_URL": url,
            "SYNCD_DEMO_TOKEN": TOKEN,
            "SYNCD_DEMO_LOG_FORMAT": "json",
        }
        config = work / "syncd.toml"
        shutil.copyfile(CONFIG, config)
        with (work / "syncd.log").open("wb") as log:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "syncd", "run", "--config", str(config)],
                env=env,
                stderr=log,
                stdout=log,
            )
        say(f"daemon started (pid {daemon.pid}); JSON logs in {work / 'syncd.log'}")
        wait_for(
            "the daemon to open its database",
            lambda: _query(db, "SELECT 1 FROM events LIMIT 1"),
            30,
            daemon,
        )
        units = write_demo_tree(work / "incoming")
        say(
            f"dropped {len(units)} units into {work / 'incoming'}: "
            + ", ".join(f"{u} ({len(n)} frames)" for u, n in units.items())
        )
        wait_for(
            "both units to be imported",
            lambda: len(_query(db, "SELECT id FROM packages WHERE state = 'done'")) >= len(units),
            90,
            daemon,
        )
        for r in _query(
            db, "SELECT id, unit, state, archive_bytes, serial FROM packages ORDER BY id"
        ):
            say(
                f"package {r['id']} {r['unit']}: {r['state']} ({r['archive_bytes']} bytes, serial {r['serial']})"
            )
        frames = sum(len(n) for n in units.values())
        wait_for(
            "the first pull",
            lambda: (
                _query(db, "SELECT COUNT(*) AS n FROM items WHERE kind != 'SCENE'")[0]["n"]
                >= frames
            ),
            60,
            daemon,
        )
        pre = _query(db, "SELECT COUNT(*) AS n FROM objects")[0]["n"]
        say(f"mirror holds {frames} frames and {pre} pre-label objects")
        dataset_id = _query(db, "SELECT remote_id FROM datasets LIMIT 1")[0]["remote_id"]
        labelled = annotate(url, dataset_id)
        say(f"annotator labelled and submitted {labelled} frames on the platform")
        wait_for(
            "the annotator's labels in the mirror",
            lambda: (
                _query(db, "SELECT COUNT(*) AS n FROM objects WHERE track_id LIKE 'annotator-%'")[
                    0
                ]["n"]
                >= 2 * labelled
            ),
            60,
            daemon,
        )
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        say(f"daemon stopped (exit {daemon.returncode})")
        print(f'\n$ sqlite3 {db} "{" ".join(QUERY.split())}"')
        rows = _query(db, QUERY)
        print(" | ".join(rows[0].keys()))
        for r in rows:
            print(" | ".join("" if v is None else str(v) for v in r))
        n_events = _query(db, "SELECT COUNT(*) AS n FROM events")[0]["n"]
        print(
            f"\nThe mirror is {db} ({n_events} events). Try:\n  sqlite3 {db} 'SELECT * FROM package_summary'"
        )
        return 0
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
        sandbox.stop()
