"""``syncd check --live --write`` against a real account, one module-level test per platform.

Enabled by environment variables (never in CI by default)::

    SYNCD_LIVE_XTREME1_URL / SYNCD_LIVE_XTREME1_TOKEN
    SYNCD_LIVE_BASICAI_URL / SYNCD_LIVE_BASICAI_TOKEN
    SYNCD_LIVE_DEEPEN_URL / SYNCD_LIVE_DEEPEN_TOKEN / SYNCD_LIVE_DEEPEN_CLIENT_ID
    SYNCD_LIVE_SEGMENTS_URL / SYNCD_LIVE_SEGMENTS_TOKEN (optional: SYNCD_LIVE_SEGMENTS_ORGANIZATION)

Each run creates a scratch dataset ``syncd-check-<random>`` and deletes it
(BasicAI's API cannot: the row names it for the user).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncd.config import Config, StateConfig, remote_config
from syncd.live import run
from syncd.live.rows import as_table, passed
from tests.live.conftest import PLATFORMS

EXTRA = {"deepen": ("CLIENT_ID",), "segments": ("ORGANIZATION",)}
REQUIRED_EXTRA = {"deepen": ("CLIENT_ID",)}


def _variables(platform: str) -> list[str]:
    prefix = f"SYNCD_LIVE_{platform.upper()}_"
    return [prefix + k for k in ("URL", "TOKEN", *REQUIRED_EXTRA.get(platform, ()))]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_live_write_against_the_real_platform(platform: str, tmp_path: Path) -> None:
    needed = _variables(platform)
    missing = [v for v in needed if not os.environ.get(v)]
    if missing:
        pytest.skip(f"set {', '.join(needed)} to check syncd against a real {platform} account")
    prefix = f"SYNCD_LIVE_{platform.upper()}_"
    options = {
        k.lower(): os.environ[prefix + k]
        for k in EXTRA.get(platform, ())
        if os.environ.get(prefix + k)
    }
    rc = remote_config(
        platform=platform,
        url=os.environ[prefix + "URL"],
        token=os.environ[prefix + "TOKEN"],
        **options,
    )
    cfg = Config(state=StateConfig(dir=tmp_path / "state"), remotes={"live": rc})
    rows = run(cfg, write=True)
    print(as_table(rows))
    assert passed(rows), as_table(rows)
