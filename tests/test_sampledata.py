"""Sample units are valid by the platform's rules: real PNGs, valid PCDs, the right layout."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

from syncd.sampledata import write_bulk_unit, write_fusion_unit, write_image_unit, write_scene_unit


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, b"", (0, 0)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    w, h = size
    assert len(zlib.decompress(idat)) == h * (1 + 3 * w)
    return w, h


def test_fusion_unit_layout(tmp_path: Path) -> None:
    names = write_fusion_unit(tmp_path / "u", frames=2, cameras=2, classes=("Car", "Van"))
    assert names == ["000001", "000002"]
    tracks = []
    for n in names:
        pcd = (tmp_path / "u" / "lidar_point_cloud_0" / f"{n}.pcd").read_text().splitlines()
        assert pcd[0].startswith("# .PCD v0.7")
        points = int(next(line for line in pcd if line.startswith("POINTS")).split()[1])
        data_at = pcd.index("DATA ascii")
        assert len(pcd) - data_at - 1 == points
        for c in range(2):
            assert png_size((tmp_path / "u" / f"camera_image_{c}" / f"{n}.png").read_bytes()) == (64, 48)
        cfg = json.loads((tmp_path / "u" / "camera_config" / f"{n}.json").read_text())
        assert len(cfg) == 2 and all(len(c["cameraExternal"]) == 16 for c in cfg)
        objs = json.loads((tmp_path / "u" / "result" / f"{n}.json").read_text())["objects"]
        assert objs and all(o["type"] == "3D_BOX" and o["className"] in ("Car", "Van") and "classId" not in o for o in objs)
        assert all({"center3D", "size3D", "rotation3D"} <= set(o["contour"]) for o in objs)
        tracks.append(sorted(o["trackId"] for o in objs))
    assert tracks[0] == tracks[1]  # the same objects, tracked across frames
    assert not list((tmp_path / "u").rglob("*.tmp"))


def test_scene_and_image_units(tmp_path: Path) -> None:
    frames = write_scene_unit(tmp_path / "s", scene="scene_07", frames=2)
    assert sorted(p.name for p in (tmp_path / "s" / "scene_07" / "lidar_point_cloud_0").iterdir()) == [f"{n}.pcd" for n in frames]
    imgs = write_image_unit(tmp_path / "i", images=2, with_result=True)
    for n in imgs:
        assert png_size((tmp_path / "i" / "image_0" / f"{n}.png").read_bytes()) == (320, 240)
        assert json.loads((tmp_path / "i" / "result" / f"{n}.json").read_text())["objects"][0]["type"] == "2D_RECT"


def test_bulk_unit_is_exact_and_incompressible(tmp_path: Path) -> None:
    total = 3 * 1024 * 1024 + 17
    assert write_bulk_unit(tmp_path / "b", total_bytes=total, file_bytes=1024 * 1024) == total
    files = sorted((tmp_path / "b" / "lidar_point_cloud_0").iterdir())
    assert sum(f.stat().st_size for f in files) == total and len(files) == 4
    chunk = files[0].read_bytes()
    assert len(zlib.compress(chunk)) >= 0.99 * len(chunk)


def test_deterministic(tmp_path: Path) -> None:
    write_fusion_unit(tmp_path / "a", frames=1, seed=5)
    write_fusion_unit(tmp_path / "b", frames=1, seed=5)
    for f in (tmp_path / "a").rglob("*.*"):
        assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes()
