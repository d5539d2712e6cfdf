"""Platform backends behind one protocol (:mod:`syncd.remotes.base`)."""

from __future__ import annotations

from syncd.config import RemoteConfig
from syncd.remotes.base import Remote


def build_remote(name: str, cfg: RemoteConfig, *, max_retries: int | None = None) -> Remote:
    """The backend for one ``[remotes.NAME]`` entry (reads ``token_file`` now)."""
    if max_retries is not None:
        cfg = cfg.model_copy(update={"max_retries": max_retries})
    if cfg.platform == "xtreme1":
        from syncd.remotes.xtreme1 import Xtreme1Remote

        return Xtreme1Remote(name, cfg, cfg.resolved_token())
    if cfg.platform == "basicai":
        from syncd.remotes.basicai import BasicAIRemote

        return BasicAIRemote(name, cfg, cfg.resolved_token())
    if cfg.platform == "deepen":
        from syncd.remotes.deepen import DeepenRemote

        return DeepenRemote(name, cfg, cfg.resolved_token())
    if cfg.platform == "segments":
        from syncd.remotes.segments import SegmentsRemote

        return SegmentsRemote(name, cfg, cfg.resolved_token())
    raise ValueError(f"unknown platform {cfg.platform!r}")
