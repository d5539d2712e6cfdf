"""Config: validation names the key and the value; ${VAR}; token_file; durations and sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config import load_config, parse_duration, parse_size
from syncd.errors import ConfigError

BASE = """
[state]
dir = "state"
[remotes.lab]
platform = "xtreme1"
url = "http://127.0.0.1:8190"
token = "t"
[[syncs]]
name = "front-lidar"
remote = "lab"
dataset = "d"
folder = "in"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "syncd.toml"
    p.write_text(text)
    return p


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    return str(e.value)


def test_valid_config_resolves_relative_paths(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.state.db_path == tmp_path / "state" / "syncd.db"
    assert cfg.syncs[0].folder == tmp_path / "in"
    assert cfg.syncs[0].settle_seconds == 10.0
    assert cfg.remotes["lab"].resolved_token() == "t"


def test_unknown_remote_names_sync_and_value(tmp_path: Path) -> None:
    msg = error_of(tmp_path, BASE.replace('remote = "lab"', 'remote = "lab2"'))
    assert msg.startswith("syncs[front-lidar].remote: no remote named 'lab2'")


def test_bad_duration_names_key_and_value(tmp_path: Path) -> None:
    msg = error_of(tmp_path, BASE + 'settle_seconds = "soon"\n')
    assert "syncs[front-lidar].settle_seconds" in msg and "'soon'" in msg


def test_unknown_key_is_reported(tmp_path: Path) -> None:
    msg = error_of(tmp_path, BASE + "setle_seconds = 3\n")
    assert "syncs[front-lidar].setle_seconds: unknown key" in msg


def test_bad_enum_names_value(tmp_path: Path) -> None:
    msg = error_of(tmp_path, BASE + 'dataset_type = "POINTS"\n')
    assert "syncs[front-lidar].dataset_type" in msg and "POINTS" in msg


def test_missing_env_var_names_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    msg = error_of(tmp_path, BASE.replace('token = "t"', 'token = "${NOPE_TOKEN}"'))
    assert msg == "remotes.lab.token: environment variable NOPE_TOKEN is not set"


def test_env_expansion_and_dollar_escape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_TOKEN", "s3cret")
    cfg = load_config(write(tmp_path, BASE.replace('token = "t"', 'token = "${MY_TOKEN}$$x"')))
    assert cfg.remotes["lab"].resolved_token() == "s3cret$x"


def test_token_file_relative_to_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "lab").write_text("from-file\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = load_config(write(tmp_path, BASE.replace('token = "t"', 'token_file = "lab"')))
    assert cfg.remotes["lab"].resolved_token() == "from-file"


def test_token_file_missing_is_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    msg = error_of(tmp_path, BASE.replace('token = "t"', 'token_file = "absent.token"'))
    assert msg.startswith("remotes.lab.token_file") and "absent.token" in msg


def test_token_and_token_file_both_rejected(tmp_path: Path) -> None:
    msg = error_of(tmp_path, BASE.replace('token = "t"', 'token = "t"\ntoken_file = "x"'))
    assert "remotes.lab" in msg and "exactly one" in msg


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    assert "not valid TOML" in error_of(tmp_path, "[state\n")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml")


def test_duplicate_sync_names(tmp_path: Path) -> None:
    extra = '[[syncs]]\nname = "front-lidar"\nremote = "lab"\ndataset = "e"\nfolder = "x"\n'
    assert "syncs[front-lidar].name" in error_of(tmp_path, BASE + extra)


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XTREME1_TOKEN", "x")
    cfg = load_config(Path(__file__).parent.parent / "config" / "syncd.example.toml")
    assert cfg.syncs[0].name == "front-lidar"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("1h30m", 5400), (12, 12), ("0.5s", 0.5), ("7", 7)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "size"),
    [("4GiB", 4 * 2**30), ("2GB", 2 * 10**9), (1024, 1024), ("10 MiB", 10 * 2**20)],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["-1s", "fast", True, "1x"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_database_url_must_be_postgresql_and_hides_its_password(tmp_path: Path) -> None:
    text = BASE.replace('dir = "state"', 'dir = "state"\ndatabase_url = "mysql://u:s3cret@db/x"')
    msg = error_of(tmp_path, text)
    assert msg.startswith("state.database_url: not a PostgreSQL URL: 'mysql://u:***@db/x'"), msg
    assert "s3cret" not in msg


def test_database_url_and_host(tmp_path: Path) -> None:
    text = BASE.replace(
        'dir = "state"',
        'dir = "state"\ndatabase_url = "postgresql://syncd:pw@db:5432/fleet"\nhost = "rig-3"',
    )
    cfg = load_config(write(tmp_path, text))
    assert cfg.state.database_url == "postgresql+psycopg://syncd:pw@db:5432/fleet"
    assert cfg.state.database == "postgresql+psycopg://syncd:***@db:5432/fleet"
    assert cfg.state.host == "rig-3"
    assert "pw" not in repr(cfg.state)
    bad = BASE.replace('dir = "state"', 'dir = "state"\nhost = "rig 3/x"')
    assert error_of(tmp_path, bad).startswith("state.host: not a host name: 'rig 3/x'")
