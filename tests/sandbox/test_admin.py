"""The admin API is the same on every sandbox (syncd_sandbox.admin)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from syncd_sandbox import run_in_thread

PLATFORMS = ("xtreme1", "basicai", "segments", "deepen")


@pytest.fixture(scope="module", params=PLATFORMS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data: Path = tmp_path_factory.mktemp(request.param)
    with run_in_thread(request.param, token="t", data_dir=data) as base:
        yield f"{base}/__sandbox"


def test_config_answers_the_whole_configuration(url: str) -> None:
    r = httpx.post(f"{url}/config", json={}, timeout=10)
    assert r.status_code == 200
    assert isinstance(r.json(), dict) and r.json()


def test_an_unknown_key_is_refused_by_name_and_changes_nothing(url: str) -> None:
    before = httpx.post(f"{url}/config", json={}, timeout=10).json()
    key, value = next(iter(before.items()))
    r = httpx.post(f"{url}/config", json={key: value, "no_such_key": 1}, timeout=10)
    assert r.status_code == 400
    assert "no_such_key" in r.json()["error"]
    assert httpx.post(f"{url}/config", json={}, timeout=10).json() == before


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]"])
def test_a_body_that_is_not_an_object_is_a_400(url: str, body: bytes) -> None:
    r = httpx.post(f"{url}/config", content=body, timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["error"]


def test_counters_and_faults_are_served(url: str) -> None:
    assert httpx.get(f"{url}/counters", timeout=10).status_code == 200
    bad = httpx.post(f"{url}/faults", json={"action": "explode"}, timeout=10)
    assert bad.status_code == 400 and "explode" in bad.json()["error"]
    assert httpx.delete(f"{url}/faults", timeout=10).json() == {"ok": True}
