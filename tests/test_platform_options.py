"""Per-platform options models: a key of another platform is an error naming key and owner;
every platform in the registry has a model, a backend and a sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import syncd_sandbox
from syncd.cli import cli
from syncd.config import (
    PLATFORM_CONFIGS,
    DeepenConfig,
    SegmentsConfig,
    Xtreme1Config,
    load_config,
    remote_config,
)
from syncd.errors import ConfigError
from syncd.remotes import build_remote
from syncd.remotes.base import Capabilities
from syncd.remotes.registry import PLATFORMS, platform_names

BASE = """
[state]
dir = "state"
[remotes.lab]
platform = "{platform}"
url = "http://127.0.0.1:8190"
token = "t"
{extra}
[[syncs]]
name = "front-lidar"
remote = "lab"
dataset = "d"
folder = "in"
"""


def error_of(tmp_path: Path, platform: str, extra: str = "") -> str:
    path = tmp_path / "syncd.toml"
    path.write_text(BASE.format(platform=platform, extra=extra))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    return str(e.value)


def load(tmp_path: Path, platform: str, extra: str = "") -> object:
    path = tmp_path / "syncd.toml"
    path.write_text(BASE.format(platform=platform, extra=extra))
    return load_config(path).remotes["lab"]


@pytest.mark.parametrize(
    ("platform", "extra", "expected"),
    [
        (
            "xtreme1",
            'client_id = "c"',
            'remotes.lab.client_id: not a key of platform "xtreme1" (it belongs to deepen)',
        ),
        (
            "deepen",
            'client_id = "c"\nlabelset = "gt"',
            'remotes.lab.labelset: not a key of platform "deepen" (it belongs to segments)',
        ),
        (
            "segments",
            "pull_all_datasets = true",
            'remotes.lab.pull_all_datasets: not a key of platform "segments" '
            "(it belongs to deepen)",
        ),
        (
            "basicai",
            'organization = "acme"',
            'remotes.lab.organization: not a key of platform "basicai" (it belongs to segments)',
        ),
    ],
)
def test_a_key_of_another_platform_names_the_key_and_its_platform(
    tmp_path: Path, platform: str, extra: str, expected: str
) -> None:
    assert error_of(tmp_path, platform, extra) == expected


def test_a_misspelt_key_is_still_unknown(tmp_path: Path) -> None:
    msg = error_of(tmp_path, "segments", 'labelst = "x"')
    assert msg.startswith("remotes.lab.labelst: unknown key")


def test_the_platform_key_is_checked_first(tmp_path: Path) -> None:
    assert error_of(tmp_path, "labelbox").startswith(
        "remotes.lab.platform: not a platform: 'labelbox' (known: xtreme1, basicai"
    )
    path = tmp_path / "syncd.toml"
    path.write_text(BASE.format(platform="xtreme1", extra="").replace('platform = "xtreme1"', ""))
    with pytest.raises(ConfigError, match=r"^remotes\.lab\.platform: required key is missing$"):
        load_config(path)


def test_each_platform_gets_its_own_model(tmp_path: Path) -> None:
    assert isinstance(load(tmp_path, "xtreme1"), Xtreme1Config)
    deepen = load(tmp_path, "deepen", 'client_id = "c"\nupload_chunk_size = "512KiB"')
    assert isinstance(deepen, DeepenConfig) and deepen.upload_chunk_size == 512 * 1024
    seg = load(tmp_path, "segments", 'categories = ["car"]\nlabelset = "gt"')
    assert isinstance(seg, SegmentsConfig) and seg.categories == ("car",)


def test_platform_checks_keep_their_messages(tmp_path: Path) -> None:
    assert error_of(tmp_path, "deepen") == (
        "remotes.lab: client_id is required for deepen (Deepen issues it with the token)"
    )
    msg = error_of(tmp_path, "deepen", 'client_id = "c"\nupload_chunk_size = 1000')
    assert msg.startswith("remotes.lab.upload_chunk_size: must be a positive multiple of 256KiB")
    msg = error_of(tmp_path, "segments", 'categories = ["a", "a"]')
    assert msg.startswith("remotes.lab.categories: the category 'a' is listed twice")


def test_default_rate_limits_come_with_the_platform_model() -> None:
    def windows(platform: str, **extra: object) -> list[tuple[int, float]]:
        return remote_config(platform=platform, url="http://x", token="t", **extra).windows()

    assert windows("xtreme1") == [(20, 1.0)]
    assert windows("basicai") == [(100, 1.0), (3000, 60.0), (72000, 3600.0), (864000, 86400.0)]
    assert windows("basicai", rate_limits=["5/s"]) == [(5, 1.0)]


def test_the_registry_covers_every_model_with_a_backend_and_a_sandbox() -> None:
    assert {p.options for p in PLATFORMS.values()} == set(PLATFORM_CONFIGS)
    assert set(platform_names()) == set(syncd_sandbox.PLATFORMS)
    for name, p in PLATFORMS.items():
        assert p.name == name
        backend = p.backend_class()
        assert backend.platform == name
        assert isinstance(backend.capabilities, Capabilities)


@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_build_remote_builds_the_platforms_backend(platform: str) -> None:
    extra = {"client_id": "c"} if platform == "deepen" else {}
    cfg = remote_config(platform=platform, url="http://127.0.0.1:9", token="t", **extra)
    remote = build_remote("lab", cfg, max_retries=0)
    try:
        assert isinstance(remote, PLATFORMS[platform].backend_class())
        assert remote.name == "lab" and remote.platform == platform
    finally:
        remote.close()


def test_the_sandbox_command_offers_the_registered_platforms() -> None:
    result = CliRunner().invoke(cli, ["sandbox", "--help"])
    assert result.exit_code == 0
    assert "{" + "|".join(platform_names()) + "}" in result.output
    result = CliRunner().invoke(cli, ["sandbox", "labelbox"])
    assert result.exit_code == 2 and "labelbox" in result.output


def test_every_registered_platform_is_in_the_contract_suite_and_the_bench_knows_only_those() -> (
    None
):
    from bench.platforms import PLATFORMS as BENCH
    from tests.contract.conftest import BACKENDS

    assert sorted(b.platform for b in BACKENDS) == sorted(PLATFORMS)
    assert set(BENCH) <= set(PLATFORMS)
