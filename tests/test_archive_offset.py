"""The archive from an offset: byte-identical to the tail of the whole stream, at every boundary."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest

from syncd.pipeline.archive import archive_size, open_archive, open_archive_at, skip_bytes
from syncd.store import PackageFile


def pf(folder: Path, rel: str, *, bind: bool = False) -> PackageFile:
    st = (folder / "u" / rel).stat()
    return PackageFile(
        package_id=1,
        sync="s",
        unit="u",
        rel_path=rel,
        arcname=f"u/{rel}",
        item_key="x",
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        bind_classes=bind,
    )


@pytest.fixture
def files(tmp_path: Path) -> list[PackageFile]:
    u = tmp_path / "u"
    (u / "lidar_point_cloud_0").mkdir(parents=True)
    (u / "result").mkdir()
    sizes = [0, 1, 1024 * 1024 + 7, 3 * 1024 * 1024, 65_537]
    for n, size in enumerate(sizes):
        (u / "lidar_point_cloud_0" / f"{n}.pcd").write_bytes(os.urandom(size))
    (u / "result" / "1.json").write_text(
        json.dumps({"objects": [{"type": "3D_BOX", "className": "Car", "contour": {}}]})
    )
    out = [pf(tmp_path, f"lidar_point_cloud_0/{n}.pcd") for n in range(len(sizes))]
    return [*out, pf(tmp_path, "result/1.json", bind=True)]


def _boundaries(data: bytes) -> set[int]:
    """Offsets where a zip record starts, plus one byte either side."""
    marks = {0, len(data)}
    for sig in (b"PK\x03\x04", b"PK\x07\x08", b"PK\x01\x02", b"PK\x05\x06"):
        start = data.find(sig)
        while start >= 0:
            marks.add(start)
            start = data.find(sig, start + 1)
    return {m + d for m in marks for d in (-1, 0, 1) if 0 <= m + d <= len(data)}


def test_every_offset_gives_the_tail(tmp_path: Path, files: list[PackageFile]) -> None:
    classes = {"Car": "45"}
    whole = b"".join(open_archive(tmp_path, files, classes))
    assert len(whole) == archive_size(tmp_path, files, classes)
    offsets = _boundaries(whole) | {256 * 1024, 8 * 1024 * 1024 // 3, len(whole) // 2}
    assert len(offsets) > 20
    for offset in sorted(offsets):
        tail = b"".join(open_archive_at(tmp_path, files, classes, offset))
        assert tail == whole[offset:], f"offset {offset}"
    # the resumed pieces put together are a valid archive with the right content
    cut = len(whole) // 3
    joined = whole[:cut] + b"".join(open_archive_at(tmp_path, files, classes, cut))
    z = zipfile.ZipFile(io.BytesIO(joined))
    assert z.testzip() is None
    assert json.loads(z.read("u/result/1.json"))["objects"][0]["classId"] == 45


def test_bytes_entries_have_a_fixed_timestamp(tmp_path: Path, files: list[PackageFile]) -> None:
    # Without it, a bound result file carried "now" and a resumed stream differed.
    z = zipfile.ZipFile(io.BytesIO(b"".join(open_archive(tmp_path, files, {"Car": "1"}))))
    assert z.getinfo("u/result/1.json").date_time == (1980, 1, 1, 0, 0, 0)
    assert z.getinfo("u/lidar_point_cloud_0/1.pcd").date_time != (1980, 1, 1, 0, 0, 0)


def test_offset_outside_the_archive_is_refused(tmp_path: Path, files: list[PackageFile]) -> None:
    size = archive_size(tmp_path, files, {})
    assert b"".join(open_archive_at(tmp_path, files, {}, size)) == b""
    with pytest.raises(ValueError, match="outside"):
        open_archive_at(tmp_path, files, {}, size + 1)
    with pytest.raises(ValueError, match="outside"):
        open_archive_at(tmp_path, files, {}, -1)


def test_skip_bytes_across_chunk_edges() -> None:
    chunks = [b"abc", b"", b"defg", b"h"]
    for offset in range(9):
        assert b"".join(skip_bytes(chunks, offset)) == b"abcdefgh"[offset:]
