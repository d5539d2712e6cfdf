"""The Xtreme1 sandbox is as strict as the real backend (docs/platforms/xtreme1.md)."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd.sampledata import write_fusion_unit
from syncd_sandbox import serve_in_thread
from syncd_sandbox.xtreme1 import create_app

AUTH = {"Authorization": "Bearer tok"}


class Client(httpx.Client):
    """An httpx client on a sandbox served over real loopback HTTP; ``app`` is the sandbox."""

    app: Any


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    app = create_app("tok", tmp_path)
    with serve_in_thread(app) as url, Client(base_url=url, timeout=30) as c:
        c.app = app
        yield c


def api(c: Client, method: str, path: str, **kw: Any) -> Any:
    r = c.request(method, f"/api{path}", headers=AUTH, **kw)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["code"] == "OK", body
    return body["data"]


def zip_unit(folder: Path, wrapper: str = "batch") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, f"{wrapper}/{f.relative_to(folder)}")
    return buf.getvalue()


def import_zip(
    c: Client, ds: int, data: bytes, *, result_type: str | None = None, use_presigned: bool = False
) -> dict[str, Any]:
    urls = api(
        c, "GET", "/data/generatePresignedUrl", params={"fileName": "batch.zip", "datasetId": ds}
    )
    put = c.put(urls["presignedUrl"], content=data)
    assert put.status_code == 200, put.text
    body: dict[str, Any] = {
        "fileUrl": urls["presignedUrl" if use_presigned else "accessUrl"],
        "datasetId": ds,
        "source": "LOCAL",
    }
    if result_type:
        body["resultType"] = result_type
    r = c.post("/api/data/upload", headers=AUTH, json=body)
    serial = json.loads(r.text)["data"]
    assert isinstance(serial, str) and len(serial) == 19
    for _ in range(200):
        rec = api(
            c, "GET", "/data/findUploadRecordBySerialNumbers", params={"serialNumbers": serial}
        )[0]
        if rec["status"] in ("PARSE_COMPLETED", "FAILED"):
            return dict(rec)
        time.sleep(0.02)
    raise AssertionError("processing did not finish")


def dataset(c: Client, name: str, kind: str = "LIDAR_FUSION") -> int:
    return int(api(c, "POST", "/dataset/create", json={"name": name, "type": kind})["id"])


def test_auth(client: Client) -> None:
    r = client.get("/api/dataset/findByPage")
    assert r.status_code == 401 and r.json()["code"] == "LOGIN_STATUS_TIMEOUT"
    assert (
        client.get("/api/dataset/findByPage", headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    assert client.get("/api/dataset/findByPage?token=tok").json()["code"] == "OK"


def test_envelope_errors(client: Client) -> None:
    dataset(client, "Site-A")
    r = client.post("/api/dataset/create", headers=AUTH, json={"name": "site-a", "type": "IMAGE"})
    assert r.status_code == 200 and r.json()["code"] == "DATASET_NAME_DUPLICATED"
    r = client.post(
        "/api/dataset/create",
        headers={**AUTH, "Content-Type": "text/plain"},
        content=b'{"name":"x","type":"IMAGE"}',
    )
    assert r.status_code == 500 and r.json()["code"] == "UNKNOWN"
    r = client.post("/api/dataset/create", headers=AUTH, json={"name": "x", "type": "POINTS"})
    assert r.status_code == 500
    assert client.get("/api/dataset/create", headers=AUTH).status_code == 500  # wrong method
    assert client.get("/api/nothing/here", headers=AUTH).status_code == 404
    r = client.get("/api/data/generatePresignedUrl", headers=AUTH, params={"fileName": "a.zip"})
    assert r.status_code == 500 and "MissingServletRequestParameter" in r.json()["message"]
    r = client.get("/api/data/findByPage", headers=AUTH)
    assert r.status_code == 200 and r.json()["code"] == "PARAM_ERROR"
    r = client.get("/api/dataset/findByPage", headers=AUTH, params={"sortField": "NAME"})
    assert r.status_code == 500  # sortField without ascOrDesc


def test_presigned_put_is_strict(client: Client) -> None:
    ds = dataset(client, "puts")
    urls = api(
        client, "GET", "/data/generatePresignedUrl", params={"fileName": "a.zip", "datasetId": ds}
    )
    assert urls["accessUrl"].startswith("http://minio:9000/xtreme1/1/")
    path = urls["presignedUrl"]
    assert path.startswith(str(client.base_url).rstrip("/") + "/minio/xtreme1/1/")
    r = client.put(path, content=b"x", headers=AUTH)
    assert r.status_code == 400 and "<Code>InvalidArgument</Code>" in r.text
    r = client.put(path.replace("X-Amz-Signature=", "X-Amz-Signature=0"), content=b"x")
    assert r.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in r.text
    r = client.put(path, content=iter([b"chunked"]))
    assert r.status_code == 411 and "MissingContentLength" in r.text
    store = client.app.state.sandbox.store
    real = store.clock
    store.clock = lambda: real() + 8 * 86400
    try:
        r = client.put(path, content=b"x")
        assert r.status_code == 403 and "Request has expired" in r.text
    finally:
        store.clock = real
    assert client.put(path, content=b"hello").status_code == 200


def test_presigned_put_base_can_point_elsewhere(client: Client) -> None:
    """A benchmark's switch: PUT URLs name another receiver, signed as before."""
    ds = dataset(client, "elsewhere")
    r = client.post("/__sandbox/config", json={"presign_put_base": "http://sink:9/minio"})
    assert r.status_code == 200 and r.json()["presign_put_base"] == "http://sink:9/minio"
    urls = api(
        client, "GET", "/data/generatePresignedUrl", params={"fileName": "a.zip", "datasetId": ds}
    )
    assert urls["presignedUrl"].startswith("http://sink:9/minio/xtreme1/1/")
    assert "X-Amz-Signature=" in urls["presignedUrl"]
    assert urls["accessUrl"].startswith("http://minio:9000/xtreme1/1/")
    client.post("/__sandbox/config", json={"presign_put_base": None})
    urls = api(
        client, "GET", "/data/generatePresignedUrl", params={"fileName": "a.zip", "datasetId": ds}
    )
    assert urls["presignedUrl"].startswith(str(client.base_url).rstrip("/") + "/minio/")


def test_import_joins_files_by_base_name_and_skips_duplicates(
    client: Client, tmp_path: Path
) -> None:
    ds = dataset(client, "fusion")
    write_fusion_unit(tmp_path / "u", frames=2, cameras=2, with_result=True)
    data = zip_unit(tmp_path / "u")
    rec = import_zip(client, ds, data)
    assert (
        rec["status"] == "PARSE_COMPLETED"
        and rec["errorMessage"] is None
        and rec["totalDataNum"] == 2
    )
    page = api(
        client, "GET", "/data/findByPage", params={"datasetId": ds, "pageNo": 1, "pageSize": 10}
    )
    assert [i["name"] for i in page["list"]] == ["000001", "000002"]
    folders = sorted(d["name"] for d in page["list"][0]["content"])
    assert folders == ["camera_config", "camera_image_0", "camera_image_1", "lidar_point_cloud_0"]
    zp = page["list"][0]["content"][-1]["files"][0]["file"]["zipPath"]
    assert zp.endswith("/batch/lidar_point_cloud_0/000001.pcd")
    # results were not sent without resultType
    res = api(
        client,
        "GET",
        "/data/getDataAndResult",
        params={"datasetId": ds, "dataIds": ",".join(str(i["id"]) for i in page["list"])},
    )
    assert (
        res["results"] == []
        and len(res["data"]) == 2
        and res["data"][0]["cameraImages"][0]["width"] == 64
    )
    # the same names again: skipped, reported, never overwritten
    rec = import_zip(client, ds, data)
    assert rec["status"] == "PARSE_COMPLETED" and rec["errorMessage"] == "Duplicate data names;"
    assert api(client, "GET", "/data/findByPage", params={"datasetId": ds})["total"] == 2


def test_results_need_result_type_and_classes_of_the_dataset(
    client: Client, tmp_path: Path
) -> None:
    ds = dataset(client, "results")
    api(
        client,
        "POST",
        "/datasetClass/create",
        json={"datasetId": ds, "name": "Car", "color": "#fff", "toolType": "CUBOID"},
    )
    car = api(client, "GET", f"/datasetClass/findAll/{ds}")[0]["id"]
    (tmp_path / "u" / "lidar_point_cloud_0").mkdir(parents=True)
    (tmp_path / "u" / "result").mkdir()
    (tmp_path / "u" / "lidar_point_cloud_0" / "a.pcd").write_text("# .PCD v0.7\n")
    objs = [
        {"type": "3D_BOX", "classId": car, "className": "whatever", "contour": {"center3D": {}}},
        {"type": "3D_BOX", "classId": 99999, "className": "Bus", "contour": {"center3D": {}}},
        {"type": "3D_Box", "className": "Car", "contour": {}},
        {"type": "3D_BOX", "className": "Car"},
    ]
    (tmp_path / "u" / "result" / "a.json").write_text(json.dumps({"objects": objs}))
    rec = import_zip(client, ds, zip_unit(tmp_path / "u"), result_type="GROUND_TRUTH")
    assert (
        rec["errorMessage"]
        == "a.json the objects exist object type error;a.json the objects exist object contour miss;"
    )
    item = api(client, "GET", "/data/findByPage", params={"datasetId": ds})["list"][0]
    res = api(
        client, "GET", "/data/getDataAndResult", params={"datasetId": ds, "dataIds": item["id"]}
    )
    (result,) = res["results"]
    assert result["sourceName"] == "Ground Truth"
    bound, unbound = result["objects"]
    assert bound["classId"] == car and bound["className"] == "Car"
    assert (
        "classId" not in unbound and unbound["modelClass"] == "Bus" and "className" not in unbound
    )
    assert len(bound["id"]) == 32 and bound["version"] == 0


def test_failures_still_answer_ok_with_a_serial(client: Client, tmp_path: Path) -> None:
    ds = dataset(client, "failures")
    write_fusion_unit(tmp_path / "u", frames=1, cameras=0, with_result=False)
    rec = import_zip(client, ds, zip_unit(tmp_path / "u"), use_presigned=True)
    assert rec["status"] == "FAILED" and rec["errorMessage"] == "File url error"
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "x.txt").write_text("no data folders")
    rec = import_zip(client, ds, zip_unit(tmp_path / "v"))
    assert (
        rec["status"] == "FAILED"
        and rec["errorMessage"] == "The format of the compressed package is incorrect"
    )
    assert (
        api(client, "GET", "/data/findUploadRecordBySerialNumbers", params={"serialNumbers": "123"})
        == []
    )


def test_scenes_come_first_and_frames_need_parent_id(client: Client, tmp_path: Path) -> None:
    ds = dataset(client, "order")
    write_fusion_unit(tmp_path / "u", frames=2, cameras=0, with_result=False)
    write_fusion_unit(tmp_path / "u" / "scene_B", frames=2, cameras=0, with_result=False)
    rec = import_zip(client, ds, zip_unit(tmp_path / "u"))
    assert rec["status"] == "PARSE_COMPLETED", rec
    top = api(
        client,
        "GET",
        "/data/findByPage",
        params={"datasetId": ds, "sortField": "NAME", "ascOrDesc": "DESC"},
    )
    assert [(i["name"], i["type"]) for i in top["list"]] == [
        ("scene_B", "SCENE"),
        ("000002", "SINGLE_DATA"),
        ("000001", "SINGLE_DATA"),
    ]
    scene_id = top["list"][0]["id"]
    frames = api(client, "GET", "/data/findByPage", params={"datasetId": ds, "parentId": scene_id})
    assert [i["name"] for i in frames["list"]] == ["000001", "000002"]
    assert all(i["parentId"] == scene_id for i in frames["list"])
    second = api(
        client, "GET", "/data/findByPage", params={"datasetId": ds, "pageNo": 2, "pageSize": 2}
    )
    assert second["total"] == 3 and [i["name"] for i in second["list"]] == ["000002"]


def test_deleted_items_leave_lists_but_not_results(client: Client, tmp_path: Path) -> None:
    ds = dataset(client, "deletes")
    write_fusion_unit(tmp_path / "u", frames=2, cameras=0, with_result=False)
    import_zip(client, ds, zip_unit(tmp_path / "u"))
    items = api(client, "GET", "/data/findByPage", params={"datasetId": ds})["list"]
    api(client, "POST", "/data/deleteBatch", json={"datasetId": ds, "ids": [items[0]["id"]]})
    assert api(client, "GET", "/data/findByPage", params={"datasetId": ds})["total"] == 1
    ids = ",".join(str(i["id"]) for i in items)
    assert (
        len(
            api(client, "GET", "/data/getDataAndResult", params={"datasetId": ds, "dataIds": ids})[
                "data"
            ]
        )
        == 2
    )
    assert api(client, "GET", "/data/getDataAndResult", params={"datasetId": ds})["data"] == []


def test_admin_annotate_counters_and_faults(client: Client, tmp_path: Path) -> None:
    ds = dataset(client, "admin")
    write_fusion_unit(tmp_path / "u", frames=1, cameras=0, with_result=False)
    import_zip(client, ds, zip_unit(tmp_path / "u"))
    item = api(client, "GET", "/data/findByPage", params={"datasetId": ds})["list"][0]
    r = client.post(
        "/__sandbox/annotate",
        json={
            "dataId": item["id"],
            "objects": [{"type": "3D_BOX", "className": "Van", "contour": {}}],
            "submit": True,
        },
    )
    assert r.status_code == 200
    status = api(client, "GET", "/data/getDataStatusByIds", params={"dataIds": item["id"]})
    assert status[0]["annotationStatus"] == "ANNOTATED"
    res = api(
        client, "GET", "/data/getDataAndResult", params={"datasetId": ds, "dataIds": item["id"]}
    )
    assert res["results"][0]["objects"][0]["className"] == "Van"
    counters = client.get("/__sandbox/counters").json()
    assert (
        len(counters["data_upload_calls"]) == 1
        and counters["requests"]["POST /api/data/upload"] == 1
    )
    client.post(
        "/__sandbox/faults",
        json={"method": "GET", "path": "findByPage", "action": "status", "status": 503, "times": 1},
    )
    assert client.get("/api/dataset/findByPage", headers=AUTH).status_code == 503
    assert client.get("/api/dataset/findByPage", headers=AUTH).status_code == 200
    client.post("/__sandbox/faults", json={"path": "findByPage", "action": "html", "times": 1})
    r = client.get("/api/dataset/findByPage", headers=AUTH)
    assert r.status_code == 502 and r.headers["content-type"].startswith("text/html")
