"""The platforms the pull benchmark runs against: one entry each.

Adding a platform is one entry here: its name (a platform of
:mod:`syncd.remotes.registry`, which is also its sandbox), how to seed a
dataset through the sandbox's admin API, and its reference puller (a plain
script in ``bench/`` issuing the same requests as syncd in the same order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import reference_pull_basicai, reference_pull_xtreme1
from bench.common import api_requests
from syncd.remotes.registry import PLATFORMS as REGISTERED


@dataclass(frozen=True)
class Platform:
    """What the pull benchmark needs to know about one platform."""

    name: str  # the sandbox (``syncd sandbox NAME``) and the remote's ``platform``
    dataset_type: str
    # (url, token, dataset name, items, objects) → dataset id: seeds ``items`` items with ``objects`` objects each into a new dataset; returns its id.
    seed: Callable[[str, str, str, int, int], str]
    # The reference puller's source file, run as ``python FILE URL TOKEN DATASET_NAME DB``.
    reference: Path
    # Extra keys of the syncd remote (``[remotes.bench]``) besides platform, url and token.
    remote: dict[str, Any] = field(default_factory=dict)
    # The sandbox's API request counters (route → count), read before and after a cycle.
    requests: Callable[[str], dict[str, int]] = api_requests

    def __post_init__(self) -> None:
        if self.name not in REGISTERED:
            raise ValueError(f"{self.name!r} is not a platform of syncd.remotes.registry")


PLATFORMS: dict[str, Platform] = {
    p.name: p
    for p in (
        Platform(
            name="xtreme1",
            dataset_type="LIDAR_BASIC",
            seed=reference_pull_xtreme1.seed,
            reference=Path(reference_pull_xtreme1.__file__),
        ),
        Platform(
            name="basicai",
            dataset_type="LIDAR_BASIC",
            seed=reference_pull_basicai.seed,
            reference=Path(reference_pull_basicai.__file__),
            # The sandbox's windows are lifted by the seed; the client's are by write_config.
        ),
    )
}
