"""Secrets stay secret; the state is private; TLS is verified, with a custom CA when asked.

The scan covers everything syncd prints during a real run (the daemon's log,
``status``, ``status --json``, ``events``, ``check``) and every text column of
the mirror's tables that people query and share (events, items, labels,
objects, datasets, files). The one exception is ``packages.upload_ref``: it
keeps the platform's own access URL of an uploaded archive (a signed read
URL that the submit needs, also after a restart) inside the 0600 database.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import trustme

from syncd.sampledata import write_fusion_unit
from syncd_sandbox import run_in_thread
from tests.conftest import TOKEN, admin_call, run_cli, write_config
from tests.reliability.invariants import assert_no_secrets, database_text

pytestmark = pytest.mark.e2e


def test_no_secret_in_any_output_and_private_state(tmp_path: Path, sandbox_url: str) -> None:
    folder = tmp_path / "in"
    write_fusion_unit(folder / "u", frames=2, cameras=1, seed=11)
    cfg = write_config(
        tmp_path / "syncd.toml",
        sandbox_url,
        [{"name": "s", "dataset": f"sec-{tmp_path.name}"[:60], "folder": folder}],
    )
    # error paths are where URLs leak: make the presigned PUT fail twice on the way
    admin_call(
        sandbox_url,
        "POST",
        "/faults",
        json={"method": "PUT", "path": "^/minio/", "action": "reset", "times": 1},
    )
    admin_call(
        sandbox_url,
        "POST",
        "/faults",
        json={
            "method": "PUT",
            "path": "^/minio/",
            "status": 403,
            "body": "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
            "times": 1,
        },
    )
    runs = {
        "once": run_cli("once", "--config", str(cfg)),
        "status": run_cli("status", "--config", str(cfg)),
        "status --json": run_cli("status", "--json", "--config", str(cfg)),
        "events": run_cli("events", "--config", str(cfg)),
        "check": run_cli("check", "--config", str(cfg)),
    }
    assert runs["once"].returncode == 0, runs["once"].stderr[-2000:]
    texts = {f"{k} output": r.stdout + r.stderr for k, r in runs.items()}
    db = tmp_path / "state" / "syncd.db"
    texts["database"] = database_text(db)
    # the run went through the failing PUTs: their errors were logged
    assert texts["once output"].count('"remote.retry"') >= 2
    assert_no_secrets(texts)
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    for f in (db, db.with_name("syncd.db-wal")):
        if f.exists():
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_wrong_token_error_does_not_echo_it(tmp_path: Path, sandbox_url: str) -> None:
    secret = "wrong-secret-token-0123456789"
    cfg = write_config(
        tmp_path / "syncd.toml",
        sandbox_url,
        [{"name": "s", "dataset": "x", "push": False}],
        token=secret,
    )
    result = run_cli("once", "--config", str(cfg))
    assert result.returncode == 1
    assert "token was refused" in result.stderr
    assert_no_secrets({"output": result.stdout + result.stderr}, token=secret)


@pytest.fixture(scope="module")
def tls_sandbox(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    d = tmp_path_factory.mktemp("tls")
    cert_pem, key_pem, ca_pem = d / "cert.pem", d / "key.pem", d / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    with run_in_thread("xtreme1", token=TOKEN, data_dir=d / "data", tls=(cert_pem, key_pem)) as url:
        yield url, ca_pem


def test_tls_is_verified_by_default(tmp_path: Path, tls_sandbox: tuple[str, Path]) -> None:
    url, _ = tls_sandbox
    assert url.startswith("https://")
    cfg = write_config(
        tmp_path / "syncd.toml", url, [{"name": "s", "dataset": "tls", "push": False}]
    )
    result = run_cli("once", "--config", str(cfg))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("syncd: error")]
    assert len(lines) == 1 and "remotes.sb.ca_bundle" in lines[0] and "not trusted" in lines[0]


def test_custom_ca_bundle_is_trusted_for_api_and_uploads(
    tmp_path: Path, tls_sandbox: tuple[str, Path]
) -> None:
    url, ca_pem = tls_sandbox
    folder = tmp_path / "in"
    write_fusion_unit(folder / "u", frames=1, cameras=1, seed=12)
    cfg = write_config(
        tmp_path / "syncd.toml",
        url,
        [{"name": "s", "dataset": f"tls-{tmp_path.name}"[:60], "folder": folder}],
        remote_extra=f'ca_bundle = "{ca_pem}"',
    )
    result = run_cli("once", "--config", str(cfg))
    assert result.returncode == 0, result.stderr[-2000:]
    missing = write_config(
        tmp_path / "bad.toml",
        url,
        [{"name": "s", "dataset": "x", "push": False}],
        remote_extra='ca_bundle = "nope.pem"',
    )
    bad = run_cli("once", "--config", str(missing))
    assert bad.returncode == 2 and "remotes.sb.ca_bundle" in bad.stderr and "nope.pem" in bad.stderr
