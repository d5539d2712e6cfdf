"""Secrets and permissions: token files, the state's modes, config errors, plain http,
PostgreSQL's TLS default, terminal escapes in what people read."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from syncd import protect
from syncd.config import load_config
from syncd.errors import ConfigError
from syncd.status import render
from syncd.store import Store
from syncd.store.postgres import tls_defaults

BASE = """
[state]
dir = "state"
[remotes.lab]
platform = "xtreme1"
url = "http://127.0.0.1:8190"
token = "t"
[[syncs]]
name = "s"
remote = "lab"
dataset = "d"
folder = "in"
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder other users can enter (pytest's own tmp folders are private)."""
    d = Path(tempfile.mkdtemp(prefix="syncd-private-"))
    d.chmod(0o755)
    (d / "in").mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protect, "_warned", set())


def config(d: Path, text: str) -> Path:
    p = d / "syncd.toml"
    p.write_text(text)
    return p


def with_token_file(d: Path, mode: int) -> Path:
    token = d / "lab.token"
    token.write_text("s3cret-token\n")
    token.chmod(mode)
    return config(d, BASE.replace('token = "t"', 'token_file = "lab.token"'))


def test_a_token_file_others_can_read_is_refused_with_the_fix(shared_dir: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(with_token_file(shared_dir, 0o644))
    msg = str(e.value)
    assert msg.startswith("remotes.lab.token_file: ") and "mode 0644" in msg
    assert f"chmod 600 '{shared_dir / 'lab.token'}'" in msg
    assert "s3cret" not in msg


def test_a_group_readable_token_file_is_a_warning(shared_dir: Path) -> None:
    with capture_logs() as logs:
        cfg = load_config(with_token_file(shared_dir, 0o640))
        load_config(shared_dir / "syncd.toml")
    assert cfg.remotes["lab"].resolved_token() == "s3cret-token"
    warned = [e for e in logs if e["event"] == "config.token_file_shared"]
    assert len(warned) == 1 and "chmod 600" in warned[0]["fix"]


def test_a_private_token_file_or_folder_is_fine(shared_dir: Path) -> None:
    with capture_logs() as logs:
        assert load_config(with_token_file(shared_dir, 0o600)).remotes["lab"].resolved_token()
        shared_dir.chmod(0o700)  # others cannot enter: the file's own mode cannot expose it
        (shared_dir / "lab.token").chmod(0o644)
        assert load_config(shared_dir / "syncd.toml").remotes["lab"].resolved_token()
    assert not [e for e in logs if e["log_level"] == "warning"]


def test_loose_state_is_tightened_at_start(shared_dir: Path) -> None:
    state = shared_dir / "state"
    Store(state).close()
    db = state / "syncd.db"
    state.chmod(0o755)
    for f in (db, db.with_name("syncd.db-wal"), db.with_name("syncd.db-shm")):
        f.touch()
        f.chmod(0o644)
    Store(state).close()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for f in (db, db.with_name("syncd.db-wal"), db.with_name("syncd.db-shm")):
        if f.exists():
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


@pytest.mark.parametrize(
    ("change", "secret"),
    [
        (
            ('url = "http://127.0.0.1:8190"', 'url = "htps://admin:hunter2pass@example.org"'),
            "hunter2pass",
        ),
        (
            ('url = "http://127.0.0.1:8190"', 'url = "htps://tok3n-in-url@example.org"'),
            "tok3n-in-url",
        ),
        (('token = "t"', "token = 123456789"), "123456789"),
    ],
)
def test_config_errors_never_echo_secrets(
    tmp_path: Path, change: tuple[str, str], secret: str
) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(config(tmp_path, BASE.replace(*change)))
    msg = str(e.value)
    assert msg.startswith("remotes.lab.")
    assert secret not in msg


def test_plain_http_to_another_host_warns_once(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    with capture_logs() as logs:
        load_config(config(tmp_path, BASE))  # loopback: nothing to say
        assert not [e for e in logs if e["event"] == "remote.plain_http"]
        far = BASE.replace("http://127.0.0.1:8190", "http://10.1.2.3:8190")
        load_config(config(tmp_path, far))
        load_config(config(tmp_path, far))
        load_config(config(tmp_path, far.replace("http://", "https://")))
    warned = [e for e in logs if e["event"] == "remote.plain_http"]
    assert len(warned) == 1
    assert warned[0]["remote"] == "lab" and warned[0]["host"] == "10.1.2.3"
    assert warned[0]["fix"] == "use https:// for remotes.lab.url"


def test_postgresql_verifies_the_server_unless_the_url_says_otherwise() -> None:
    remote = "postgresql+psycopg://u:p@db.example.org:5432/syncd"
    assert tls_defaults(remote) == {"sslmode": "verify-full", "sslrootcert": "system"}
    assert tls_defaults(remote + "?sslmode=require") == {}
    assert tls_defaults(remote + "?sslrootcert=/etc/ca.pem") == {"sslmode": "verify-full"}
    assert tls_defaults("postgresql+psycopg://u:p@127.0.0.1:5432/syncd") == {}
    assert tls_defaults("postgresql+psycopg://u:p@/syncd?host=/run/postgresql") == {}


def test_status_strips_terminal_escapes() -> None:
    hostile = "u\x1b]0;owned\x07\x1b[2J\x1b[31mred"
    report: dict[str, Any] = {
        "database": "/x/syncd.db",
        "daemon": None,
        "syncs": {
            "s": {
                "packages": {"failed": 1},
                "remote": "lab",
                "dataset": "d",
                "items": 0,
                "items_annotated": 0,
                "objects": 0,
                "last_pull_at": None,
                "failed_packages": [{"id": 1, "unit": hostile, "last_error": "bad\x1b[8m"}],
                "platform_errors": [],
            }
        },
        "recent_errors": [
            {
                "ts": "t",
                "event": "e",
                "sync": "s",
                "unit": hostile,
                "message": "m\rX",
                "fields": None,
            }
        ],
    }
    text = render(report)
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert "FAILED package 1 (ured): bad" in text
    assert os.linesep in text  # lines stay lines
