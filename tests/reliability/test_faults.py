"""Platform faults, injected into the sandbox at run time: each ends in the right state.

Every case runs the real ``syncd once`` against the shared sandbox with one
fault rule armed (``times`` tries), then checks the exit code, the package's
final state, the events/log lines that tell an operator what happened, and
that nothing was imported twice.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from syncd.sampledata import write_fusion_unit
from tests.conftest import admin_call, api_call, query, run_cli, write_config
from tests.reliability.invariants import assert_exactly_once, assert_mirror_matches, dataset_id

pytestmark = pytest.mark.e2e

_n = itertools.count()
S3_EXPIRED = (
    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
    "<Message>Request has expired</Message><Resource>/xtreme1/x.zip</Resource></Error>"
)


@dataclass
class Fault:
    id: str
    rule: dict[str, Any]
    logs: list[str] = field(default_factory=lambda: ["remote.retry", "remote.recovered"])
    events: list[str] = field(default_factory=list)
    remote_extra: str = ""


RECOVERABLE = [
    Fault("500-presign", {"path": "/api/data/generatePresignedUrl$", "status": 500, "times": 2}),
    Fault(
        "502-html-find",
        {"path": "/api/dataset/findByPage$", "action": "html", "status": 502, "times": 2},
    ),
    Fault("503-put", {"method": "PUT", "path": "^/minio/", "status": 503, "times": 2}),
    Fault("504-record", {"path": "findUploadRecordBySerialNumbers", "status": 504, "times": 2}),
    Fault(
        "429-retry-after",
        {
            "path": "generatePresignedUrl",
            "status": 429,
            "headers": {"Retry-After": "1"},
            "times": 2,
        },
    ),
    Fault("429-bare", {"path": "generatePresignedUrl", "status": 429, "times": 2}),
    Fault(
        "reset-mid-put",
        {"method": "PUT", "path": "^/minio/", "action": "reset", "after_bytes": 65536, "times": 2},
    ),
    Fault(
        "slower-than-timeout",
        {"path": "findUploadRecordBySerialNumbers", "action": "delay", "delay": 2.5, "times": 1},
        remote_extra="timeout = 1",
    ),
    Fault(
        "truncated-json",
        {"path": "findUploadRecordBySerialNumbers", "action": "truncated_json", "times": 2},
    ),
    Fault(
        "html-200",
        {"path": "/api/datasetClass/findAll", "action": "html", "status": 200, "times": 2},
    ),
    Fault(
        "expired-url",
        {
            "method": "PUT",
            "path": "^/minio/",
            "status": 403,
            "body": S3_EXPIRED,
            "headers": {"Content-Type": "application/xml"},
            "times": 1,
        },
        logs=["remote.retry"],
    ),
    # The submit is not idempotent: after a 502 the daemon must not blindly
    # send it again; it asks the platform, then resubmits after submit_uncertain_wait.
    Fault(
        "502-on-submit",
        {
            "method": "POST",
            "path": "/api/data/upload$",
            "action": "html",
            "status": 502,
            "times": 1,
        },
        logs=["remote.retry"],
        events=["package.retry"],
    ),
]


def setup(tmp_path: Path, url: str, remote_extra: str = "") -> tuple[Path, Path, str]:
    folder = tmp_path / "in"
    write_fusion_unit(folder / "unit", frames=2, cameras=1, seed=3)
    dataset = f"fault-{next(_n)}-{tmp_path.name}"[:60]
    cfg = write_config(
        tmp_path / "syncd.toml",
        url,
        [
            {
                "name": "f",
                "dataset": dataset,
                "folder": folder,
                "processing_timeout": 3,
                "submit_uncertain_wait": 3,
            }
        ],
        remote_extra=remote_extra,
    )
    return cfg, folder, dataset


def log_events(output: str) -> list[dict[str, Any]]:
    out = []
    for line in output.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


@pytest.fixture(autouse=True)
def _clear_faults(sandbox_url: str) -> Any:
    yield
    admin_call(sandbox_url, "DELETE", "/faults")


@pytest.mark.parametrize("fault", RECOVERABLE, ids=lambda f: f.id)
def test_recoverable_fault(fault: Fault, tmp_path: Path, sandbox_url: str) -> None:
    cfg, folder, dataset = setup(tmp_path, sandbox_url, fault.remote_extra)
    presigns = admin_call(sandbox_url, "GET", "/counters")["requests"].get(
        "GET /api/data/generatePresignedUrl", 0
    )
    admin_call(sandbox_url, "POST", "/faults", json={"method": "*", **fault.rule})
    result = run_cli("once", "--config", str(cfg), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    db = tmp_path / "state" / "syncd.db"
    assert query(db, "SELECT state FROM packages") == [("done",)]
    assert_exactly_once(db, folder, sandbox_url, dataset, expected_items=2)
    logged = log_events(result.stderr + result.stdout)
    names = [e["event"] for e in logged]
    for name in fault.logs:
        assert name in names, f"no {name} in the log"
    retry = next(e for e in logged if e["event"] == "remote.retry")
    assert retry["error"] and "Traceback" not in retry["error"]
    events = [e for (e,) in query(db, "SELECT event FROM events")]
    for name in fault.events:
        assert name in events
    if fault.id == "expired-url":  # a fresh URL was asked for
        after = admin_call(sandbox_url, "GET", "/counters")["requests"][
            "GET /api/data/generatePresignedUrl"
        ]
        assert after - presigns == 2


def test_business_error_with_http_200_fails_the_package_with_the_code(
    tmp_path: Path, sandbox_url: str
) -> None:
    cfg, _, _ = setup(tmp_path, sandbox_url)
    body = json.dumps({"code": "DATASET_NOT_FOUND", "message": "Dataset not found", "data": None})
    admin_call(
        sandbox_url,
        "POST",
        "/faults",
        json={"path": "generatePresignedUrl", "status": 200, "body": body, "times": None},
    )
    result = run_cli("once", "--config", str(cfg), timeout=120)
    assert result.returncode == 1
    db = tmp_path / "state" / "syncd.db"
    [(state, error)] = query(db, "SELECT state, last_error FROM packages")
    assert state == "failed" and "DATASET_NOT_FOUND" in error
    assert query(db, "SELECT COUNT(*) FROM events WHERE event = 'package.failed'") == [(1,)]


def test_pull_fault_never_moves_the_cursor_past_uncommitted_data(
    tmp_path: Path, sandbox_url: str
) -> None:
    cfg, folder, dataset = setup(tmp_path, sandbox_url)
    assert run_cli("once", "--config", str(cfg)).returncode == 0
    ds = dataset_id(sandbox_url, dataset)
    db = tmp_path / "state" / "syncd.db"
    cursor_before = query(db, "SELECT value FROM cursors WHERE name = 'items'")
    # new items arrive on the platform; their results cannot be read for now
    write_fusion_unit(folder / "unit2", frames=2, cameras=1, seed=4)
    admin_call(
        sandbox_url,
        "POST",
        "/faults",
        json={"path": "getDataAndResult", "action": "truncated_json", "times": None},
    )
    failed = run_cli("once", "--config", str(cfg), timeout=120)
    assert failed.returncode == 1
    assert "pull" in failed.stderr + failed.stdout
    assert query(db, "SELECT value FROM cursors WHERE name = 'items'") == cursor_before
    mirrored = {r for (r,) in query(db, "SELECT remote_id FROM items")}
    ids = {
        str(i["id"])
        for i in api_call(sandbox_url, "/data/findByPage", datasetId=ds, pageNo=1, pageSize=100)[
            "list"
        ]
    }
    assert mirrored < ids  # the new items are not in the mirror: their page never committed
    admin_call(sandbox_url, "DELETE", "/faults")
    assert run_cli("once", "--config", str(cfg)).returncode == 0
    assert_mirror_matches(db, sandbox_url, dataset)
    # Xtreme1's cursor is "<highest top-level id>:<listing total>"
    after = query(db, "SELECT value FROM cursors WHERE name = 'items'")[0][0]
    assert int(after.split(":")[0]) > int(cursor_before[0][0].split(":")[0])
