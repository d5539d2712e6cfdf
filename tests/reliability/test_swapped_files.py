"""Files swapped under syncd at the moment it opens a unit's first file (the real race).

Someone who can write the watched folder waits for syncd to open the unit's
first file (inotify ``IN_OPEN``), then swaps a file for a symlink to a file
outside the folder (with the packed size and mtime copied), a sub-folder for
a symlink to an outside folder, or an empty file for a FIFO. The outside
content must never reach the platform's object store, nothing may block, and
the events say what was packed again or skipped.
"""

from __future__ import annotations

import ctypes
import os
import select
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syncd.daemon import Daemon
from syncd.pipeline import detect, pack, upload
from syncd.pipeline.context import SyncContext
from syncd.sampledata import write_fusion_unit
from tests.conftest import TOKEN, query
from tests.pipeline.conftest import Env

IN_OPEN = 0x20
SECRET = b"# SECRET-0f9e8d7c outside the watched folder\n"
DECOY = b"# decoy--0f9e8d7c inside the watched folder.\n"
assert len(SECRET) == len(DECOY)


class OnFirstOpen:
    """Run ``action`` once, as soon as anyone opens a file in ``directory`` (inotify IN_OPEN)."""

    def __init__(self, directory: Path, action: Callable[[], None]) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        assert libc.inotify_add_watch(self.fd, os.fsencode(directory), IN_OPEN) >= 0
        self.action, self.fired = action, threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if ready:
                os.read(self.fd, 4096)
                self.action()
                self.fired.set()
                return

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        os.close(self.fd)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A sandbox of our own, so every byte it stored can be searched."""
    from syncd_sandbox import run_in_thread

    data = tmp_path_factory.mktemp("swap-sandbox")
    with run_in_thread("xtreme1", token=TOKEN, data_dir=data) as url:
        yield url, data


def stored_bytes_contain(data_dir: Path, needle: bytes) -> list[Path]:
    return [p for p in data_dir.rglob("*") if p.is_file() and needle in p.read_bytes()]


def packed(env: Env) -> tuple[Daemon, SyncContext]:
    d = env.daemon()
    ctx = d.contexts[0]
    tracker = detect.SettleTracker()
    detect.run_once(ctx, tracker)
    detect.run_once(ctx, tracker)
    pack.run_once(ctx)
    assert query(env.db, "SELECT state FROM packages") == [("packed",)]
    return d, ctx


def first_file(env: Env) -> Path:
    [(rel,)] = query(env.db, "SELECT rel_path FROM package_files ORDER BY id LIMIT 1")
    return env.folder / "u" / rel


def upload_racing(env: Env, ctx: SyncContext, watch: Path, swap: Callable[[], None]) -> None:
    """upload.run_once with ``swap`` done on the first IN_OPEN in ``watch``; it must not block."""
    watcher = OnFirstOpen(watch, swap)
    worker = threading.Thread(target=upload.run_once, args=(ctx,), daemon=True)
    worker.start()
    worker.join(60)
    watcher.close()
    assert not worker.is_alive(), "the upload blocked"
    assert watcher.fired.is_set()


def exchange(a: Path, b: Path) -> None:
    """renameat2(RENAME_EXCHANGE): swap two paths in one step."""
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd, rename_exchange = -100, 2
    rc = libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    assert rc == 0, os.strerror(ctypes.get_errno())


def with_marker(path: Path, marker: bytes) -> None:
    """The same file with its first line replaced by ``marker`` (same size)."""
    data = path.read_bytes()
    path.write_bytes(marker + data[len(marker) :])


def finish(env: Env) -> list[str]:
    """Run the daemon to the end; the events of every kind it wrote, as text."""
    code, _ = env.once()
    assert code == 0
    assert query(env.db, "SELECT state FROM packages ORDER BY id")[-1] == ("done",)
    return [f"{e}: {f}" for e, f in query(env.db, "SELECT event, fields FROM events")]


def test_file_swapped_for_a_symlink_out(tmp_path: Path, sandbox: tuple[str, Path]) -> None:
    url, data_dir = sandbox
    env = Env(tmp_path, url)
    write_fusion_unit(env.folder / "u", frames=2, cameras=0, with_result=False, seed=31)
    lidar = env.folder / "u" / "lidar_point_cloud_0"
    decoy = lidar / "000002.pcd"
    with_marker(decoy, DECOY)
    secret = tmp_path / "secret.pcd"  # a file the writer could not read
    shutil.copy(decoy, secret)
    with_marker(secret, SECRET)
    st = decoy.stat()
    os.utime(secret, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime
    d, ctx = packed(env)
    assert first_file(env).name == "000001.pcd"

    def swap() -> None:
        (lidar / "tmp-link").symlink_to(secret)
        os.replace(lidar / "tmp-link", decoy)

    upload_racing(env, ctx, lidar, swap)
    d.close()
    [(state, error)] = query(env.db, "SELECT state, last_error FROM packages")
    assert state == "detected"
    assert "000002.pcd" in error and "symlink that leads outside" in error
    events = finish(env)
    assert any(
        e.startswith("package.detected")
        and "000002.pcd is a symlink that leads outside the watched folder; the unit is packed "
        "again without it"
        in e
        for e in events
    )
    assert stored_bytes_contain(data_dir, b"SECRET-0f9e8d7c") == []


def test_folder_swapped_for_a_symlink_out(tmp_path: Path, sandbox: tuple[str, Path]) -> None:
    url, data_dir = sandbox
    env = Env(tmp_path, url)
    write_fusion_unit(env.folder / "u", frames=2, cameras=1, with_result=False, seed=32)
    unit = env.folder / "u"
    d, ctx = packed(env)
    first = first_file(env)
    # swap a sensor folder other than the first file's for an outside copy of it
    # holding the same names, sizes and mtimes
    victim = next(
        p for p in sorted(unit.iterdir()) if p != first.parent and p.name != "camera_config"
    )
    outside = tmp_path / "outside" / victim.name
    shutil.copytree(victim, outside)
    for p in outside.iterdir():
        st = (victim / p.name).stat()
        with_marker(p, SECRET)
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))

    link = tmp_path / "link"
    link.symlink_to(outside, target_is_directory=True)

    def swap() -> None:
        exchange(link, victim)  # atomically: the folder's path is never missing

    upload_racing(env, ctx, first.parent, swap)
    d.close()
    [(state, error)] = query(env.db, "SELECT state, last_error FROM packages")
    assert state == "detected"
    assert victim.name in error and "symlink that leads outside" in error
    events = finish(env)
    assert any(
        e.startswith("package.detected") and "symlink that leads outside" in e for e in events
    )
    assert stored_bytes_contain(data_dir, b"SECRET-0f9e8d7c") == []


def test_empty_file_swapped_for_a_fifo(tmp_path: Path, sandbox: tuple[str, Path]) -> None:
    url, _ = sandbox
    env = Env(tmp_path, url)
    write_fusion_unit(env.folder / "u", frames=2, cameras=0, with_result=False, seed=33)
    lidar = env.folder / "u" / "lidar_point_cloud_0"
    empty = lidar / "000003.pcd"
    empty.write_bytes(b"")
    d, ctx = packed(env)
    assert first_file(env).name == "000001.pcd"

    def swap() -> None:
        fifo = lidar / ".fifo.tmp"
        os.mkfifo(fifo)
        os.replace(fifo, empty)  # atomically: the name is never missing

    upload_racing(env, ctx, lidar, swap)
    d.close()
    [(state, error)] = query(env.db, "SELECT state, last_error FROM packages")
    assert state == "detected"
    assert "000003.pcd is a FIFO" in error
    events = finish(env)
    assert any(e.startswith("package.detected") and "000003.pcd is a FIFO" in e for e in events)
    # packed again without it: the platform got the two point clouds only
    assert len(env.remote_items()) == 2
