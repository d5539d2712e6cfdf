"""The writing half of ``syncd check --live --write``: the whole push path in a scratch dataset.

Contract of :func:`write_check` (one remote):
- It creates a dataset ``syncd-check-<random>`` and pushes one tiny unit
  made by :mod:`syncd.sampledata` (one frame, one camera, pre-labels of class
  ``Car``; one image for an image dataset) through the daemon's own pipeline
  (``syncd once`` on a throwaway state directory): upload, register or
  submit, processing to the end, one pull.
- Then it checks the mirror: the item is listed, its pre-labels came back
  with the classes pushed (where the platform imports pre-labels), the items
  cursor was committed and a second walk from it finds nothing new.
- Last it deletes the scratch dataset; where the API cannot delete one
  (BasicAI), a row names it so the user can.
- Every reply on the way passes the reply shapes: one row per endpoint.
  Nothing outside the scratch dataset is written; the user's state is not
  touched.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from syncd.config import Config, LogConfig, PlatformConfig, StateConfig, SyncConfig
from syncd.errors import SyncdError
from syncd.live.probe import Steps
from syncd.live.rows import Status
from syncd.remotes import build_remote
from syncd.remotes.base import Remote
from syncd.sampledata import write_fusion_unit, write_image_unit

CLASS = "Car"
TIMEOUT = 50.0  # seconds for the push to be processed (the whole check aims at one minute)
# Platforms whose import turns result/ files into labels (Deepen's keeps them in the archive).
IMPORTS_PRELABELS = {"xtreme1": True, "basicai": True, "deepen": False, "segments": True}


def scratch_name() -> str:
    return f"syncd-check-{secrets.token_hex(4)}"


def dataset_type(rc: PlatformConfig, syncs: Sequence[SyncConfig]) -> str:
    """The kind of unit to push: the remote's syncs' ``dataset_type`` (the first), else
    what its Segments ``task_type`` takes, else ``LIDAR_FUSION``."""
    if syncs:
        return syncs[0].dataset_type
    task = getattr(rc, "task_type", None)
    if task is not None:
        from syncd.remotes.segments_wire import IMAGE_SEQUENCE_TASKS, IMAGE_TASKS

        if task in IMAGE_TASKS or task in IMAGE_SEQUENCE_TASKS:
            return "IMAGE"
    return "LIDAR_FUSION"


def write_check(
    name: str,
    rc: PlatformConfig,
    steps: Steps,
    *,
    kind: str = "LIDAR_FUSION",
    dataset: str | None = None,
) -> None:
    """Add the ``--write`` rows of remote ``name`` to ``steps`` (see the module docstring);
    ``kind`` is the sync's ``dataset_type`` of the unit to push (:func:`dataset_type`)."""
    dataset = dataset or scratch_name()
    with tempfile.TemporaryDirectory(prefix="syncd-check-") as tmp:
        root = Path(tmp)
        unit = root / "in" / "check"
        if kind == "IMAGE":
            names = write_image_unit(unit, images=1, with_result=True)
        else:
            names = write_fusion_unit(
                unit,
                frames=1,
                cameras=0 if kind == "LIDAR_BASIC" else 1,
                with_result=True,
                points=200,
                classes=(CLASS,),
            )
        cfg = Config(
            state=StateConfig(dir=root / "state"),
            log=LogConfig(level="error"),
            remotes={name: rc},
            syncs=[
                SyncConfig(
                    name="live-check",
                    remote=name,
                    dataset=dataset,
                    dataset_type=kind,  # type: ignore[arg-type]
                    folder=root / "in",
                    settle_seconds=0,
                )
            ],
        )
        pushed = steps.run(
            "push: upload, register, process, pull",
            f"a scratch dataset {dataset}, one unit pushed and processed",
            lambda: _push(cfg),
        )
        db = root / "state" / "syncd.db"
        if pushed:
            _mirror_rows(steps, rc.platform, db, names, _prelabel_classes(unit))
            remote = build_remote(name, rc, max_retries=1)
            try:
                steps.run(
                    "cursor walk",
                    "a walk from the committed cursor finds nothing new",
                    lambda: _walk(remote, db, dataset),
                )
            finally:
                remote.close()
        remote = build_remote(name, rc, max_retries=1)
        try:
            steps.run(
                "scratch dataset deleted",
                f"{dataset} removed",
                lambda: _delete(remote, dataset),
            )
        finally:
            remote.close()


def _push(cfg: Config) -> tuple[str, Status]:
    from syncd.daemon import Daemon

    d = Daemon(cfg)
    try:
        code = d.once(timeout=TIMEOUT)
    finally:
        d.close()
    db = cfg.state.dir / "syncd.db"
    rows = _query(db, "SELECT state, last_error FROM packages")
    if code != 0 or not rows or rows[0][0] != "done":
        state, error = rows[0] if rows else ("none", "no package was made")
        events = _query(
            db, "SELECT fields FROM events WHERE level = 'error' ORDER BY id DESC LIMIT 1"
        )
        fields = json.loads(events[0][0]) if events else {}
        why = error or str(fields.get("error") or fields.get("reason") or "see the log")
        raise _Failed(f"package {state}: {why}")
    return "package done, pulled once", "ok"


class _Failed(SyncdError):
    """A step's own failure (its reason is the row's answer)."""


def _query(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def _prelabel_classes(unit: Path) -> list[str]:
    """The class names of the unit's pre-labels (its ``result/*.json`` files)."""
    found: set[str] = set()
    for path in unit.rglob("result/*.json"):
        doc = json.loads(path.read_text())
        found.update(str(o["className"]) for o in doc.get("objects") or [])
    return sorted(found)


def _mirror_rows(
    steps: Steps, platform: str, db: Path, names: list[str], expected: list[str]
) -> None:
    def listed() -> tuple[str, Status]:
        got = {n for (n,) in _query(db, "SELECT name FROM items WHERE deleted_at IS NULL")}
        # An item is named for its data name; on Deepen for the file Deepen made of
        # it: a 3D frame ``000001`` becomes ``000001.pcd``, an image keeps its path.
        if not any(n == g or g.startswith(f"{n}.") or f"/{n}." in g for g in got for n in names):
            raise _Failed(f"the mirror holds {sorted(got)[:5]}, not {names}")
        return f"{len(got)} items mirrored", "ok"

    def prelabel() -> tuple[str, Status]:
        if not IMPORTS_PRELABELS.get(platform, True):
            return (
                "not applicable: this platform's import keeps result files in the archive",
                "skip",
            )
        got = _query(db, "SELECT o.class_name FROM objects o")
        classes = sorted({str(c) for (c,) in got})
        if classes != expected:
            raise _Failed(f"pre-label classes read back: {classes or 'none'}, pushed {expected}")
        return f"{len(got)} objects, classes {', '.join(classes)}", "ok"

    steps.run("item listed", "the pushed frame is in the mirror", listed)
    steps.run("pre-label read back", f"objects of class {', '.join(expected)}", prelabel)


def _walk(remote: Remote, db: Path, dataset: str) -> tuple[str, Status]:
    rows = _query(db, "SELECT value FROM cursors WHERE name = 'items'")
    if not rows:
        raise _Failed("no items cursor was committed")
    cursor = str(rows[0][0])
    known = {r for (r,) in _query(db, "SELECT remote_id FROM items")}
    ds = remote.find_dataset(dataset)
    if ds is None:
        raise _Failed(f"dataset {dataset!r} not found after the push")
    fresh = [i.id for page in remote.new_items(ds.id, cursor) for i in page.items]
    unknown = [i for i in fresh if i not in known]
    if unknown:
        raise _Failed(f"items after the cursor the pull did not mirror: {unknown[:5]}")
    return f"cursor {cursor[:40]}: nothing new after it", "ok"


def _delete(remote: Remote, dataset: str) -> tuple[str, Status]:
    """Delete the scratch dataset with the platform's own call, where it has one."""
    http: Any = getattr(remote, "http", None)
    api = str(getattr(remote, "api", ""))
    module = __import__(type(remote).__module__, fromlist=["classify"])
    classify = module.classify
    if remote.platform == "basicai":
        return (
            f"BasicAI's API cannot delete a dataset: delete {dataset!r} in the web app",
            "skip",
        )
    if remote.platform == "deepen":
        ids: list[str] = []
        reply = http.request(
            "GET", f"{api}/clients/{getattr(remote, 'client_id', '')}/datasets_ids", classify
        )
        for row in reply.get("datasets") or []:
            if str(row.get("dataset_name", "")).startswith(dataset + "/"):
                ids.append(str(row["dataset_id"]))
        for i in ids:
            http.request("DELETE", f"{api}/datasets/{i}", classify)
        return f"{len(ids)} Deepen datasets {dataset}/… deleted", "ok"
    ds = remote.find_dataset(dataset)
    if ds is None:
        return f"{dataset!r} was not there", "ok"
    if remote.platform == "xtreme1":
        http.request("POST", f"{api}/dataset/delete/{ds.id}", classify)
    elif remote.platform == "segments":
        http.request("DELETE", f"{api}/datasets/{ds.id}/", classify)
    else:
        return f"no deletion known for {remote.platform}: delete {dataset!r} by hand", "skip"
    if remote.find_dataset(dataset) is not None:
        raise _Failed(f"{dataset!r} is still listed after its deletion")
    return f"{dataset!r} deleted", "ok"
