"""scan_unit's fast path (plain directories, stat-ed at C speed) agrees with its general loop."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncd.pipeline import scan
from syncd.pipeline.scan import FileStat, scan_unit


def _tree(folder: Path, outside: Path) -> None:
    unit = folder / "unit_a"
    (unit / "lidar").mkdir(parents=True)
    (unit / "camera" / "front").mkdir(parents=True)
    for n in range(5):
        (unit / "lidar" / f"{n:03d}.pcd").write_bytes(b"x" * n)
        (unit / "camera" / "front" / f"{n:03d}.jpg").write_bytes(b"y" * (n + 1))
    (unit / "_READY").touch()  # the marker, at the unit's root
    (unit / "lidar" / ".hidden.tmp").write_bytes(b"excluded")  # an excluded name
    (unit / "camera" / "front" / "inside.jpg").symlink_to(unit / "lidar" / "000.pcd")
    (outside / "secret").write_bytes(b"s")
    (unit / "camera" / "escape").symlink_to(outside / "secret")
    os.mkfifo(unit / "camera" / "pipe")
    bad = os.fsencode(str(unit / "lidar")) + b"/bad-\xff.pcd"
    with open(bad, "wb") as f:
        f.write(b"z")
    plain = folder / "unit_b" / "lidar"
    plain.mkdir(parents=True)
    for n in range(50):
        (plain / f"{n:03d}.pcd").write_bytes(b"p" * n)


@pytest.mark.parametrize("name", ["unit_a", "unit_b"])
def test_fast_path_equals_general_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    folder, outside = tmp_path / "watch", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    _tree(folder, outside)
    exclude = (".*", "*.tmp")
    fast = scan_unit(folder, name, exclude, "_READY")
    monkeypatch.setattr(scan, "_scan_plain_dir", lambda *a: False)
    general = scan_unit(folder, name, exclude, "_READY")
    assert fast == general
    assert fast is not None and all(type(f) is FileStat for f in fast.files)
    assert [f.rel_path for f in fast.files] == sorted(f.rel_path for f in fast.files)


def test_mixed_unit_content(tmp_path: Path) -> None:
    folder, outside = tmp_path / "watch", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    _tree(folder, outside)
    snap = scan_unit(folder, "unit_a", (".*", "*.tmp"), "_READY")
    assert snap is not None and snap.marker
    rels = [f.rel_path for f in snap.files]
    assert "lidar/003.pcd" in rels and "camera/front/inside.jpg" in rels
    assert not any(r.endswith(".tmp") or r == "_READY" or "pipe" in r for r in rels)
    assert [why for _, why in snap.skipped] == [
        "a symlink that leads outside the watched folder",
        "a FIFO, not a regular file",  # not data, and a reader would block on it
        "the name is not valid UTF-8",
    ]
    size = {f.rel_path: f.size for f in snap.files}
    assert size["lidar/004.pcd"] == 4 and size["camera/front/004.jpg"] == 5


def test_a_file_that_vanishes_is_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unit = tmp_path / "u"
    unit.mkdir()
    for n in range(3):
        (unit / f"{n}.pcd").write_bytes(b"x")
    real_scandir = os.scandir

    def scandir_then_remove(path: object) -> object:
        entries = list(real_scandir(path))  # type: ignore[call-overload]
        (unit / "1.pcd").unlink(missing_ok=True)  # gone between listing and stat
        return iter(entries)

    class _Ctx:
        def __init__(self, path: object) -> None:
            self.it = scandir_then_remove(path)

        def __enter__(self) -> object:
            return self.it

        def __exit__(self, *exc: object) -> None:
            return None

        def __iter__(self) -> object:
            return self.it

    monkeypatch.setattr(scan.os, "scandir", _Ctx)
    snap = scan_unit(tmp_path, "u", (), None)
    assert snap is not None
    assert [f.rel_path for f in snap.files] == ["0.pcd", "2.pcd"]
    assert [f.size for f in snap.files] == [1, 1]
