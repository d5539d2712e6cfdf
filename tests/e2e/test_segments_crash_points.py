"""Segments.ai: a SIGKILL at each step of a push, then a restart: every sample once, labels kept.

Crash points: after an item's assets are stored (before any sample),
after "registering" is recorded (before the request), and after the
samples and pre-labels were created (before that is recorded).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import syncd_sandbox as sandbox
from syncd.sampledata import write_fusion_unit, write_scene_unit
from tests.conftest import TOKEN, admin_call, query, run_cli, write_config

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def segments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sandbox.SandboxProcess]:
    data = tmp_path_factory.mktemp("segments-data")
    sp = sandbox.SandboxProcess("segments", token=TOKEN, data_dir=data)
    yield sp
    sp.stop()


@pytest.mark.parametrize("point", ["upload.item_sent", "register.before", "register.sent"])
def test_kill_and_restart_creates_every_sample_once(
    point: str, tmp_path: Path, segments: sandbox.SandboxProcess
) -> None:
    folder = tmp_path / "in"
    frames = write_fusion_unit(folder / "drive", frames=2, cameras=1, with_result=True)
    write_scene_unit(folder / "seq", scene="scene_01", frames=2, cameras=1)
    dataset = f"crash-{point.replace('.', '-')}"
    cfg = write_config(
        tmp_path / "syncd.toml",
        segments.url,
        [{"name": "s", "dataset": dataset, "dataset_type": "LIDAR_FUSION", "folder": folder}],
        platform="segments",
    )
    r = run_cli("once", "--config", str(cfg), env={"SYNCD_CRASH_AT": point})
    assert r.returncode == -9, r.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k != "SYNCD_CRASH_AT"}
    r = run_cli("once", "--config", str(cfg), env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    db = tmp_path / "state" / "syncd.db"
    assert query(db, "SELECT state FROM packages") == [("done",), ("done",)]
    samples = admin_call(segments.url, "GET", f"/datasets/sandbox-user/{dataset}/samples")
    names = sorted(s["name"] for s in samples["samples"])
    assert names == sorted([*frames, "scene_01"])
    # every pre-labelled frame has its label, whatever moment the crash hit
    for s in samples["samples"]:
        if s["name"] in frames:
            assert s["labels"]["ground-truth"]["label_status"] == "PRELABELED"
    created = admin_call(segments.url, "GET", "/counters")["created_samples"]
    assert sorted(created[f"sandbox-user/{dataset}"]) == names  # never a second creation
