"""Sample units follow the platform's archive rules and are valid files (stdlib checks only).

PNGs are decoded by hand (signature, chunk CRCs, IHDR, IDAT length), PCDs are
parsed, camera configs are checked to be rigid LiDAR→camera transforms, and
pre-labels are checked against the points they claim to contain.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import pytest

from syncd.sampledata import (
    write_bulk_unit,
    write_demo_tree,
    write_fusion_unit,
    write_image_unit,
    write_scene_unit,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_BULK_FILE = 182  # the shortest header: POINTS 0 and a 2-byte padding line
BOX_CONTOUR_KEYS = {"center3D", "size3D", "rotation3D", "pointN", "points"}


# --------------------------------------------------------------------------- helpers


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, RGB rows) of an 8-bit RGB PNG, checking every chunk's CRC."""
    assert data[:8] == PNG_SIGNATURE
    pos, kinds, idat, ihdr = 8, [], b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert len(body) == length, "truncated chunk"
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, f"bad CRC in {kind!r}"
        kinds.append(kind)
        if kind == b"IHDR":
            ihdr = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert pos == len(data), "trailing bytes after the last chunk"
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", ihdr
    )
    assert (depth, colour, compression, filtering, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(idat)
    stride = 1 + 3 * width
    assert len(raw) == height * stride
    rows = [raw[y * stride : (y + 1) * stride] for y in range(height)]
    # The generator writes unfiltered scanlines; other filters would need unfiltering.
    assert all(r[0] == 0 for r in rows)
    return width, height, [r[1:] for r in rows]


def parse_pcd(data: bytes) -> tuple[dict[str, list[str]], bytes]:
    """Header fields (name → values) and the bytes after ``DATA``."""
    assert data.startswith(b"# .PCD v0.7 - Point Cloud Data file format\n")
    header: dict[str, list[str]] = {}
    pos = 0
    while True:
        end = data.index(b"\n", pos)
        line = data[pos:end].decode("ascii")
        pos = end + 1
        if line.startswith("#"):
            continue
        key, *values = line.split()
        header[key] = values
        if key == "DATA":
            return header, data[pos:]


def check_pcd_header(header: dict[str, list[str]], data: str) -> int:
    assert header["VERSION"] == ["0.7"]
    assert header["FIELDS"] == ["x", "y", "z", "intensity"]
    assert header["SIZE"] == ["4"] * 4 and header["TYPE"] == ["F"] * 4
    assert header["COUNT"] == ["1"] * 4
    assert header["DATA"] == [data]
    points = int(header["POINTS"][0])
    assert int(header["WIDTH"][0]) * int(header["HEIGHT"][0]) == points
    return points


def ascii_points(path: Path) -> list[tuple[float, float, float, float]]:
    header, body = parse_pcd(path.read_bytes())
    points = check_pcd_header(header, "ascii")
    lines = body.decode("ascii").splitlines()
    assert len(lines) == points
    out = []
    for line in lines:
        x, y, z, i = (float(v) for v in line.split())
        out.append((x, y, z, i))
    return out


def inside(box: dict[str, Any], p: tuple[float, float, float, float]) -> bool:
    c, s, yaw = box["center3D"], box["size3D"], box["rotation3D"]["z"]
    dx, dy = p[0] - c["x"], p[1] - c["y"]
    u = math.cos(yaw) * dx + math.sin(yaw) * dy
    v = -math.sin(yaw) * dx + math.cos(yaw) * dy
    return bool(abs(u) <= s["x"] / 2 and abs(v) <= s["y"] / 2 and abs(p[2] - c["z"]) <= s["z"] / 2)


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def load(path: Path) -> Any:
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- fusion


def test_fusion_layout_and_names(tmp_path: Path) -> None:
    unit = tmp_path / "u"
    names = write_fusion_unit(unit, frames=3, cameras=2)
    assert names == ["000001", "000002", "000003"]
    expected = {
        f"{folder}/{n}.{ext}"
        for n in names
        for folder, ext in (
            ("lidar_point_cloud_0", "pcd"),
            ("camera_image_0", "png"),
            ("camera_image_1", "png"),
            ("camera_config", "json"),
            ("result", "json"),
        )
    }
    assert set(files_of(unit)) == expected  # no stray .tmp or extra files


def test_fusion_pngs_decode_and_match_camera_config(tmp_path: Path) -> None:
    unit = tmp_path / "u"
    for n in write_fusion_unit(unit, frames=2, cameras=3, with_result=False):
        config = load(unit / "camera_config" / f"{n}.json")
        for c in range(3):
            w, h, _ = decode_png((unit / f"camera_image_{c}" / f"{n}.png").read_bytes())
            assert (w, h) == (config[c]["width"], config[c]["height"])


def test_fusion_pcd_is_valid_ascii_with_ground_and_clusters(tmp_path: Path) -> None:
    unit = tmp_path / "u"
    for n in write_fusion_unit(unit, frames=2, points=1234):
        pts = ascii_points(unit / "lidar_point_cloud_0" / f"{n}.pcd")
        assert len(pts) == 1234
        ground = [p for p in pts if abs(p[2]) < 0.1]
        raised = [p for p in pts if p[2] > 0.3]
        assert len(ground) > len(pts) / 2  # mostly the road surface
        assert len(raised) > len(pts) / 10  # and objects standing on it
        assert all(0.0 <= p[3] <= 1.0 for p in pts)


def test_camera_config_is_rigid_and_sees_the_labelled_objects(tmp_path: Path) -> None:
    unit = tmp_path / "u"
    write_fusion_unit(unit, frames=1, cameras=2, seed=3)
    config = load(unit / "camera_config" / "000001.json")
    assert isinstance(config, list) and len(config) == 2
    for cam in config:
        assert set(cam["cameraInternal"]) >= {"fx", "fy", "cx", "cy"}
        assert cam["rowMajor"] is True
        m = cam["cameraExternal"]
        assert len(m) == 16 and all(isinstance(v, float | int) for v in m)
        assert m[12:] == [0, 0, 0, 1]
        rot = [m[0:3], m[4:7], m[8:11]]
        for i in range(3):
            for j in range(3):
                dot = sum(a * b for a, b in zip(rot[i], rot[j], strict=True))
                assert dot == pytest.approx(1.0 if i == j else 0.0, abs=1e-6)
        det = (
            rot[0][0] * (rot[1][1] * rot[2][2] - rot[1][2] * rot[2][1])
            - rot[0][1] * (rot[1][0] * rot[2][2] - rot[1][2] * rot[2][0])
            + rot[0][2] * (rot[1][0] * rot[2][1] - rot[1][1] * rot[2][0])
        )
        assert det == pytest.approx(1.0)  # a rotation, not a mirror image
    # Every box centre projects into the front camera's image.
    cam = config[0]
    m, k = cam["cameraExternal"], cam["cameraInternal"]
    for ob in load(unit / "result" / "000001.json")["objects"]:
        c = ob["contour"]["center3D"]
        x, y, z = (
            m[4 * r] * c["x"] + m[4 * r + 1] * c["y"] + m[4 * r + 2] * c["z"] + m[4 * r + 3]
            for r in range(3)
        )
        assert z > 0
        u, v = k["fx"] * x / z + k["cx"], k["fy"] * y / z + k["cy"]
        assert 0 <= u < cam["width"] and 0 <= v < cam["height"]


def test_results_are_tracked_3d_boxes_without_class_ids(tmp_path: Path) -> None:
    unit = tmp_path / "u"
    names = write_fusion_unit(unit, frames=3, classes=("Car", "Van"), seed=7)
    tracks: list[dict[str, tuple[str, str, Any]]] = []
    centres: list[dict[str, Any]] = []
    for n in names:
        doc = load(unit / "result" / f"{n}.json")
        assert set(doc) == {"objects"}
        objects = doc["objects"]
        assert 2 <= len(objects) <= 4
        for ob in objects:
            assert ob["type"] == "3D_BOX"
            assert ob["className"] in ("Car", "Van")
            assert "classId" not in ob  # syncd binds classes itself
            assert set(ob["contour"]) == BOX_CONTOUR_KEYS
            assert ob["contour"]["points"] == []
            assert all(
                set(ob["contour"][k]) == {"x", "y", "z"}
                for k in BOX_CONTOUR_KEYS - {"pointN", "points"}
            )
        assert len({ob["trackId"] for ob in objects}) == len(objects)
        tracks.append(
            {
                ob["trackId"]: (ob["trackName"], ob["className"], ob["contour"]["size3D"])
                for ob in objects
            }
        )
        centres.append({ob["trackId"]: ob["contour"]["center3D"] for ob in objects})
    # The same objects, with the same names, classes and sizes, in every frame...
    assert tracks[0] == tracks[1] == tracks[2]
    # ...and they move between frames (a continuous sequence, not copies).
    assert all(centres[0][t] != centres[1][t] for t in centres[0])


def test_boxes_match_the_cloud(tmp_path: Path) -> None:
    unit = tmp_path / "u"
    for n in write_fusion_unit(unit, frames=2, points=800, seed=11):
        pts = ascii_points(unit / "lidar_point_cloud_0" / f"{n}.pcd")
        boxes = [ob["contour"] for ob in load(unit / "result" / f"{n}.json")["objects"]]
        for box in boxes:
            count = sum(inside(box, p) for p in pts)
            assert count == box["pointN"]
            assert count >= 800 // 4 // 4  # each object has its share of a quarter of the cloud
        # Every point above the road lies in a labelled box: nothing unlabelled floats around.
        assert all(any(inside(b, p) for b in boxes) for p in pts if p[2] > 0.1)


def test_no_cameras_is_lidar_basic_and_no_result_when_off(tmp_path: Path) -> None:
    unit = tmp_path / "u"
    write_fusion_unit(unit, frames=1, cameras=0, with_result=False)
    assert sorted(p.name for p in unit.iterdir()) == ["lidar_point_cloud_0"]


@pytest.mark.parametrize("kwargs", [{"frames": -1}, {"cameras": -1}, {"classes": ()}])
def test_fusion_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        write_fusion_unit(tmp_path / "u", **kwargs)


# --------------------------------------------------------------------------- scene, image


def test_scene_unit_layout(tmp_path: Path) -> None:
    unit = tmp_path / "s"
    frames = write_scene_unit(unit, scene="scene_07", frames=2, cameras=1, with_result=True)
    assert frames == ["000001", "000002"]
    assert [p.name for p in unit.iterdir()] == ["scene_07"]  # everything inside the scene
    scene = unit / "scene_07"
    assert set(files_of(scene)) == {
        f"{folder}/{n}.{ext}"
        for n in frames
        for folder, ext in (
            ("lidar_point_cloud_0", "pcd"),
            ("camera_image_0", "png"),
            ("camera_config", "json"),
            ("result", "json"),
        )
    }
    assert len(load(scene / "camera_config" / "000001.json")) == 1
    ids = [{o["trackId"] for o in load(scene / "result" / f"{n}.json")["objects"]} for n in frames]
    assert ids[0] == ids[1]


@pytest.mark.parametrize("scene", ["drive", "a/scene_01", "scene_01/x"])
def test_scene_name_must_be_a_scene_folder(tmp_path: Path, scene: str) -> None:
    with pytest.raises(ValueError):
        write_scene_unit(tmp_path / "s", scene=scene)


def test_image_unit_layout_and_rectangles(tmp_path: Path) -> None:
    unit = tmp_path / "i"
    names = write_image_unit(unit, images=3, with_result=True, seed=4)
    assert len(names) == 3 and len(set(names)) == 3
    assert set(files_of(unit)) == {f"image_0/{n}.png" for n in names} | {
        f"result/{n}.json" for n in names
    }
    for n in names:
        w, h, rows = decode_png((unit / "image_0" / f"{n}.png").read_bytes())
        assert (w, h) == (320, 240)
        objects = load(unit / "result" / f"{n}.json")["objects"]
        assert objects
        for ob in objects:
            assert ob["type"] in ("2D_RECT", "BOUNDING_BOX") and ob["className"]
            pts = ob["contour"]["points"]
            assert len(pts) in (2, 4)
            xs, ys = [p["x"] for p in pts], [p["y"] for p in pts]
            assert all(isinstance(v, int) for v in xs + ys)
            assert 0 <= min(xs) < max(xs) <= w and 0 <= min(ys) < max(ys) <= h
            # The labelled object is painted: one solid colour inside the rectangle.
            pixels = {
                rows[y][3 * x : 3 * x + 3]
                for y in range(min(ys), max(ys))
                for x in range(min(xs), max(xs))
            }
            assert len(pixels) == 1


def test_image_unit_without_results(tmp_path: Path) -> None:
    write_image_unit(tmp_path / "i", images=2)
    assert [p.name for p in (tmp_path / "i").iterdir()] == ["image_0"]


# --------------------------------------------------------------------------- bulk


def test_bulk_unit_is_exact_valid_and_incompressible(tmp_path: Path) -> None:
    mib = 1024 * 1024
    total = 3 * mib + 100_017
    assert write_bulk_unit(tmp_path / "b", total_bytes=total, file_bytes=mib) == total
    folder = tmp_path / "b" / "lidar_point_cloud_0"
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [f"{i:06d}.pcd" for i in range(1, 5)]
    assert [f.stat().st_size for f in files] == [mib, mib, mib, 100_017]
    for f in files:
        header, payload = parse_pcd(f.read_bytes())
        assert len(payload) == 16 * check_pcd_header(header, "binary")
    chunk = files[1].read_bytes()
    assert len(zlib.compress(chunk)) >= 0.99 * len(chunk)


def test_bulk_small_remainder_joins_the_last_file(tmp_path: Path) -> None:
    total = 2 * 4096 + 7  # 7 bytes cannot hold a PCD header
    assert write_bulk_unit(tmp_path / "b", total_bytes=total, file_bytes=4096) == total
    sizes = [f.stat().st_size for f in sorted((tmp_path / "b" / "lidar_point_cloud_0").iterdir())]
    assert sizes == [4096, 4096 + 7]


@pytest.mark.parametrize("size", range(MIN_BULK_FILE - 3, MIN_BULK_FILE + 40))
def test_bulk_header_absorbs_any_size(tmp_path: Path, size: int) -> None:
    # Header and payload must add up exactly, whatever the digits of POINTS do.
    try:
        write_bulk_unit(tmp_path / "b", total_bytes=size, file_bytes=size)
    except ValueError:
        assert size < MIN_BULK_FILE  # only sizes below a minimal header may be refused
        return
    (f,) = (tmp_path / "b" / "lidar_point_cloud_0").iterdir()
    data = f.read_bytes()
    header, payload = parse_pcd(data)
    assert len(data) == size
    assert len(payload) == 16 * check_pcd_header(header, "binary")


def test_bulk_rejects_sizes_below_a_header(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_bulk_unit(tmp_path / "b", total_bytes=10)
    with pytest.raises(ValueError):
        write_bulk_unit(tmp_path / "b", total_bytes=10_000, file_bytes=10)


def test_bulk_memory_stays_flat(tmp_path: Path) -> None:
    mib = 1024 * 1024
    tracemalloc.start()
    try:
        write_bulk_unit(tmp_path / "b", total_bytes=24 * mib, file_bytes=24 * mib)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * mib  # one 1 MiB chunk at a time, not the 24 MiB file


# --------------------------------------------------------------------------- all units


def test_files_appear_only_complete_under_their_final_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renamed: list[str] = []
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        src, dst = Path(src), Path(dst)
        assert src == dst.with_name(dst.name + ".tmp")
        assert not dst.exists()
        renamed.append(str(dst.relative_to(tmp_path)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)  # the os module sampledata calls
    write_fusion_unit(tmp_path / "f", frames=2)
    write_image_unit(tmp_path / "i", with_result=True)
    write_bulk_unit(tmp_path / "b", total_bytes=10_000, file_bytes=4096)
    assert sorted(renamed) == sorted(files_of(tmp_path))  # every file went through a rename


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    def run(name: str, seed: int) -> dict[str, bytes]:
        root = tmp_path / name
        write_fusion_unit(root / "f", frames=2, seed=seed)
        write_scene_unit(root / "s", frames=2, with_result=True, seed=seed)
        write_image_unit(root / "i", images=2, with_result=True, seed=seed)
        write_bulk_unit(root / "b", total_bytes=5000, file_bytes=2048, seed=seed)
        return files_of(root)

    a, b, c = run("a", 5), run("b", 5), run("c", 6)
    assert len(a) == 2 * 5 + 2 * 4 + 2 * 2 + 3  # bulk: 2048 + 2048 + 904 bytes
    assert a == b
    assert set(a) == set(c)
    assert all(a[k] != c[k] for k in a if "/camera_config/" not in k)


def test_demo_tree(tmp_path: Path) -> None:
    units = write_demo_tree(tmp_path / "incoming")
    assert units == {
        "drive_0001": ["000001", "000002", "000003"],
        "drive_0002": ["000001", "000002", "000003"],
    }
    fusion = files_of(tmp_path / "incoming" / "drive_0001")
    for n in units["drive_0001"]:
        for rel in (
            f"lidar_point_cloud_0/{n}.pcd",
            f"camera_image_0/{n}.png",
            f"camera_image_1/{n}.png",
            f"camera_config/{n}.json",
            f"result/{n}.json",
        ):
            assert rel in fusion
    scene = files_of(tmp_path / "incoming" / "drive_0002")
    assert {f"scene_01/lidar_point_cloud_0/{n}.pcd" for n in units["drive_0002"]} <= set(scene)
    assert all(k.startswith("scene_01/") for k in scene)
