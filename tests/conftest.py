"""Shared fixtures: sandboxes (in-process thread or a real subprocess), configs, CLI runs."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd import sandbox

TOKEN = "test-token"


@pytest.fixture(scope="session")
def sandbox_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An Xtreme1 sandbox in a background thread, shared by the session (use unique dataset names)."""
    from syncd.sandbox import run_in_thread

    with run_in_thread("xtreme1", token=TOKEN, data_dir=tmp_path_factory.mktemp("sandbox")) as url:
        yield url


def admin_call(url: str, method: str, path: str, **kwargs: Any) -> Any:
    """Call a sandbox's admin API (``/__sandbox{path}``)."""
    r = httpx.request(method, f"{url}/__sandbox{path}", timeout=30, **kwargs)
    r.raise_for_status()
    return r.json() if r.content else None


def api_call(url: str, path: str, **params: Any) -> Any:
    """GET an Xtreme1 API path on a sandbox with the test token; returns ``data``."""
    r = httpx.get(
        f"{url}/api{path}", params=params, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )
    body = r.json()
    assert body["code"] == "OK", body
    return body["data"]


class SandboxProcess(sandbox.SandboxProcess):
    """``syncd sandbox xtreme1`` as a separate process, as users run it."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__("xtreme1", token=TOKEN, data_dir=data_dir)

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        return admin_call(self.url, method, path, **kwargs)

    def api(self, path: str, **params: Any) -> Any:
        return api_call(self.url, path, **params)


@pytest.fixture
def sandbox_proc(tmp_path: Path) -> Iterator[SandboxProcess]:
    sp = SandboxProcess(tmp_path / "sandbox-data")
    yield sp
    sp.stop()


def write_config(
    path: Path,
    url: str,
    syncs: list[dict[str, Any]],
    *,
    token: str = TOKEN,
    state: Path | None = None,
    remote_extra: str = "",
    platform: str = "xtreme1",
) -> Path:
    """A config file with one remote ``sb`` and the given syncs (TOML written by hand)."""

    def val(v: Any) -> str:
        return json.dumps(str(v)) if isinstance(v, Path) else json.dumps(v)

    lines = [
        "[state]",
        f"dir = {val(state or path.parent / 'state')}",
        "[log]",
        'format = "json"',
        'level = "debug"',
        "[remotes.sb]",
        f"platform = {val(platform)}",
        f"url = {val(url)}",
        f"token = {val(token)}",
        "poll_interval = 0.2",
        "max_retries = 2",
        remote_extra,
    ]
    for s in syncs:
        lines.append("[[syncs]]")
        merged = {"remote": "sb", "settle_seconds": 0, "pull_interval": 1, **s}
        lines += [f"{k} = {val(v)}" for k, v in merged.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(
    *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``syncd`` command as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def query(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def wait_until(check: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except sqlite3.OperationalError:
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
