"""100 000 files in one unit: detected, packed and streamed to the platform, nothing dropped.

The sandbox's own import of 100 000 items takes minutes (it is a test
double, not a database), so the test follows the package until the platform
has accepted the archive and started processing it, and checks the archive
the platform received holds every file.
"""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import pytest
from sqlmodel import col, select

from syncd.pipeline import detect, pack, upload
from syncd.pipeline.archive import open_archive
from syncd.sampledata import write_fusion_unit
from syncd.store import PackageFile
from tests.conftest import SandboxProcess, query
from tests.pipeline.conftest import Env

pytestmark = pytest.mark.slow

N = 100_000


def test_hundred_thousand_files_in_one_unit(tmp_path: Path, sandbox_proc: SandboxProcess) -> None:
    # a sandbox process of its own, whose import queue is held: its parsing of
    # 100 000 items would only slow down the rest of the test session
    env = Env(tmp_path, sandbox_proc.url)
    sandbox_proc.admin("POST", "/config", json={"stall_processing": True})
    seed_unit = tmp_path / "seed"
    write_fusion_unit(seed_unit, frames=1, cameras=0, with_result=False, points=10, seed=30)
    data = (seed_unit / "lidar_point_cloud_0" / "000001.pcd").read_bytes()
    pcd = env.folder / ".staging" / "lidar_point_cloud_0"
    pcd.mkdir(parents=True)
    for i in range(N):
        fd = os.open(pcd / f"{i:06d}.pcd", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, data)
        os.close(fd)
    (env.folder / ".staging").rename(env.folder / "many")

    d = env.daemon(dataset_type="LIDAR_BASIC")
    ctx = d.contexts[0]
    received = env.admin("GET", "/counters")["bytes_received"]
    started = time.monotonic()
    try:
        tracker = detect.SettleTracker()
        detect.run_once(ctx, tracker)
        detect.run_once(ctx, tracker)
        pack.run_once(ctx)
        upload.run_once(ctx)
        took = time.monotonic() - started
        [(state, files, archive_bytes)] = query(
            env.db, "SELECT state, file_count, archive_bytes FROM packages"
        )
        assert state == "processing" and files == N
        assert query(env.db, "SELECT COUNT(*) FROM package_files")[0][0] == N
        assert env.admin("GET", "/counters")["bytes_received"] - received == archive_bytes
        [call] = env.calls()  # submitted once
        assert call["fileName"] == "p1-many.zip"
        # the stream the platform got is a valid zip naming every file
        with d.store.read() as s:
            rows = list(s.exec(select(PackageFile).order_by(col(PackageFile.id))).all())
        copy = tmp_path / "copy.zip"
        with copy.open("wb") as out:
            for chunk in open_archive(env.folder, rows, {}):
                out.write(chunk)
        assert copy.stat().st_size == archive_bytes
        with zipfile.ZipFile(copy) as z:
            names = z.namelist()
        assert len(names) == N and names[0].endswith("000000.pcd")
    finally:
        d.close()
    print(f"100 000 files: detected, packed and uploaded in {took:.1f}s")
