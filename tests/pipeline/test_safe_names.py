"""Names that are not safe everywhere: skipped with the reason, never sent or archived."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from syncd.pipeline import scan
from syncd.pipeline.scan import list_units, scan_unit, unsafe_name
from syncd.remotes.objectstore import form_quote


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    u = tmp_path / "watch" / "u" / "lidar_point_cloud_0"
    u.mkdir(parents=True)
    for name in ("000001.pcd", "x\\..\\..\\tmp\\x.pcd", "c:d.pcd", "e\nf.pcd", "bell\x07.pcd"):
        (u / name).write_bytes(b"1")
    (u.parent / "scene_a:b").mkdir()
    (u.parent / "scene_a:b" / "000002.pcd").write_bytes(b"2")
    return tmp_path / "watch"


def test_unsafe_file_and_folder_names_are_skipped_with_the_reason(
    unit: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = scan_unit(unit, "u", (), None)
    assert snap is not None
    assert [f.rel_path for f in snap.files] == ["lidar_point_cloud_0/000001.pcd"]
    assert dict(snap.skipped) == {
        "lidar_point_cloud_0/x\\..\\..\\tmp\\x.pcd": "the name holds a backslash (a folder "
        "separator on Windows)",
        "lidar_point_cloud_0/c:d.pcd": "the name holds ':' (a drive or stream separator on "
        "Windows)",
        "lidar_point_cloud_0/e\nf.pcd": "the name holds a control character ('\\n')",
        "lidar_point_cloud_0/bell\x07.pcd": "the name holds a control character ('\\x07')",
        "scene_a:b": "the name holds ':' (a drive or stream separator on Windows)",
    }
    # the fast path of plain folders agrees with the general loop
    monkeypatch.setattr(scan, "_scan_plain_dir", lambda *a: False)
    assert scan_unit(unit, "u", (), None) == snap


@pytest.mark.parametrize("name", ["scene_1:2", "a\\b", "new\nline"])
def test_a_unit_with_an_unsafe_name_is_skipped_and_named_once(tmp_path: Path, name: str) -> None:
    (tmp_path / name).mkdir()
    (tmp_path / name / "a.pcd").write_bytes(b"1")
    (tmp_path / "fine").mkdir()
    with capture_logs() as logs:
        assert list_units(tmp_path, ()) == ["fine"]
        assert list_units(tmp_path, ()) == ["fine"]
        assert scan_unit(tmp_path, name, (), None) is None
    skipped = [e for e in logs if e["event"] == "unit.skipped"]
    assert len(skipped) == 1 and skipped[0]["unit"] == name
    assert skipped[0]["reason"] == unsafe_name(name)


def test_multipart_filenames_are_escaped() -> None:
    assert form_quote('a"b\r\nContent-Type: text/html\r\n\r\nx.png') == (
        "a%22b%0D%0AContent-Type: text/html%0D%0A%0D%0Ax.png"
    )
    assert form_quote("plain-name_01.pcd") == "plain-name_01.pcd"
