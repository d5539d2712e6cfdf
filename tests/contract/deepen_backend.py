"""The contract suite's hooks for Deepen: its words for items, labels, removal and cursors.

How Deepen differs (``syncd/remotes/deepen.py``): the sync's ``dataset`` is a
group (a name prefix), every unit becomes its own Deepen dataset named
``<group>/<archive stem>``, an item is one frame of a processed dataset
(``file_id`` = the JSON frame's name with ``.pcd``), a label is one Deepen label
(``label_id``, ``version``) in a label set, and a user can delete a dataset but
not one file of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from syncd_sandbox.deepen import CLIENT_ID
from tests.conftest import TOKEN, admin_call


def _api(url: str, method: str, path: str, **params: Any) -> Any:
    r = httpx.request(
        method,
        f"{url}/api/v2{path}",
        params=params,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    r.raise_for_status()
    return r.json()


def names(url: str, group: str) -> list[str]:
    """Every file of every live dataset of the group; a dataset without files shows as itself.

    So a second dataset for one unit (pushed twice) shows its files twice, and a
    dataset that was created but never processed is not hidden either.
    """
    out: list[str] = []
    for row in _api(url, "GET", f"/clients/{CLIENT_ID}/datasets_ids")["datasets"]:
        if not str(row["dataset_name"]).startswith(group + "/"):
            continue
        files = _api(url, "GET", f"/datasets/{row['dataset_id']}/files")["files"]
        out += [f["file_id"] for f in files] or [f"<dataset {row['dataset_name']} has no files>"]
    return out


def unit_items(unit_dir: Path, item_names: list[str]) -> list[str]:
    """A unit's items on Deepen: one per point cloud, the JSON frame's id ``<nnnnnn>.pcd``.

    syncd sends Deepen's JSON format (:mod:`syncd.formats.deepen`): frames are
    numbered from 1 in order (scene folder, then data name); camera images
    belong to their frame and are no files of their own.
    """
    clouds = [
        p for p in unit_dir.rglob("*.pcd") if p.parent.name.lower().startswith("lidar_point_cloud")
    ]
    return [f"{n:06d}.pcd" for n in range(1, len(clouds) + 1)]


def _label(obj: dict[str, Any], label_set: str) -> dict[str, Any]:
    """An Xtreme1-style object as the Deepen label an annotator would draw."""
    assert obj["type"] == "3D_BOX", obj
    c = obj["contour"]
    box = {
        "cx": c["center3D"]["x"],
        "cy": c["center3D"]["y"],
        "cz": c["center3D"]["z"],
        "l": c["size3D"]["x"],
        "w": c["size3D"]["y"],
        "h": c["size3D"]["z"],
        "rot_z": c["rotation3D"]["z"],
    }
    return {
        "label_category_id": obj["className"],
        "label_type": "3d_bbox",
        "three_d_bbox": box,
        "label_set_id": label_set,
    }


def annotate(url: str, item_id: str, objects: list[dict[str, Any]], src: str | None) -> None:
    """The annotator's labels of one file in one label set become ``objects`` (the others go).

    The source is the label set (``default`` for the main one); labelling the
    main set marks the file ``labelling_done``, as a submitted annotation.
    """
    dataset, file_id = item_id.split("/", 1)
    label_set = src or "default"
    per_file = _api(url, "GET", f"/datasets/{dataset}/labels", labels_with_file_ids_order="true")
    old = [
        lab["label_id"]
        for lab in per_file["labels"].get(file_id, [])
        if lab.get("label_set_id") == label_set
    ]
    body: dict[str, Any] = {
        "dataset_id": dataset,
        "file_id": file_id,
        "labels": [_label(o, label_set) for o in objects],
        "delete": old,
    }
    if src is None:
        body["status"] = "labelling_done"
    admin_call(url, "POST", "/annotate", json=body)


def remove(url: str, group: str, item_id: str) -> None:
    """Deepen deletes datasets, not single files: the user deletes the dataset holding the item."""
    _api(url, "DELETE", f"/datasets/{item_id.split('/', 1)[0]}")


def cursor_advanced(before: str, after: str) -> bool:
    """The cursor is the set of datasets already listed: forward means a strict superset."""
    return set(json.loads(before)) < set(json.loads(after))


def source_of(source: str) -> str:
    """A labels row's source is ``<label set>/<label id>``: the label set is the result source."""
    return source.split("/", 1)[0]
