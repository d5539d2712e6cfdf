"""Pull path: syncd's first mirror of a large dataset against a minimal reference puller.

One sandbox dataset of ``items`` items with 10 objects each (every second one
annotated) is seeded through the sandbox's admin API. Every repetition:

* reference: ``bench/reference_pull_<platform>.py`` (same requests, same
  order, ``executemany`` into an empty syncd database) — wall time;
* syncd: ``syncd once`` with a pull-only sync on a fresh state directory —
  wall time and peak RSS; the mirror must hold the same rows;
* an unchanged cycle: ``syncd once`` again; the sandbox's request counters
  give the number of API requests, against ``ceil(unfinished / 100) + 5``.
"""

from __future__ import annotations

import math
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from bench.common import (
    TOKEN,
    Figure,
    RssWatch,
    median,
    sandbox,
    say,
    syncd_cmd,
    write_config,
)
from bench.platforms import Platform
from syncd.store import Store

OBJECTS = 10
RSS_BUDGET_MB = 200.0
DATASET = "bench-pull"


def _run(cmd: list[str], log: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command; raises if it fails."""
    with log.open("w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        rss = RssWatch(proc.pid)
        code = proc.wait()
        seconds = time.perf_counter() - t0
        peak = rss.stop()
    if code != 0:
        raise RuntimeError(f"{cmd[:4]} exited {code}; see {log}")
    return seconds, peak


def _counts(db: Path) -> tuple[int, int, int]:
    con = sqlite3.connect(db)
    try:
        items, labels, objects = (
            int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
            for t in ("items", "labels", "objects")
        )
        return items, labels, objects
    finally:
        con.close()


def _unfinished(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return int(
            con.execute(
                "SELECT count(*) FROM items WHERE deleted_at IS NULL AND"
                " (annotation_status IS NULL OR annotation_status NOT IN ('ANNOTATED','INVALID'))"
            ).fetchone()[0]
        )
    finally:
        con.close()


def run(work: Path, platform: Platform, repeat: int, items: int, notes: list[str]) -> list[Figure]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    template = work / "template"
    Store(template).close()  # an empty syncd database: the reference writes the same schema
    bench = f"pull {platform.name} {items // 1000}kx{OBJECTS}"
    t_ref: list[float] = []
    t_syncd: list[float] = []
    rss: list[float] = []
    reqs: list[float] = []
    budget = 0
    with sandbox(platform.name, work / "sandbox") as sb:
        say(f"{bench}: seeding {items} items x {OBJECTS} objects ...")
        platform.seed(sb.url, TOKEN, DATASET, items, OBJECTS)
        for rep in range(repeat):
            ref_db = work / f"ref-{rep}.db"
            shutil.copy(template / "syncd.db", ref_db)
            s, _ = _run(
                [sys.executable, str(platform.reference), sb.url, TOKEN, DATASET, str(ref_db)],
                work / f"ref-{rep}.log",
            )
            t_ref.append(s)
            state = work / f"state-{rep}"
            cfg = write_config(
                work / f"syncd-{rep}.toml",
                url=sb.url,
                state=state,
                sync={"dataset": DATASET, "dataset_type": platform.dataset_type, "push": False},
                platform=platform.name,
                remote=platform.remote,
            )
            s, peak = _run(syncd_cmd("once", "--config", str(cfg)), work / f"syncd-{rep}.log")
            t_syncd.append(s)
            rss.append(peak)
            mine, theirs = _counts(state / "syncd.db"), _counts(ref_db)
            if mine != theirs:
                raise RuntimeError(f"{bench}: syncd mirrored {mine} rows, the reference {theirs}")
            before = platform.requests(sb.url)
            _run(syncd_cmd("once", "--config", str(cfg)), work / f"syncd-{rep}-again.log")
            after = platform.requests(sb.url)
            delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            reqs.append(sum(delta.values()))
            unfinished = _unfinished(state / "syncd.db")
            budget = math.ceil(unfinished / 100) + 5
            say(
                f"{bench} rep {rep + 1}/{repeat}: reference {t_ref[-1]:.2f}s, syncd {s:.2f}s, "
                f"peak RSS {peak:.0f} MB, rows {mine}; unchanged cycle {reqs[-1]:.0f} requests "
                f"({unfinished} unfinished → budget {budget}): "
                + ", ".join(f"{k} x{v}" for k, v in sorted(delta.items()) if v)
            )
            ref_db.unlink()
            shutil.rmtree(state, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    figures = [
        Figure(
            bench,
            "syncd first mirror",
            median(t_syncd),
            "s",
            median(t_ref),
            "reference puller",
            1.5,
            t_syncd,
        ),
        Figure(bench, "syncd peak RSS", max(rss), "MB", RSS_BUDGET_MB, "budget", 1.0, rss),
        Figure(
            bench,
            "unchanged cycle requests",
            median(reqs),
            "requests",
            float(budget),
            "ceil(unfinished/100)+5",
            1.0,
            reqs,
        ),
    ]
    for f in figures:
        say(f.line())
    return figures
