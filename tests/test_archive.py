"""Archives: exact size before streaming, zip64-safe layout, class binding, change detection."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest

from syncd.errors import LocalDataError
from syncd.pipeline.archive import (
    archive_size,
    bind_result,
    open_archive,
    result_classes,
    verify_files,
)
from syncd.store import PackageFile


def pf(folder: Path, unit: str, rel: str, arc: str, *, bind: bool = False) -> PackageFile:
    st = (folder / unit / rel).stat()
    return PackageFile(
        package_id=1,
        sync="s",
        unit=unit,
        rel_path=rel,
        arcname=arc,
        item_key="x",
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        bind_classes=bind,
    )


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    u = tmp_path / "u"
    (u / "lidar_point_cloud_0").mkdir(parents=True)
    (u / "result").mkdir()
    (u / "lidar_point_cloud_0" / "1.pcd").write_bytes(os.urandom(300_000))
    (u / "result" / "1.json").write_text(
        json.dumps({"objects": [{"type": "3D_BOX", "className": "Car", "contour": {}}]})
    )
    return tmp_path


def test_size_is_exact_and_content_round_trips(unit: Path) -> None:
    files = [
        pf(unit, "u", "lidar_point_cloud_0/1.pcd", "u/lidar_point_cloud_0/1.pcd"),
        pf(unit, "u", "result/1.json", "u/result/1.json", bind=True),
    ]
    size = archive_size(unit, files, {"Car": "45"})
    data = b"".join(open_archive(unit, files, {"Car": "45"}))
    assert len(data) == size
    z = zipfile.ZipFile(io.BytesIO(data))
    assert (
        z.read("u/lidar_point_cloud_0/1.pcd") == (unit / "u/lidar_point_cloud_0/1.pcd").read_bytes()
    )
    assert json.loads(z.read("u/result/1.json"))["objects"][0]["classId"] == 45
    assert z.testzip() is None


def test_changed_file_is_detected(unit: Path) -> None:
    files = [pf(unit, "u", "lidar_point_cloud_0/1.pcd", "a")]
    verify_files(unit, files)
    (unit / "u/lidar_point_cloud_0/1.pcd").write_bytes(b"shorter")
    with pytest.raises(LocalDataError, match="changed after it was packed"):
        verify_files(unit, files)
    (unit / "u/lidar_point_cloud_0/1.pcd").unlink()
    with pytest.raises(LocalDataError, match="vanished"):
        verify_files(unit, files)


def test_result_helpers_accept_both_shapes() -> None:
    doc = [
        {"objects": [{"type": "2D_RECT", "className": "Sign"}]},
        {"objects": [{"type": "3D_BOX", "className": "Car"}]},
    ]
    assert result_classes(doc) == {"Sign": "BOUNDING_BOX", "Car": "CUBOID"}
    out = json.loads(bind_result(doc, {"Car": "7"}))
    assert out[1]["objects"][0]["classId"] == 7 and "classId" not in out[0]["objects"][0]


@pytest.mark.slow
def test_zip64_archive_over_4_gib(tmp_path: Path) -> None:
    """A unit over 4 GiB streams as a valid zip64 archive (sparse input keeps the disk use small)."""
    unit = tmp_path / "u" / "lidar_point_cloud_0"
    unit.mkdir(parents=True)
    big = unit / "000001.pcd"
    with big.open("wb") as f:
        f.truncate(4 * 2**30 + 2**20)  # 4 GiB + 1 MiB of zeros, sparse
    (unit / "000002.pcd").write_bytes(b"after the 4 GiB mark")
    files = [
        pf(tmp_path, "u", "lidar_point_cloud_0/000001.pcd", "u/lidar_point_cloud_0/000001.pcd"),
        pf(tmp_path, "u", "lidar_point_cloud_0/000002.pcd", "u/lidar_point_cloud_0/000002.pcd"),
    ]
    size = archive_size(tmp_path, files, {})
    out = tmp_path / "out.zip"
    written = 0
    with out.open("wb") as f:
        for chunk in open_archive(tmp_path, files, {}):
            written += len(chunk)
            if chunk.strip(b"\x00"):
                f.write(chunk)
            else:
                f.seek(len(chunk), 1)  # keep the copy sparse: CI disks can be small
        f.truncate(written)
    assert written == size == out.stat().st_size
    assert out.stat().st_blocks * 512 < 64 * 2**20
    with zipfile.ZipFile(out) as z:
        infos = {i.filename: i for i in z.infolist()}
        assert infos["u/lidar_point_cloud_0/000001.pcd"].file_size == 4 * 2**30 + 2**20
        assert infos["u/lidar_point_cloud_0/000002.pcd"].header_offset > 2**32
        assert z.read("u/lidar_point_cloud_0/000002.pcd") == b"after the 4 GiB mark"
