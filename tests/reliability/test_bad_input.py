"""Bad input: every mistake gets one clear line or event, and nothing is lost.

Permission cases need a user that permissions apply to: as root the
commands run as ``nobody`` through ``setpriv`` (util-linux).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.sampledata import write_fusion_unit
from tests.conftest import TOKEN, query, run_cli, write_config
from tests.reliability.invariants import assert_exactly_once

pytestmark = pytest.mark.e2e
NOBODY = 65534


def one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# --- configuration ---------------------------------------------------------------------------


def _config(tmp_path: Path, url: str, remote: str = "", sync: str = "") -> Path:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    text = f"""
[state]
dir = "{tmp_path / "state"}"
[remotes.sb]
url = "{url}"
{remote or f'platform = "xtreme1"{chr(10)}token = "{TOKEN}"'}
[[syncs]]
name = "s"
remote = "sb"
dataset = "d"
{sync or f'folder = "{folder}"'}
"""
    path = tmp_path / "syncd.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("remote", "sync", "needles"),
    [
        ('platform = "xtreme1"\ntokn = "x"\ntoken = "t"', "", ["remotes.sb.tokn", "unknown key"]),
        ('platform = "labelbox"\ntoken = "t"', "", ["remotes.sb.platform", "'labelbox'"]),
        ("", 'folder = "in"\nremote2 = "x"', ["syncs[s].remote2", "unknown key"]),
        ("", 'folder = "in"\nsettle_seconds = "soon"', ["syncs[s].settle_seconds", "'soon'"]),
        ("", 'folder = "in"\nmax_package_bytes = "huge"', ["syncs[s].max_package_bytes", "'huge'"]),
        ('platform = "xtreme1"\ntoken_file = "tokdir"', "", ["remotes.sb.token_file", "tokdir"]),
        (
            'platform = "xtreme1"\ntoken_file = "missing.token"',
            "",
            ["remotes.sb.token_file", "missing.token"],
        ),
        ("", 'folder = "nowhere"', ["syncs[s].folder", "nowhere", "does not exist"]),
        ("", 'folder = "afile"', ["syncs[s].folder", "afile", "not a folder"]),
    ],
)
@pytest.mark.parametrize("command", ["once", "run"])
def test_config_mistake_is_one_line_exit_2(
    command: str, remote: str, sync: str, needles: list[str], tmp_path: Path
) -> None:
    (tmp_path / "tokdir").mkdir()
    (tmp_path / "afile").write_text("x")
    cfg = _config(tmp_path, "http://127.0.0.1:9", remote, sync)
    one_line_error(run_cli(command, "--config", str(cfg), timeout=60), *needles)


def test_missing_remote_names_the_sync(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "http://127.0.0.1:9")
    cfg.write_text(cfg.read_text().replace('remote = "sb"', 'remote = "lab2"'))
    one_line_error(run_cli("once", "--config", str(cfg)), "syncs[s].remote", "'lab2'")


def test_state_dir_that_cannot_be_created(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "http://127.0.0.1:9")
    (tmp_path / "blocker").write_text("a file where a folder should be")
    cfg.write_text(
        cfg.read_text().replace(str(tmp_path / "state"), str(tmp_path / "blocker" / "state"))
    )
    one_line_error(run_cli("once", "--config", str(cfg)), "state.dir", "blocker")


# --- files that are not plain data ------------------------------------------------------------


def test_fifo_socket_symlinks_and_odd_names(tmp_path: Path, sandbox_url: str) -> None:
    folder = tmp_path / "in"
    unit = folder / "odd"
    write_fusion_unit(unit, frames=2, cameras=0, with_result=False, seed=5)
    pcd = unit / "lidar_point_cloud_0"
    long_name = "f" * 240
    shutil.copy(pcd / "000001.pcd", pcd / f"{long_name}.pcd")
    os.mkfifo(pcd / "000009.pcd")  # a reader would block for ever
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(pcd / "000010.pcd"))
    outside = tmp_path / "secret.pcd"
    outside.write_bytes((pcd / "000001.pcd").read_bytes())
    (pcd / "000011.pcd").symlink_to(outside)  # leads out of the watched folder
    (pcd / "000002b.pcd").symlink_to(pcd / "000002.pcd")  # stays inside: followed
    (Path(os.fsdecode(bytes(pcd) + b"/\xff\xfe.pcd"))).write_bytes(b"x")  # not UTF-8
    (folder / "empty_unit").mkdir()
    os.mkdir(os.fsdecode(bytes(folder) + b"/unit_\xff"))  # a unit with a non-UTF-8 name
    cfg = write_config(
        tmp_path / "syncd.toml",
        sandbox_url,
        [
            {
                "name": "o",
                "dataset": f"odd-{tmp_path.name}"[:60],
                "dataset_type": "LIDAR_BASIC",
                "folder": folder,
            }
        ],
    )
    try:
        result = run_cli("once", "--config", str(cfg), timeout=120)
    finally:
        sock.close()
    assert result.returncode == 0, result.stderr[-3000:]
    db = tmp_path / "state" / "syncd.db"
    files = {f for (f,) in query(db, "SELECT rel_path FROM package_files")}
    assert files == {
        "lidar_point_cloud_0/000001.pcd",
        "lidar_point_cloud_0/000002.pcd",
        "lidar_point_cloud_0/000002b.pcd",
        f"lidar_point_cloud_0/{long_name}.pcd",
    }
    assert [u for (u,) in query(db, "SELECT unit FROM packages")] == ["odd"]
    [(fields,)] = query(db, "SELECT fields FROM events WHERE event = 'unit.files_skipped'")
    assert "000011.pcd: a symlink that leads outside the watched folder" in fields
    assert "not valid UTF-8" in fields


# --- permissions --------------------------------------------------------------------------------


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder another user can enter (pytest's own tmp folders are private to root)."""
    d = Path(tempfile.mkdtemp(prefix="syncd-perm-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run_as_user(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``syncd ARGS`` as an unprivileged user (``nobody`` when we are root)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: permissions cannot be tested")
        prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
    return subprocess.run(
        [*prefix, sys.executable, "-m", "syncd", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HOME": "/nonexistent", "PYTHONDONTWRITEBYTECODE": "1"},
    )


def _owned_by_user(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)


def test_unreadable_file_waits_and_is_sent_once_readable(
    shared_dir: Path, sandbox_url: str
) -> None:
    folder = shared_dir / "in"
    write_fusion_unit(folder / "u", frames=2, cameras=0, with_result=False, seed=6)
    for p in [folder, *folder.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    locked = folder / "u" / "lidar_point_cloud_0" / "000002.pcd"
    locked.chmod(0)
    _owned_by_user(shared_dir / "state")
    dataset = f"perm-{shared_dir.name}"
    cfg = write_config(
        shared_dir / "syncd.toml",
        sandbox_url,
        [{"name": "p", "dataset": dataset, "dataset_type": "LIDAR_BASIC", "folder": folder}],
    )
    cfg.chmod(0o644)
    first = run_as_user("once", "--config", str(cfg))
    assert first.returncode == 1, first.stderr[-2000:]
    assert "Traceback" not in first.stderr
    db = shared_dir / "state" / "syncd.db"
    [(state, error)] = query(db, "SELECT state, last_error FROM packages")
    assert state == "packing" and "permission denied" in error and "000002.pcd" in error
    assert query(db, "SELECT COUNT(*) FROM events WHERE event = 'package.retry'")[0][0] >= 1
    locked.chmod(0o644)
    second = run_as_user("once", "--config", str(cfg))
    assert second.returncode == 0, second.stderr[-2000:]
    assert_exactly_once(db, folder, sandbox_url, dataset, expected_items=2)


def test_unreadable_folder_and_unwritable_state_dir_exit_2(shared_dir: Path) -> None:
    folder = shared_dir / "in"
    folder.mkdir(mode=0o700)  # root's, closed to others
    cfg = write_config(
        shared_dir / "syncd.toml",
        "http://127.0.0.1:9",
        [{"name": "p", "dataset": "d", "folder": folder}],
    )
    cfg.chmod(0o644)
    (shared_dir / "state").mkdir(mode=0o755)  # root's: nobody cannot write
    result = run_as_user("once", "--config", str(cfg))
    if os.geteuid() != 0:
        pytest.skip("the folders belong to this user")
    one_line_error(result, "syncs[p].folder", "permission denied")
    folder.chmod(0o755)
    one_line_error(
        run_as_user("once", "--config", str(cfg)), "state.dir", "syncd.db", "Permission denied"
    )


# --- the state database --------------------------------------------------------------------


def test_corrupt_or_foreign_database_is_refused_not_overwritten(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "http://127.0.0.1:9")
    db = tmp_path / "state" / "syncd.db"
    db.parent.mkdir()
    db.write_bytes(b"this is not a database\n" * 100)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    one_line_error(run_cli("once", "--config", str(cfg)), "state.dir", "not a SQLite database")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    db.unlink()
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT)")
    conn.commit()
    conn.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    one_line_error(run_cli("run", "--config", str(cfg)), "state.dir", "another program", "photos")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT, applied_at TEXT)"
    )
    conn.execute("DROP TABLE photos")
    conn.execute("INSERT INTO schema_migrations VALUES (99, 'future', '')")
    conn.commit()
    conn.close()
    one_line_error(run_cli("once", "--config", str(cfg)), "newer syncd", "99")


def test_long_reader_and_a_brief_writer_lock_do_not_stop_the_daemon(
    tmp_path: Path, sandbox_url: str
) -> None:
    folder = tmp_path / "in"
    write_fusion_unit(folder / "u1", frames=1, cameras=0, seed=7)
    dataset = f"lock-{tmp_path.name}"[:60]
    cfg = write_config(
        tmp_path / "syncd.toml",
        sandbox_url,
        [{"name": "l", "dataset": dataset, "dataset_type": "LIDAR_BASIC", "folder": folder}],
    )
    assert run_cli("once", "--config", str(cfg)).returncode == 0
    db = tmp_path / "state" / "syncd.db"
    write_fusion_unit(folder / "u2", frames=1, cameras=0, seed=8)
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM events").fetchone()  # a long analysis query stays open
    writer = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")  # someone holds the write lock for a while

    def release() -> None:
        time.sleep(3)
        writer.execute("COMMIT")

    t = threading.Thread(target=release)
    t.start()
    try:
        result = run_cli("once", "--config", str(cfg))
    finally:
        t.join()
        reader.execute("COMMIT")
        reader.close()
        writer.close()
    assert result.returncode == 0, result.stderr[-2000:]
    assert_exactly_once(db, folder, sandbox_url, dataset, expected_items=2)


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return r.returncode == 0


def test_full_state_disk_waits_and_recovers(tmp_path: Path, sandbox_url: str) -> None:
    state = tmp_path / "state"
    if os.geteuid() != 0 or not _mount_tmpfs(state, "4m"):
        pytest.skip("needs root and a tmpfs mount to make a small disk")
    try:
        folder = tmp_path / "in"
        folder.mkdir()
        dataset = f"full-{tmp_path.name}"[:60]
        cfg = write_config(
            tmp_path / "syncd.toml",
            sandbox_url,
            [{"name": "f", "dataset": dataset, "dataset_type": "LIDAR_BASIC", "folder": folder}],
            state=state,
        )
        log = (tmp_path / "daemon.log").open("wb")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "--config", str(cfg)], stdout=log, stderr=log
        )
        try:
            _wait(
                lambda: (
                    (state / "syncd.db").exists()
                    and query(
                        state / "syncd.db", "SELECT 1 FROM events WHERE event = 'daemon.started'"
                    )
                )
            )
            filler = state / "filler"
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
            try:  # fill the disk to the last byte
                for block in (65536, 4096, 1):
                    try:
                        while os.write(fd, b"\0" * block):
                            pass
                    except OSError:
                        pass
            finally:
                os.close(fd)
            write_fusion_unit(folder / "u", frames=2, cameras=0, seed=9)
            _wait(lambda: b"database or disk is full" in (tmp_path / "daemon.log").read_bytes(), 60)
            assert daemon.poll() is None  # still running
            filler.unlink()
            _wait(
                lambda: query(state / "syncd.db", "SELECT 1 FROM packages WHERE state = 'done'"),
                120,
            )
        finally:
            daemon.terminate()
            assert daemon.wait(timeout=60) == 0
            log.close()
        assert_exactly_once(state / "syncd.db", folder, sandbox_url, dataset, expected_items=2)
        text = (tmp_path / "daemon.log").read_text()
        assert "daemon.stage_error" in text and "Traceback" not in text
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def _wait(check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.1)
    raise AssertionError("timed out")
