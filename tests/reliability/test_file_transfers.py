"""`syncd once` on a per-file platform stores several files at once; a SIGKILL then loses nothing.

Proven by counting: the sandbox counts the object store's uploads in flight
(a ``delay`` fault holds each one, as a long round trip would) and the presign
requests; a crash with files in flight re-sends only the batch whose refs were
not committed, and registers every name once.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.sampledata import write_fusion_unit
from syncd_sandbox import run_in_thread
from tests.conftest import TOKEN, admin_call, query, run_cli, write_config

pytestmark = pytest.mark.e2e

PRESIGN = "POST /api/v1/storage/batchGeneratePreSignedUploadUrl"
_n = itertools.count()


def slow_sandbox(platform: str, tmp_path: Path) -> Iterator[str]:
    """A fresh sandbox per test (the most in flight is counted over its whole life) whose
    object store holds every upload 0.1 s, as a long round trip would."""
    with run_in_thread(platform, token=TOKEN, data_dir=tmp_path / "sandbox") as url:
        admin_call(
            url,
            "POST",
            "/faults",
            json={"path": "^/s3/", "action": "delay", "delay": 0.1, "times": None},
        )
        yield url


@pytest.fixture
def basicai(tmp_path: Path) -> Iterator[str]:
    yield from slow_sandbox("basicai", tmp_path)


@pytest.fixture
def segments(tmp_path: Path) -> Iterator[str]:
    yield from slow_sandbox("segments", tmp_path)


def setup(
    tmp_path: Path, url: str, frames: int, transfers: int, platform: str = "basicai"
) -> tuple[Path, list[str], str]:
    names = write_fusion_unit(tmp_path / "in" / "unit", frames=frames, cameras=1, seed=3)
    dataset = f"transfers-{next(_n)}"
    cfg = write_config(
        tmp_path / "syncd.toml",
        url,
        [
            {
                "name": "s",
                "dataset": dataset,
                "dataset_type": "LIDAR_FUSION",
                "folder": tmp_path / "in",
            }
        ],
        platform=platform,
        remote_extra=f"transfers = {transfers}",
    )
    return cfg, names, dataset


def counters(url: str) -> dict[str, Any]:
    result: dict[str, Any] = admin_call(url, "GET", "/counters")
    return result


def test_once_stores_files_of_several_items_at_once(tmp_path: Path, basicai: str) -> None:
    cfg, names, _ = setup(tmp_path, basicai, frames=12, transfers=4)  # 48 files, one batch
    r = run_cli("once", "--config", str(cfg), timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    c = counters(basicai)
    assert 2 <= c["uploads_in_flight_max"] <= 4
    assert c["requests"][PRESIGN] == 1  # the files of all 12 items in one request
    assert len(c["puts"]) == 48 and set(c["puts"].values()) == {1}
    assert sorted(n for call in c["add_calls"] for n in call["names"]) == sorted(names)


def test_one_transfer_stores_one_file_at_a_time(tmp_path: Path, basicai: str) -> None:
    cfg, names, _ = setup(tmp_path, basicai, frames=3, transfers=1)
    r = run_cli("once", "--config", str(cfg), timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    c = counters(basicai)
    assert c["uploads_in_flight_max"] == 1
    assert len(c["puts"]) == 12
    assert sorted(n for call in c["add_calls"] for n in call["names"]) == sorted(names)


def test_a_crash_with_files_in_flight_loses_nothing(tmp_path: Path, basicai: str) -> None:
    # 40 frames of 4 files, 4 transfers: a batch of 32 items (128 files), then one of 8 (32)
    cfg, names, dataset = setup(tmp_path, basicai, frames=40, transfers=4)
    db = tmp_path / "state" / "syncd.db"
    crashed = run_cli(
        "once", "--config", str(cfg), env={"SYNCD_CRASH_AT": "upload.file_stored@140"}, timeout=120
    )
    assert crashed.returncode == -9, (crashed.returncode, crashed.stderr[-2000:])
    time.sleep(0.5)  # a request the sandbox had read in full is stored a moment later
    c = counters(basicai)
    assert c["uploads_in_flight_max"] >= 2  # killed with several files in flight
    assert not c["add_calls"]
    stored_before = len(c["puts"])
    assert 140 <= stored_before <= 140 + 4  # the ones in flight may have arrived

    again = run_cli("once", "--config", str(cfg), timeout=180)
    assert again.returncode == 0, again.stderr[-3000:]
    assert query(db, "SELECT state FROM packages") == [("done",)]
    c = counters(basicai)
    # the first batch's refs were committed: only the second batch is stored again
    assert len(c["puts"]) == stored_before + 32
    # every name registered once; registration checks that each ref's object exists
    assert sorted(n for call in c["add_calls"] for n in call["names"]) == sorted(names)
    (ds,) = query(db, "SELECT remote_id FROM datasets WHERE name = ?", dataset)[0]
    items = admin_call(basicai, "GET", f"/datasets/{ds}/items")["items"]
    assert len(items) == 40


def test_segments_a_crash_with_files_in_flight_creates_every_sample_once(
    tmp_path: Path, segments: str
) -> None:
    # 40 frames, 4 transfers: a batch of 32 items (128 files, 64 of them assets), then one
    # of 8 (16 assets); calibration and pre-labels are read locally but pass the same pool
    cfg, names, dataset = setup(tmp_path, segments, frames=40, transfers=4, platform="segments")
    db = tmp_path / "state" / "syncd.db"
    crashed = run_cli(
        "once", "--config", str(cfg), env={"SYNCD_CRASH_AT": "upload.file_stored@140"}, timeout=120
    )
    assert crashed.returncode == -9, (crashed.returncode, crashed.stderr[-2000:])
    time.sleep(0.5)
    c = counters(segments)
    assert c["uploads_in_flight_max"] >= 2
    stored_before = len(c["uploads"])
    assert 64 < stored_before <= 80

    again = run_cli("once", "--config", str(cfg), timeout=180)
    assert again.returncode == 0, again.stderr[-3000:]
    assert query(db, "SELECT state FROM packages") == [("done",)]
    c = counters(segments)
    assert len(c["uploads"]) == stored_before + 16  # the second batch's assets again
    assert sorted(c["created_samples"][f"sandbox-user/{dataset}"]) == sorted(names)
