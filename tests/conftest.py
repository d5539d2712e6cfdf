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
import psycopg
import pytest

import syncd_sandbox as sandbox
from tests.postgres_support import Cluster, pg_bindir

TOKEN = "test-token"


@pytest.fixture(scope="session")
def sandbox_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An Xtreme1 sandbox in a background thread, shared by the session (use unique dataset names)."""
    from syncd_sandbox import run_in_thread

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
    database_url: str | None = None,
    host: str | None = None,
) -> Path:
    """A config file with one remote ``sb`` and the given syncs (TOML written by hand).

    ``database_url``: the store is that PostgreSQL database; ``host``: this daemon's name.
    """

    def val(v: Any) -> str:
        return json.dumps(str(v)) if isinstance(v, Path) else json.dumps(v)

    lines = [
        "[state]",
        f"dir = {val(state or path.parent / 'state')}",
        *([f"database_url = {val(database_url)}"] if database_url else []),
        *([f"host = {val(host)}"] if host else []),
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


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL server for the session (skipped where PostgreSQL is not installed)."""
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
    cluster = Cluster(bindir)
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """The URL of a new, empty PostgreSQL database (``postgresql+psycopg://…``)."""
    return pg_cluster.database()


def query(db: Path | str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (``?`` parameters) from a SQLite file or a PostgreSQL URL."""
    if isinstance(db, str):
        from syncd.store.postgres import conninfo

        with psycopg.connect(conninfo(db), autocommit=True) as pg:
            return [tuple(r) for r in pg.execute(sql.replace("?", "%s"), args).fetchall()]  # type: ignore[call-overload]
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
        except (sqlite3.OperationalError, psycopg.errors.UndefinedTable):
            value = None  # the daemon has not created its tables yet
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
