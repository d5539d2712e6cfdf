"""The other reply shapes the platforms' public docs allow, answered by the sandboxes' switches:
syncd reads them with nothing lost, and ``--live`` reports which one it saw."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from syncd.daemon import Daemon
from syncd.live import run
from syncd.live.rows import as_table, passed
from tests.conftest import admin_call, query
from tests.live.conftest import clear_faults, fault, live_config, push_unit


def test_basicai_flat_results_and_lidar_type_are_read_and_reported(
    sandboxes: dict[str, str], tmp_path: Path
) -> None:
    url = sandboxes["basicai"]
    admin_call(
        url,
        "POST",
        "/config",
        json={"results_shape": "flat", "dataset_type_naming": "worked_example"},
    )
    try:
        _, cfg = live_config(tmp_path, "basicai", url)
        rows = run(cfg, write=True)
        assert passed(rows), as_table(rows)
        variants = {r.check: r.answered for r in rows if r.check.startswith("variant:")}
        assert variants["variant: results shape"].startswith("flat"), as_table(rows)
        assert "LIDAR (worked example" in variants["variant: dataset type"], as_table(rows)
        assert next(r for r in rows if r.check == "pre-label read back").status == "ok"
    finally:
        admin_call(
            url,
            "POST",
            "/config",
            json={"results_shape": "nested", "dataset_type_naming": "export"},
        )


@pytest.mark.parametrize(
    "switch",
    [
        {"full_label": "summary"},
        {"bulk_existing": "rejected"},
        {"bulk_existing": "omitted"},
    ],
)
def test_segments_other_shapes_lose_no_label_and_make_no_second_sample(
    switch: dict[str, str], sandboxes: dict[str, str], tmp_path: Path
) -> None:
    """Listings with label summaries only: labels come from the label endpoint; samples_bulk
    refusing or leaving out an existing name: the sample is looked up by name."""
    from syncd.remotes import build_remote

    url = sandboxes["segments"]
    admin_call(url, "POST", "/config", json=switch)
    try:
        _, cfg = live_config(tmp_path, "segments", url)
        rows = run(cfg, write=True)
        assert passed(rows), as_table(rows)
        assert next(r for r in rows if r.check == "pre-label read back").status == "ok"
        if "full_label" in switch:
            assert any(r.endpoint == "GET /labels/{uuid}/{labelset}/" for r in rows), as_table(rows)
            return
        # registering the same names again finds the samples: no second sample, same uuids
        remote = build_remote("sb", cfg.remotes["sb"], max_retries=1)
        try:
            ds, _ = remote.ensure_dataset("reg-" + tmp_path.name[:40], "IMAGE")
            from syncd.remotes.base import FilePushRemote, PushData

            push = cast(FilePushRemote, remote)
            data = [PushData(name="a", files=[]), PushData(name="b", files=[])]
            bodies = [
                {"name": d.name, "attributes": {"image": {"url": "https://x/a.png"}}} for d in data
            ]
            first = remote._create_samples(ds.id, bodies[:1])  # type: ignore[attr-defined]
            both = remote._create_samples(ds.id, bodies)  # type: ignore[attr-defined]
            assert both["a"] == first["a"] and set(both) == {"a", "b"}
            assert sorted(push.find_names(ds.id, ["a", "b"])) == ["a", "b"]
        finally:
            remote.close()
    finally:
        admin_call(
            url, "POST", "/config", json={"full_label": "listed", "bulk_existing": "returned"}
        )


def test_deepen_labels_as_one_list_are_read_and_reported(
    sandboxes: dict[str, str], tmp_path: Path
) -> None:
    """Deepen's labels endpoint without the per-file grouping: the same labels, reported."""
    from syncd.config import load_config
    from tests.contract import deepen_backend

    url = sandboxes["deepen"]
    path, db = push_unit(tmp_path, "deepen", url)
    path.write_text(path.read_text().replace("pull = false", "push = false"))
    cfg = load_config(path)
    group = cfg.syncs[0].dataset
    (row,) = [
        r
        for r in deepen_backend._api(
            url, "GET", f"/clients/{deepen_backend.CLIENT_ID}/datasets_ids"
        )["datasets"]
        if r["dataset_name"].startswith(group + "/")
    ]
    cloud = next(n for n in deepen_backend.names(url, group) if n.endswith(".pcd"))
    box = {
        "type": "3D_BOX",
        "className": "Car",
        "contour": {
            "center3D": {"x": 1, "y": 2, "z": 0},
            "size3D": {"x": 4, "y": 2, "z": 1.5},
            "rotation3D": {"x": 0, "y": 0, "z": 0.1},
        },
    }
    deepen_backend.annotate(url, f"{row['dataset_id']}/{cloud}", [box], None)
    admin_call(url, "POST", "/config", json={"labels_grouping": "list"})
    try:
        rows = run(cfg)
        assert passed(rows), as_table(rows)
        variant = next(r for r in rows if r.check == "variant: labels grouping")
        assert variant.answered.startswith("one list"), as_table(rows)
        d = Daemon(cfg)
        try:
            assert d.once(timeout=30) == 0
        finally:
            d.close()
        got = query(db, "SELECT o.class_name FROM objects o JOIN items i ON i.id = o.item_id")
        assert got == [("Car",)]
    finally:
        admin_call(url, "POST", "/config", json={"labels_grouping": "per_file"})


def test_xtreme1_ids_sent_as_strings_are_read(sandboxes: dict[str, str], tmp_path: Path) -> None:
    """Java longs sent as strings (a common Jackson setting): ids are read, a pull mirrors all."""
    from syncd.config import load_config

    url = sandboxes["xtreme1"]
    path, db = push_unit(tmp_path, "xtreme1", url)
    path.write_text(path.read_text().replace("pull = false", "push = false"))
    edits = [{"op": "string", "field": f"data.list.*.{k}"} for k in ("id", "parentId")]
    rule = {"method": "GET", "action": "reply_shape", "edit": edits, "times": None}
    fault(url, {**rule, "path": "^/api/data/findByPage$"})
    try:
        cfg = load_config(path)
        rows = run(cfg)
        assert passed(rows), as_table(rows)
        d = Daemon(cfg)
        try:
            assert d.once(timeout=30) == 0
        finally:
            d.close()
    finally:
        clear_faults(url)
    assert query(db, "SELECT COUNT(*) FROM items") == [(2,)]
    assert query(db, "SELECT COUNT(*) FROM labels")[0][0] == 2
