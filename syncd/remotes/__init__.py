"""Platform backends behind one protocol (:mod:`syncd.remotes.base`), listed in
:mod:`syncd.remotes.registry`; ``docs/writing-a-backend.md`` says how to add one."""

from __future__ import annotations

from syncd.remotes.registry import build_remote

__all__ = ["build_remote"]
