"""Sandboxes for the ``syncd check --live`` tests: one per platform for the module."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.config import Config, load_config
from syncd.daemon import Daemon
from syncd.sampledata import write_fusion_unit
from syncd_sandbox import run_in_thread
from syncd_sandbox.deepen import CLIENT_ID
from tests.conftest import TOKEN, admin_call, write_config

PLATFORMS = ("xtreme1", "basicai", "deepen", "segments")
OPTIONS = {"deepen": {"client_id": CLIENT_ID}}
_names = itertools.count(1)


@pytest.fixture(scope="module")
def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """platform → base URL of its sandbox (started on first use, shared by the module)."""
    urls: dict[str, str] = {}
    with contextlib.ExitStack() as stack:

        class Lazy(dict[str, str]):
            def __missing__(self, platform: str) -> str:
                data = tmp_path_factory.mktemp(f"live-{platform}")
                urls[platform] = stack.enter_context(
                    run_in_thread(platform, token=TOKEN, data_dir=data)
                )
                self[platform] = urls[platform]
                return urls[platform]

        yield Lazy()


def live_config(tmp: Path, platform: str, url: str, **sync: Any) -> tuple[Path, Config]:
    """A config with remote ``sb`` on the sandbox and one sync ``s`` to a fresh dataset."""
    folder = tmp / "in"
    folder.mkdir(exist_ok=True)
    base = {
        "name": "s",
        "dataset": f"live-{next(_names)}-{tmp.name}"[:60],
        "dataset_type": "LIDAR_FUSION",
        "folder": folder,
    }
    extra = "\n".join(f"{k} = {json.dumps(v)}" for k, v in OPTIONS.get(platform, {}).items())
    path = write_config(
        tmp / "syncd.toml", url, [{**base, **sync}], platform=platform, remote_extra=extra
    )
    return path, load_config(path)


def fault(url: str, rule: dict[str, Any]) -> None:
    admin_call(url, "POST", "/faults", json=rule)


def clear_faults(url: str) -> None:
    admin_call(url, "DELETE", "/faults")


def push_unit(tmp: Path, platform: str, url: str) -> tuple[Path, Path]:
    """One unit pushed (no pull yet); returns (config path, state db)."""
    write_fusion_unit(tmp / "in" / "drive", frames=2, cameras=1, with_result=True, points=200)
    path, cfg = live_config(tmp, platform, url, pull=False)
    d = Daemon(cfg)
    try:
        assert d.once(timeout=60) == 0
    finally:
        d.close()
    return path, tmp / "state" / "syncd.db"
