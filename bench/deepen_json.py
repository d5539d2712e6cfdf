"""Deepen JSON upload: syncd converting on the fly against convert-to-folder + zip + curl.

One fusion-shaped unit is generated once: binary point clouds of ~5 MB with
incompressible payload (the bulk unit of :mod:`syncd.sampledata`; its random
floats are the worst case for the JSON format: every number takes its full
width) plus one camera image and its ``camera_config`` per frame. Every
repetition then measures, against the Deepen sandbox (processing stalled):

* naive: the same frames written into a folder by a plain script
  (:func:`convert_to_folder`, the converter's output written file by file),
  ``zip -0 -r`` of the folder, ``curl -T`` of the zip to a fresh resumable
  upload URL (one PUT, ``Expect:`` disabled, as Deepen's quickstart does);
* syncd: ``syncd run`` on a fresh state directory with a ready marker, timed
  from ``package.settled`` (the conversion's first pass happens while
  packing) to ``package.uploaded``; the daemon's peak RSS is read from /proc.

Both produce the same members (frame JSONs at the root, images under
``images/``); the stored objects are removed after each repetition.
"""

from __future__ import annotations

import shutil
import sys
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
from syncd.formats.deepen import convert
from syncd.formats.measure import unit_files
from syncd.sampledata import write_bulk_unit, write_fusion_unit
from syncd_sandbox.deepen import CLIENT_ID

GiB = 2**30
RSS_BUDGET_MB = 150.0


def write_unit(unit: Path, size: int) -> None:
    """Bulk binary clouds plus, per frame, the image and camera_config of a small fusion frame."""
    write_bulk_unit(unit, total_bytes=size, seed=size)
    sample = unit.parent / "_sample"
    write_fusion_unit(sample, frames=1, cameras=1, points=10, with_result=False)
    for pcd in sorted((unit / "lidar_point_cloud_0").glob("*.pcd")):
        for folder, ext in (("camera_image_0", ".png"), ("camera_config", ".json")):
            (unit / folder).mkdir(exist_ok=True)
            shutil.copyfile(sample / folder / f"000001{ext}", unit / folder / f"{pcd.stem}{ext}")
    shutil.rmtree(sample)


def convert_to_folder(unit: Path, out: Path) -> int:
    """The plain pipeline's first step: every member of the JSON format written as a file."""
    planned = convert(unit.parent, unit_files(unit), "json")
    total = 0
    for m in planned.members:
        path = out / m.name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            for block in m.source():
                f.write(block)
                total += len(block)
    return total


def _session(url: str, size: int, name: str) -> str:
    r = httpx.post(
        f"{url}/api/v2/clients/{CLIENT_ID}/datasets",
        json={
            "dataset_name": name,
            "dataset_type": "3d",
            "dataset_format": "json",
            "files": [{"file_size": size, "file_type": "application/zip"}],
        },
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=60,
    )
    r.raise_for_status()
    return str(r.json()["files"][0]["resumable_upload_url"])


def _syncd_upload(work: Path, url: str, watch: Path, rep: int) -> tuple[float, float, int]:
    """One syncd run; returns (settled → uploaded seconds, peak RSS MB, archive bytes)."""
    state = work / f"state-{rep}"
    shutil.rmtree(state, ignore_errors=True)
    cfg = write_config(
        work / f"syncd-{rep}.toml",
        url=url,
        state=state,
        platform="deepen",
        remote={"client_id": CLIENT_ID, "dataset_format": "json"},
        sync={
            "dataset": f"bench-deepen-{rep}",
            "dataset_type": "LIDAR_FUSION",
            "folder": str(watch),
            "ready_marker": "_READY",
            "settle_seconds": 0,
            "max_package_bytes": "16GiB",
            "pull": False,
        },
    )
    db = state / "syncd.db"
    seconds, peak = run_until_uploaded(work, rep, cfg, db)
    import sqlite3

    with sqlite3.connect(db) as conn:
        (size,) = conn.execute("SELECT archive_bytes FROM packages").fetchone()
    return seconds, peak, int(size)


def run(work: Path, repeat: int, gib: float, notes: list[str]) -> list[Figure]:
    size = int(gib * GiB)
    label = f"deepen json {gib:g} GiB"
    need = size * 16 + GiB  # unit + converted folder + its zip + one stored object (x5 each)
    if disk_free(work.parent) < need:
        raise RuntimeError(f"{label}: needs {need / GiB:.1f} GiB free in {work}")
    shutil.rmtree(work, ignore_errors=True)
    watch = work / "watch"
    unit = watch / "unit_0001"
    say(f"{label}: generating the unit ...")
    write_unit(unit, size)
    raw = sum(f.size for f in unit_files(unit))
    folder, archive = work / "converted", work / "converted.zip"
    times: dict[str, list[float]] = {"naive": [], "syncd": []}
    rss: list[float] = []
    archive_bytes = 0
    with sandbox("deepen", work / "sandbox") as sb:
        admin(sb.url, "POST", "config", {"processing_seconds": 1e9})
        for rep in range(repeat):
            shutil.rmtree(folder, ignore_errors=True)
            archive.unlink(missing_ok=True)
            convert_s = timed(
                [sys.executable, "-m", "bench.deepen_json", str(unit), str(folder)],
                cwd=Path(__file__).parent.parent,
            )
            zip_s = timed(["zip", "-0", "-r", "-q", str(archive), "."], cwd=folder)
            shutil.rmtree(folder)
            put_url = _session(sb.url, archive.stat().st_size, f"naive/{rep}")
            put_s = timed(curl_put(archive, put_url))
            archive.unlink()
            times["naive"].append(convert_s + zip_s + put_s)
            (unit / "_READY").touch()
            s, peak, archive_bytes = _syncd_upload(work, sb.url, watch, rep)
            (unit / "_READY").unlink()
            times["syncd"].append(s)
            rss.append(peak)
            shutil.rmtree(work / "sandbox" / "gcs", ignore_errors=True)
            say(
                f"{label} rep {rep + 1}/{repeat}: naive {times['naive'][-1]:.1f}s "
                f"(convert {convert_s:.1f}s, zip {zip_s:.1f}s, curl {put_s:.1f}s), "
                f"syncd {s:.1f}s, syncd peak RSS {peak:.0f} MB"
            )
    shutil.rmtree(work, ignore_errors=True)
    ratio = f"{label}: JSON archive {archive_bytes / 1e6:.0f} MB for {raw / 1e6:.0f} MB of files"
    ratio += f" (x{archive_bytes / raw:.2f})"
    say(ratio)
    notes.append(ratio)
    med = {k: median(v) for k, v in times.items()}
    return [
        Figure(
            label,
            "syncd settled→uploaded",
            med["syncd"],
            "s",
            med["naive"],
            "convert to folder + zip -0 -r + curl -T",
            1.0,
            times["syncd"],
        ),
        Figure(label, "daemon peak RSS", max(rss), "MB", RSS_BUDGET_MB, "budget", 1.0, rss),
    ]


if __name__ == "__main__":
    # The reference's conversion step: python -m bench.deepen_json UNIT OUT_FOLDER
    convert_to_folder(Path(sys.argv[1]).resolve(), Path(sys.argv[2]))
