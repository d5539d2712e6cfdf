"""Helpers for the Deepen tests: a sandbox on a thread, configs, admin calls, checksums."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import httpx

from syncd.config import Config, load_config
from syncd.daemon import Daemon
from syncd.formats.deepen import Format, convert, open_zip
from syncd_sandbox.deepen import CLIENT_ID
from tests.conftest import TOKEN, admin_call

_names = itertools.count(1)


def write_deepen_config(
    path: Path,
    url: str,
    syncs: list[dict[str, Any]],
    *,
    state: Path | None = None,
    chunk: str = "256KiB",
    extra: dict[str, Any] | None = None,
) -> Path:
    """A config with one Deepen remote ``dp`` and the given syncs."""
    remote = {
        "platform": "deepen",
        "url": url,
        "token": TOKEN,
        "client_id": CLIENT_ID,
        "poll_interval": 0.2,
        "max_retries": 2,
        "upload_chunk_size": chunk,
        **(extra or {}),
    }
    lines = ["[state]", f"dir = {json.dumps(str(state or path.parent / 'state'))}"]
    lines += ["[log]", 'format = "json"', 'level = "debug"', "[remotes.dp]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in remote.items()]
    for s in syncs:
        merged = {"remote": "dp", "settle_seconds": 0, "pull_interval": 1, **s}
        lines.append("[[syncs]]")
        lines += [
            f"{k} = {json.dumps(str(v) if isinstance(v, Path) else v)}" for k, v in merged.items()
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


class DeepenEnv:
    """One sync against a Deepen sandbox, with a fresh group name and state dir."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.tmp, self.url = tmp_path, url
        self.folder = tmp_path / "in"
        self.folder.mkdir(exist_ok=True)
        self.group = f"grp-{next(_names)}-{tmp_path.name}"[:60]

    def config(self, chunk: str = "256KiB", **sync: Any) -> Config:
        base = {"name": "s", "dataset": self.group, "folder": self.folder}
        path = write_deepen_config(
            self.tmp / "syncd.toml", self.url, [{**base, **sync}], chunk=chunk
        )
        return load_config(path)

    def once(self, timeout: float = 60, **sync: Any) -> int:
        d = Daemon(self.config(**sync))
        try:
            return d.once(timeout=timeout)
        finally:
            d.close()

    def admin(self, method: str, path: str, **kw: Any) -> Any:
        return admin_call(self.url, method, path, **kw)

    def api(self, path: str, **params: Any) -> Any:
        r = httpx.get(
            f"{self.url}/api/v2{path}",
            params=params,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        r.raise_for_status()
        return r.json()

    def datasets(self) -> dict[str, dict[str, Any]]:
        """This env's datasets on the sandbox (admin counters), by Deepen id."""
        rows = self.admin("GET", "/counters")["datasets"]
        return {k: v for k, v in rows.items() if v["name"].startswith(self.group + "/")}

    def object_md5(self, deepen_id: str) -> str:
        return file_md5(Path(self.admin("GET", f"/objects/{deepen_id}")["path"]))

    @property
    def db(self) -> Path:
        return self.tmp / "state" / "syncd.db"


def file_md5(path: Path) -> str:
    md5 = hashlib.md5()
    with path.open("rb") as f:
        while block := f.read(4 * 1024 * 1024):
            md5.update(block)
    return md5.hexdigest()


def converted_md5(folder: Path, files: Any, fmt: Format = "json") -> str:
    """MD5 of the archive syncd streams to Deepen for these package files (converted)."""
    return archive_md5(open_zip(convert(folder, files, fmt)))


def archive_md5(chunks: Any) -> str:
    md5 = hashlib.md5()
    for c in chunks:
        md5.update(c)
    return md5.hexdigest()
