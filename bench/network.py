"""Over a real network: pushes with a per-request delay (and a bandwidth cap) against curl.

Loopback costs microseconds a request; a SaaS platform is 20-150 ms away,
so a push that makes its requests one after another pays the round trip
once per file. Each case runs the platform's sandbox (real HTTP on
127.0.0.1) with the ``delay`` fault on every request (API and object store
alike: 20 ms, then 50 ms), lifts the sandbox's rate windows (as the bench
configs lift syncd's: the limiter has its own benchmark) and measures, in
the same run, syncd against :mod:`bench.reference_push` (the same requests
as a good tool makes them: ``curl --parallel --parallel-max 8`` for the
transfers, the API calls at their minimum count, eight at a time where the
API allows it):

* BasicAI, per-file push of a 200-frame fusion unit (1 000 files: a point
  cloud, two camera images, the camera config and pre-labels per frame):
  ``syncd run`` from ``package.settled`` to ``package.done`` (every file
  stored, every item registered). Targets: ≤ 1.3 x the reference, and
  ≤ 0.2 x syncd run sequentially (``transfers = 1``, ``upload_concurrency
  = 1``; one run per delay: it is the slow side);
* Segments.ai, per-asset push of the same unit: ≤ 1.3 x the reference;
* Xtreme1, eight 64 MB units arriving together (their ready markers are
  there when the daemon starts) over a link capped at 50 MB/s (the
  ``throttle`` fault, shared by every object-store PUT, plus the delay):
  from the first ``package.settled`` to the eighth ``package.submitted``
  against eight ``curl -T`` of the ready archives at once, each with its
  presign and submit call. Target ≤ 1.3;
* the daemon's peak RSS (VmHWM) over every run of a platform: ≤ 150 MB.

A notes line per case gives the API calls each side made (sandbox counters).
Without ``curl`` (or ``zip``, for Xtreme1's archives) a case is skipped
with a message saying so.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench import reference_push as ref
from bench.common import (
    TOKEN,
    Figure,
    admin,
    api_requests,
    event_times,
    median,
    run_until,
    sandbox,
    say,
    wait_for,
    write_config,
)
from syncd.config import SegmentsConfig
from syncd.remotes.segments import SegmentsRemote
from syncd.sampledata import write_bulk_unit, write_fusion_unit

DELAYS = (0.020, 0.050)  # seconds added to every request: a WAN round trip
FRAMES = 200
CAMERAS = 2
XTREME1_UNITS = 8
XTREME1_UNIT_BYTES = 64 * 2**20
LINK_RATE = 50e6  # bytes per second, shared by every object-store PUT (Xtreme1)
RSS_BUDGET_MB = 150.0
TARGET = 1.3  # ≤ this x the reference
SPEEDUP_TARGET = 0.2  # ≤ this x sequential syncd: at least 5 x faster
SEQUENTIAL = {"transfers": 1, "upload_concurrency": 1}
REFERENCE = "curl --parallel 8 + API calls"
CLASSES = {"Car": "3D_BOX", "Pedestrian": "3D_BOX", "Cyclist": "3D_BOX"}
XTREME1_STORE = "^/minio/"  # the Xtreme1 sandbox's object store: what the link cap applies to
MARKER = "_READY"


def network(url: str, delay: float, store_path: str | None = None, rate: float = 0.0) -> None:
    """Every request of the sandbox at ``url`` waits ``delay`` s; with ``rate`` the PUTs to
    ``store_path`` also share one link of ``rate`` bytes/s (one rule: a request meets one)."""
    admin(url, "DELETE", "faults")
    if rate and store_path:
        admin(
            url,
            "POST",
            "faults",
            {
                "method": "PUT",
                "path": store_path,
                "action": "throttle",
                "rate": rate,
                "shared": True,
                "delay": delay,
                "times": None,
            },
        )
    admin(
        url,
        "POST",
        "faults",
        {"method": "*", "path": ".*", "action": "delay", "delay": delay, "times": None},
    )


def api_calls(url: str) -> int:
    """API requests the sandbox has counted so far (the object store is not counted)."""
    return sum(n for route, n in api_requests(url).items() if " " in route)


def _markers(watch: Path, present: bool) -> None:
    for unit in watch.iterdir():
        marker = unit / MARKER
        if present:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)


def _syncd(
    work: Path,
    tag: str,
    sb_url: str,
    platform: str,
    watch: Path,
    dataset: str,
    dataset_type: str,
    *,
    until: str,
    count: int = 1,
    remote: dict[str, Any] | None = None,
) -> tuple[float, float, Path]:
    """``syncd run`` over the units of ``watch`` (markers set at start) until ``count`` x
    ``until``; returns (first settled → that event, peak RSS MB, the state database)."""
    state = work / f"state-{tag}"
    shutil.rmtree(state, ignore_errors=True)
    cfg = write_config(
        work / f"{tag}.toml",
        url=sb_url,
        state=state,
        platform=platform,
        remote=remote,
        sync={
            "dataset": dataset,
            "dataset_type": dataset_type,
            "folder": str(watch),
            "ready_marker": MARKER,
            "settle_seconds": 0,
            "max_package_bytes": "16GiB",
            "pull": False,
        },
    )
    _markers(watch, True)
    try:
        seconds, peak = run_until(work, tag, cfg, state / "syncd.db", until, count)
    finally:
        _markers(watch, False)
    return seconds, peak, state / "syncd.db"


# --------------------------------------------------------------------------- per-file push


def _segments_dataset(url: str, name: str) -> str:
    """A reference dataset as syncd makes one (task type, labelsets, categories); untimed."""
    cfg = SegmentsConfig(platform="segments", url=url, token=TOKEN, rate_limits=("100000/s",))
    remote = SegmentsRemote("reference", cfg, TOKEN)
    try:
        dataset, _ = remote.ensure_dataset(name, "LIDAR_FUSION")
        remote.bind_classes(dataset.id, CLASSES)
        return dataset.id
    finally:
        remote.close()


def _reference(platform: str, work: Path, url: str, name: str, unit: Path) -> float:
    if platform == "basicai":
        return ref.push_basicai(work, url, ref.basicai_dataset(url, name, "LIDAR_FUSION"), unit)
    return ref.push_segments(work, url, _segments_dataset(url, name), unit, "ground-truth")


def per_file(
    work: Path, platform: str, repeat: int, notes: list[str], frames: int = FRAMES
) -> list[Figure]:
    """BasicAI or Segments.ai: one fusion unit of ``frames`` frames at each delay."""
    shutil.rmtree(work, ignore_errors=True)
    watch = work / "watch"
    unit = watch / "unit_0001"
    say(f"network {platform}: generating a {frames}-frame fusion unit ...")
    write_fusion_unit(unit, frames=frames, cameras=CAMERAS, with_result=True, seed=18)
    files = sum(1 for p in unit.rglob("*") if p.is_file())
    figures: list[Figure] = []
    rss: list[float] = []
    with sandbox(platform, work / "sandbox") as sb:
        admin(sb.url, "POST", "config", {"rate_windows": [[1_000_000, 1.0]]})
        for delay in DELAYS:
            ms = round(delay * 1000)
            network(sb.url, delay)
            times: dict[str, list[float]] = {"syncd": [], "reference": []}
            calls: dict[str, int] = {}
            for rep in range(repeat):
                before = api_calls(sb.url)
                times["reference"].append(
                    _reference(platform, work, sb.url, f"ref-{ms}-{rep}", unit)
                )
                calls["reference"] = api_calls(sb.url) - before
                before = api_calls(sb.url)
                s, peak, _ = _syncd(
                    work,
                    f"syncd-{ms}-{rep}",
                    sb.url,
                    platform,
                    watch,
                    f"net-{ms}-{rep}",
                    "LIDAR_FUSION",
                    until="package.done",
                )
                calls["syncd"] = api_calls(sb.url) - before
                times["syncd"].append(s)
                rss.append(peak)
                say(
                    f"network {platform} {ms} ms rep {rep + 1}/{repeat}: syncd {s:.2f}s, "
                    f"reference {times['reference'][-1]:.2f}s, syncd peak RSS {peak:.0f} MB"
                )
            bench = f"network {platform} {frames} frames {ms} ms"
            name = "syncd settled→done"
            figures.append(
                Figure(
                    bench,
                    name,
                    median(times["syncd"]),
                    "s",
                    median(times["reference"]),
                    REFERENCE,
                    TARGET,
                    times["syncd"],
                )
            )
            if platform == "basicai":
                # The slow side: one run (its length keeps the ratio's noise small).
                seq, peak, _ = _syncd(
                    work,
                    f"sequential-{ms}",
                    sb.url,
                    platform,
                    watch,
                    f"seq-{ms}",
                    "LIDAR_FUSION",
                    until="package.done",
                    remote=SEQUENTIAL,
                )
                rss.append(peak)
                say(f"network {platform} {ms} ms: sequential syncd {seq:.2f}s")
                figures.append(
                    Figure(
                        bench,
                        name,
                        median(times["syncd"]),
                        "s",
                        seq,
                        "syncd transfers=1, upload_concurrency=1",
                        SPEEDUP_TARGET,
                        times["syncd"],
                    )
                )
            line = (
                f"network {platform} {ms} ms: one unit of {frames} frames, {files} files; "
                f"API calls per push (dataset setup included): syncd {calls['syncd']}, reference {calls['reference']}"
            )
            say(line)
            notes.append(line)
    figures.append(
        Figure(
            f"network {platform}",
            "daemon peak RSS",
            max(rss),
            "MB",
            RSS_BUDGET_MB,
            "budget",
            1.0,
            rss,
        )
    )
    shutil.rmtree(work, ignore_errors=True)
    return figures


# --------------------------------------------------------------------------- Xtreme1


def xtreme1(
    work: Path, repeat: int, notes: list[str], unit_bytes: int = XTREME1_UNIT_BYTES
) -> list[Figure]:
    """Eight units (64 MiB each by default) at once over a capped link, at each delay."""
    shutil.rmtree(work, ignore_errors=True)
    watch, ready = work / "watch", work / "archives"
    ready.mkdir(parents=True)
    units = [f"unit_{n:04d}" for n in range(1, XTREME1_UNITS + 1)]
    say(f"network xtreme1: generating {XTREME1_UNITS} units of {unit_bytes >> 20} MiB ...")
    for n, name in enumerate(units, start=1):
        write_bulk_unit(watch / name, total_bytes=unit_bytes, seed=n)
        subprocess.run(
            ["zip", "-0", "-r", "-q", str(ready / f"{name}.zip"), name], cwd=watch, check=True
        )
    archives = sorted(ready.iterdir())
    figures: list[Figure] = []
    rss: list[float] = []
    with sandbox("xtreme1", work / "sandbox") as sb:
        objects = work / "sandbox" / "objects"

        def settle(done: Callable[[], bool]) -> None:
            # Processing left over from one side must not take the CPU from the next.
            wait_for(done, timeout=600, what="the platform's processing", every=0.2)
            shutil.rmtree(objects / "xtreme1", ignore_errors=True)

        for delay in DELAYS:
            ms = round(delay * 1000)
            network(sb.url, delay, XTREME1_STORE, LINK_RATE)
            times: dict[str, list[float]] = {"syncd": [], "reference": []}
            for rep in range(repeat):
                dataset = ref.xtreme1_dataset(sb.url, f"ref-{ms}-{rep}", "LIDAR_BASIC")
                seconds, serials = ref.push_xtreme1(sb.url, dataset, archives)
                times["reference"].append(seconds)
                settle(partial(ref.xtreme1_processed, sb.url, serials))
                _, peak, db = _syncd(
                    work,
                    f"syncd-{ms}-{rep}",
                    sb.url,
                    "xtreme1",
                    watch,
                    f"net-{ms}-{rep}",
                    "LIDAR_BASIC",
                    until="package.done",
                    count=XTREME1_UNITS,
                )
                submitted = event_times(db, "package.submitted")
                times["syncd"].append(submitted[-1] - event_times(db, "package.settled")[0])
                rss.append(peak)
                settle(lambda: True)
                say(
                    f"network xtreme1 {ms} ms rep {rep + 1}/{repeat}: syncd "
                    f"{times['syncd'][-1]:.2f}s, reference {seconds:.2f}s, peak RSS {peak:.0f} MB"
                )
            total = sum(a.stat().st_size for a in archives) / 1e6
            line = (
                f"network xtreme1 {ms} ms: {XTREME1_UNITS} x {unit_bytes >> 20} MiB "
                f"({total:.0f} MB) over a {LINK_RATE / 1e6:.0f} MB/s link: the link alone "
                f"takes {total / (LINK_RATE / 1e6):.1f} s"
            )
            say(line)
            notes.append(line)
            figures.append(
                Figure(
                    f"network xtreme1 8x{unit_bytes >> 20} MiB {ms} ms",
                    "syncd settled→8th submitted",
                    median(times["syncd"]),
                    "s",
                    median(times["reference"]),
                    "8 x (curl -T + submit) at once",
                    TARGET,
                    times["syncd"],
                )
            )
    figures.append(
        Figure(
            "network xtreme1", "daemon peak RSS", max(rss), "MB", RSS_BUDGET_MB, "budget", 1.0, rss
        )
    )
    shutil.rmtree(work, ignore_errors=True)
    return figures


def run(
    work: Path,
    repeat: int,
    notes: list[str],
    frames: int = FRAMES,
    unit_bytes: int = XTREME1_UNIT_BYTES,
) -> list[Figure]:
    if not ref.have_curl():
        line = "network: curl is not installed: every network case skipped (no reference)"
        say(line)
        notes.append(line)
        return []
    figures: list[Figure] = []
    for platform in ("basicai", "segments"):
        figures += per_file(work / platform, platform, repeat, notes, frames)
    if shutil.which("zip") is None:
        line = "network xtreme1: zip is not installed: case skipped (no ready archives)"
        say(line)
        notes.append(line)
    else:
        figures += xtreme1(work / "xtreme1", repeat, notes, unit_bytes)
    for f in figures:
        say(f.line())
    return figures
