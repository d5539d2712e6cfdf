"""A reload's plan is pure: (running config, running syncs, new config) → what changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from syncd.config import Config, load_config
from syncd.daemon import plan_reload
from tests.conftest import write_config

URL = "http://127.0.0.1:9"


def config(tmp_path: Path, name: str, syncs: list[dict[str, Any]], **kw: Any) -> Config:
    for s in syncs:
        Path(s["folder"]).mkdir(exist_ok=True)
    return load_config(write_config(tmp_path / name, URL, syncs, **kw))


def test_syncs_added_removed_changed_and_unchanged(tmp_path: Path) -> None:
    a = {"name": "a", "dataset": "da", "folder": tmp_path / "a"}
    b = {"name": "b", "dataset": "db", "folder": tmp_path / "b"}
    c = {"name": "c", "dataset": "dc", "folder": tmp_path / "c"}
    old = config(tmp_path, "old.toml", [a, b])
    new = config(tmp_path, "new.toml", [{**a, "pull_interval": 60}, c])
    plan = plan_reload(old, {s.name: s for s in old.syncs}, new)
    assert (plan.added, plan.removed, plan.changed) == (["c"], ["b"], ["a"])
    assert plan.kept_remotes == {"sb"} and plan.new_remotes == [] == plan.retired_remotes
    assert plan.give_up_leases == ["b"]  # a still pulls here
    assert plan.restart_needed == []
    assert [s.name for s in plan.config.syncs] == ["a", "c"]


def test_a_sync_that_did_not_start_is_added_again(tmp_path: Path) -> None:
    a = {"name": "a", "dataset": "da", "folder": tmp_path / "a"}
    b = {"name": "b", "dataset": "db", "folder": tmp_path / "b"}
    old = config(tmp_path, "old.toml", [a, b])
    running = {s.name: s for s in old.syncs if s.name == "a"}  # b failed to be watched
    plan = plan_reload(old, running, old)
    assert (plan.added, plan.removed, plan.changed) == (["b"], [], [])


def test_a_changed_remote_is_rebuilt_and_restarts_its_syncs(tmp_path: Path) -> None:
    a = {"name": "a", "dataset": "da", "folder": tmp_path / "a"}
    b = {"name": "b", "dataset": "db", "folder": tmp_path / "b", "pull": False}
    old = config(tmp_path, "old.toml", [a, b])
    new = config(tmp_path, "new.toml", [a, b], remote_extra="timeout = 99")
    plan = plan_reload(old, {s.name: s for s in old.syncs}, new)
    assert plan.new_remotes == ["sb"] == plan.retired_remotes == plan.remotes_replaced
    assert plan.kept_remotes == frozenset()
    assert plan.changed == ["a", "b"]
    assert plan.give_up_leases == ["b"]  # it does not pull: leave its lease to the fleet


def test_restart_only_sections_keep_their_running_values(tmp_path: Path) -> None:
    a = {"name": "a", "dataset": "da", "folder": tmp_path / "a"}
    old = config(tmp_path, "old.toml", [a])
    new = config(tmp_path, "new.toml", [a], state=tmp_path / "elsewhere")
    plan = plan_reload(old, {s.name: s for s in old.syncs}, new)
    assert plan.restart_needed == ["state"]
    assert plan.config.state == old.state
    assert (plan.added, plan.removed, plan.changed) == ([], [], [])
