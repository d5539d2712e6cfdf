"""Pull from Deepen: labels of syncd's datasets, diffed by label_id/version, deletions marked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.daemon import Daemon
from syncd.sampledata import write_fusion_unit
from tests.conftest import TOKEN, query
from tests.deepen_support import DeepenEnv, write_deepen_config


@pytest.fixture(scope="module")
def deepen_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from syncd_sandbox import run_in_thread

    with run_in_thread("deepen", token=TOKEN, data_dir=tmp_path_factory.mktemp("deepen")) as url:
        yield url


def pull(env: DeepenEnv, **extra: Any) -> None:
    d = Daemon(env.config(**extra))
    try:
        (ctx,) = d.contexts
        assert d.pull(ctx) is not None
    finally:
        d.close()


def objects(env: DeepenEnv) -> dict[str, tuple[str, str, dict[str, Any]]]:
    rows = query(
        env.db,
        "SELECT l.source, o.class_name, o.shape_type, o.geometry FROM objects o "
        "JOIN labels l ON l.id = o.label_id WHERE l.deleted_at IS NULL",
    )
    return {r[0]: (r[1], r[2], json.loads(r[3])) for r in rows}


def test_labels_arrive_change_by_version_and_deletions_are_marked(
    tmp_path: Path, deepen_url: str
) -> None:
    env = DeepenEnv(tmp_path, deepen_url)
    write_fusion_unit(env.folder / "drive_p", frames=2, points=2000)
    assert env.once() == 0
    (ds,) = env.datasets()
    # Deepen's file ids of the JSON frames; 2D labels on a camera image of a 3D dataset
    # carry the frame's file id and the camera's sensor_id
    pcd, png = "000001.pcd", "000002.pcd"
    made = env.admin(
        "POST",
        "/annotate",
        json={
            "dataset_id": ds,
            "file_id": pcd,
            "labels": [
                {
                    "label_category_id": "car",
                    "label_type": "3d_bbox",
                    "three_d_bbox": {
                        "cx": 1,
                        "cy": 2,
                        "cz": 0.5,
                        "l": 4,
                        "w": 2,
                        "h": 1.5,
                        "rot_z": 0.3,
                    },
                },
                {
                    "label_category_id": "bus",
                    "label_type": "3d_bbox",
                    "three_d_bbox": {
                        "cx": 5,
                        "cy": 1,
                        "cz": 1,
                        "l": 10,
                        "w": 3,
                        "h": 3,
                        "quaternion": {"x": 0, "y": 0, "z": 0.7071068, "w": 0.7071068},
                    },
                },
            ],
        },
    )["label_ids"]
    assert made == ["car:1", "bus:1"]
    env.admin(
        "POST",
        "/annotate",
        json={
            "dataset_id": ds,
            "file_id": png,
            "labels": [
                {
                    "label_category_id": "bus",
                    "label_type": "box",
                    "box": [366, 87, 174, 116],
                    "sensor_id": "camera_0",
                },
                {
                    "label_category_id": "white double solid",
                    "label_type": "lane",
                    "polygons": [[[338, 330], [460, 253], [567, 179]]],
                },
                {
                    "label_category_id": "road",
                    "label_type": "polygon",
                    "polygons": [[[0, 0], [10, 0], [10, 10]]],
                    "attributes": {"occluded": "no"},
                },
            ],
        },
    )
    pull(env)
    got = objects(env)
    assert set(got) == {
        "default/car:1",
        "default/bus:1",
        "default/bus:2",
        "default/white double solid:1",
        "default/road:1",
    }
    assert got["default/car:1"][:2] == ("car", "3D_BOX")
    assert got["default/car:1"][2]["rotation3D"]["z"] == pytest.approx(0.3)
    assert got["default/car:1"][2]["center3D"] == {"x": 1.0, "y": 2.0, "z": 0.5}
    assert got["default/bus:1"][2]["rotation3D"]["z"] == pytest.approx(1.5707963, abs=1e-5)
    assert got["default/bus:1"][2]["quaternion"]["w"] == pytest.approx(0.7071068)
    assert got["default/bus:2"][1:] == (
        "2D_RECT",
        {"x": 366.0, "y": 87.0, "width": 174.0, "height": 116.0},
    )
    assert got["default/white double solid:1"][1] == "POLYLINE"
    assert got["default/road:1"][1] == "POLYGON"
    item = query(
        env.db,
        "SELECT name FROM items i JOIN labels l ON l.item_id = i.id WHERE l.source = 'default/car:1'",
    )
    assert item == [(pcd,)]

    # an edit on the platform (new version) replaces that row only; a deletion is marked
    before = dict(query(env.db, "SELECT source, hash FROM labels"))
    env.admin(
        "POST",
        "/annotate",
        json={
            "dataset_id": ds,
            "file_id": pcd,
            "labels": [
                {
                    "label_id": "car:1",
                    "three_d_bbox": {
                        "cx": 9,
                        "cy": 2,
                        "cz": 0.5,
                        "l": 4,
                        "w": 2,
                        "h": 1.5,
                        "rot_z": 0.1,
                    },
                }
            ],
            "delete": ["bus:1"],
        },
    )
    pull(env)
    after = dict(query(env.db, "SELECT source, hash FROM labels"))
    changed = {s for s in after if after[s] != before.get(s)}
    assert changed == {"default/car:1"}
    raw = json.loads(query(env.db, "SELECT raw FROM labels WHERE source = 'default/car:1'")[0][0])
    assert raw["version"] == 2
    deleted = query(env.db, "SELECT source FROM labels WHERE deleted_at IS NOT NULL")
    assert deleted == [("default/bus:1",)]
    assert "default/bus:1" not in objects(env)
    assert objects(env)["default/car:1"][2]["center3D"]["x"] == 9.0


def test_only_syncd_datasets_unless_all_are_asked_for(tmp_path: Path, deepen_url: str) -> None:
    env = DeepenEnv(tmp_path, deepen_url)
    write_fusion_unit(env.folder / "drive_q", frames=1, points=500, cameras=0)
    write_fusion_unit(env.folder / "drive_r", frames=1, points=500, cameras=0)
    assert env.once() == 0
    mine = query(env.db, "SELECT COUNT(*) FROM items")[0][0]
    assert mine == 2
    # the full sweep marks items of a dataset deleted on the platform
    ds = sorted(env.datasets())[0]
    import httpx

    httpx.delete(
        f"{deepen_url}/api/v2/datasets/{ds}", headers={"Authorization": f"Bearer {TOKEN}"}
    ).raise_for_status()
    d = Daemon(env.config())
    try:
        (ctx,) = d.contexts
        from syncd.pipeline import pull as pull_stage

        stats = pull_stage.run_once(ctx, full_sweep=True)
    finally:
        d.close()
    assert stats.deleted == 1
    assert query(env.db, "SELECT COUNT(*) FROM items WHERE deleted_at IS NOT NULL") == [(1,)]
    # pull_all_datasets mirrors datasets syncd did not create (other envs' ones here)
    cfg = write_deepen_config(
        tmp_path / "all.toml",
        deepen_url,
        [{"name": "all", "dataset": "everything", "push": False}],
        state=tmp_path / "state-all",
        extra={"pull_all_datasets": True},
    )
    from syncd.config import load_config

    d = Daemon(load_config(cfg))
    try:
        (ctx,) = d.contexts
        assert d.pull(ctx) is not None
    finally:
        d.close()
    names = {
        n
        for (n,) in query(
            tmp_path / "state-all" / "syncd.db", "SELECT DISTINCT dataset_remote_id FROM items"
        )
    }
    assert names == {"everything"}
    assert query(tmp_path / "state-all" / "syncd.db", "SELECT COUNT(*) FROM items")[0][0] >= 1
