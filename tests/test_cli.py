"""The CLI surface: every command documented (docs/operating.md), the sandbox command's
contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import httpx

from syncd.cli import cli
from tests.conftest import run_cli


def test_every_command_has_help_and_is_documented() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "operating.md").read_text()
    assert isinstance(cli, click.Group)
    for name, cmd in cli.commands.items():
        assert cmd.help and len(cmd.help) > 20, name
        assert f"`syncd {name}`" in docs, f"docs/operating.md does not list `syncd {name}`"


def test_sandbox_prints_ready_and_serves() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncd", "sandbox", "xtreme1", "--port", "0", "--token", "abc"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("READY http://127.0.0.1:")
        url = line.split()[1]
        assert (
            httpx.get(
                f"{url}/api/dataset/findByPage", headers={"Authorization": "Bearer abc"}
            ).json()["code"]
            == "OK"
        )
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_sandbox_unknown_platform_is_usage_error() -> None:
    r = run_cli("sandbox", "nope")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_version() -> None:
    r = run_cli("--version")
    assert r.returncode == 0 and "syncd" in r.stdout
