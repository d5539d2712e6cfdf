"""The platforms syncd knows: ``platform → (backend class, options model)``, in one table.

Contract:

* :data:`PLATFORMS` holds one :class:`Platform` per backend, keyed by the
  ``platform`` value of its options model (the Literal of that model in
  :mod:`syncd.config`, where :data:`~syncd.config.PlatformConfig` validates a
  ``[remotes.NAME]`` table by it). It covers exactly the models of
  ``PlatformConfig``; importing this module checks that.
* The backend class is named, not imported (``"module:Class"``): listing the
  platforms (the CLI's choices, ``syncd check``) loads no backend;
  :func:`build_remote` imports the one it needs.
* Everything that lists platforms reads it: :func:`build_remote`, the CLI
  (``syncd sandbox PLATFORM``), the benchmarks (``bench/platforms.py``) and
  the tests (the contract suite checks that every platform has a backend
  entry there, and the sandbox package offers the same names).

Adding a platform: its options model and its entry in ``PlatformConfig``
(``syncd/config.py``), its backend module, one :class:`Platform` below; see
``docs/writing-a-backend.md``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, cast

from syncd.config import (
    PLATFORM_CONFIGS,
    BasicAIConfig,
    DeepenConfig,
    PlatformConfig,
    RemoteConfig,
    SegmentsConfig,
    Xtreme1Config,
    platform_name,
)
from syncd.remotes.base import Remote


@dataclass(frozen=True)
class Platform:
    """One platform: its options model and its backend class (imported on first use)."""

    options: type[RemoteConfig]  # the model of its ``[remotes.NAME]`` table (syncd.config)
    backend: str  # "module:Class"; the class takes (name, options, token)
    title: str  # the platform's own name, for people

    @property
    def name(self) -> str:
        """The ``platform`` value of its remotes (and the ``syncd sandbox`` argument)."""
        return platform_name(self.options)

    def backend_class(self) -> type[Any]:
        """The backend class (imports its module)."""
        module, _, attr = self.backend.partition(":")
        return cast(type[Any], getattr(importlib.import_module(module), attr))


PLATFORMS: dict[str, Platform] = {
    p.name: p
    for p in (
        Platform(Xtreme1Config, "syncd.remotes.xtreme1:Xtreme1Remote", "Xtreme1"),
        Platform(BasicAIConfig, "syncd.remotes.basicai:BasicAIRemote", "BasicAI Cloud"),
        Platform(DeepenConfig, "syncd.remotes.deepen:DeepenRemote", "Deepen AI"),
        Platform(SegmentsConfig, "syncd.remotes.segments:SegmentsRemote", "Segments.ai"),
    )
}

if {p.options for p in PLATFORMS.values()} != set(PLATFORM_CONFIGS):  # pragma: no cover
    raise ImportError("syncd.remotes.registry and syncd.config.PlatformConfig disagree")


def platform_names() -> list[str]:
    """Every platform's name, in the table's order (the CLI's choices)."""
    return list(PLATFORMS)


def build_remote(name: str, cfg: PlatformConfig, *, max_retries: int | None = None) -> Remote:
    """The backend for one ``[remotes.NAME]`` entry (reads ``token_file`` now)."""
    if max_retries is not None:
        cfg = cfg.model_copy(update={"max_retries": max_retries})
    platform = PLATFORMS.get(cfg.platform)
    if platform is None:
        raise ValueError(f"unknown platform {cfg.platform!r}")
    return cast(Remote, platform.backend_class()(name, cfg, cfg.resolved_token()))
