"""A plain ``pip install .`` gives a working daemon without the extras.

The fake platforms (``syncd_sandbox``: Starlette, uvicorn) and psycopg are
extras (``syncd[sandbox]``, ``syncd[postgres]``). This test installs the
checkout's tracked files, without extras, into a fresh virtualenv and runs
``syncd --help``, ``syncd check`` and ``syncd run`` there against a sandbox
served by the test's own environment; the features that need an extra fail
with exit 2 and the command that installs it.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd_sandbox import run_in_thread
from tests.conftest import TOKEN, wait_until, write_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding ``pip install .`` of the tracked files, no extras."""
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the tracked files")
    work = tmp_path_factory.mktemp("install")
    src = work / "src"
    files = subprocess.run(
        ["git", "ls-files", "-z", "--", "pyproject.toml", "README.md", "syncd", "syncd_sandbox"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        rel = Path(name.decode())
        if not (ROOT / rel).exists():
            continue  # deleted in the work tree, not yet committed
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    done = subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(src)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return env_dir


def _run(env_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(env_dir / "bin" / "syncd"), *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[str]:
    with run_in_thread("xtreme1", token=TOKEN, data_dir=tmp_path / "objects") as url:
        yield url


def test_no_extra_dependencies_are_installed(plain_venv: Path) -> None:
    py = str(plain_venv / "bin" / "python")
    for module in ("starlette", "uvicorn", "psycopg", "syncd_sandbox"):
        r = subprocess.run([py, "-c", f"import {module}"], capture_output=True, text=True)
        assert r.returncode != 0, f"{module} is importable in a plain install"
    assert subprocess.run([py, "-c", "import syncd.daemon"], capture_output=True).returncode == 0


def test_help_check_and_run_work(plain_venv: Path, sandbox: str, tmp_path: Path) -> None:
    assert _run(plain_venv, "--help").returncode == 0
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    cfg = write_config(
        tmp_path / "syncd.toml",
        sandbox,
        [{"name": "plain", "dataset": "plain-install", "folder": str(incoming)}],
    )
    check = _run(plain_venv, "check", "--config", str(cfg))
    assert check.returncode == 0, check.stdout + check.stderr

    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(
        [str(plain_venv / "bin" / "syncd"), "run", "--config", str(cfg)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        heartbeat = tmp_path / "state" / "heartbeat.json"
        wait_until(heartbeat.exists, timeout=60, what="the daemon's first heartbeat")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        log.close()
    lines = [json.loads(x) for x in (tmp_path / "run.log").read_text().splitlines() if x]
    assert not [x for x in lines if x.get("level") in ("error", "critical")]


def test_features_of_missing_extras_say_how_to_install_them(
    plain_venv: Path, tmp_path: Path
) -> None:
    r = _run(plain_venv, "sandbox", "xtreme1", "--port", "0")
    assert r.returncode == 2, r.stderr
    assert "pip install 'syncd[sandbox]'" in r.stderr
    assert "Traceback" not in r.stderr

    cfg = write_config(
        tmp_path / "pg.toml",
        "http://127.0.0.1:9",
        [{"name": "pg", "dataset": "pg", "folder": str(tmp_path)}],
        database_url="postgresql+psycopg://syncd@127.0.0.1:1/syncd",
    )
    r = _run(plain_venv, "status", "--config", str(cfg))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "pip install 'syncd[postgres]'" in r.stderr
    assert "Traceback" not in r.stderr
