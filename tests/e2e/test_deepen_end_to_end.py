"""The whole product path against Deepen, run as users run it: the real CLI and `syncd sandbox deepen`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import syncd_sandbox as sandbox
from syncd.sampledata import write_fusion_unit, write_image_unit
from tests.conftest import TOKEN, admin_call, query, run_cli
from tests.deepen_support import write_deepen_config
from tests.e2e.flow import assert_all_done, assert_no_secrets, assert_transitions

pytestmark = pytest.mark.e2e


@pytest.fixture
def deepen_proc(tmp_path: Path) -> Iterator[sandbox.SandboxProcess]:
    sp = sandbox.SandboxProcess("deepen", token=TOKEN, data_dir=tmp_path / "sandbox-data")
    yield sp
    sp.stop()


def test_units_end_to_end(tmp_path: Path, deepen_proc: sandbox.SandboxProcess) -> None:
    def admin(method: str, path: str, **kw: Any) -> Any:
        return admin_call(deepen_proc.url, method, path, **kw)

    lidar, images = tmp_path / "lidar", tmp_path / "images"
    fusion = write_fusion_unit(lidar / "drive_0001", frames=3, cameras=2, with_result=True)
    write_fusion_unit(lidar / "drive_0002", frames=2, cameras=0, with_result=False, seed=2)
    pics = write_image_unit(images / "batch_01", images=3)
    cfg = write_deepen_config(
        tmp_path / "syncd.toml",
        deepen_proc.url,
        [
            {
                "name": "lidar",
                "dataset": "e2e-fusion",
                "dataset_type": "LIDAR_FUSION",
                "folder": lidar,
            },
            {"name": "images", "dataset": "e2e-images", "dataset_type": "IMAGE", "folder": images},
        ],
    )
    db = tmp_path / "state" / "syncd.db"
    check = run_cli("check", "--config", str(cfg))
    assert check.returncode == 0 and "token accepted" in check.stdout + check.stderr

    r = run_cli("once", "--config", str(cfg))
    assert r.returncode == 0, r.stderr[-3000:]

    # secrets (the token, the session URI's upload_id) never printed nor recorded in events
    assert_no_secrets(db, r.stderr, r"upload_id=[A-Za-z0-9_-]{8}")
    # every unit done, one Deepen dataset each, processed once, of the right type
    assert_all_done(db)
    datasets = admin("GET", "/counters")["datasets"]
    assert sorted(d["name"] for d in datasets.values()) == [
        "e2e-fusion/p1-drive_0001",
        "e2e-fusion/p2-drive_0002",
        "e2e-images/p3-batch_01",
    ]
    assert all(
        d["process_calls"] == 1 and d["processing_status"] == "files_getting_labelled"
        for d in datasets.values()
    )

    # the mirror holds every file Deepen made of each zip as an item: one per JSON frame
    # (Deepen's id: the frame file's stem + .pcd), one per image of the 2D dataset
    by_dataset: dict[str, set[str]] = {}
    for ds_id, name in query(
        db, "SELECT remote_id, name FROM items WHERE deleted_at IS NULL ORDER BY remote_id"
    ):
        by_dataset.setdefault(datasets[ds_id.split("/")[0]]["name"], set()).add(name)
    assert by_dataset == {
        "e2e-fusion/p1-drive_0001": {f"{n}.pcd" for n in fusion},
        "e2e-fusion/p2-drive_0002": {"000001.pcd", "000002.pcd"},
        "e2e-images/p3-batch_01": {f"batch_01/image_0/{n}.png" for n in pics},
    }
    # the pre-labels did not go into the zip, and the package says so
    skipped = query(db, "SELECT fields FROM events WHERE event = 'package.prelabels_skipped'")
    assert len(skipped) == 1 and json.loads(skipped[0][0])["count"] == 3

    # the annotator labels a frame; the next run brings the label in as an object
    (ds,) = [k for k, d in datasets.items() if d["name"].endswith("drive_0001")]
    pcd = f"{fusion[0]}.pcd"
    box = {"cx": 1, "cy": 2, "cz": 0, "l": 4, "w": 2, "h": 1.5, "rot_z": 0.2}
    admin(
        "POST",
        "/annotate",
        json={
            "dataset_id": ds,
            "file_id": pcd,
            "labels": [
                {"label_category_id": "truck", "label_type": "3d_bbox", "three_d_bbox": box}
            ],
        },
    )
    r = run_cli("once", "--config", str(cfg))
    assert r.returncode == 0, r.stderr[-3000:]
    got = query(
        db,
        "SELECT i.name, o.class_name, o.shape_type, json_extract(o.geometry, '$.size3D.x') "
        "FROM objects o JOIN items i ON i.id = o.item_id",
    )
    assert got == [(pcd, "truck", "3D_BOX", 4.0)]

    # the events table holds every transition of every package, in order
    assert_transitions(db, not_states=("package.upload_session",))

    # nothing new: a third run uploads nothing
    before = admin("GET", "/counters")["bytes_received"]
    assert run_cli("once", "--config", str(cfg)).returncode == 0
    assert admin("GET", "/counters")["bytes_received"] == before
    report = json.loads(run_cli("status", "--config", str(cfg), "--json").stdout)
    assert report["syncs"]["lidar"]["packages"] == {"done": 2}
