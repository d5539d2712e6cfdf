"""The real stages against the Deepen sandbox on a thread: resumable uploads end `done`, bytes exact."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import col, select

from syncd.sampledata import write_fusion_unit
from syncd.store import Package, PackageFile, Store
from tests.conftest import TOKEN, query
from tests.deepen_support import DeepenEnv, converted_md5


@pytest.fixture(scope="module")
def deepen_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from syncd_sandbox import run_in_thread

    with run_in_thread("deepen", token=TOKEN, data_dir=tmp_path_factory.mktemp("deepen")) as url:
        yield url


@pytest.fixture
def env(tmp_path: Path, deepen_url: str) -> Iterator[DeepenEnv]:
    e = DeepenEnv(tmp_path, deepen_url)
    yield e
    e.admin("DELETE", "/faults")
    e.admin("POST", "/config", json={"keep_fraction": None, "keep_times": None, "clock_offset": 0})


def local_md5(env: DeepenEnv, package_id: int) -> str:
    store = Store(env.tmp / "state")
    try:
        with store.read() as s:
            files = list(
                s.exec(
                    select(PackageFile)
                    .where(PackageFile.package_id == package_id)
                    .order_by(col(PackageFile.id))
                ).all()
            )
    finally:
        store.close()
    return converted_md5(env.folder, files)


def finished(env: DeepenEnv) -> list[tuple[int, str, str | None, str | None]]:
    return [
        (int(r[0]), str(r[1]), r[2], r[3])
        for r in query(env.db, "SELECT id, state, last_error, serial FROM packages ORDER BY id")
    ]


def test_chunked_upload_processes_and_is_byte_identical(env: DeepenEnv) -> None:
    write_fusion_unit(env.folder / "drive_a", frames=4, points=30000)
    assert env.once() == 0
    rows = finished(env)
    assert [(r[1], r[2]) for r in rows] == [("done", None)]
    datasets = env.datasets()
    assert list(datasets) == [rows[0][3]]
    (info,) = datasets.values()
    assert info["complete"] and info["processing_status"] == "files_getting_labelled"
    assert info["chunks"] > 3  # 256 KiB chunks
    assert env.object_md5(rows[0][3] or "") == local_md5(env, rows[0][0])
    counters = env.admin("GET", "/counters")
    assert counters["auth_headers_on_uploads"] == 0
    assert counters["unaligned_chunks"] == 0
    events = [e for (e,) in query(env.db, "SELECT event FROM events WHERE package_id = 1")]
    assert events.index("package.upload_session") < events.index("package.uploaded")


def test_partial_chunk_keep_still_ends_done_with_exact_bytes(env: DeepenEnv) -> None:
    write_fusion_unit(env.folder / "drive_b", frames=3, points=30000)
    env.admin("POST", "/config", json={"keep_fraction": 0.5, "keep_times": 6})
    assert env.once() == 0
    ((pid, state, err, serial),) = finished(env)
    assert (state, err) == ("done", None)
    info = env.datasets()[serial or ""]
    kept_less = [r for r in info["ranges"] if r[1] - r[0] < 256 * 1024]
    assert kept_less, info["ranges"]
    assert env.object_md5(serial or "") == local_md5(env, pid)


def test_injected_503s_end_done_with_exact_bytes(env: DeepenEnv) -> None:
    write_fusion_unit(env.folder / "drive_c", frames=3, points=30000)
    env.admin(
        "POST",
        "/faults",
        json={"method": "PUT", "path": "^/upload/", "action": "status", "status": 503, "times": 5},
    )
    env.admin(
        "POST",
        "/faults",
        json={
            "method": "GET",
            "path": "^/api/v2/datasets/",
            "action": "status",
            "status": 503,
            "times": 2,
        },
    )
    assert env.once() == 0
    ((pid, state, err, serial),) = finished(env)
    assert (state, err) == ("done", None)
    assert env.object_md5(serial or "") == local_md5(env, pid)


def test_expired_session_starts_a_fresh_dataset_and_records_the_old(env: DeepenEnv) -> None:
    write_fusion_unit(env.folder / "drive_d", frames=3, points=30000)
    # Every chunk after the first fails: the package waits in `uploading` with its session.
    env.admin(
        "POST",
        "/faults",
        json={
            "method": "PUT",
            "path": "^/upload/",
            "action": "status",
            "status": 503,
            "times": None,
        },
    )
    assert env.once(timeout=4) == 1
    ((pid, state, _, _),) = finished(env)
    assert state == "uploading"
    (old,) = env.datasets()
    env.admin("DELETE", "/faults")
    env.admin("POST", "/config", json={"clock_offset": 8 * 86400})
    store = Store(env.tmp / "state")
    try:
        with store.tx() as tx:
            pkg = tx.session.get(Package, pid)
            assert pkg is not None
            pkg.next_attempt_at = 0
            tx.session.add(pkg)
    finally:
        store.close()
    assert env.once() == 0
    ((_, state, err, serial),) = finished(env)
    assert (state, err) == ("done", None)
    assert serial != old and set(env.datasets()) == {old, serial}
    ref = json.loads(query(env.db, "SELECT upload_ref FROM packages")[0][0])
    (dead,) = ref["abandoned"]
    assert dead["deepen_dataset_id"] == old and "expired (HTTP 410)" in dead["reason"]
    assert query(
        env.db, "SELECT COUNT(*) FROM events WHERE event = 'package.upload_session_expired'"
    ) == [(1,)]
    assert env.object_md5(serial or "") == local_md5(env, pid)
