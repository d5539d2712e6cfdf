"""Typed upload progress reads every shape the previous version wrote to ``packages.upload_ref``.

The JSON below is built exactly as that version's code built it (pack, the
archive upload, the resumable session steps, the per-file push), so a
database it left mid-upload keeps working after an upgrade, and back.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from syncd.store import ArchiveProgress, FilesProgress, Progress, ResumableProgress

CLASSES = {"classes": {"Car": "101", "Pedestrian": "102"}}
XTREME1_REF = {"accessUrl": "http://minio/b/p1.zip?X-Amz-Signature=s", "fileName": "p1-u.zip"}
SESSION = {"deepen_dataset_id": "ds9", "file_name": "p1-u.zip", "upload_url": "http://gcs/s?id=1"}
DEAD = {"attempt": 1, "reason": "a session was being opened when syncd stopped; none was found"}


def old(shape: dict[str, Any]) -> str:
    return json.dumps(shape)


# pack: json.dumps({"classes": class_ids})
PACKED = old(CLASSES)
# archive upload: json.dumps({**ref, **upload.ref})
ARCHIVE_UPLOADED = old({**CLASSES, **XTREME1_REF})
# resumable: "opening" committed before the session is asked for …
RESUMABLE_OPENING = old({**CLASSES, "abandoned": [{**DEAD, "at": "t"}], "opening": 2})
# … the session right after (the attempt popped) …
RESUMABLE_SESSION = old({**CLASSES, "abandoned": [{**DEAD, "at": "t"}], "session": SESSION})
# … then uploaded: {**ref_at_start, **{**ref, **done.ref}} (a stale "opening" included)
RESUMABLE_UPLOADED = old(
    {
        **CLASSES,
        "opening": 1,
        "session": SESSION,
        **SESSION,
        "upload_resumed_from": 0,
        "upload_bytes_sent": 2048,
    }
)
# per-file push: _record merged "files", "registering", "registered"
FILES = old(
    {
        "classes": {},
        "files": {"lidar/0001.pcd": {"key": "obj/1", "size": 10}},
        "registering": ["0002"],
        "registered": {"0001": "5501"},
    }
)


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        (Progress, PACKED),
        (ArchiveProgress, PACKED),
        (ArchiveProgress, ARCHIVE_UPLOADED),
        (ResumableProgress, PACKED),
        (ResumableProgress, RESUMABLE_OPENING),
        (ResumableProgress, RESUMABLE_SESSION),
        (ResumableProgress, RESUMABLE_UPLOADED),
        (FilesProgress, PACKED),
        (FilesProgress, FILES),
    ],
)
def test_every_old_shape_reads_and_writes_back_unchanged(kind: type[Progress], text: str) -> None:
    record = kind.parse(text)
    assert record.classes == json.loads(text)["classes"]
    # What the remote gets back at submit, and what is written again: the same object.
    assert record.flat() == json.loads(text)
    assert kind.parse(record.dump()) == record


def test_archive_record_keeps_the_remotes_ref() -> None:
    record = ArchiveProgress.parse(ARCHIVE_UPLOADED)
    assert record.classes == {"Car": "101", "Pedestrian": "102"}
    assert record.remote == XTREME1_REF


def test_resumable_record_fields() -> None:
    opening = ResumableProgress.parse(RESUMABLE_OPENING)
    assert (opening.opening, opening.session) == (2, None)
    assert [a["attempt"] for a in opening.abandoned] == [1]
    with_session = ResumableProgress.parse(RESUMABLE_SESSION)
    assert with_session.session == SESSION and with_session.opening is None
    uploaded = ResumableProgress.parse(RESUMABLE_UPLOADED)
    assert uploaded.remote["upload_bytes_sent"] == 2048
    assert uploaded.remote["deepen_dataset_id"] == "ds9"


def test_files_record_fields() -> None:
    record = FilesProgress.parse(FILES)
    assert record.files == {"lidar/0001.pcd": {"key": "obj/1", "size": 10}}
    assert record.registering == ["0002"]
    assert record.registered == {"0001": "5501"}
    assert record.remote == {}


@pytest.mark.parametrize("text", [None, "", "null", "[]"])
def test_nothing_recorded_reads_as_an_empty_record(text: str | None) -> None:
    for kind in (ArchiveProgress, ResumableProgress, FilesProgress):
        record = kind.parse(text)
        assert record == kind()
        assert json.loads(record.dump()) == {"classes": {}}


def test_values_of_the_wrong_type_read_as_not_recorded() -> None:
    text = old({"classes": ["x"], "session": "gone", "abandoned": {}, "opening": "1"})
    record = ResumableProgress.parse(text)
    assert (record.classes, record.session, record.abandoned, record.opening) == (
        {},
        None,
        [],
        None,
    )
