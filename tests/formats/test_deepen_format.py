"""The converter to Deepen's input formats, field by field, on the sample units."""

from __future__ import annotations

import io
import json
import math
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from syncd.formats import deepen, geometry, pcd
from syncd.formats.numbers import format_sci
from syncd.sampledata import (
    write_bulk_unit,
    write_fusion_unit,
    write_image_unit,
    write_scene_unit,
)
from syncd.store import PackageFile
from syncd_sandbox.deepen_formats import Invalid, file_ids


def rows(folder: Path, unit: str) -> list[PackageFile]:
    out = []
    for p in sorted((folder / unit).rglob("*")):
        if p.is_file():
            rel = p.relative_to(folder / unit).as_posix()
            st = p.stat()
            out.append(
                PackageFile(
                    package_id=1,
                    sync="s",
                    unit=unit,
                    rel_path=rel,
                    arcname=f"{unit}/{rel}",
                    item_key="",
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                )
            )
    return out


def build(folder: Path, unit: str, fmt: deepen.Format) -> tuple[deepen.DeepenArchive, bytes]:
    planned = deepen.convert(folder, rows(folder, unit), fmt)
    data = b"".join(deepen.open_zip(planned))
    assert len(data) == planned.size  # the size announced before the first byte is exact
    return planned, data


def frame(data: bytes, name: str) -> dict[str, Any]:
    return dict(json.loads(zipfile.ZipFile(io.BytesIO(data)).read(name)))


def pcd_points(path: Path) -> list[tuple[float, ...]]:
    lines = path.read_text().splitlines()
    start = lines.index("DATA ascii") + 1
    return [tuple(float(v) for v in ln.split()) for ln in lines[start:]]


def test_fusion_unit_json_frames_at_root_with_world_points_and_camera_poses(
    tmp_path: Path,
) -> None:
    write_fusion_unit(tmp_path / "u", frames=3, cameras=2, points=500, with_result=True)
    planned, data = build(tmp_path, "u", "json")
    z = zipfile.ZipFile(io.BytesIO(data))
    assert z.namelist() == [
        "000001.json",
        "000002.json",
        "000003.json",
        *(f"images/camera_image_{k}/00000{n}.png" for n in (1, 2, 3) for k in (0, 1)),
    ]
    assert planned.file_name == "json_data.zip"
    assert planned.frames == {
        "000001.pcd": "000001",
        "000002.pcd": "000002",
        "000003.pcd": "000003",
    }
    assert planned.prelabels_skipped == [f"result/00000{n}.json" for n in (1, 2, 3)]
    assert set(planned.derived) == {"pose", "timestamps"}
    # the sandbox (Deepen's rules) takes it, and names the frames as Deepen does
    assert file_ids(z, "json_data.zip", "3d", "json") == ["000001.pcd", "000002.pcd", "000003.pcd"]

    doc = frame(data, "000002.json")
    assert list(doc) == ["timestamp", "device_position", "device_heading", "images", "points"]
    assert doc["timestamp"] == pytest.approx(0.1)
    # no pose in the unit: the LiDAR frame is the world frame
    assert doc["device_position"] == {"x": 0.0, "y": 0.0, "z": 0.0}
    assert doc["device_heading"] == {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}
    src = pcd_points(tmp_path / "u" / "lidar_point_cloud_0" / "000002.pcd")
    assert len(doc["points"]) == len(src) == 500
    for got, want in zip(doc["points"], src, strict=True):
        assert [got["x"], got["y"], got["z"], got["i"]] == pytest.approx(list(want), abs=1e-6)
    # camera 0 sits 0.3 m ahead of the LiDAR and 0.4 m below, looking forward (x); camera 1
    # looks backwards. OpenCV axes: the heading of a forward camera is (-0.5, 0.5, -0.5, 0.5).
    cam0, cam1 = doc["images"]
    assert cam0["image_url"] == "images/camera_image_0/000002.png"
    assert (cam0["fx"], cam0["fy"], cam0["cx"], cam0["cy"]) == (57.6, 57.6, 32.0, 24.0)
    assert cam0["position"] == pytest.approx({"x": 0.3, "y": 0.0, "z": -0.4})
    assert cam0["heading"] == pytest.approx({"x": -0.5, "y": 0.5, "z": -0.5, "w": 0.5})
    assert cam1["position"] == pytest.approx({"x": -0.3, "y": 0.0, "z": -0.4})
    assert cam1["heading"] == pytest.approx({"x": -0.5, "y": -0.5, "z": 0.5, "w": 0.5})
    assert cam0["camera_model"] == "pinhole"
    assert all(cam0[k] == 0.0 for k in ("k1", "k2", "p1", "p2", "k3", "k4"))


def _project_xtreme1(entry: dict[str, Any], p: np.ndarray) -> tuple[float, float]:
    e = geometry.extrinsic(entry)
    fx, fy, cx, cy = geometry.intrinsics(entry)
    q = e @ p
    return fx * q[0] / q[2] + cx, fy * q[1] / q[2] + cy


def _project_deepen(img: dict[str, Any], p: np.ndarray) -> tuple[float, float]:
    """World point → pixel with Deepen's camera→world pose (OpenCV axes)."""
    qx, qy, qz, qw = (img["heading"][k] for k in "xyzw")
    r = np.array(
        [
            [1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qz * qw), 2 * (qx * qz + qy * qw)],
            [2 * (qx * qy + qz * qw), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qx * qw)],
            [2 * (qx * qz - qy * qw), 2 * (qy * qz + qx * qw), 1 - 2 * (qx * qx + qy * qy)],
        ]
    )
    t = np.array([img["position"][k] for k in "xyz"])
    c = r.T @ (p[:3] - t)
    return img["fx"] * c[0] / c[2] + img["cx"], img["fy"] * c[1] / c[2] + img["cy"]


@pytest.mark.parametrize("layout", ["row_major", "column_major_flag", "column_major_detected"])
def test_known_extrinsic_gives_known_pose_in_either_matrix_order(
    tmp_path: Path, layout: str
) -> None:
    write_fusion_unit(tmp_path / "u", frames=1, cameras=1, points=50, with_result=False)
    # a camera 1.5 m left of the LiDAR and 0.2 m up, looking left (+y): its right (x) is the
    # LiDAR's +x, its down (y) the LiDAR's -z
    rot = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # rows: cam x, y, z
    pos = np.array([0.0, 1.5, 0.2])
    ext = np.eye(4)
    ext[:3, :3], ext[:3, 3] = rot, -rot @ pos
    entry: dict[str, Any] = {
        "cameraInternal": {"fx": 100.0, "fy": 90.0, "cx": 32.0, "cy": 24.0},
        "width": 64,
        "height": 48,
    }
    if layout == "row_major":
        entry |= {"cameraExternal": ext.flatten().tolist(), "rowMajor": True}
    elif layout == "column_major_flag":
        entry |= {"cameraExternal": ext.T.flatten().tolist(), "rowMajor": False}
    else:  # no flag: Xtreme1 sees 3, 7, 11 == 0 and a translation in 12-14
        entry |= {"cameraExternal": ext.T.flatten().tolist()}
    (tmp_path / "u" / "camera_config" / "000001.json").write_text(json.dumps([entry]))
    _, data = build(tmp_path, "u", "json")
    (img,) = frame(data, "000001.json")["images"]
    assert img["position"] == pytest.approx({"x": 0.0, "y": 1.5, "z": 0.2})
    # the rotation camera→world is rot.T: a -90 degree turn about x
    h = img["heading"]
    assert h == pytest.approx({"x": -math.sqrt(0.5), "y": 0.0, "z": 0.0, "w": math.sqrt(0.5)})
    for p in ([3.0, 10.0, 0.5, 1.0], [-2.0, 6.0, -1.0, 1.0]):
        pt = np.array(p)
        want = _project_xtreme1(
            {**entry, "cameraExternal": ext.flatten().tolist(), "rowMajor": True}, pt
        )
        assert _project_deepen(img, pt) == pytest.approx(want, abs=1e-6)


def test_world_points_with_a_pose() -> None:
    # a LiDAR 10 m east (x), turned 90 degrees left: its +x axis is the world's +y
    pose = np.eye(4)
    pose[:3, :3] = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    pose[:3, 3] = [10.0, 0.0, 0.0]
    block = np.array([[1.0, 0.0, 0.0, 7.0], [0.0, 2.0, 1.0, 9.0], [np.nan, 0.0, 0.0, 1.0]])
    world = deepen.world_points(block, pose)
    assert world.tolist() == [[10.0, 1.0, 0.0, 7.0], [8.0, 0.0, 1.0, 9.0]]  # NaN point dropped


def test_scene_unit_is_one_sequence_of_frames(tmp_path: Path) -> None:
    write_scene_unit(tmp_path / "u", scene="scene_07", frames=3, cameras=1)
    planned, data = build(tmp_path, "u", "json")
    assert planned.frames == {
        "000001.pcd": "scene_07/000001",
        "000002.pcd": "scene_07/000002",
        "000003.pcd": "scene_07/000003",
    }
    assert [frame(data, f"00000{n}.json")["timestamp"] for n in (1, 2, 3)] == pytest.approx(
        [0.0, 0.1, 0.2]
    )


def test_basic_unit_has_frames_without_images(tmp_path: Path) -> None:
    write_fusion_unit(tmp_path / "u", frames=2, cameras=0, points=100, with_result=False)
    _, data = build(tmp_path, "u", "json")
    assert zipfile.ZipFile(io.BytesIO(data)).namelist() == ["000001.json", "000002.json"]
    assert frame(data, "000001.json")["images"] == []


def test_image_unit_keeps_image_paths_and_skips_prelabels(tmp_path: Path) -> None:
    names = write_image_unit(tmp_path / "b", images=3, with_result=True)
    planned, data = build(tmp_path, "b", "images")
    z = zipfile.ZipFile(io.BytesIO(data))
    assert z.namelist() == [f"b/image_0/{n}.png" for n in names]
    assert planned.file_name == "data.zip"
    assert planned.prelabels_skipped == [f"result/{n}.json" for n in names]
    assert file_ids(z, "data.zip", "images", None) == z.namelist()


def test_default_format_config_and_images_named_after_clouds(tmp_path: Path) -> None:
    write_fusion_unit(tmp_path / "u", frames=2, cameras=2, points=100, with_result=False)
    planned, data = build(tmp_path, "u", "default")
    z = zipfile.ZipFile(io.BytesIO(data))
    assert z.namelist() == [
        "config.json",
        "lidar_transforms.json",
        "view_matrices.json",
        "lidar/000001.pcd",
        "lidar/000002.pcd",
        *(f"images/camera_{k}/00000{n}.pcd.png" for n in (1, 2) for k in (0, 1)),
    ]
    assert planned.file_name == "3d_data.zip" and "undocumented" in planned.derived
    cfg = json.loads(z.read("config.json"))
    assert cfg["primary_sensor_id"] == "lidar"
    assert cfg["sensors"]["camera_1"] == {
        "content": "images/camera_1",
        "extension": "png",
        "sensor_type": "camera",
    }
    # view_matrix = S·K·E: a LiDAR point projects to the same pixel as in Xtreme1
    entry = json.loads((tmp_path / "u" / "camera_config" / "000001.json").read_text())[0]
    v = np.array(cfg["sensors"]["lidar"]["sensor_fusion"]["camera_0"]["view_matrix"])
    p = np.array([12.0, 1.0, 0.3, 1.0])
    q = v @ p
    assert (q[0] / q[3], q[1] / q[3]) == pytest.approx(_project_xtreme1(entry, p))
    assert (
        z.read("lidar/000002.pcd") == (tmp_path / "u/lidar_point_cloud_0/000002.pcd").read_bytes()
    )
    assert file_ids(z, "3d_data.zip", "3d", "default") == ["000001.pcd", "000002.pcd"]


@pytest.mark.parametrize("fmt", ["json", "default"])
def test_conversion_is_deterministic(tmp_path: Path, fmt: deepen.Format) -> None:
    write_fusion_unit(tmp_path / "u", frames=2, cameras=2, points=300, with_result=True)
    a, first = build(tmp_path, "u", fmt)
    for f in (tmp_path / "u").rglob("*"):
        f.touch()  # mtimes do not enter the bytes
    b, second = build(tmp_path, "u", fmt)
    assert first == second and a.size == b.size == len(first)


def test_binary_pcd_reads_like_ascii_and_drops_non_finite_points(tmp_path: Path) -> None:
    header = (
        "# .PCD v0.7\nVERSION 0.7\nFIELDS x y z intensity\nSIZE 4 4 4 4\nTYPE F F F F\n"
        "COUNT 1 1 1 1\nWIDTH 3\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 3\nDATA binary\n"
    )
    pts = [(1.5, -2.25, 0.5, 7.0), (float("nan"), 0.0, 0.0, 1.0), (100.0, 3.0, -1.0, 0.0)]
    body = b"".join(struct.pack("<4f", *p) for p in pts)
    unit = tmp_path / "u" / "lidar_point_cloud_0"
    unit.mkdir(parents=True)
    (unit / "000001.pcd").write_bytes(header.encode() + body)
    assert pcd.read_header(unit / "000001.pcd").points == 3
    _, data = build(tmp_path, "u", "json")
    assert frame(data, "000001.json")["points"] == [
        {"x": 1.5, "y": -2.25, "z": 0.5, "i": 7.0},
        {"x": 100.0, "y": 3.0, "z": -1.0, "i": 0.0},
    ]


def test_bulk_binary_unit_streams_in_blocks_with_exact_size(tmp_path: Path) -> None:
    write_bulk_unit(tmp_path / "u", total_bytes=3 * 2**20, file_bytes=2**20)
    planned, data = build(tmp_path, "u", "json")
    z = zipfile.ZipFile(io.BytesIO(data))
    assert z.testzip() is None and len(planned.frames) == 3
    assert file_ids(z, "json_data.zip", "3d", "json") == ["000001.pcd", "000002.pcd", "000003.pcd"]


def test_fixed_width_numbers_parse_back() -> None:
    values = np.array([0.0, -0.0, 1.0, -1.5, 9.99999999, 1e-5, 123456.789, -3.4e38, 1e-120])
    out = format_sci(values)
    assert out.shape == (9, 14)
    parsed = [json.loads(r.tobytes()) for r in out]
    assert parsed == pytest.approx([0.0, 0.0, 1.0, -1.5, 10.0, 1e-5, 123456.79, -3.4e38, 0.0])


def test_xtreme1_layout_zip_is_not_a_deepen_format(tmp_path: Path) -> None:
    write_fusion_unit(tmp_path / "u", frames=1, cameras=1, points=50, with_result=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in rows(tmp_path, "u"):
            z.write(tmp_path / "u" / f.rel_path, f.arcname)
    z = zipfile.ZipFile(buf)
    with pytest.raises(Invalid, match=r"no frame JSON files at the root.*u/"):
        file_ids(z, "json_data.zip", "3d", "json")
    with pytest.raises(Invalid, match=r"config\.json is missing"):
        file_ids(z, "3d_data.zip", "3d", "default")


def test_unsupported_image_type_fails_naming_the_file(tmp_path: Path) -> None:
    write_fusion_unit(tmp_path / "u", frames=1, cameras=1, points=50, with_result=False)
    png = tmp_path / "u" / "camera_image_0" / "000001.png"
    png.rename(png.with_suffix(".bmp"))
    with pytest.raises(deepen.UnsupportedData, match=r"camera_image_0/000001\.bmp"):
        deepen.convert(tmp_path, rows(tmp_path, "u"), "json")


def test_binary_compressed_pcd_fails_naming_the_file(tmp_path: Path) -> None:
    unit = tmp_path / "u" / "lidar_point_cloud_0"
    unit.mkdir(parents=True)
    (unit / "000001.pcd").write_bytes(
        b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
        b"WIDTH 1\nHEIGHT 1\nPOINTS 1\nDATA binary_compressed\n\x00\x00"
    )
    with pytest.raises(deepen.UnsupportedData, match=r"000001\.pcd.*binary_compressed"):
        deepen.convert(tmp_path, rows(tmp_path, "u"), "json")


def test_camera_config_entries_follow_the_scene_camera_folders(tmp_path: Path) -> None:
    # frame 2 has no image of camera 0: its camera 1 still takes entry 1, as in Xtreme1
    write_fusion_unit(tmp_path / "u", frames=2, cameras=2, points=50, with_result=False)
    (tmp_path / "u" / "camera_image_0" / "000002.png").unlink()
    _, data = build(tmp_path, "u", "json")
    (img,) = frame(data, "000002.json")["images"]
    assert img["image_url"] == "images/camera_image_1/000002.png"
    assert img["position"] == pytest.approx({"x": -0.3, "y": 0.0, "z": -0.4})


def test_ascii_and_binary_pcd_with_extra_fields(tmp_path: Path) -> None:
    fields = (
        "FIELDS x rgb y z normal intensity\nSIZE 4 4 4 4 4 1\nTYPE F U F F F U\nCOUNT 1 1 1 1 3 1\n"
    )
    head = f"VERSION 0.7\n{fields}WIDTH 2\nHEIGHT 1\nPOINTS 2\n"
    ascii_body = "1.5 7 2.5 3.5 0 0 1 200\n-4 8 5 6 1 0 0 17\n"
    (tmp_path / "a.pcd").write_text(head + "DATA ascii\n" + ascii_body)
    rec = struct.Struct("<fIfffffB")
    binary = rec.pack(1.5, 7, 2.5, 3.5, 0, 0, 1, 200) + rec.pack(-4, 8, 5, 6, 1, 0, 0, 17)
    (tmp_path / "b.pcd").write_bytes((head + "DATA binary\n").encode() + binary)
    want = [[1.5, 2.5, 3.5, 200.0], [-4.0, 5.0, 6.0, 17.0]]
    for name in ("a.pcd", "b.pcd"):
        (block,) = pcd.iter_points(tmp_path / name)
        assert block.tolist() == want, name
