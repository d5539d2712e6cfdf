"""kill -9 around opening a Deepen upload session: no orphan is silently left, nothing twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.sampledata import write_fusion_unit
from tests.conftest import TOKEN, query, run_cli
from tests.deepen_support import DeepenEnv, write_deepen_config

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def deepen_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from syncd_sandbox import run_in_thread

    with run_in_thread("deepen", token=TOKEN, data_dir=tmp_path_factory.mktemp("deepen")) as url:
        yield url


def crash_then_finish(env: DeepenEnv, point: str) -> dict[str, object]:
    write_fusion_unit(env.folder / "drive", frames=2, points=3000)
    cfg = write_deepen_config(
        env.tmp / "syncd.toml",
        env.url,
        [{"name": "s", "dataset": env.group, "folder": env.folder}],
    )
    crashed = run_cli("once", "--config", str(cfg), env={"SYNCD_CRASH_AT": point})
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    assert query(env.db, "SELECT state FROM packages") == [("uploading",)]
    done = run_cli("once", "--config", str(cfg))
    assert done.returncode == 0, done.stderr[-2000:]
    assert query(env.db, "SELECT state, last_error FROM packages") == [("done", None)]
    return dict(json.loads(query(env.db, "SELECT upload_ref FROM packages")[0][0]))


def test_crash_after_the_session_was_opened_reuses_it(tmp_path: Path, deepen_url: str) -> None:
    env = DeepenEnv(tmp_path, deepen_url)
    ref = crash_then_finish(env, "upload.session_opened")
    (only,) = env.datasets().values()  # found by name after the restart: no second dataset
    assert only["process_calls"] == 1 and only["complete"]
    assert "abandoned" not in ref


def test_crash_before_the_session_was_opened_records_the_attempt(
    tmp_path: Path, deepen_url: str
) -> None:
    env = DeepenEnv(tmp_path, deepen_url)
    ref = crash_then_finish(env, "upload.opening")
    (only,) = env.datasets().values()
    assert only["name"].endswith("#2")
    (gone,) = ref["abandoned"]  # type: ignore[misc]
    assert gone["attempt"] == 1 and "none was found" in gone["reason"]
