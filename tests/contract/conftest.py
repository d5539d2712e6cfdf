"""The contract suite: one set of tests, run over every remote x its sandbox.

A platform joins by adding one :class:`Backend` to ``BACKENDS`` (rclone's
fstests idea): how to reach its sandbox's admin API for the few things a test
must do as "the platform's users" (annotate, look at what is stored), which
crash point lies between "the platform acted" and "we recorded it", and the
dataset type its sample units use. Platforms that model things differently
(Deepen: one platform dataset per unit, files as items, labels by label id)
say so through the hook fields with defaults, so each test checks the same
promise in the platform's own terms.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd.config import Config, load_config, remote_config
from syncd.daemon import Daemon
from syncd.remotes import build_remote
from syncd.remotes.base import Remote
from syncd_sandbox import run_in_thread
from syncd_sandbox.deepen import CLIENT_ID as DEEPEN_CLIENT_ID
from tests.conftest import TOKEN, admin_call, write_config
from tests.contract import deepen_backend as deepen
from tests.contract import segments_backend as segments

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
    # extra keys of the remote's config (TOML and its options model), e.g. Deepen's client_id
    remote_options: dict[str, Any] = field(default_factory=dict)
    # the sync's dataset is only a name prefix on the platform: ensuring it creates nothing
    dataset_is_group: bool = False
    # (unit folder, its item names where a frame is an item) → the names the platform stores
    unit_items: Callable[[Path, list[str]], list[str]] = lambda unit, names: names
    # result files in the archive become labels on import (else they only ride in the zip)
    imports_prelabels: bool = True
    # a trackId the annotator gives is kept (else an object's own id is its track)
    user_track_ids: bool = True
    # the result source a labels row belongs to, and the name of the main source
    source_of: Callable[[str], str] = lambda source: source
    main_source: str = "Ground Truth"
    # (cursor before, cursor after) → the cursor moved forward
    cursor_advanced: Callable[[str, str], bool] = lambda before, after: int(after) > int(before)
    # the archive carries files that belong to no data item (else they are reported skipped)
    archive_keeps_every_file: bool = False


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


BACKENDS = [
    Backend(
        platform="xtreme1",
        dataset_type="LIDAR_FUSION",
        crash_point="submit.sent",
        sources=False,
        stored_names=_xtreme1_names,
        annotate=_xtreme1_annotate,
        remove=_xtreme1_remove,
        # "<highest top-level id>:<listing total>": forward means a higher id
        cursor_advanced=lambda before, after: int(after.split(":")[0]) > int(before.split(":")[0]),
        archive_keeps_every_file=True,
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
        platform="deepen",
        dataset_type="LIDAR_FUSION",
        crash_point="submit.sent",  # process_uploaded_data accepted, the dataset id not recorded
        sources=True,  # label sets
        stored_names=deepen.names,
        annotate=deepen.annotate,
        remove=deepen.remove,
        remote_options={"client_id": DEEPEN_CLIENT_ID},
        dataset_is_group=True,
        unit_items=deepen.unit_items,
        imports_prelabels=False,
        user_track_ids=False,
        source_of=deepen.source_of,
        main_source="default",
        cursor_advanced=deepen.cursor_advanced,
        archive_keeps_every_file=True,
    ),
    Backend(
        platform="segments",
        dataset_type="LIDAR_FUSION",
        crash_point="register.sent",  # samples and pre-labels created, not yet recorded
        sources=False,  # one labelset is mirrored
        stored_names=segments.names,
        annotate=segments.annotate,
        remove=segments.remove,
        user_track_ids=False,  # integer track ids: the annotator's track is the object's id
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
        cfg = remote_config(
            platform=self.platform,
            url=self.url,
            token=token,
            max_retries=1,
            **self.backend.remote_options,
        )
        return build_remote("sb", cfg)

    def config_path(self, **sync: Any) -> Path:
        base = {
            "name": "s",
            "dataset": self.dataset,
            "dataset_type": self.backend.dataset_type,
            "folder": self.folder,
        }
        extra = "\n".join(f"{k} = {json.dumps(v)}" for k, v in self.backend.remote_options.items())
        return write_config(
            self.tmp / "syncd.toml",
            self.url,
            [{**base, **sync}],
            platform=self.platform,
            remote_extra=extra,
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

    def unit_items(self, unit: str, names: list[str]) -> list[str]:
        """The names the platform stores for the unit folder ``unit`` whose items are ``names``."""
        return self.backend.unit_items(self.folder / unit, names)

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
