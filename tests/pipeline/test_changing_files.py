"""Files that change, vanish or grow between settling, packing and uploading.

Changed content is never submitted: the package goes back to ``detected``
and is packed again from what is on disk; the platform ends up with the
newest content, once.
"""

from __future__ import annotations

import os

import pytest

from syncd.daemon import Daemon
from syncd.pipeline import detect, pack, upload
from syncd.pipeline.context import SyncContext
from syncd.sampledata import write_fusion_unit
from tests.conftest import query
from tests.pipeline.conftest import Env


def packed(env: Env, **sync: object) -> tuple[Daemon, SyncContext]:
    """Run detect, settle and pack in-process; the package waits in ``packed``."""
    d = env.daemon(**sync)
    ctx = d.contexts[0]
    tracker = detect.SettleTracker()
    detect.run_once(ctx, tracker)
    detect.run_once(ctx, tracker)
    pack.run_once(ctx)
    return d, ctx


@pytest.mark.parametrize("change", ["grow", "delete", "rewrite-same-size"])
def test_change_after_packing_goes_back_and_sends_the_new_content(env: Env, change: str) -> None:
    write_fusion_unit(env.folder / "u", frames=2, cameras=0, with_result=False, seed=21)
    d, ctx = packed(env)
    assert query(env.db, "SELECT state FROM packages") == [("packed",)]
    victim = env.folder / "u" / "lidar_point_cloud_0" / "000002.pcd"
    if change == "grow":
        with victim.open("ab") as f:
            f.write(b"0 0 0 0\n" * 10)
    elif change == "delete":
        victim.unlink()
    else:
        old = victim.stat()
        victim.write_bytes(victim.read_bytes().replace(b"0", b"1", 1))
        os.utime(victim, ns=(old.st_atime_ns, old.st_mtime_ns + 1))
    upload.run_once(ctx)
    d.close()
    [(state, error)] = query(env.db, "SELECT state, last_error FROM packages")
    assert state == "detected" and "000002.pcd" in error
    assert env.calls() == []  # nothing reached the platform

    code, _ = env.once()
    assert code == 0
    done = query(env.db, "SELECT COUNT(*) FROM events WHERE event = 'package.done'")
    assert done == [(1,)] and len(env.calls()) == 1
    files = {(r, s) for (r, s) in query(env.db, "SELECT rel_path, size FROM package_files")}
    on_disk = {
        (p.relative_to(env.folder / "u").as_posix(), p.stat().st_size)
        for p in (env.folder / "u").rglob("*")
        if p.is_file()
    }
    assert files == on_disk
    names = sorted(i["name"] for i in env.remote_items() if not i["parentId"])
    assert names == (["000001"] if change == "delete" else ["000001", "000002"])


def test_unit_still_growing_is_not_settled(env: Env) -> None:
    write_fusion_unit(env.folder / "u", frames=1, cameras=0, with_result=False, seed=22)
    d = env.daemon(settle_seconds=30)
    tracker = detect.SettleTracker()
    ctx = d.contexts[0]
    detect.run_once(ctx, tracker)
    with (env.folder / "u" / "lidar_point_cloud_0" / "000001.pcd").open("ab") as f:
        f.write(b"1 1 1 1\n")
    detect.run_once(ctx, tracker)
    pack.run_once(ctx)
    d.close()
    assert query(env.db, "SELECT state FROM packages") == [("detected",)]
