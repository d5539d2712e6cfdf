"""In-process pipeline tests: the real stages against a sandbox on a thread (real HTTP)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.config import Config, load_config
from syncd.daemon import Daemon
from tests.conftest import admin_call, api_call, write_config

_names = itertools.count(1)


class Env:
    """One sync against the shared sandbox, with a fresh dataset name and state dir."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.tmp, self.url = tmp_path, url
        self.folder = tmp_path / "in"
        self.folder.mkdir()
        self.dataset = f"ds-{next(_names)}-{tmp_path.name}"[:60]

    def config(self, **sync: Any) -> Config:
        base = {"name": "s", "dataset": self.dataset, "folder": self.folder}
        path = write_config(self.tmp / "syncd.toml", self.url, [{**base, **sync}])
        return load_config(path)

    def daemon(self, **sync: Any) -> Daemon:
        return Daemon(self.config(**sync))

    def once(self, **sync: Any) -> tuple[int, Daemon]:
        d = self.daemon(**sync)
        try:
            return d.once(timeout=60), d
        finally:
            d.close()

    def admin(self, method: str, path: str, **kw: Any) -> Any:
        return admin_call(self.url, method, path, **kw)

    def api(self, path: str, **params: Any) -> Any:
        return api_call(self.url, path, **params)

    def dataset_id(self) -> int:
        rows = self.api("/dataset/findByPage", name=self.dataset, pageNo=1, pageSize=10)["list"]
        return int(next(r["id"] for r in rows if r["name"] == self.dataset))

    def remote_items(self) -> list[dict[str, Any]]:
        return list(self.admin("GET", f"/datasets/{self.dataset_id()}/items")["items"])

    def calls(self) -> list[dict[str, Any]]:
        ds = self.dataset_id()
        return [
            c for c in self.admin("GET", "/counters")["data_upload_calls"] if c["datasetId"] == ds
        ]

    @property
    def db(self) -> Path:
        return self.tmp / "state" / "syncd.db"


@pytest.fixture
def env(tmp_path: Path, sandbox_url: str) -> Iterator[Env]:
    yield Env(tmp_path, sandbox_url)
