"""``Store.package_step``: the fresh row in one transaction, intent-named operations, events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from syncd.store import FilesProgress, Package, PackageFile, PackageMoved, Store, utcnow
from tests.conftest import query


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path, host="rig-a")
    yield s
    s.close()


def new_pkg(store: Store, state: str) -> int:
    with store.tx() as tx:
        now = utcnow()
        p = Package(
            sync="s", unit="u", state=state, created_at=now, updated_at=now, state_changed_at=now
        )
        tx.session.add(p)
        tx.session.flush()
        assert p.id is not None
        tx.session.add(
            PackageFile(
                package_id=p.id,
                sync="s",
                unit="u",
                rel_path="a.pcd",
                arcname="u/a.pcd",
                item_key="a",
                size=1,
                mtime_ns=1,
            )
        )
        return p.id


def events(store: Store) -> list[tuple[str, str | None, str | None, dict[str, object]]]:
    rows = query(store.path, "SELECT event, from_state, to_state, fields FROM events ORDER BY id")
    return [(e, a, b, json.loads(f)) for e, a, b, f in rows]


def row(store: Store, pid: int) -> Package:
    with store.read() as s:
        p = s.get(Package, pid)
        assert p is not None
        return p


def test_a_package_in_another_state_is_not_touched(store: Store) -> None:
    pid = new_pkg(store, "uploaded")
    with (
        pytest.raises(PackageMoved, match="is uploaded, not packed"),
        store.package_step(pid, expect=("packed",)) as step,
    ):
        step.advance("uploading")
    with pytest.raises(PackageMoved, match="does not exist"), store.package_step(pid + 1):
        pass
    assert row(store, pid).state == "uploaded" and events(store) == []
    # Final packages are never expected by default: a late failure is skipped.
    done = new_pkg(store, "done")
    with suppress(PackageMoved), store.package_step(done) as step:
        step.fail("late")
    assert row(store, done).state == "done"


def test_succeed_clears_the_attempts_and_commits_with_its_event(store: Store) -> None:
    pid = new_pkg(store, "uploaded")
    with store.package_step(pid) as step:
        step.retry("platform down", 5.0)
    p = row(store, pid)
    assert (p.attempts, p.last_error, p.state) == (1, "platform down", "uploaded")
    assert p.next_attempt_at > 0
    with store.package_step(pid, expect=("uploaded",)) as step:
        step.pkg.serial = "42"
        step.succeed("submitted", serial="42")
    p = row(store, pid)
    assert (p.attempts, p.last_error, p.state, p.serial) == (0, None, "submitted", "42")
    assert events(store) == [
        (
            "package.retry",
            "uploaded",
            "uploaded",
            {"attempt": 1, "reason": "platform down", "retry_in": 5.0},
        ),
        ("package.submitted", "uploaded", "submitted", {"serial": "42"}),
    ]


def test_retry_asks_the_backoff_with_the_attempt_number(store: Store) -> None:
    pid = new_pkg(store, "packed")
    with store.package_step(pid) as step:
        assert step.retry("x", lambda attempt: attempt * 10.0) == 10.0
    with store.package_step(pid) as step:
        assert step.retry("x", lambda attempt: attempt * 10.0) == 20.0


def test_an_error_in_the_body_writes_nothing(store: Store) -> None:
    pid = new_pkg(store, "packed")
    with pytest.raises(RuntimeError), store.package_step(pid) as step:
        step.advance("uploading")
        raise RuntimeError("crash")
    assert row(store, pid).state == "packed" and events(store) == []


def test_repack_forgets_the_file_list_and_the_progress(store: Store) -> None:
    pid = new_pkg(store, "uploading")
    with store.package_step(pid) as step:
        step.record(FilesProgress(files={"a.pcd": {"key": "k"}}))
    assert FilesProgress.parse(row(store, pid).upload_ref).files == {"a.pcd": {"key": "k"}}
    with store.package_step(pid, expect=("uploading",)) as step:
        step.repack("a.pcd changed")
    p = row(store, pid)
    assert (p.state, p.upload_ref, p.last_error) == ("detected", None, "a.pcd changed")
    assert query(store.path, "SELECT COUNT(*) FROM package_files") == [(0,)]
    assert events(store)[-1] == (
        "package.detected",
        "uploading",
        "detected",
        {"reason": "a.pcd changed"},
    )


def test_fail_keeps_the_file_versions_it_failed_with(store: Store) -> None:
    pid = new_pkg(store, "packing")
    with store.package_step(pid) as step:
        step.keep_files([("b.pcd", 7, 99)])
        step.fail("refused", names=["b"])
    p = row(store, pid)
    assert (p.state, p.last_error, p.file_count, p.total_bytes) == ("failed", "refused", 1, 7)
    assert ("b.pcd", 7, 99) in query(
        store.path, "SELECT rel_path, size, mtime_ns FROM package_files"
    )
    assert events(store)[-1] == (
        "package.failed",
        "packing",
        "failed",
        {"reason": "refused", "names": ["b"]},
    )


def test_note_and_event_name_the_package(store: Store) -> None:
    pid = new_pkg(store, "processing")
    with store.package_step(pid) as step:
        step.note("package.checkpointed", level="info", reason="drain")
        step.event("package.platform_errors", level="warning", platform_errors="bad")
        step.wait(3.0)
    assert events(store) == [
        ("package.checkpointed", "processing", "processing", {"reason": "drain"}),
        ("package.platform_errors", None, None, {"platform_errors": "bad"}),
    ]
    assert row(store, pid).attempts == 0
