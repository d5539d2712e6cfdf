"""The reference puller for BasicAI: the floor for a first mirror over this API.

``python reference_pull_basicai.py URL TOKEN DATASET_NAME DB`` issues the
requests syncd's pull issues, in the same order (check the key, find the
dataset by ``listById``, walk ``listItemById`` in pages of 100, fetch each
page's results with one ``batchDataAnnotationResult``, the source names once),
and inserts the same rows (items, labels with their JSON and hash, objects)
into ``DB`` — an empty syncd database, so the schema and its indexes are the
same — with ``executemany``, one transaction per page. No retries, no checks,
no events: only the work that cannot be avoided. Also holds :func:`seed`,
which builds the benchmark's dataset.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from datetime import UTC, datetime
from typing import Any

import httpx

LIMIT = 100
# The sandbox's rate windows during the benchmark: lifted, as syncd's own
# client-side limit is (the limiter is measured by bench/ratelimit_basicai.py).
LIFTED_WINDOWS = [[1_000_000, 1.0]]


def seed(url: str, token: str, name: str, items: int, objects: int) -> str:
    """Lift the rate windows, create dataset ``name`` and seed ``items`` x ``objects``
    (every 2nd item annotated); returns the dataset id."""
    r = httpx.post(f"{url}/__sandbox/config", json={"rate_windows": LIFTED_WINDOWS})
    r.raise_for_status()
    r = httpx.post(
        f"{url}/api/v1/dataset/create",
        json={"name": name, "type": "LIDAR_BASIC"},
        headers={"Authorization": f"ApiKey {token}"},
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
    api = url + "/api/v1"
    client = httpx.Client(headers={"Authorization": f"ApiKey {token}"}, timeout=300)

    def get(path: str, **params: Any) -> Any:
        r = client.get(api + path, params=params)
        r.raise_for_status()
        body = r.json()
        if str(body["code"]).upper() != "OK":
            raise RuntimeError(f"{path}: {body}")
        return body["data"]

    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    get("/dataset/list", pageNo=1, pageSize=1)  # syncd once checks the key first
    found = get("/dataset/listById", limit=LIMIT)["list"]
    dataset_id = str(next(d["id"] for d in found if d["name"] == dataset_name))
    sources: dict[str, str] | None = None
    last: str | None = None
    while True:
        params: dict[str, Any] = {"limit": LIMIT}
        if last is not None:
            params["lastId"] = last
        rows = get(f"/dataset/listItemById/{dataset_id}", **params)["list"]
        if not rows:
            break
        last = str(rows[-1]["id"])
        ids = ",".join(str(r["id"]) for r in rows)
        results = get(f"/dataset/batchDataAnnotationResult/{dataset_id}/", dataIds=ids)
        if sources is None:
            sources = {
                str(s["id"]): str(s["name"])
                for s in get(f"/dataset/listAnnotationSource/{dataset_id}")
            }
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO items (remote, sync, dataset_remote_id, remote_id, name, kind,"
            " parent_remote_id, annotation_status, status, zip_path, raw, first_seen_at,"
            " updated_at, checked_at) VALUES ('bench','bench',?,?,?,'SINGLE_DATA',NULL,?,NULL,"
            "NULL,?,?,?,?)",
            [
                (
                    dataset_id,
                    str(r["id"]),
                    r["name"],
                    r["annotationStatus"],
                    json.dumps({k: v for k, v in r.items() if k != "files"}, sort_keys=True),
                    now,
                    now,
                    now,
                )
                for r in rows
            ],
        )
        pk = dict(
            db.execute(
                f"SELECT remote_id, id FROM items WHERE remote = 'bench' AND remote_id IN ({ids})"
            ).fetchall()
        )
        labels = [
            (str(entry["dataId"]), sources[str(res["sourceId"])], res)
            for entry in results
            for res in entry["results"]
        ]
        db.executemany(
            "INSERT INTO labels (item_id, remote, remote_item_id, source, hash, object_count,"
            " raw, updated_at) VALUES (?,'bench',?,?,?,?,?,?)",
            [
                (
                    pk[data_id],
                    data_id,
                    source,
                    hashlib.sha256(raw.encode()).hexdigest(),
                    len(res["instances"]),
                    raw,
                    now,
                )
                for data_id, source, res in labels
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
                    label_pk[(pk[data_id], source)],
                    pk[data_id],
                    o.get("id"),
                    o.get("className"),
                    None,
                    o.get("type"),
                    o.get("trackId"),
                    o.get("trackName"),
                    None,
                    json.dumps(o.get("contour") or {}, sort_keys=True),
                    json.dumps(o.get("classValues") or [], sort_keys=True),
                )
                for data_id, source, res in labels
                for o in res["instances"]
            ],
        )
        db.execute(
            "INSERT OR REPLACE INTO cursors (sync, name, value, updated_at) VALUES (?,?,?,?)",
            ("bench", "items", last, now),
        )
        db.execute("COMMIT")
        if len(rows) < LIMIT:
            break
    db.close()


if __name__ == "__main__":
    main(*sys.argv[1:5])
