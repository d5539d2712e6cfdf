"""Bad config, unreachable platform, wrong token: one line, the cause, exit 2 or 1, no traceback."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.conftest import SandboxProcess, run_cli, write_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_one_line(stderr: str) -> None:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("syncd: error:")]
    assert len(lines) == 1, stderr


def test_bad_config_exit_2(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "c.toml",
        "http://127.0.0.1:1",
        [{"name": "a", "dataset": "d", "folder": tmp_path, "remote": "lab2"}],
    )
    for cmd in ("once", "run", "check", "status"):
        r = run_cli(cmd, "--config", str(cfg))
        assert r.returncode == 2, (cmd, r.stderr)
        assert_one_line(r.stderr)
        assert "syncs[a].remote: no remote named 'lab2'" in r.stderr


def test_no_config_exit_2(tmp_path: Path) -> None:
    r = run_cli("once", env={"SYNCD_CONFIG": ""})
    assert r.returncode == 2 and "SYNCD_CONFIG" in r.stderr
    assert_one_line(r.stderr)


def test_unreachable_platform_exit_1(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    cfg = write_config(
        tmp_path / "c.toml", url, [{"name": "a", "dataset": "d", "folder": tmp_path}]
    )
    for cmd in ("once", "check"):
        r = run_cli(cmd, "--config", str(cfg), timeout=120)
        assert r.returncode == 1, (cmd, r.stderr)
        assert "Traceback" not in r.stderr
        assert "connection refused" in r.stderr


def test_wrong_token_exit_1(tmp_path: Path, sandbox_proc: SandboxProcess) -> None:
    cfg = write_config(
        tmp_path / "c.toml",
        sandbox_proc.url,
        [{"name": "a", "dataset": "d", "folder": tmp_path}],
        token="wrong",
    )
    for cmd in ("once", "run", "check"):
        r = run_cli(cmd, "--config", str(cfg), timeout=120)
        assert r.returncode == 1, (cmd, r.stderr)
        assert "Traceback" not in r.stderr
        assert "token was refused" in r.stderr
