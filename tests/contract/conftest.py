"""The contract suite: one set of tests, run over every remote x its sandbox.

A platform joins by adding one :class:`Backend` to ``BACKENDS`` (rclone's
fstests idea): how to reach its sandbox's admin API for the few things a test
must do as "the platform's users" (annotate, look at what is stored), which
crash point lies between "the platform acted" and "we recorded it", and the
dataset type its sample units use.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd.config import Config, RemoteConfig, load_config
from syncd.daemon import Daemon
from syncd.remotes import build_remote
from syncd.remotes.base import Remote
from syncd.sandbox import run_in_thread
from tests.conftest import TOKEN, admin_call, write_config

_names = itertools.count(1)


@dataclass(frozen=True)
class Backend:
    """What the contract suite needs to know about one platform's sandbox."""

    platform: str
    dataset_type: str
    crash_point: str  # the platform has acted, our record of it is not yet committed
    sources: bool  # results can come from several sources (one labels row each)
    stored_names: Callable[[str, str], list[str]]  # (url, dataset id) → top-level names
    annotate: Callable[[str, str, list[dict[str, Any]], str | None], None]
    remove: Callable[[str, str, str], None]  # (url, dataset id, item id): a user deletes it
    # the track id the mirror shows for an annotator's track (platforms with integer ids renumber)
    track_id: Callable[[str], str] = str


def _xtreme1_names(url: str, dataset_id: str) -> list[str]:
    rows = admin_call(url, "GET", f"/datasets/{dataset_id}/items")["items"]
    return [r["name"] for r in rows if not r["deleted"] and not r["parentId"]]


def _xtreme1_annotate(
    url: str, item_id: str, objects: list[dict[str, Any]], src: str | None
) -> None:
    assert src is None, "the Xtreme1 sandbox has one source"
    admin_call(
        url, "POST", "/annotate", json={"dataId": int(item_id), "objects": objects, "submit": True}
    )


def _xtreme1_remove(url: str, dataset_id: str, item_id: str) -> None:
    r = httpx.post(
        f"{url}/api/data/deleteBatch",
        json={"ids": [int(item_id)]},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert r.json()["code"] == "OK"


def _basicai_remove(url: str, dataset_id: str, item_id: str) -> None:
    r = httpx.post(
        f"{url}/api/v1/dataset/removeData/{dataset_id}/{item_id}",
        headers={"Authorization": f"ApiKey {TOKEN}"},
    )
    assert r.json()["code"] == "OK"


def _basicai_names(url: str, dataset_id: str) -> list[str]:
    rows = admin_call(url, "GET", f"/datasets/{dataset_id}/items")["items"]
    return [r["name"] for r in rows if r["parentId"] is None]


def _basicai_annotate(
    url: str, item_id: str, objects: list[dict[str, Any]], src: str | None
) -> None:
    body = {"dataId": int(item_id), "objects": objects, "submit": src is None, "source": src}
    admin_call(url, "POST", "/annotate", json=body)


def _segments_names(url: str, dataset_id: str) -> list[str]:
    return [s["name"] for s in admin_call(url, "GET", f"/datasets/{dataset_id}/samples")["samples"]]


def _segments_track(local: str) -> str:
    return str(int("".join(c for c in local if c.isdigit()) or "1"))


def _segments_annotate(
    url: str, item_id: str, objects: list[dict[str, Any]], src: str | None
) -> None:
    """The annotator draws the objects as cuboids in the LiDAR sensor and submits (LABELED)."""
    auth = {"Authorization": f"APIKey {TOKEN}"}
    uuid, _, frame = item_id.partition("/")
    sample = httpx.get(f"{url}/samples/{uuid}/", headers=auth).json()
    ds_id = sample["dataset_full_name"]
    ds = httpx.get(f"{url}/datasets/{ds_id}/", headers=auth).json()
    cats = {c["name"]: c["id"] for c in ds["task_attributes"]["categories"]}
    new = [o["className"] for o in objects if o["className"] not in cats]
    if new:  # the dataset owner adds the classes first
        top = max(cats.values(), default=0)
        cats.update({n: top + i for i, n in enumerate(dict.fromkeys(new), 1)})
        attrs = {
            **ds["task_attributes"],
            "categories": [{"id": i, "name": n} for n, i in cats.items()],
        }
        r = httpx.patch(f"{url}/datasets/{ds_id}/", json={"task_attributes": attrs}, headers=auth)
        assert r.status_code == 200, r.text
    frames = max(len(s["attributes"]["frames"]) for s in sample["attributes"]["sensors"])
    anns = []
    for o in objects:
        c = o["contour"]
        track = int(_segments_track(str(o.get("trackId", "1"))))
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


def _segments_remove(url: str, dataset_id: str, item_id: str) -> None:
    r = httpx.delete(
        f"{url}/samples/{item_id.split('/')[0]}/", headers={"Authorization": f"APIKey {TOKEN}"}
    )
    assert r.status_code == 204, r.text


BACKENDS = [
    Backend(
        platform="xtreme1",
        dataset_type="LIDAR_FUSION",
        crash_point="submit.sent",
        sources=False,
        stored_names=_xtreme1_names,
        annotate=_xtreme1_annotate,
        remove=_xtreme1_remove,
    ),
    Backend(
        platform="basicai",
        dataset_type="LIDAR_FUSION",
        crash_point="register.sent",
        sources=True,
        stored_names=_basicai_names,
        annotate=_basicai_annotate,
        remove=_basicai_remove,
    ),
    Backend(
        platform="segments",
        dataset_type="LIDAR_FUSION",
        crash_point="register.sent",
        sources=False,
        stored_names=_segments_names,
        annotate=_segments_annotate,
        remove=_segments_remove,
        track_id=_segments_track,
    ),
]


class Harness:
    """One backend's sandbox plus a fresh dataset name, folder and state dir per test."""

    def __init__(self, backend: Backend, url: str, tmp: Path) -> None:
        self.backend, self.url, self.tmp = backend, url, tmp
        self.folder = tmp / "in"
        self.folder.mkdir()
        self.dataset = f"c-{next(_names)}-{tmp.name}"[:60]

    @property
    def platform(self) -> str:
        return self.backend.platform

    def remote(self, token: str = TOKEN) -> Remote:
        cfg = RemoteConfig(platform=self.platform, url=self.url, token=token, max_retries=1)  # type: ignore[arg-type]
        return build_remote("sb", cfg)

    def config_path(self, **sync: Any) -> Path:
        base = {
            "name": "s",
            "dataset": self.dataset,
            "dataset_type": self.backend.dataset_type,
            "folder": self.folder,
        }
        return write_config(
            self.tmp / "syncd.toml", self.url, [{**base, **sync}], platform=self.platform
        )

    def config(self, **sync: Any) -> Config:
        return load_config(self.config_path(**sync))

    def once(self, **sync: Any) -> int:
        d = Daemon(self.config(**sync))
        try:
            return d.once(timeout=60)
        finally:
            d.close()

    def dataset_id(self) -> str:
        r = self.remote()
        try:
            found = r.find_dataset(self.dataset)
            assert found is not None
            return found.id
        finally:
            r.close()

    def stored_names(self) -> list[str]:
        return self.backend.stored_names(self.url, self.dataset_id())

    def annotate(
        self, item_id: str, objects: list[dict[str, Any]], source: str | None = None
    ) -> None:
        self.backend.annotate(self.url, item_id, objects, source)

    def remove(self, item_id: str) -> None:
        self.backend.remove(self.url, self.dataset_id(), item_id)

    @property
    def db(self) -> Path:
        return self.tmp / "state" / "syncd.db"


_urls: dict[str, str] = {}


@pytest.fixture(scope="session")
def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One sandbox per platform for the session, started on first use."""
    import contextlib

    with contextlib.ExitStack() as stack:

        def url_for(platform: str) -> str:
            if platform not in _urls:
                data = tmp_path_factory.mktemp(f"sandbox-{platform}")
                _urls[platform] = stack.enter_context(
                    run_in_thread(platform, token=TOKEN, data_dir=data)
                )
            return _urls[platform]

        yield {b.platform: url_for(b.platform) for b in BACKENDS}
        _urls.clear()


@pytest.fixture(params=BACKENDS, ids=[b.platform for b in BACKENDS])
def harness(request: pytest.FixtureRequest, sandboxes: dict[str, str], tmp_path: Path) -> Harness:
    backend: Backend = request.param
    return Harness(backend, sandboxes[backend.platform], tmp_path)
