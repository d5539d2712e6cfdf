"""Typed upload progress, one record per upload strategy, kept in ``packages.upload_ref``.

Contract:

* Each strategy reads and writes its own record: :class:`ArchiveProgress`
  (one archive through ``upload_archive``), :class:`ResumableProgress` (one
  archive through resumable sessions), :class:`FilesProgress` (each data
  item's files, then registration). Packing writes the common part,
  :class:`Progress` (the classes bound to the dataset).
* The column holds one flat JSON object, in the same shape the previous
  version wrote, so a database written by either version works with the
  other: the record's own keys (``classes``, ``opening``, ``session``,
  ``abandoned``, ``files``, ``registering``, ``registered``) plus the keys of
  the remote's own upload ref (``remote``), which are opaque here and handed
  back to the remote as they were stored (:meth:`Progress.flat`).
* :meth:`Progress.parse` accepts ``None``/empty (nothing recorded yet) and
  skips values of the wrong type (treated as not recorded), as the previous
  version did.
* The ref may hold a platform's upload URL: it is the one column kept out of
  the views, status output and events (a credential).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Self


def _load(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    value = json.loads(text)
    return dict(value) if isinstance(value, dict) else {}


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


@dataclass
class Progress:
    """What every strategy's record starts with: written when the package is packed.

    ``classes``: pre-label class name → the dataset's class id (bound when packing).
    ``remote``: the remote's own upload ref, flat in the JSON (opaque here).
    """

    classes: dict[str, str] = field(default_factory=dict)
    remote: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> Self:
        """The record in ``text`` (``packages.upload_ref``); empty when nothing is recorded."""
        raw = _load(text)
        out = cls(classes=_str_map(raw.pop("classes", None)))
        out._take(raw)
        out.remote = raw
        return out

    def _take(self, raw: dict[str, Any]) -> None:
        """Pop this record's own keys from ``raw`` (the rest are the remote's)."""

    def _own(self) -> dict[str, Any]:
        return {}

    def flat(self) -> dict[str, Any]:
        """The JSON object as stored (and as the remote gets it back at submit)."""
        return {"classes": self.classes, **self._own(), **self.remote}

    def dump(self) -> str:
        return json.dumps(self.flat())


@dataclass
class ArchiveProgress(Progress):
    """One archive through ``upload_archive``; ``remote`` is the stored archive's ref."""


@dataclass
class ResumableProgress(Progress):
    """One archive through resumable sessions (:mod:`syncd.pipeline.strategies.resumable`).

    ``opening``: the attempt whose session is being opened (committed before
    the request). ``session``: the open session's ref. ``abandoned``: dead
    sessions with the reason (and the attempt or session keys). Once the
    upload completed, ``remote`` holds the completed upload's ref.
    """

    opening: int | None = None
    session: dict[str, Any] | None = None
    abandoned: list[dict[str, Any]] = field(default_factory=list)

    def _take(self, raw: dict[str, Any]) -> None:
        opening, session, abandoned = (
            raw.pop(k, None) for k in ("opening", "session", "abandoned")
        )
        self.opening = opening if isinstance(opening, int) else None
        self.session = dict(session) if isinstance(session, dict) else None
        self.abandoned = (
            [dict(a) for a in abandoned if isinstance(a, dict)]
            if isinstance(abandoned, list)
            else []
        )

    def _own(self) -> dict[str, Any]:
        own: dict[str, Any] = {}
        if self.opening is not None:
            own["opening"] = self.opening
        if self.abandoned:
            own["abandoned"] = self.abandoned
        if self.session is not None:
            own["session"] = self.session
        return own


@dataclass
class FilesProgress(Progress):
    """Each data item's files, then registration (:mod:`syncd.pipeline.strategies.files`).

    ``files``: the file's path in the unit → the ref the platform gave it.
    ``registering``: names being registered (committed before the request).
    ``registered``: name → the platform's id, once registered.
    """

    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    registering: list[str] = field(default_factory=list)
    registered: dict[str, str] = field(default_factory=dict)

    def _take(self, raw: dict[str, Any]) -> None:
        files, registering = raw.pop("files", None), raw.pop("registering", None)
        self.files = (
            {str(k): dict(v) for k, v in files.items() if isinstance(v, dict)}
            if isinstance(files, dict)
            else {}
        )
        self.registering = [str(n) for n in registering] if isinstance(registering, list) else []
        self.registered = _str_map(raw.pop("registered", None))

    def _own(self) -> dict[str, Any]:
        own: dict[str, Any] = {}
        if self.files:
            own["files"] = self.files
        if self.registering or self.registered:
            own["registering"] = self.registering
        if self.registered:
            own["registered"] = self.registered
        return own
