"""``syncd check --live --write`` against the four sandboxes: every row ✔ (or not applicable),
in under 60 s per platform; the CLI's JSON and exit codes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from syncd.live import run
from syncd.live.rows import as_table, passed
from tests.conftest import run_cli
from tests.live.conftest import PLATFORMS, live_config


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
