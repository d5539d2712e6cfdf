"""One endpoint per platform answered with a changed shape (a renamed field, a dropped key, a
string for a number): ``--live`` exits 1 with a ✘ row naming that endpoint and field; a pull
that meets it records one ``pull.failed`` (endpoint and field named), commits nothing and
leaves the cursor where it was, and the next cycle without the fault mirrors every label the
platform holds; a push step that meets one fails its package with the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from syncd.daemon import Daemon
from syncd.sampledata import write_fusion_unit
from tests.conftest import query, run_cli
from tests.live.conftest import PLATFORMS, clear_faults, fault, live_config, push_unit

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


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_changed_reply_shape_is_named_and_loses_nothing(
    platform: str, sandboxes: dict[str, str], tmp_path: Path
) -> None:
    url = sandboxes[platform]
    path, db = push_unit(tmp_path, platform, url)
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
    path, db = push_unit(tmp_path, platform, url)
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
