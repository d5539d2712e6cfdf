"""The Xtreme1 sandbox parses and keys classes as backend v0.9.1 does.

Sources: ``UploadDataUseCase.commonParseUploadFile``/``insertBatch``,
``DataInfoMapper.xml`` (``selectDataByPageOrder``), ``V1__Create_tables.sql``
and ``DatasetClassUseCase.saveDatasetClass`` in
https://github.com/xtreme1-io/xtreme1/tree/v0.9.1.
"""

from __future__ import annotations

import io
import shutil
import time
import zipfile
from pathlib import Path

import pytest

from syncd.sampledata import write_fusion_unit, write_scene_unit
from tests.sandbox.test_xtreme1_strict import AUTH, Client, api, client, import_zip, zip_unit

__all__ = ["client"]  # the fixture, re-used


@pytest.fixture
def c(client: Client) -> Client:
    return client


def dataset(c: Client, name: str = "ds") -> int:
    return int(api(c, "POST", "/dataset/create", json={"name": name, "type": "LIDAR_BASIC"})["id"])


def items(c: Client, ds: int) -> list[dict[str, object]]:
    return list(c.get(f"/__sandbox/datasets/{ds}/items").json()["items"])


def test_a_folder_shares_one_created_at_and_its_ids_follow_batch_completion(
    c: Client, tmp_path: Path
) -> None:
    ds = dataset(c)
    names = write_fusion_unit(tmp_path / "u", frames=100, cameras=0, with_result=False, points=5)
    c.post("/__sandbox/config", json={"parse_frame_delay": 0.01})
    rec = import_zip(c, ds, zip_unit(tmp_path / "u"))
    assert rec["status"] == "PARSE_COMPLETED" and rec["totalDataNum"] == 100
    rows = items(c, ds)
    assert sorted(str(r["name"]) for r in rows) == names
    assert len({r["createdAt"] for r in rows}) == 1  # one createdAt for the folder
    by_id = [str(r["name"]) for r in sorted(rows, key=lambda r: int(str(r["id"])))]
    assert by_id != names  # five workers, jittered: batches finish out of name order
    # each batch of five names is inserted at once, so its ids are consecutive
    ids = {str(r["name"]): int(str(r["id"])) for r in rows}
    for start in range(0, 100, 5):
        batch = sorted(ids[n] for n in names[start : start + 5])
        assert batch == list(range(batch[0], batch[0] + 5))


def test_newest_first_keeps_ids_ascending_inside_one_created_at(c: Client, tmp_path: Path) -> None:
    ds = dataset(c)
    write_fusion_unit(tmp_path / "u", frames=30, cameras=0, with_result=False, points=5)
    write_scene_unit(tmp_path / "u", scene="scene_07", frames=2, cameras=0)
    c.post("/__sandbox/config", json={"parse_frame_delay": 0.005})
    import_zip(c, ds, zip_unit(tmp_path / "u"))
    listed = api(
        c,
        "GET",
        "/data/findByPage",
        params={
            "datasetId": ds,
            "pageNo": 1,
            "pageSize": 100,
            "sortField": "CREATED_AT",
            "ascOrDesc": "DESC",
        },
    )["list"]
    assert listed[0]["type"] == "SCENE"  # ORDER BY d.type DESC first
    singles = [int(r["id"]) for r in listed if r["type"] == "SINGLE_DATA"]
    assert singles == sorted(singles)  # then created_at DESC, then id ASC


def test_an_empty_scene_folder_stays_with_a_message(c: Client, tmp_path: Path) -> None:
    ds = dataset(c)
    write_fusion_unit(tmp_path / "u", frames=2, cameras=0, with_result=False, points=5)
    (tmp_path / "u" / "scene_02" / "lidar_point_cloud_0").mkdir(parents=True)
    (tmp_path / "u" / "scene_02" / "lidar_point_cloud_0" / "readme.txt").write_text("x")
    rec = import_zip(c, ds, zip_unit(tmp_path / "u"))
    assert rec["status"] == "PARSE_COMPLETED"
    assert rec["errorMessage"] == "The file in scene_02 folder is empty;"
    kinds = sorted(str(r["type"]) for r in items(c, ds))
    assert kinds == ["SCENE", "SINGLE_DATA", "SINGLE_DATA"]


def test_an_archive_without_any_frame_fails_empty(c: Client, tmp_path: Path) -> None:
    ds = dataset(c)
    (tmp_path / "u" / "lidar_point_cloud_0").mkdir(parents=True)
    (tmp_path / "u" / "lidar_point_cloud_0" / "readme.txt").write_text("x")
    rec = import_zip(c, ds, zip_unit(tmp_path / "u"))
    assert (rec["status"], rec["errorMessage"]) == ("FAILED", "Compressed package is empty")


def test_a_name_differing_only_in_case_loses_its_whole_batch(c: Client, tmp_path: Path) -> None:
    ds = dataset(c)
    (tmp_path / "a" / "lidar_point_cloud_0").mkdir(parents=True)
    (tmp_path / "a" / "lidar_point_cloud_0" / "F3.pcd").write_text("# .PCD v0.7\n")
    assert import_zip(c, ds, zip_unit(tmp_path / "a"))["errorMessage"] is None
    names = write_fusion_unit(tmp_path / "b", frames=7, cameras=0, with_result=False, points=5)
    shutil.move(tmp_path / "b/lidar_point_cloud_0/000003.pcd", tmp_path / "b/x.pcd")
    shutil.move(tmp_path / "b/x.pcd", tmp_path / "b/lidar_point_cloud_0/f3.pcd")
    rec = import_zip(c, ds, zip_unit(tmp_path / "b"))
    assert rec["errorMessage"] == "Duplicate data names;"
    # names sort 000001 000002 000004 000005 000006 | 000007 f3: the second batch
    # holds f3, which MySQL finds as F3 but Java keeps: the insert fails, both are lost
    got = sorted(str(r["name"]) for r in items(c, ds))
    assert got == sorted(["F3", *[n for n in names if n not in ("000003", "000007")]])


def test_class_names_are_unique_per_tool_type_ignoring_case(c: Client) -> None:
    ds = dataset(c)

    def create(name: str, tool: str) -> dict[str, object]:
        r = c.post(
            "/api/datasetClass/create",
            headers=AUTH,
            json={"datasetId": ds, "name": name, "color": "#ffffff", "toolType": tool},
        )
        return dict(r.json())

    assert create("Car", "CUBOID")["code"] == "OK"
    assert create("car", "CUBOID") == {
        "code": "NAME_DUPLICATED",
        "message": "name already exists",
        "data": None,
    }
    assert create("CAR ", "CUBOID")["code"] == "NAME_DUPLICATED"  # PAD SPACE
    assert create("CAR", "BOUNDING_BOX")["code"] == "OK"  # another tool type: another key
    rows = api(c, "GET", f"/datasetClass/findAll/{ds}")
    assert sorted((r["name"], r["toolType"]) for r in rows) == [
        ("CAR", "BOUNDING_BOX"),
        ("Car", "CUBOID"),
    ]


def test_an_empty_point_cloud_folder_counts_as_a_folder_without_data(c: Client) -> None:
    ds = dataset(c)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("batch/lidar_point_cloud_0/", b"")  # a directory entry only
        z.writestr("batch/x/__MACOSX/lidar_point_cloud_0/._a.pcd", b"")  # skipped anywhere
    rec = import_zip(c, ds, buf.getvalue())
    assert (rec["status"], rec["errorMessage"]) == ("FAILED", "Compressed package is empty")


def test_an_archive_that_cannot_be_unpacked_leaves_the_record_where_it_is(c: Client) -> None:
    ds = dataset(c)
    c.post("/__sandbox/config", json={"processing_step_delay": 0.0})
    urls = api(
        c, "GET", "/data/generatePresignedUrl", params={"fileName": "b.zip", "datasetId": ds}
    )
    assert c.put(urls["presignedUrl"], content=b"PK\x03\x04 not a zip").status_code == 200
    body = {"fileUrl": urls["accessUrl"], "datasetId": ds, "source": "LOCAL"}
    serial = c.post("/api/data/upload", headers=AUTH, json=body).json()["data"]
    time.sleep(0.5)
    rec = api(c, "GET", "/data/findUploadRecordBySerialNumbers", params={"serialNumbers": serial})
    assert rec[0]["status"] == "DOWNLOAD_COMPLETED"
