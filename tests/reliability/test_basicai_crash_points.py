"""BasicAI's per-file push: a SIGKILL right after each step, then a restart.

Nothing is registered twice (the sandbox refuses a name twice, and its log of
add calls shows each name once); files are re-uploaded only for the data item
that was in flight; the mirror ends with every item once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.sampledata import write_fusion_unit, write_scene_unit
from syncd_sandbox import run_in_thread
from tests.conftest import TOKEN, admin_call, query, run_cli, write_config

pytestmark = pytest.mark.e2e

POINTS = [
    "package.uploading",
    "upload.item_sent",
    "upload.item_sent@2",
    "package.uploaded",
    "package.submitted",
    "register.before",
    "register.sent",
    "register.sent@2",  # the single items are registered, the scene not yet
    "package.done",
    "pull.page_committed",
]
_n = itertools.count()


@pytest.fixture(scope="module")
def basicai_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_in_thread("basicai", token=TOKEN, data_dir=tmp_path_factory.mktemp("b")) as url:
        yield url


@pytest.mark.parametrize("point", POINTS)
def test_crash_right_after(point: str, tmp_path: Path, basicai_url: str) -> None:
    folder = tmp_path / "in"
    frames = write_fusion_unit(folder / "unit_a", frames=3, cameras=1, seed=1)
    write_scene_unit(folder / "unit_a" / "scene_07", scene="scene_07", frames=2, seed=2)
    dataset = f"crash-{next(_n)}-{point}"
    cfg = write_config(
        tmp_path / "syncd.toml",
        basicai_url,
        [{"name": "s", "dataset": dataset, "dataset_type": "LIDAR_FUSION", "folder": folder}],
        platform="basicai",
    )
    db = tmp_path / "state" / "syncd.db"
    crashed = run_cli("once", "--config", str(cfg), env={"SYNCD_CRASH_AT": point}, timeout=120)
    assert crashed.returncode == -9, (crashed.returncode, crashed.stderr[-2000:])
    again = run_cli("once", "--config", str(cfg), timeout=180)
    assert again.returncode == 0, again.stderr[-3000:]

    assert query(db, "SELECT state FROM packages") == [("done",)]
    (ds,) = query(db, "SELECT remote_id FROM datasets WHERE name = ?", dataset)[0]
    calls = [
        c
        for c in admin_call(basicai_url, "GET", "/counters")["add_calls"]
        if str(c["datasetId"]) == ds
    ]
    registered = sorted(n for c in calls for n in c["names"])
    assert registered == sorted([*frames, "scene_07"])
    items = admin_call(basicai_url, "GET", f"/datasets/{ds}/items")["items"]
    assert len(items) == 3 + 1 + 2
    mirror = query(
        db,
        "SELECT remote_id FROM items WHERE deleted_at IS NULL ORDER BY CAST(remote_id AS INTEGER)",
    )
    assert [r for (r,) in mirror] == [str(i["id"]) for i in items]
