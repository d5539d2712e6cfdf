"""The promises of "What syncd guarantees", as checks shared by the crash and chaos tests.

Each check compares the daemon's database with the local folder and with the
sandbox platform's own view (its admin API), never with syncd's opinion alone.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from tests.conftest import TOKEN, admin_call, api_call, query


def local_files(folder: Path) -> set[tuple[str, str]]:
    """Every (unit, path inside the unit) that syncd should upload (no hidden files)."""
    out: set[tuple[str, str]] = set()
    for unit in sorted(os.listdir(folder)):
        if unit.startswith("."):
            continue
        for root, dirs, files in os.walk(folder / unit):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for f in files:
                if not f.startswith("."):
                    out.add((unit, str((Path(root) / f).relative_to(folder / unit))))
    return out


def dataset_id(url: str, name: str) -> int:
    rows = api_call(url, "/dataset/findByPage", name=name, pageNo=1, pageSize=10)["list"]
    return int(next(r["id"] for r in rows if r["name"] == name))


def assert_exactly_once(
    db: Path | str, folder: Path, url: str, dataset: str, expected_items: int
) -> dict[str, Any]:
    """Nothing lost, nothing twice; returns figures for the test's report.

    * every package is final and none failed;
    * every local file belongs to exactly one ``done`` package;
    * each archive was submitted to the platform exactly once (sandbox counters);
    * the platform holds exactly ``expected_items`` live items, all names unique.
    """
    states = Counter(s for (s,) in query(db, "SELECT state FROM packages"))
    assert set(states) <= {"done"}, f"packages not all done: {dict(states)}"
    rows = query(
        db,
        "SELECT p.unit, f.rel_path FROM package_files f JOIN packages p ON p.id = f.package_id "
        "WHERE p.state = 'done'",
    )
    owners = Counter(rows)
    twice = [k for k, n in owners.items() if n > 1]
    assert not twice, f"files in more than one done package: {twice[:5]}"
    expected = local_files(folder)
    missing = expected - set(owners)
    assert not missing, f"local files in no done package: {sorted(missing)[:5]}"
    ds = dataset_id(url, dataset)
    calls = [
        c for c in admin_call(url, "GET", "/counters")["data_upload_calls"] if c["datasetId"] == ds
    ]
    per_archive = Counter(c["fileName"] for c in calls)
    repeated = {k: n for k, n in per_archive.items() if n > 1}
    assert not repeated, f"archives submitted more than once: {repeated}"
    archives = {a.lower() for (a,) in query(db, "SELECT archive_name FROM packages")}
    assert set(per_archive) == archives, (sorted(per_archive), sorted(archives))
    items = [
        i for i in admin_call(url, "GET", f"/datasets/{ds}/items")["items"] if not i["deleted"]
    ]
    top = [i for i in items if not i.get("parentId")]
    names = Counter((i.get("parentId"), i["name"]) for i in items)
    assert all(n == 1 for n in names.values()), "duplicate item names on the platform"
    assert len(top) == expected_items, (
        f"platform has {len(top)} top-level items, expected {expected_items}"
    )
    return {"packages": sum(states.values()), "archives": len(per_archive), "items": len(items)}


def assert_mirror_matches(db: Path | str, url: str, dataset: str) -> None:
    """The mirror's live items and their final labels equal the platform's."""
    ds = dataset_id(url, dataset)
    items = [
        i for i in admin_call(url, "GET", f"/datasets/{ds}/items")["items"] if not i["deleted"]
    ]
    remote = {str(i["id"]): i["name"] for i in items}
    local = dict(
        query(
            db,
            "SELECT remote_id, name FROM items WHERE dataset_remote_id = ? AND deleted_at IS NULL",
            str(ds),
        )
    )
    assert local == remote, (
        f"mirror differs: only local {set(local) - set(remote)}, only remote {set(remote) - set(local)}"
    )


SIGNATURE = re.compile(r"X-Amz-Signature=(?!\*\*\*)[0-9a-fA-F]")


def assert_no_secrets(texts: dict[str, str], token: str = TOKEN) -> None:
    """No token and no presigned-URL signature in any of ``texts`` (name → content)."""
    for name, text in texts.items():
        assert token not in text, f"the token appears in {name}"
        assert not SIGNATURE.search(text), f"a URL signature appears in {name}"


def database_text(db: Path | str) -> str:
    """Every text value in the database (but the upload sessions), to scan for secrets."""
    if isinstance(db, str):
        out = []
        tables = query(
            db,
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type IN ('character varying', 'text')",
        )
        for table, column in tables:
            if (table, column) != ("packages", "upload_ref"):
                out += [str(v) for (v,) in query(db, f'SELECT "{column}" FROM "{table}"') if v]
        return "\n".join(out)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out = []
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
            keep = [c for c in cols if (table, c) != ("packages", "upload_ref")]
            sql = "SELECT " + ", ".join(f'"{c}"' for c in keep) + f' FROM "{table}"'
            for row in conn.execute(sql):
                out += [str(v) for v in row if isinstance(v, str)]
        return "\n".join(out)
    finally:
        conn.close()
