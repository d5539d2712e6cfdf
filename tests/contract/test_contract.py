"""What every remote promises, checked against its sandbox over real HTTP.

Sections (the same order as every backend module): check and auth, datasets,
push of a unit, processing and restarts, paging and cursor, labels.
"""

from __future__ import annotations

import json
import os

import pytest

from syncd.daemon import Daemon
from syncd.errors import AuthError
from syncd.pipeline import pull
from syncd.sampledata import write_fusion_unit, write_scene_unit
from tests.conftest import query, run_cli
from tests.contract.conftest import Harness

BOX = {
    "center3D": {"x": 1, "y": 2, "z": 0},
    "size3D": {"x": 4, "y": 2, "z": 1.5},
    "rotation3D": {"x": 0, "y": 0, "z": 0},
    "pointN": 5,
    "points": [],
}


def _pull(h: Harness, full_sweep: bool | None = None) -> pull.PullStats:
    d = Daemon(h.config())
    try:
        return pull.run_once(d.contexts[0], full_sweep=full_sweep)
    finally:
        d.close()


# --- check and auth -------------------------------------------------------------------


def test_check_accepts_the_token(harness: Harness) -> None:
    r = harness.remote()
    try:
        assert "accepted" in r.check()
    finally:
        r.close()


def test_a_wrong_token_is_an_auth_error(harness: Harness) -> None:
    r = harness.remote(token="wrong")
    try:
        with pytest.raises(AuthError) as info:
            r.check()
    finally:
        r.close()
    assert "wrong" not in str(info.value) and "401" in str(info.value)


# --- datasets -------------------------------------------------------------------------------


def test_ensure_dataset_is_idempotent(harness: Harness) -> None:
    r = harness.remote()
    try:
        first, created = r.ensure_dataset(harness.dataset, harness.backend.dataset_type)
        again, created_again = r.ensure_dataset(harness.dataset, harness.backend.dataset_type)
        assert first.id == again.id and not created_again
        found = r.find_dataset(harness.dataset)
        assert found is not None and found.id == first.id
        if harness.backend.dataset_is_group:
            # a name prefix: nothing is created on the platform, so nothing can be doubled
            assert not created and first.id == harness.dataset
            assert harness.stored_names() == []
            return
        assert created
        assert r.find_dataset(harness.dataset + "-absent") is None
    finally:
        r.close()


# --- push of a unit --------------------------------------------------------------------------


def test_push_a_unit_once_with_its_prelabels(harness: Harness) -> None:
    frames = write_fusion_unit(harness.folder / "drive", frames=3, cameras=2, with_result=True)
    scene = write_scene_unit(harness.folder / "seq", scene="scene_01", frames=2)
    assert harness.once() == 0
    assert query(harness.db, "SELECT unit, state FROM packages ORDER BY unit") == [
        ("drive", "done"),
        ("seq", "done"),
    ]
    stored = harness.unit_items("drive", frames) + harness.unit_items("seq", ["scene_01"])
    assert sorted(harness.stored_names()) == sorted(stored)
    names = {n for (n,) in query(harness.db, "SELECT name FROM items")}
    mirrored = harness.unit_items("drive", frames) + harness.unit_items("seq", [*scene, "scene_01"])
    assert set(mirrored) <= names
    if harness.backend.imports_prelabels:
        # pre-labels arrive as objects with class names
        for name in frames:
            doc = json.loads((harness.folder / "drive" / "result" / f"{name}.json").read_text())
            got = query(
                harness.db,
                "SELECT o.class_name FROM objects o JOIN items i ON i.id = o.item_id "
                "WHERE i.name = ?",
                name,
            )
            assert sorted(c for (c,) in got) == sorted(o["className"] for o in doc["objects"])
    else:
        # the platform's import ignores result files: they ride in the archive, every one
        got = query(harness.db, "SELECT rel_path FROM package_files WHERE rel_path LIKE 'result/%'")
        assert sorted(p for (p,) in got) == [f"result/{n}.json" for n in frames]
    # a second cycle pushes nothing
    assert harness.once() == 0
    assert sorted(harness.stored_names()) == sorted(stored)


# --- processing and restarts -------------------------------------------------------------------


def test_kill_right_after_the_platform_acted_pushes_nothing_twice(harness: Harness) -> None:
    frames = write_fusion_unit(harness.folder / "u", frames=2, cameras=1, with_result=False)
    cfg = harness.config_path()
    env = {"SYNCD_CRASH_AT": harness.backend.crash_point}
    r = run_cli("once", "--config", str(cfg), env=env)
    assert r.returncode == -9, r.stderr[-2000:]
    r = run_cli(
        "once",
        "--config",
        str(cfg),
        env={k: v for k, v in os.environ.items() if k != "SYNCD_CRASH_AT"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert query(harness.db, "SELECT state FROM packages") == [("done",)]
    assert sorted(harness.stored_names()) == sorted(harness.unit_items("u", frames))


# --- paging and cursor -------------------------------------------------------------------------


def test_cursor_moves_with_its_page_and_only_forward(harness: Harness) -> None:
    a = write_fusion_unit(harness.folder / "a", frames=3, cameras=0, with_result=False)
    assert harness.once() == 0
    (first,) = query(harness.db, "SELECT value FROM cursors WHERE name = 'items'")[0]
    assert _pull(harness).new_items == 0
    assert query(harness.db, "SELECT value FROM cursors WHERE name = 'items'") == [(first,)]
    b = write_fusion_unit(harness.folder / "b", frames=2, cameras=0, with_result=False, seed=3)
    assert harness.once() == 0
    (second,) = query(harness.db, "SELECT value FROM cursors WHERE name = 'items'")[0]
    assert harness.backend.cursor_advanced(first, second)
    counts = query(
        harness.db, "SELECT name, COUNT(*) FROM items GROUP BY remote_id HAVING COUNT(*) > 1"
    )
    assert counts == []
    expected = len(harness.unit_items("a", a)) + len(harness.unit_items("b", b))
    assert query(harness.db, "SELECT COUNT(*) FROM items")[0][0] == expected == 5
    # every page's commit is an event carrying its cursor
    cursors = [
        json.loads(f)["cursor"]
        for (f,) in query(
            harness.db, "SELECT fields FROM events WHERE event = 'pull.page_committed'"
        )
    ]
    assert second in cursors


# --- labels ---------------------------------------------------------------------------------------


def test_late_labels_arrive_and_replace_the_old(harness: Harness) -> None:
    frames = write_fusion_unit(harness.folder / "u", frames=2, cameras=0, with_result=True)
    assert harness.once() == 0
    first = harness.unit_items("u", frames)[0]
    rid = query(harness.db, "SELECT remote_id FROM items WHERE name = ?", first)[0][0]
    harness.annotate(
        rid, [{"type": "3D_BOX", "className": "Truck", "trackId": "t1", "contour": BOX}]
    )
    stats = _pull(harness)
    assert stats.labels_changed >= 1
    rows = query(
        harness.db,
        "SELECT o.class_name, o.shape_type, o.track_id, o.remote_object_id FROM objects o "
        "JOIN items i ON i.id = o.item_id WHERE i.remote_id = ?",
        rid,
    )
    assert [r[:2] for r in rows] == [("Truck", "3D_BOX")]
    # the annotator's track, or (where the platform names objects itself) the object's own id
    track = "t1" if harness.backend.user_track_ids else rows[0][3]
    assert rows[0][2] == track and track
    assert query(harness.db, "SELECT annotation_status FROM items WHERE remote_id = ?", rid) == [
        ("ANNOTATED",)
    ]
    # nothing changed: nothing written
    assert _pull(harness).labels_changed == 0


def test_each_source_is_its_own_labels_row(harness: Harness) -> None:
    if not harness.backend.sources:
        pytest.skip(f"{harness.platform} results have one source")
    frames = write_fusion_unit(harness.folder / "u", frames=1, cameras=0, with_result=False)
    assert harness.once() == 0
    first = harness.unit_items("u", frames)[0]
    rid = query(harness.db, "SELECT remote_id FROM items WHERE name = ?", first)[0][0]
    harness.annotate(rid, [{"type": "3D_BOX", "className": "Car", "contour": BOX}], "model-v2")
    harness.annotate(rid, [{"type": "3D_BOX", "className": "Van", "contour": BOX}])
    _pull(harness)
    rows = query(
        harness.db,
        "SELECT l.source, l.object_count FROM labels l JOIN items i ON i.id = l.item_id "
        "WHERE i.remote_id = ? AND l.deleted_at IS NULL",
        rid,
    )
    got = sorted((harness.backend.source_of(source), n) for source, n in rows)
    assert got == sorted([(harness.backend.main_source, 1), ("model-v2", 1)])


def test_full_sweep_finds_edits_to_finished_items_and_deletions(harness: Harness) -> None:
    write_fusion_unit(harness.folder / "u", frames=2, cameras=0, with_result=False)
    assert harness.once() == 0
    first = sorted(r for (r,) in query(harness.db, "SELECT remote_id FROM items"))
    done = first[0]
    # the item to delete is alone in its unit: some platforms (Deepen) delete only whole units
    write_fusion_unit(harness.folder / "v", frames=1, cameras=0, with_result=False, seed=3)
    assert harness.once() == 0
    ((gone, gone_name),) = query(
        harness.db, "SELECT remote_id, name FROM items WHERE remote_id NOT IN (?, ?)", *first
    )
    harness.annotate(done, [{"type": "3D_BOX", "className": "Car", "contour": BOX}])
    _pull(harness)
    # a finished item is edited and another deleted: only the sweep can see both
    harness.annotate(done, [{"type": "3D_BOX", "className": "Bus", "contour": BOX}])
    harness.remove(gone)
    stats = _pull(harness, full_sweep=True)
    assert stats.swept and stats.deleted == 1
    assert query(harness.db, "SELECT remote_id, name FROM items WHERE deleted_at IS NOT NULL") == [
        (gone, gone_name)
    ]
    got = query(
        harness.db,
        "SELECT o.class_name FROM objects o JOIN items i ON i.id = o.item_id WHERE i.remote_id = ?",
        done,
    )
    assert got == [("Bus",)]


def test_files_of_no_data_item_are_never_dropped_silently(harness: Harness) -> None:
    write_fusion_unit(harness.folder / "u", frames=1, cameras=0, with_result=False)
    (harness.folder / "u" / "NOTES.txt").write_text("recorded on a rainy day\n")
    assert harness.once() == 0
    if harness.backend.archive_keeps_every_file:
        # the archive carries every file
        assert query(
            harness.db, "SELECT COUNT(*) FROM package_files WHERE rel_path = 'NOTES.txt'"
        ) == [(1,)]
    else:
        (fields,) = query(
            harness.db, "SELECT fields FROM events WHERE event = 'package.files_skipped'"
        )[0]
        assert json.loads(fields)["files"] == ["NOTES.txt"]
