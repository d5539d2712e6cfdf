"""The contract suite's hooks for Segments.ai: samples, labels drawn by an annotator, removal.

How Segments differs (``syncd/remotes/segments.py``): a dataset is
``owner/name``; an item is a sample (uuid), or ``<uuid>/<n>`` for frame n of
a ``scene_*`` sample; a label is one per sample and labelset, its track ids
are integers (an annotator's track is the object's own id); one labelset is
mirrored.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import TOKEN, admin_call

AUTH = {"Authorization": f"APIKey {TOKEN}"}


def names(url: str, dataset_id: str) -> list[str]:
    return [s["name"] for s in admin_call(url, "GET", f"/datasets/{dataset_id}/samples")["samples"]]


def track_number(local: str) -> int:
    """The integer track the annotator's tool gives a track named ``local``."""
    return int("".join(c for c in local if c.isdigit()) or "1")


def annotate(url: str, item_id: str, objects: list[dict[str, Any]], src: str | None) -> None:
    """The annotator draws the objects as cuboids in the LiDAR sensor and submits (LABELED);
    classes the dataset lacks are added first, as its owner would."""
    uuid, _, frame = item_id.partition("/")
    sample = httpx.get(f"{url}/samples/{uuid}/", headers=AUTH).json()
    ds_id = sample["dataset_full_name"]
    ds = httpx.get(f"{url}/datasets/{ds_id}/", headers=AUTH).json()
    cats = {c["name"]: c["id"] for c in ds["task_attributes"]["categories"]}
    new = [o["className"] for o in objects if o["className"] not in cats]
    if new:
        top = max(cats.values(), default=0)
        cats.update({n: top + i for i, n in enumerate(dict.fromkeys(new), 1)})
        attrs = {
            **ds["task_attributes"],
            "categories": [{"id": i, "name": n} for n, i in cats.items()],
        }
        r = httpx.patch(f"{url}/datasets/{ds_id}/", json={"task_attributes": attrs}, headers=AUTH)
        assert r.status_code == 200, r.text
    frames = max(len(s["attributes"]["frames"]) for s in sample["attributes"]["sensors"])
    anns = []
    for o in objects:
        c = o["contour"]
        track = track_number(str(o.get("trackId", "1")))
        anns.append(
            {
                "id": track,
                "track_id": track,
                "category_id": cats[o["className"]],
                "type": "cuboid",
                "position": c["center3D"],
                "dimensions": c["size3D"],
                "yaw": c["rotation3D"]["z"],
                "is_keyframe": True,
            }
        )
    index = int(frame or 0)
    label = {
        "sensors": [
            {
                "name": "lidar",
                "task_type": "pointcloud-cuboid-sequence",
                "attributes": {
                    "frames": [{"annotations": anns if i == index else []} for i in range(frames)]
                },
            }
        ]
    }
    body = {"sample_uuid": uuid, "labelset": src, "attributes": label, "label_status": "LABELED"}
    admin_call(url, "POST", "/annotate", json=body)


def remove(url: str, dataset_id: str, item_id: str) -> None:
    r = httpx.delete(f"{url}/samples/{item_id.split('/')[0]}/", headers=AUTH)
    assert r.status_code == 204, r.text
