"""Data items, splitting and naming follow the platform's archive rules."""

from __future__ import annotations

from syncd.pipeline.layout import arcname_for, group_items, plan_names, split_groups
from syncd.pipeline.scan import FileStat


def fs(*paths: str, size: int = 10) -> list[FileStat]:
    return [FileStat(p, size, 1) for p in paths]


FUSION = fs(
    "lidar_point_cloud_0/000001.pcd",
    "lidar_point_cloud_0/000002.pcd",
    "camera_image_0/000001.png",
    "camera_image_0/000002.png",
    "camera_image_1/000001.png",
    "camera_config/000001.json",
    "result/000001.json",
    "notes.txt",
)


def test_files_join_items_by_base_name() -> None:
    groups = group_items(FUSION, "drive_1", False)
    by = {g.key: g for g in groups}
    assert sorted(f.rel_path for f in by["/000001"].files) == [
        "camera_config/000001.json",
        "camera_image_0/000001.png",
        "camera_image_1/000001.png",
        "lidar_point_cloud_0/000001.pcd",
        "result/000001.json",
    ]
    assert by["/000001"].has_results and not by["/000002"].has_results
    assert [f.rel_path for f in groups[-1].files] == ["notes.txt"] and groups[-1].name is None


def test_scene_folder_is_one_group() -> None:
    files = fs(
        "scene_01/lidar_point_cloud_0/a.pcd",
        "scene_01/lidar_point_cloud_0/b.pcd",
        "scene_01/camera_image_0/a.jpg",
    )
    groups = group_items(files, "u", False)
    assert len(groups) == 1 and groups[0].scene and groups[0].name == "scene_01"
    assert groups[0].item_names == ["a", "b"]


def test_unit_named_scene_is_a_scene() -> None:
    groups = group_items(fs("lidar_point_cloud_0/a.pcd"), "scene_7", True)
    assert groups[0].scene and groups[0].name == "scene_7"


def test_split_never_separates_an_item() -> None:
    groups = group_items(FUSION, "u", False)
    parts = split_groups(groups, max_bytes=50)
    assert len(parts) > 1
    for part in parts:
        for g in part:
            assert all(f in g.files for f in g.files)
    # every group in exactly one part
    seen = [g.key for part in parts for g in part]
    assert sorted(seen) == sorted(g.key for g in groups)
    # the 5-file item (50 bytes) fits; nothing exceeds the limit unless alone
    for part in parts:
        assert sum(g.size for g in part) <= 50 or len(part) == 1


def test_plan_names_is_case_insensitive_and_keeps_scene_prefix() -> None:
    groups = group_items(
        fs("scene_01/lidar_point_cloud_0/a.pcd", "lidar_point_cloud_0/000001.pcd"), "drive 2", False
    )
    renames = plan_names(groups, {"SCENE_01", "000001", "000001_drive-2"}, "drive 2")
    assert renames == {"scene_01": "scene_01_drive-2", "000001": "000001_drive-2_2"}


def test_arcname_applies_renames() -> None:
    groups = group_items(FUSION, "u", False)
    g = next(g for g in groups if g.name == "000001")
    f = next(f for f in g.files if f.rel_path.startswith("camera_image_1"))
    assert arcname_for(f, g, {"000001": "000001_u"}, "u") == "u/camera_image_1/000001_u.png"
    scene = group_items(fs("scene_01/lidar_point_cloud_0/a.pcd"), "u", False)[0]
    assert (
        arcname_for(scene.files[0], scene, {"scene_01": "scene_01_u"}, "u")
        == "u/scene_01_u/lidar_point_cloud_0/a.pcd"
    )
