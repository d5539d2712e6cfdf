"""Upload path: syncd from "unit settled" to "upload acknowledged" against the shell pipeline.

For each size (1 GiB, 4 GiB) one unit of ~5 MB incompressible point clouds is
generated once; every repetition then measures, against the same receiver:

* disk: ``cat`` of every file of the unit to /dev/null (the read limit);
* naive: ``zip -0 -r`` of the unit, then ``curl -T`` of the archive to a
  presigned PUT URL, ``Expect:`` disabled (what users script today);
* transfer: ``curl -T`` of that ready archive alone (the transfer limit; its
  rate is the receiver's measured capacity);
* syncd: ``syncd run`` on a fresh state directory with a ready marker, timed
  from the ``package.settled`` event to ``package.uploaded``; the daemon's
  peak RSS (VmHWM) is read from /proc while it runs.

The Xtreme1 sandbox answers the API (its processing stalled: only the
transfer is measured) but its presigned PUT URLs point at
:mod:`bench.receiver`, a socket sink that takes well over 1 GB/s, as MinIO on
a fast LAN would (the sandbox's own Starlette object store takes ≈ 300 MB/s
and would be what is measured). The receiver's byte count proves the whole
archive reached it. Units of ``LAN_SIZE`` (4 GiB) and more must stream at
``LAN_RATE`` (800 MB/s) and within ``LAN_TARGET`` (1.3) times the ready
archive's ``curl -T`` (the fast-LAN targets); smaller ones within
``TRANSFER_TARGET`` (1.5), as a package's fixed cost weighs more there.
Everything stays in the page cache (the unit and one archive); the work
directory is removed at the end.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx

from bench.common import (
    TOKEN,
    Figure,
    admin,
    curl_put,
    disk_free,
    median,
    run_until_uploaded,
    sandbox,
    say,
    timed,
    write_config,
)
from bench.receiver import Receiver
from syncd.sampledata import write_bulk_unit

GiB = 2**30
RSS_BUDGET_MB = 100.0
LAN_SIZE = 4 * GiB  # from this size on, the fast-LAN targets apply:
LAN_RATE = 800e6  # bytes/s syncd must reach,
LAN_TARGET = 1.3  # and at most this times curl -T of the ready archive to the same receiver
# Smaller units: the fixed cost of a package (packing, the presign call) weighs more.
TRANSFER_TARGET = 1.5


def _presigned(url: str, dataset_id: int, name: str) -> str:
    r = httpx.get(
        f"{url}/api/data/generatePresignedUrl",
        params={"fileName": name, "datasetId": dataset_id},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    r.raise_for_status()
    return str(r.json()["data"]["presignedUrl"])


def _dataset(url: str, name: str) -> int:
    r = httpx.post(
        f"{url}/api/dataset/create",
        json={"name": name, "type": "LIDAR_BASIC"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    r.raise_for_status()
    return int(r.json()["data"]["id"])


def _curl_put(path: Path, presigned: str) -> float:
    return timed(curl_put(path, presigned, "application/zip"))


def _files(unit: Path) -> list[str]:
    return sorted(str(p) for p in unit.rglob("*") if p.is_file())


def _syncd_upload(work: Path, url: str, watch: Path, rep: int) -> tuple[float, float]:
    """One syncd run over the unit; returns (settled → uploaded seconds, peak RSS MB)."""
    state = work / f"state-{rep}"
    shutil.rmtree(state, ignore_errors=True)
    cfg = write_config(
        work / f"syncd-{rep}.toml",
        url=url,
        state=state,
        sync={
            "dataset": "bench-upload",
            "dataset_type": "LIDAR_BASIC",
            "folder": str(watch),
            "ready_marker": "_READY",
            "settle_seconds": 0,
            "max_package_bytes": "16GiB",
            "pull": False,
        },
    )
    return run_until_uploaded(work, rep, cfg, state / "syncd.db")


def run_size(work: Path, platform: str, size: int, repeat: int, notes: list[str]) -> list[Figure]:
    label = f"{size // GiB} GiB"
    need = size * 2 + GiB  # unit + naive archive + slack (the receiver stores nothing)
    if disk_free(work.parent) < need:
        raise RuntimeError(f"upload {label}: needs {need / GiB:.1f} GiB free in {work}")
    shutil.rmtree(work, ignore_errors=True)
    watch = work / "watch"
    unit = watch / "unit_0001"
    say(f"upload {label}: generating the unit ...")
    write_bulk_unit(unit, total_bytes=size, seed=size)
    files = _files(unit)
    archive = work / "unit_0001.zip"
    times: dict[str, list[float]] = {"disk": [], "naive": [], "transfer": [], "syncd": []}
    rss: list[float] = []
    with sandbox(platform, work / "sandbox") as sb, Receiver() as sink:
        admin(
            sb.url,
            "POST",
            "config",
            {"stall_processing": True, "presign_put_base": f"{sink.url}/minio"},
        )
        dataset_id = _dataset(sb.url, "bench-naive")
        for rep in range(repeat):
            times["disk"].append(timed(["sh", "-c", 'cat "$@" > /dev/null', "cat", *files]))
            archive.unlink(missing_ok=True)
            zip_s = timed(["zip", "-0", "-r", "-q", str(archive), "unit_0001"], cwd=watch)
            put_s = _curl_put(archive, _presigned(sb.url, dataset_id, f"naive-{rep}.zip"))
            times["naive"].append(zip_s + put_s)
            archive_bytes = archive.stat().st_size
            times["transfer"].append(
                _curl_put(archive, _presigned(sb.url, dataset_id, f"ready-{rep}.zip"))
            )
            archive.unlink()
            (unit / "_READY").touch()
            received = sink.stats()["requests"]
            s, peak = _syncd_upload(work, sb.url, watch, rep)
            (unit / "_READY").unlink()
            got = sink.stats()
            if got["requests"] != received + 1 or got["last"] < size:
                raise RuntimeError(f"upload {label}: the receiver did not get syncd's archive")
            times["syncd"].append(s)
            rss.append(peak)
            say(
                f"upload {label} rep {rep + 1}/{repeat}: "
                + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items())
                + f", syncd peak RSS {peak:.0f} MB"
            )
    shutil.rmtree(work, ignore_errors=True)
    med = {k: median(v) for k, v in times.items()}
    mb = archive_bytes / 1e6
    rates = (
        f"upload {label}: receiver capacity {mb / med['transfer']:.0f} MB/s "
        f"(curl -T of the ready archive); disk read rate {mb / med['disk']:.0f} MB/s "
        f"(cat, page cache warm); syncd {mb / med['syncd']:.0f} MB/s"
    )
    say(rates)
    notes.append(rates)
    bench = f"upload {label}"
    return [
        Figure(
            bench,
            "syncd settled→uploaded",
            med["syncd"],
            "s",
            med["naive"],
            "zip -0 -r + curl -T",
            1.0,
            times["syncd"],
        ),
        Figure(
            bench,
            "syncd settled→uploaded",
            med["syncd"],
            "s",
            med["transfer"],
            "curl -T of a ready archive",
            LAN_TARGET if size >= LAN_SIZE else TRANSFER_TARGET,
            times["syncd"],
            note=f"receiver takes {mb / med['transfer']:.0f} MB/s",
        ),
        Figure(
            bench,
            "syncd settled→uploaded",
            med["syncd"],
            "s",
            med["disk"],
            "cat files > /dev/null",
            float("inf"),
            times["syncd"],
            note="disk limit, no target",
        ),
        Figure(bench, "daemon peak RSS", max(rss), "MB", RSS_BUDGET_MB, "budget", 1.0, rss),
    ] + (
        [
            Figure(
                bench,
                "syncd settled→uploaded",
                med["syncd"],
                "s",
                archive_bytes / LAN_RATE,
                f"the archive at {LAN_RATE / 1e6:.0f} MB/s",
                1.0,
                times["syncd"],
                note=f"syncd {mb / med['syncd']:.0f} MB/s",
            )
        ]
        if size >= LAN_SIZE
        else []
    )


def run(
    work: Path, platform: str, repeat: int, sizes: tuple[int, ...], notes: list[str]
) -> list[Figure]:
    figures: list[Figure] = []
    for gib in sizes:
        new = run_size(work / f"upload-{gib}g", platform, gib * GiB, repeat, notes)
        for f in new:
            say(f.line())
        figures += new
    return figures
