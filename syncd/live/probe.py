"""The read-only half of ``syncd check --live``: ask the platform what a pull asks, check it.

Contract of :func:`probe` (one remote):
- Reads only: the token (``check``), every configured dataset of the
  remote's syncs, one page of items, the item states and labels of a few
  items, the status fingerprint where the backend has one, and the
  rate-limit headers of the replies.
- Every reply passes the backend's reply shapes (:mod:`syncd.remotes.shapes`);
  each endpoint becomes a row (✘ with the field and the shape received when
  it does not match), then each step a row of its own.
- Errors never escape: a step that fails is a ✘ row with the reason, and
  the steps that need its answer are skipped.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, cast

import httpx

from syncd.config import SyncConfig
from syncd.errors import ReplyShapeError, SyncdError
from syncd.live.rows import Row, Status, journal_rows, short
from syncd.remotes.base import Remote, RemoteItem, StatusFingerprint, capabilities
from syncd.remotes.shapes import journal

SAMPLE_ITEMS = 5
RATE_HEADERS = ("ratelimit", "rate-limit", "retry-after")


class Steps:
    """Rows of one remote's probe: each step, then the endpoints its replies passed through."""

    def __init__(self, remote: str) -> None:
        self.remote = remote
        self.rows: list[Row] = []
        self._endpoints: set[str] = set()

    def add(self, check: str, expects: str, answered: str, status: Status) -> None:
        self.rows.append(Row(self.remote, check, "", expects, short(answered), status))

    def run(self, check: str, expects: str, fn: Callable[[], tuple[str, Status]]) -> bool:
        """Run one step; True when it succeeded."""
        with journal() as entries:
            try:
                answered, status = fn()
            except ReplyShapeError as exc:
                answered, status = f"stopped at {exc.endpoint}, field {exc.field}", "fail"
            except SyncdError as exc:
                answered, status = f"{type(exc).__name__}: {exc}", "fail"
        self.rows += journal_rows(self.remote, entries, self._endpoints)
        self.add(check, expects, answered, status)
        return status != "fail"


def _rate_hook(seen: dict[str, str]) -> Callable[[httpx.Response], None]:
    def hook(response: httpx.Response) -> None:
        for k, v in response.headers.items():
            if any(h in k.lower() for h in RATE_HEADERS):
                seen[k.lower()] = v

    return hook


def probe(remote: Remote, syncs: Sequence[SyncConfig], steps: Steps) -> bool:
    """Add the read-only rows of one remote to ``steps`` (see the module docstring);
    False when the token was refused or the platform unreachable."""
    headers: dict[str, str] = {}
    client = getattr(getattr(remote, "http", None), "client", None)
    if isinstance(client, httpx.Client):
        client.event_hooks.setdefault("response", []).append(_rate_hook(headers))

    if not steps.run("auth", "the token is accepted", lambda: (remote.check(), "ok")):
        return False
    for sync in syncs:
        _probe_dataset(steps, remote, sync)
    if client is not None:
        answered = ", ".join(f"{k}: {v}" for k, v in sorted(headers.items())) or "none sent"
        steps.add("rate-limit headers", "informational", answered, "ok")
    return True


def _probe_dataset(steps: Steps, remote: Remote, sync: SyncConfig) -> None:
    found: dict[str, Any] = {}

    def dataset() -> tuple[str, Status]:
        ds = remote.find_dataset(sync.dataset)
        if ds is None:
            if sync.push:
                return f"{sync.dataset!r} not there yet (the first push creates it)", "skip"
            return f"{sync.dataset!r} not found (a pull-only sync needs it)", "fail"
        found["id"] = ds.id
        return f"{ds.name!r} id {ds.id}, type {ds.type}", "ok"

    if not steps.run(f"dataset {sync.dataset}", "the sync's dataset", dataset) or not found:
        return
    dataset_id = str(found["id"])
    items: list[RemoteItem] = []

    def page() -> tuple[str, Status]:
        pages = remote.new_items(dataset_id, None)
        try:
            first = next(iter(pages), None)
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()
        if first is None:
            return "the dataset has no items", "ok"
        items.extend(first.items)
        kinds = sorted({i.kind for i in first.items})
        return f"{len(first.items)} items ({', '.join(kinds)}), cursor {first.cursor[:40]}", "ok"

    if not steps.run("items: first page", "items with id, name, kind", page):
        return
    sample = [i.id for i in items if i.kind != "SCENE"][:SAMPLE_ITEMS]
    if not sample:
        steps.add("item states", "states of a few items", "no items to ask about", "skip")
        steps.add("labels", "labels of a few items", "no items to ask about", "skip")
    else:

        def states() -> tuple[str, Status]:
            got = remote.item_states(dataset_id, sample)
            counts = sorted({str(i.annotation_status) for i in got.values()})
            return f"{len(got)} of {len(sample)} items, statuses {', '.join(counts)}", "ok"

        def labels() -> tuple[str, Status]:
            got = remote.labels(dataset_id, sample)
            objects = sum(len(lab.objects) for lab in got)
            classes = sorted({str(o.class_name) for lab in got for o in lab.objects})
            shown = ", ".join(itertools.islice(classes, 5))
            return f"{len(got)} label rows, {objects} objects ({shown})", "ok"

        steps.run("item states", "states of a few items", states)
        steps.run("labels", "labels of a few items", labels)
    if capabilities(remote).status_fingerprint:

        def fingerprint() -> tuple[str, Status]:
            value = cast(StatusFingerprint, remote).status_fingerprint(dataset_id)
            return f"{value}", "ok"

        steps.run("status fingerprint", "the dataset's status counters", fingerprint)
