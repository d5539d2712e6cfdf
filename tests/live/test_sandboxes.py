"""``syncd check --live`` against the four sandboxes, and what an unknown reply shape does.

* ``--live --write``: every row ✔ (or not applicable), in under 60 s per platform.
* One endpoint per platform answered with a changed shape (a renamed field, a
  dropped key, a string for a number): ``--live`` exits 1 with a ✘ row naming
  that endpoint and field; a pull meets it as ``pull.failed`` (one event,
  endpoint and field named), commits nothing and leaves the cursor where it
  was, and the next cycle without the fault mirrors every label the platform
  holds.
* BasicAI's other documented shapes (flat results, type ``LIDAR``) are read
  and reported.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, cast

import pytest

from syncd.daemon import Daemon
from syncd.live import run
from syncd.live.rows import Row, as_table, passed
from syncd.sampledata import write_fusion_unit
from tests.conftest import admin_call, query, run_cli
from tests.live.conftest import PLATFORMS, clear_faults, fault, live_config

# platform → (fault rule, endpoint template, field) of one endpoint a pull reads
CHANGED: dict[str, tuple[dict[str, Any], str, str]] = {
    "xtreme1": (
        {"method": "GET", "path": "^/api/data/findByPage$"},
        "GET /data/findByPage",
        "total",
    ),
    "basicai": (
        {"method": "GET", "path": "^/api/v1/dataset/batchDataAnnotationResult/"},
        "GET /dataset/batchDataAnnotationResult/{id}/",
        "[0].results",
    ),
    "deepen": (
        {"method": "GET", "path": "^/api/v2/datasets/[^/]+/files$"},
        "GET /datasets/{id}/files",
        "files[0].file_id",
    ),
    "segments": (
        {"method": "GET", "path": "^/datasets/.+/samples/$"},
        "GET /datasets/{owner}/{name}/samples/",
        "[0].created_at",
    ),
}
EDITS = {
    "xtreme1": {"op": "string", "field": "data.total"},
    "basicai": {"op": "drop", "field": "data.*.results"},
    "deepen": {"op": "rename", "field": "files.*.file_id", "to": "id"},
    "segments": {"op": "drop", "field": "*.created_at"},
}


def _failed(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.status == "fail"]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_live_write_passes_every_row_within_a_minute(
    platform: str, sandboxes: dict[str, str], tmp_path: Path
) -> None:
    _, cfg = live_config(tmp_path, platform, sandboxes[platform])
    started = time.monotonic()
    rows = run(cfg, write=True)
    took = time.monotonic() - started
    assert passed(rows), as_table(rows)
    assert took < 60
    checks = {r.check for r in rows}
    for check in ("auth", "push: upload, register, process, pull", "item listed", "cursor walk"):
        assert check in checks, as_table(rows)
    assert "pre-label read back" in checks and "scratch dataset deleted" in checks
    assert sum(r.check == "reply shape" for r in rows) >= 5, as_table(rows)
    prelabel = next(r for r in rows if r.check == "pre-label read back")
    assert prelabel.status == ("skip" if platform == "deepen" else "ok")
    deleted = next(r for r in rows if r.check == "scratch dataset deleted")
    assert deleted.status == ("skip" if platform == "basicai" else "ok")
    if platform == "basicai":
        assert "syncd-check-" in deleted.answered  # named so the user can delete it


@pytest.mark.parametrize(
    ("platform", "kind"),
    [("xtreme1", "IMAGE"), ("segments", "IMAGE"), ("basicai", "LIDAR_BASIC")],
)
def test_live_write_pushes_the_kind_of_unit_the_syncs_hold(
    platform: str, kind: str, sandboxes: dict[str, str], tmp_path: Path
) -> None:
    _, cfg = live_config(tmp_path, platform, sandboxes[platform], dataset_type=kind)
    rows = run(cfg, write=True)
    assert passed(rows), as_table(rows)
    assert next(r for r in rows if r.check == "pre-label read back").status == "ok"


def test_the_cli_prints_json_and_exits_0(sandboxes: dict[str, str], tmp_path: Path) -> None:
    path, _ = live_config(tmp_path, "xtreme1", sandboxes["xtreme1"])
    out = run_cli("check", "--config", str(path), "--live", "--write", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["ok"] is True
    assert {r["status"] for r in doc["rows"]} <= {"ok", "skip"}
    assert "package.done" not in out.stderr  # the scratch push's events stay quiet


def test_live_wants_live_for_its_options(sandboxes: dict[str, str], tmp_path: Path) -> None:
    path, _ = live_config(tmp_path, "xtreme1", sandboxes["xtreme1"])
    out = run_cli("check", "--config", str(path), "--write")
    assert out.returncode == 2 and "--live" in out.stderr


def _push(tmp: Path, platform: str, url: str) -> tuple[Path, Path]:
    """One unit pushed (no pull yet); returns (config path, state db)."""
    write_fusion_unit(tmp / "in" / "drive", frames=2, cameras=1, with_result=True, points=200)
    path, cfg = live_config(tmp, platform, url, pull=False)
    d = Daemon(cfg)
    try:
        assert d.once(timeout=60) == 0
    finally:
        d.close()
    return path, tmp / "state" / "syncd.db"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_changed_reply_shape_is_named_and_loses_nothing(
    platform: str, sandboxes: dict[str, str], tmp_path: Path
) -> None:
    url = sandboxes[platform]
    path, db = _push(tmp_path, platform, url)
    pull_cfg_text = path.read_text().replace("pull = false", "push = false")
    path.write_text(pull_cfg_text)
    rule, endpoint, field = CHANGED[platform]
    fault(url, {**rule, "action": "reply_shape", "edit": EDITS[platform], "times": None})
    try:
        # --live: exit 1, a ✘ row naming the endpoint and the field, the shape received
        out = run_cli("check", "--config", str(path), "--live", "--remote", "sb", "--json")
        assert out.returncode == 1, out.stdout + out.stderr
        rows = json.loads(out.stdout)["rows"]
        bad = [r for r in rows if r["status"] == "fail" and r["endpoint"] == endpoint]
        assert bad, out.stdout
        assert f"field {field}:" in bad[0]["answered"]
        assert "received" in bad[0]["answered"]
        table = run_cli("check", "--config", str(path), "--live")
        assert table.returncode == 1 and "✘" in table.stdout and endpoint in table.stdout
        # the daemon: one pull.failed naming endpoint and field, nothing committed
        from syncd.config import load_config

        d = Daemon(load_config(path))
        try:
            assert d.once(timeout=30) == 1
        finally:
            d.close()
        failed = query(db, "SELECT fields FROM events WHERE event = 'pull.failed'")
        assert len(failed) == 1
        fields = json.loads(failed[0][0])
        assert fields["endpoint"] == endpoint and fields["field"] == field
        assert endpoint in fields["reason"] and field in fields["reason"]
        assert query(db, "SELECT value FROM cursors WHERE name = 'items'") == []
        assert query(db, "SELECT COUNT(*) FROM labels") == [(0,)]
    finally:
        clear_faults(url)
    # without the fault the next cycle mirrors what the platform holds
    from syncd.config import load_config

    d = Daemon(load_config(path))
    try:
        assert d.once(timeout=30) == 0
    finally:
        d.close()
    assert query(db, "SELECT COUNT(*) FROM cursors WHERE name = 'items'") == [(1,)]
    if platform != "deepen":  # Deepen's import keeps pre-labels in the archive only
        assert query(db, "SELECT COUNT(*) FROM labels")[0][0] >= 2


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


# platform → (fault rule with its edit, endpoint, field) on the reply that carries the labels
LABELS: dict[str, tuple[dict[str, Any], str, str]] = {
    "xtreme1": (
        {
            "path": "^/api/data/getDataAndResult$",
            "edit": {"op": "drop", "field": "data.results.*.dataId"},
        },
        "GET /data/getDataAndResult",
        "results[0].dataId",
    ),
    "basicai": (
        {
            "path": "^/api/v1/dataset/batchDataAnnotationResult/",
            "edit": {"op": "rename", "field": "data.*.results", "to": "result"},
        },
        "GET /dataset/batchDataAnnotationResult/{id}/",
        "[0].results",
    ),
    "deepen": (
        {"path": "^/api/v2/datasets/[^/]+/labels$", "edit": {"op": "drop", "field": "labels"}},
        "GET /datasets/{id}/labels",
        "labels",
    ),
    "segments": (
        {
            "path": "^/datasets/.+/samples/$",
            "edit": {"op": "drop", "field": "*.label.label_status"},
        },
        "GET /datasets/{owner}/{name}/samples/",
        "[0].label.label_status",
    ),
}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_an_unknown_labels_shape_never_makes_a_cycle_that_succeeds_with_fewer_labels(
    platform: str, sandboxes: dict[str, str], tmp_path: Path
) -> None:
    from syncd.config import load_config

    url = sandboxes[platform]
    path, db = _push(tmp_path, platform, url)
    path.write_text(path.read_text().replace("pull = false", "push = false"))
    rule, endpoint, field = LABELS[platform]
    fault(url, {"method": "GET", **rule, "action": "reply_shape", "times": None})
    try:
        d = Daemon(load_config(path))
        try:
            assert d.once(timeout=30) == 1  # the cycle failed: it did not "succeed" with less
        finally:
            d.close()
        failed = query(db, "SELECT fields FROM events WHERE event = 'pull.failed'")
        assert [(json.loads(f)["endpoint"], json.loads(f)["field"]) for (f,) in failed] == [
            (endpoint, field)
        ]
        assert query(db, "SELECT COUNT(*) FROM labels") == [(0,)]
        assert query(db, "SELECT COUNT(*) FROM items") == [(0,)]  # a page commits with its labels
        assert query(db, "SELECT value FROM cursors WHERE name = 'items'") == []
        assert not query(db, "SELECT 1 FROM events WHERE event = 'pull.finished'")
    finally:
        clear_faults(url)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_push_step_meeting_an_unknown_shape_fails_with_the_reason(
    platform: str, sandboxes: dict[str, str], tmp_path: Path
) -> None:
    url = sandboxes[platform]
    rule = {
        "xtreme1": {"path": "^/api/data/generatePresignedUrl$", "field": "data.accessUrl"},
        "basicai": {
            "path": "^/api/v1/storage/batchGeneratePreSignedUploadUrl$",
            "field": "data.*.path",
        },
        "deepen": {"path": "^/api/v2/clients/[^/]+/datasets$", "field": "dataset_id"},
        "segments": {"path": "^/assets/$", "field": "presignedPostFields"},
    }[platform]
    write_fusion_unit(tmp_path / "in" / "drive", frames=1, cameras=1, with_result=True, points=100)
    _, cfg = live_config(tmp_path, platform, url, pull=False)
    fault(
        url,
        {
            "method": "*",
            "path": rule["path"],
            "action": "reply_shape",
            "edit": {"op": "drop", "field": rule["field"]},
            "times": None,
        },
    )
    try:
        d = Daemon(cfg)
        try:
            assert d.once(timeout=30) == 1
        finally:
            d.close()
    finally:
        clear_faults(url)
    ((state, error),) = query(
        tmp_path / "state" / "syncd.db", "SELECT state, last_error FROM packages"
    )
    assert state == "failed"
    dropped = rule["field"].split(".")[-1]
    assert "reply field" in error and dropped in error, error


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
    path, db = _push(tmp_path, "deepen", url)
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
    path, db = _push(tmp_path, "xtreme1", url)
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
