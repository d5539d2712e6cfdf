"""Deepen's preprocessing rules, end to end against the sandbox: what is refused, what is tolerated."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd.config import load_config
from syncd.remotes.deepen import DeepenRemote
from syncd.sampledata import write_fusion_unit
from syncd.status import collect, render
from syncd_sandbox.deepen import CLIENT_ID
from tests.conftest import TOKEN, query
from tests.deepen_support import DeepenEnv

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def deepen_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from syncd_sandbox import run_in_thread

    with run_in_thread("deepen", token=TOKEN, data_dir=tmp_path_factory.mktemp("deepen")) as url:
        yield url


@pytest.fixture
def env(tmp_path: Path, deepen_url: str) -> Iterator[DeepenEnv]:
    e = DeepenEnv(tmp_path, deepen_url)
    yield e
    e.admin("POST", "/config", json={"file_size_as_float": False, "status_override": None})


def _xtreme1_zip(folder: Path) -> bytes:
    """The archive syncd sent before it converted: the unit's folders under a wrapper."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, f"drive_x/{p.relative_to(folder).as_posix()}")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("fmt", "file_name", "problem"),
    [
        ("json", "json_data.zip", "no frame JSON files at the root of json_data.zip"),
        ("default", "3d_data.zip", "config.json is missing at the root of 3d_data.zip"),
    ],
)
def test_xtreme1_layout_zip_ends_in_preprocessing_error(
    env: DeepenEnv, fmt: str, file_name: str, problem: str
) -> None:
    write_fusion_unit(env.tmp / "unit", frames=2, cameras=1, points=200)
    data = _xtreme1_zip(env.tmp / "unit")
    created = httpx.post(
        f"{env.url}/api/v2/clients/{CLIENT_ID}/datasets",
        json={
            "dataset_name": f"{env.group}/old-{fmt}",
            "dataset_type": "3d",
            "dataset_format": fmt,
            "files": [{"file_size": len(data), "file_type": "application/zip"}],
        },
        headers=AUTH,
    ).json()
    assert httpx.put(created["files"][0]["resumable_upload_url"], content=data).status_code == 200
    ds = created["dataset_id"]
    r = httpx.post(
        f"{env.url}/api/v2/datasets/{ds}/process_uploaded_data",
        json={"file_name": file_name},
        headers=AUTH,
    )
    # accepted at once; the verdict comes later, as on the real platform
    assert r.status_code == 200 and r.json()["processing_status"] == "files_uploaded"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        info: dict[str, Any] = env.api(f"/datasets/{ds}")
        if info["processing_status"] != "files_uploaded":
            break
        time.sleep(0.05)
    assert info["processing_status"] == "preprocessing_error"
    assert problem in info["processing_status_message"]
    assert "drive_x/" in info["processing_status_message"]  # it names what it found instead
    assert env.api(f"/datasets/{ds}/files") == {"files": []}


def test_default_format_package_is_processed(env: DeepenEnv) -> None:
    write_fusion_unit(env.folder / "drive_pcd", frames=2, cameras=2, points=300)
    path = env.tmp / "syncd.toml"
    env.config()  # writes the file
    path.write_text(
        path.read_text().replace("[remotes.dp]\n", '[remotes.dp]\ndataset_format = "default"\n')
    )
    from syncd.daemon import Daemon

    cfg = load_config(path)
    remote = DeepenRemote("dp", cfg.remotes["dp"], TOKEN)
    try:  # `syncd check` says what the PCD format lacks
        assert "lidar_timestamps.json and lidar_counts.txt are not sent" in remote.check()
    finally:
        remote.close()
    d = Daemon(cfg)
    try:
        assert d.once(timeout=60) == 0
    finally:
        d.close()
    ((state, err),) = query(env.db, "SELECT state, last_error FROM packages")
    assert (state, err) == ("done", None)
    names = sorted(n for (n,) in query(env.db, "SELECT name FROM items"))
    assert names == ["000001.pcd", "000002.pcd"]
    (fields,) = query(env.db, "SELECT fields FROM events WHERE event = 'package.converted'")
    converted = json.loads(fields[0])
    assert converted["format"] == "default" and "undocumented" in converted["derived"]


def test_float_file_size_still_finds_the_session(env: DeepenEnv) -> None:
    env.admin("POST", "/config", json={"file_size_as_float": True})
    cfg = env.config()
    remote = DeepenRemote("dp", cfg.remotes["dp"], TOKEN)
    try:
        remote.ensure_dataset(env.group, "LIDAR_BASIC")
        opened = remote.open_upload(env.group, "p9-x.zip", 18611529, 1)
        assert env.api(f"/datasets/{opened.ref['deepen_dataset_id']}")["files"][0][
            "file_size"
        ] == pytest.approx(18611529.0)
        found = remote.find_upload(env.group, "p9-x.zip", 1)
        assert found is not None and found.ref["size"] == 18611529
        assert found.ref["deepen_dataset_id"] == opened.ref["deepen_dataset_id"]
    finally:
        remote.close()


def test_unknown_processing_status_is_an_event_and_shown_by_status(env: DeepenEnv) -> None:
    write_fusion_unit(env.folder / "drive_u", frames=1, cameras=0, points=100)
    env.admin("POST", "/config", json={"status_override": "files_being_reviewed"})
    assert env.once(timeout=5) == 1  # still waiting: not done, not silently forgotten
    rows = query(
        env.db, "SELECT level, fields FROM events WHERE event = 'package.processing_unknown'"
    )
    assert len(rows) == 1 and rows[0][0] == "error"
    assert json.loads(rows[0][1])["status"] == "files_being_reviewed"
    shown = render(collect(env.config()))
    assert "package.processing_unknown" in shown and "files_being_reviewed" in shown


def test_file_name_falls_back_to_the_documented_one(env: DeepenEnv) -> None:
    remote = DeepenRemote("dp", env.config().remotes["dp"], TOKEN)
    try:
        for kind, fmt, want in (
            ("images", None, "data.zip"),
            ("3d", "json", "json_data.zip"),
            ("3d", "default", "3d_data.zip"),
        ):
            resource = {
                "dataset_id": "d1",
                "dataset_type": kind,
                "dataset_format": fmt,
                "files": [{"resumable_upload_url": "https://up.example/upload?upload_id=x"}],
            }
            assert remote._session_ref(resource, 10).ref["file_name"] == want
    finally:
        remote.close()
