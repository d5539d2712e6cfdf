"""`syncd run` against Xtreme1's real parse timing: every frame reaches the mirror in time.

Xtreme1 v0.9.1 stamps all frames of a folder with one ``created_at`` and
inserts them for a long time in batches of five
(``UploadDataUseCase.commonParseUploadFile``); the sandbox does the same,
stretched to about 30 s here. The promise: every frame is in ``items``
within two ``pull_interval``s after the upload record is ``PARSE_COMPLETED``,
without a full sweep (set to hours).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from syncd.sampledata import write_fusion_unit, write_scene_unit
from tests.conftest import SandboxProcess, query, wait_until, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PULL_INTERVAL = 3.0
PARSE_SECONDS = 30.0


def _run_and_time(
    tmp_path: Path, sandbox: SandboxProcess, write: Path, frames: int
) -> tuple[float, list[int]]:
    """Run the daemon on the unit at ``write``; seconds from PARSE_COMPLETED to the
    last frame in the mirror, and the mirror's frame counts seen while parsing."""
    folder = write.parent
    # five parse workers: frames * delay / 5 seconds of parsing
    sandbox.admin("POST", "/config", json={"parse_frame_delay": PARSE_SECONDS * 5 / frames})
    cfg = write_config(
        tmp_path / "syncd.toml",
        sandbox.url,
        [
            {
                "name": "live",
                "dataset": "live",
                "dataset_type": "LIDAR_BASIC",
                "folder": folder,
                "pull_interval": PULL_INTERVAL,
                "full_sweep_interval": 6 * 3600,
            }
        ],
    )
    db = tmp_path / "state" / "syncd.db"

    def mirrored() -> int:
        return int(query(db, "SELECT COUNT(*) FROM items WHERE kind = 'SINGLE_DATA'")[0][0])

    with (tmp_path / "daemon.log").open("wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "--config", str(cfg)], stdout=log, stderr=log
        )
    try:
        calls = wait_until(
            lambda: sandbox.admin("GET", "/counters")["data_upload_calls"], 60, "the upload"
        )
        serial = calls[0]["serial"]
        seen: list[int] = []
        status = ""
        deadline = time.monotonic() + PARSE_SECONDS * 3
        while status != "PARSE_COMPLETED":
            assert time.monotonic() < deadline, f"parsing did not finish; mirror counts {seen}"
            rec = sandbox.api("/data/findUploadRecordBySerialNumbers", serialNumbers=serial)[0]
            status = rec["status"]
            assert status != "FAILED", rec
            if db.exists() and query(db, "SELECT 1 FROM sqlite_master WHERE name = 'items'"):
                seen.append(mirrored())
            time.sleep(0.1)
        completed = time.monotonic()
        wait_until(lambda: mirrored() == frames, 4 * PULL_INTERVAL, "every frame in the mirror")
        lag = time.monotonic() - completed
        finished = query(db, "SELECT fields FROM events WHERE event = 'pull.finished'")
        assert not [f for (f,) in finished if json.loads(f).get("full_sweep")]
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=60)
    assert code == 0, (tmp_path / "daemon.log").read_text()[-2000:]
    assert query(db, "SELECT COUNT(DISTINCT remote_id) FROM items WHERE kind = 'SINGLE_DATA'") == [
        (frames,)
    ]
    return lag, seen


def test_1200_single_frames_parsed_over_30s_are_mirrored_within_two_pulls(
    tmp_path: Path, sandbox_proc: SandboxProcess
) -> None:
    unit = tmp_path / "in" / "drive_big"
    write_fusion_unit(unit, frames=1200, cameras=0, with_result=False, points=5)
    lag, seen = _run_and_time(tmp_path, sandbox_proc, unit, 1200)
    assert any(500 < n < 1200 for n in seen), f"no pull saw the folder half parsed: {seen}"
    assert lag <= 2 * PULL_INTERVAL, f"the last frames arrived {lag:.1f} s after PARSE_COMPLETED"


def test_a_scene_of_600_frames_parsed_over_30s_is_mirrored_within_two_pulls(
    tmp_path: Path, sandbox_proc: SandboxProcess
) -> None:
    unit = tmp_path / "in" / "drive_scene"
    write_scene_unit(unit, scene="scene_01", frames=600, cameras=0)
    lag, seen = _run_and_time(tmp_path, sandbox_proc, unit, 600)
    assert any(0 < n < 600 for n in seen), f"no pull saw the scene half parsed: {seen}"
    assert lag <= 2 * PULL_INTERVAL, f"the last frames arrived {lag:.1f} s after PARSE_COMPLETED"
    assert query(
        tmp_path / "state" / "syncd.db", "SELECT COUNT(*) FROM items WHERE kind = 'SCENE'"
    ) == [(1,)]
