"""A crash (SIGKILL) right after each step, then a restart: nothing lost, nothing twice.

Each case runs ``syncd once`` with ``SYNCD_CRASH_AT`` armed, sees it die by
SIGKILL at that exact point, runs ``syncd once`` again without it, and checks
the invariants against the sandbox's own records. ``submit.sent`` is the
dangerous one: the platform accepted ``/data/upload`` but the serial number
was never recorded, so the restarted daemon must ask the platform before it
submits again.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from syncd.sampledata import write_fusion_unit, write_scene_unit
from tests.conftest import query, run_cli, write_config
from tests.reliability.invariants import assert_exactly_once, assert_mirror_matches

pytestmark = pytest.mark.e2e

POINTS = [
    "package.detected",
    "package.settled",
    "package.packing",
    "package.packed",
    "package.uploading",
    "upload.sent",
    "package.uploaded",
    "submit.sent",
    "package.submitted",
    "package.processing",
    "package.done",
    "pull.page_committed",
    "package.done@2",  # the first package is done, the second not yet
]
_n = itertools.count()


@pytest.mark.parametrize("point", POINTS)
def test_crash_right_after(point: str, tmp_path: Path, sandbox_url: str) -> None:
    folder = tmp_path / "in"
    frames = write_fusion_unit(folder / "unit_a", frames=3, cameras=1, seed=1)
    frames += write_scene_unit(folder / "unit_b", frames=2, seed=2)
    dataset = f"crash-{next(_n)}-{point}"
    cfg = write_config(
        tmp_path / "syncd.toml",
        sandbox_url,
        [
            {
                "name": "s",
                "dataset": dataset,
                "folder": folder,
                "processing_timeout": 60,
                "submit_uncertain_wait": 60,
            }
        ],
    )
    db = tmp_path / "state" / "syncd.db"

    crashed = run_cli("once", "--config", str(cfg), env={"SYNCD_CRASH_AT": point}, timeout=120)
    assert crashed.returncode == -9, (crashed.returncode, crashed.stderr[-2000:])
    before = (
        query(db, "SELECT value FROM cursors WHERE name = 'items'")
        if point == "pull.page_committed"
        else []
    )

    again = run_cli("once", "--config", str(cfg), timeout=180)
    assert again.returncode == 0, again.stderr[-3000:]
    # unit_a: 3 top-level frames; unit_b: one scene (its frames are children)
    assert_exactly_once(db, folder, sandbox_url, dataset, expected_items=4)
    assert_mirror_matches(db, sandbox_url, dataset)
    for (old,) in before:
        assert query(
            db,
            "SELECT 1 FROM cursors WHERE name = 'items' AND CAST(value AS INTEGER) >= ?",
            int(old.split(":")[0]),  # Xtreme1: "<highest top-level id>:<listing total>"
        )
    assert len(frames) == 5
