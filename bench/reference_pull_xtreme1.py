"""The reference puller for Xtreme1: the floor for a first mirror over this API.

``python reference_pull_xtreme1.py URL TOKEN DATASET_NAME DB`` issues the
requests syncd's pull issues, in the same order (resolve the dataset, read
its status counters, list top-level items oldest first in pages of 500, fetch
results by batches of 100 ids), and inserts the same rows (items, labels with
their JSON and hash, objects) into ``DB`` — an empty syncd database, so the
schema and its indexes are the same — with ``executemany``, one transaction
per batch. No retries, no checks, no events: only the work that cannot be
avoided. Also holds :func:`seed`, which builds the benchmark's dataset.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from datetime import UTC, datetime
from typing import Any

import httpx

PAGE = 500
BATCH = 100


def seed(url: str, token: str, name: str, items: int, objects: int) -> str:
    """Create dataset ``name`` and seed ``items`` items x ``objects`` objects (every 2nd annotated)."""
    auth = {"Authorization": f"Bearer {token}"}
    r = httpx.post(
        f"{url}/api/dataset/create", json={"name": name, "type": "LIDAR_BASIC"}, headers=auth
    )
    r.raise_for_status()
    dataset_id = str(r.json()["data"]["id"])
    r = httpx.post(
        f"{url}/__sandbox/datasets/{dataset_id}/seed",
        json={"items": items, "objects": objects, "annotated_every": 2},
        timeout=600,
    )
    r.raise_for_status()
    return dataset_id


def _canonical(raw: Any) -> str:
    return json.dumps(raw, sort_keys=True, separators=(",", ":"))


def main(url: str, token: str, dataset_name: str, db_path: str) -> None:
    api = url + "/api"
    client = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=300)

    def get(path: str, **params: Any) -> Any:
        r = client.get(api + path, params=params)
        r.raise_for_status()
        return r.json()["data"]

    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    get("/dataset/findByPage", pageNo=1, pageSize=1)  # syncd once checks the token first
    found = get("/dataset/findByPage", pageNo=1, pageSize=100, name=dataset_name)["list"]
    dataset_id = str(next(d["id"] for d in found if d["name"] == dataset_name))
    get(f"/dataset/{dataset_id}/statistics/dataStatus")
    page_no = 1
    while True:
        rows = get(
            "/data/findByPage",
            datasetId=dataset_id,
            parentId="0",
            pageNo=page_no,
            pageSize=PAGE,
            sortField="CREATED_AT",
            ascOrDesc="ASC",
        )["list"]
        for start in range(0, len(rows), BATCH):
            chunk = rows[start : start + BATCH]
            ids = ",".join(str(r["id"]) for r in chunk)
            results = get("/data/getDataAndResult", datasetId=dataset_id, dataIds=ids)["results"]
            now = datetime.now(UTC).isoformat(timespec="milliseconds")
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO items (remote, sync, dataset_remote_id, remote_id, name, kind,"
                " parent_remote_id, annotation_status, status, zip_path, raw, first_seen_at,"
                " updated_at, checked_at) VALUES ('bench','bench',?,?,?,?,NULL,?,?,?,?,?,?,?)",
                [
                    (
                        dataset_id,
                        str(r["id"]),
                        r["name"],
                        r["type"],
                        r["annotationStatus"],
                        r["status"],
                        r["content"][0]["files"][0]["file"]["zipPath"],
                        json.dumps({k: v for k, v in r.items() if k != "content"}, sort_keys=True),
                        now,
                        now,
                        now,
                    )
                    for r in chunk
                ],
            )
            pk = dict(
                db.execute(
                    f"SELECT remote_id, id FROM items WHERE remote = 'bench' AND remote_id IN ({ids})"
                ).fetchall()
            )
            db.executemany(
                "INSERT INTO labels (item_id, remote, remote_item_id, source, hash, object_count,"
                " raw, updated_at) VALUES (?,'bench',?,?,?,?,?,?)",
                [
                    (
                        pk[str(res["dataId"])],
                        str(res["dataId"]),
                        res["sourceName"],
                        hashlib.sha256(raw.encode()).hexdigest(),
                        len(res["objects"]),
                        raw,
                        now,
                    )
                    for res in results
                    for raw in [_canonical(res)]
                ],
            )
            label_pk = {
                (item, source): lid
                for lid, item, source in db.execute(
                    "SELECT id, item_id, source FROM labels"
                    f" WHERE item_id IN ({','.join(str(v) for v in pk.values())})"
                )
            }
            db.executemany(
                "INSERT INTO objects (label_id, item_id, remote_object_id, class_name, class_id,"
                " shape_type, track_id, track_name, confidence, geometry, attributes)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        label_pk[(pk[str(res["dataId"])], res["sourceName"])],
                        pk[str(res["dataId"])],
                        o.get("id"),
                        o.get("className"),
                        str(o["classId"]),
                        o.get("type"),
                        o.get("trackId"),
                        o.get("trackName"),
                        None,
                        json.dumps(o.get("contour") or {}, sort_keys=True),
                        json.dumps(o.get("classValues") or [], sort_keys=True),
                    )
                    for res in results
                    for o in res["objects"]
                ],
            )
            db.execute(
                "INSERT OR REPLACE INTO cursors (sync, name, value, updated_at) VALUES (?,?,?,?)",
                ("bench", "items", str(chunk[-1]["id"]), now),
            )
            db.execute("COMMIT")
        if len(rows) < PAGE:
            break
        page_no += 1
    db.close()


if __name__ == "__main__":
    main(*sys.argv[1:5])
