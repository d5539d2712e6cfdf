"""The pipeline's archive hooks: Deepen gets its format, other platforms the plain archive."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from syncd.errors import LocalDataError
from syncd.formats import deepen
from syncd.pipeline import archive
from syncd.pipeline import platform_archive as archives
from syncd.remotes.base import Capabilities
from syncd.sampledata import write_fusion_unit
from tests.formats.test_deepen_format import rows


def ctx(platform: str, dataset_type: str = "LIDAR_FUSION", fmt: str = "json") -> Any:
    caps = Capabilities(input_format="deepen" if platform == "deepen" else None)
    remote = SimpleNamespace(
        platform=platform, capabilities=caps, cfg=SimpleNamespace(dataset_format=fmt)
    )
    return SimpleNamespace(remote=remote, cfg=SimpleNamespace(dataset_type=dataset_type))


def test_format_by_platform_and_sync() -> None:
    assert archives.platform_format(ctx("xtreme1")) is None
    assert archives.platform_format(ctx("deepen")) == "json"
    assert archives.platform_format(ctx("deepen", fmt="default")) == "default"
    assert archives.platform_format(ctx("deepen", dataset_type="IMAGE")) == "images"


def test_sizes_and_tails_match_the_converter(tmp_path: Path) -> None:
    write_fusion_unit(tmp_path / "u", frames=2, cameras=1, points=200, with_result=True)
    files = rows(tmp_path, "u")
    plain = archives.archive_size(ctx("xtreme1"), tmp_path, files, {})
    assert plain == archive.archive_size(tmp_path, files, {})
    events: list[tuple[str, dict[str, Any]]] = []
    size = archives.archive_size(
        ctx("deepen"), tmp_path, files, {}, record=lambda name, **kw: events.append((name, kw))
    )
    whole = b"".join(deepen.open_zip(deepen.convert(tmp_path, files, "json")))
    assert size == len(whole) != plain
    assert [name for name, _ in events] == ["package.converted", "package.prelabels_skipped"]
    assert events[0][1]["frames"] == {"000001.pcd": "000001", "000002.pcd": "000002"}
    assert events[1][1]["count"] == 2
    for offset in (0, 1, 1000, size // 2, size):
        tail = b"".join(archives.archive_at(ctx("deepen"), tmp_path, files, {}, offset, size))
        assert tail == whole[offset:]


def test_an_archive_that_no_longer_has_the_announced_size_is_repacked(tmp_path: Path) -> None:
    write_fusion_unit(tmp_path / "u", frames=1, cameras=0, points=50, with_result=False)
    files = rows(tmp_path, "u")
    size = archives.archive_size(ctx("deepen"), tmp_path, files, {})
    with pytest.raises(LocalDataError, match="packing again"):
        archives.archive_at(ctx("deepen"), tmp_path, files, {}, 0, expected=size + 1)
