"""safeopen: packaged files are read only as the regular files inside the folder that were packed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd import safeopen
from syncd.errors import LocalDataError
from syncd.safeopen import ChangedFile, UnsafeFile
from syncd.store import PackageFile


@pytest.fixture(params=["openat2", "O_NOFOLLOW walk"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Both ways of opening: the kernel's openat2 and the per-component fallback."""
    if request.param == "openat2":
        if not safeopen._openat2.available:
            pytest.skip("no openat2 here")
    else:
        monkeypatch.setattr(safeopen._openat2, "available", False)
    yield request.param


def record(folder: Path, unit: str, rel: str) -> PackageFile:
    st = (folder / unit / rel).stat()
    f = PackageFile(
        package_id=1,
        sync="s",
        unit=unit,
        rel_path=rel,
        arcname=rel,
        item_key="",
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
    )
    safeopen.identify(folder, [f])
    return f


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "in" / "u" / "d").mkdir(parents=True)
    (tmp_path / "in" / "u" / "d" / "a.bin").write_bytes(b"a" * 10)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "a.bin").write_bytes(b"S" * 10)
    return tmp_path / "in"


def test_reads_the_packed_file(folder: Path, mode: str) -> None:
    f = record(folder, "u", "d/a.bin")
    assert f.ino == (folder / "u" / "d" / "a.bin").stat().st_ino
    assert b"".join(safeopen.stream_packaged(folder, f, chunk=3)) == b"a" * 10


def test_a_link_inside_the_folder_is_followed(folder: Path, mode: str) -> None:
    (folder / "u" / "alias.bin").symlink_to(folder / "u" / "d" / "a.bin")  # absolute, inside
    (folder / "u" / "e").symlink_to("d")  # a relative folder link, inside
    for rel in ("alias.bin", "e/a.bin"):
        assert safeopen.read_packaged(folder, record(folder, "u", rel)) == b"a" * 10


def test_links_out_are_refused(folder: Path, mode: str) -> None:
    f = record(folder, "u", "d/a.bin")
    os.utime(folder.parent / "outside" / "a.bin", ns=(f.mtime_ns, f.mtime_ns))
    (folder / "u" / "d" / "a.bin").unlink()
    (folder / "u" / "d" / "a.bin").symlink_to(folder.parent / "outside" / "a.bin")
    with pytest.raises(UnsafeFile, match="symlink that leads outside"):
        safeopen.read_packaged(folder, f)
    (folder / "u" / "d" / "a.bin").unlink()
    os.rename(folder / "u" / "d", folder.parent / "d-away")
    (folder / "u" / "d").symlink_to(folder.parent / "outside")  # the folder, not the file
    with pytest.raises(UnsafeFile, match="symlink that leads outside"):
        safeopen.verify(folder, [f])


def test_a_fifo_never_blocks(folder: Path, mode: str) -> None:
    f = record(folder, "u", "d/a.bin")
    (folder / "u" / "d" / "a.bin").unlink()
    os.mkfifo(folder / "u" / "d" / "a.bin")
    with pytest.raises(UnsafeFile, match="a FIFO"):
        safeopen.read_packaged(folder, f)


def test_a_replaced_file_with_the_same_size_and_mtime_is_changed(folder: Path, mode: str) -> None:
    f = record(folder, "u", "d/a.bin")
    other = folder / "u" / "d" / "b.bin"
    other.write_bytes(b"b" * 10)
    os.utime(other, ns=(f.mtime_ns, f.mtime_ns))
    os.replace(other, folder / "u" / "d" / "a.bin")
    with pytest.raises(ChangedFile, match="replaced by another file"):
        safeopen.verify(folder, [f])


def test_growing_while_read_is_changed(folder: Path, mode: str) -> None:
    f = record(folder, "u", "d/a.bin")
    chunks = safeopen.stream_packaged(folder, f, chunk=4)
    assert next(chunks) == b"aaaa"
    with (folder / "u" / "d" / "a.bin").open("ab") as fh:
        fh.write(b"more")
    with pytest.raises(ChangedFile):
        list(chunks)


def test_a_loose_file_unit(folder: Path, mode: str) -> None:
    (folder / "loose.bin").write_bytes(b"x")
    st = (folder / "loose.bin").stat()
    f = PackageFile(
        package_id=1,
        sync="s",
        unit="loose.bin",
        rel_path="loose.bin",
        arcname="loose.bin",
        item_key="",
        size=1,
        mtime_ns=st.st_mtime_ns,
    )
    assert safeopen.read_packaged(folder, f) == b"x"
    with pytest.raises(LocalDataError, match="vanished"):
        (folder / "loose.bin").unlink()
        safeopen.verify(folder, [f])
