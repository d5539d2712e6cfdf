"""The stable event names: what the code emits, what ``syncd.log.EVENTS`` declares and
what ``docs/events.md`` documents are the same set.

Emitted names are read from the source (ast over ``syncd/``), not from a run, so an
event on a rare path counts too. A name is emitted when it is the first argument of:

* ``tx.event(...)`` / ``tx.note(...)`` (a row in ``events`` plus a log line);
* ``tx.transition(pkg, state)`` → ``package.<state>`` — written as the f-string
  ``f"package.{to_state}"`` in the store, expanded here over ``PACKAGE_STATES``;
* a helper that hands its first argument to one of the above (``_record``/``record``
  in the daemon, ``Notice`` of the folder watcher);
* a structlog logger method (``log.info/warning/error/debug/...``) — log-only events;
* the value of an ``"event"`` key in a dict literal (a structlog processor that
  renames a record, as :mod:`syncd.log` does for standard-library records);
* a positional argument of any other call, when its namespace (``package``) is one
  of the namespaces found above — helpers like ``_save(ctx, pkg, ref, name)``.

A conditional (``"a" if x else "b"``) counts both names. Any other f-string is an
error: teach :func:`emitted_names` its values rather than let a name go unchecked.
Failpoint names (``upload.sent``, ``register.before``) are not events.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

from syncd.log import EVENTS
from syncd.store import PACKAGE_STATES

REPO = Path(__file__).parents[1]
EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
EMITTERS = frozenset({"event", "note", "_record", "record", "Notice"})
FILE_SUFFIXES = frozenset({"json", "txt", "pcd", "zip", "png", "jpg", "jpeg", "toml"})
LOG_METHODS = frozenset({"debug", "info", "warning", "error", "exception", "critical"})


def _names(arg: ast.expr, where: str, strict: bool = True) -> list[str]:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value] if EVENT_NAME.match(arg.value) else []
    if isinstance(arg, ast.IfExp):
        return _names(arg.body, where, strict) + _names(arg.orelse, where, strict)
    if isinstance(arg, ast.JoinedStr) and strict:
        head = arg.values[0]
        if (
            len(arg.values) == 2
            and isinstance(head, ast.Constant)
            and head.value == "package."
            and isinstance(arg.values[1], ast.FormattedValue)
        ):
            return [f"package.{state}" for state in PACKAGE_STATES]
        raise AssertionError(f"{where}: an event name built at run time: {ast.unparse(arg)}")
    return []  # a variable: the helper it is passed to is an emitter itself


def emitted_names(root: Path = REPO / "syncd") -> dict[str, set[str]]:
    """Every event name emitted under ``root``, with the places that emit it."""
    found: dict[str, set[str]] = defaultdict(set)
    passed_on: list[tuple[str, str]] = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "event":
                        where = f"{path.relative_to(root.parent)}:{node.lineno}"
                        for event in _names(value, where):
                            found[event].add(where)
                continue
            if not (isinstance(node, ast.Call) and node.args):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            where = f"{path.relative_to(root.parent)}:{node.lineno}"
            if name in EMITTERS or name in LOG_METHODS:
                for event in _names(node.args[0], where):
                    found[event].add(where)
            else:
                passed_on += [
                    (e, where) for arg in node.args for e in _names(arg, where, strict=False)
                ]
    # A name handed to any other helper (``_save(ctx, pkg, ref, "package.upload_session")``,
    # ``quiet.report("daemon.stage_error")``) counts when its namespace is an event
    # namespace; failpoint names (upload.sent, register.before) are not in one.
    namespaces = {event.split(".")[0] for event in found}
    for event, where in passed_on:
        # a file name (config.json) is no event, whatever its stem
        if event.split(".")[0] in namespaces and event.rsplit(".")[-1] not in FILE_SUFFIXES:
            found[event].add(where)
    return found


def documented_names() -> set[str]:
    """Event names that head a section of docs/events.md (``### `name` ``)."""
    text = (REPO / "docs" / "events.md").read_text()
    return set(re.findall(r"^### `([a-z0-9_.]+)`", text, re.M))


def test_every_emitted_event_is_declared() -> None:
    emitted = emitted_names()
    missing = {name: sorted(emitted[name]) for name in set(emitted) - EVENTS}
    assert not missing, f"emitted but not in syncd.log.EVENTS: {missing}"


def test_every_declared_event_is_emitted() -> None:
    unused = sorted(EVENTS - set(emitted_names()))
    assert not unused, f"declared in syncd.log.EVENTS but never emitted: {unused}"


def test_every_declared_event_is_documented_and_nothing_else() -> None:
    documented = documented_names()
    assert not EVENTS - documented, f"missing in docs/events.md: {sorted(EVENTS - documented)}"
    assert not documented - EVENTS, f"not declared in EVENTS: {sorted(documented - EVENTS)}"


def test_the_collector_finds_each_kind_of_emission(tmp_path: Path) -> None:
    """The checks above can fail: each emission form is recognised, failpoints are not."""
    (tmp_path / "m.py").write_text(
        "tx.event('a.one')\n"
        "tx.note('a.two', pkg)\n"
        "self._record('a.three', 'info')\n"
        "Notice('a.four', sync, reason)\n"
        "get_logger().warning('a.five', x=1)\n"
        "tx.event('a.six' if created else 'a.seven')\n"
        "tx.event(f'package.{to_state}')\n"
        "save(ctx, pkg, 'a.eight')\n"
        "quiet.report('a.nine', error)\n"
        "failpoints.reached('upload.sent')\n"
        "log.info('not an event name')\n"
    )
    found = set(emitted_names(tmp_path))
    expected = {
        f"a.{n}" for n in ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    }
    assert found == expected | {f"package.{s}" for s in PACKAGE_STATES}


def test_a_name_built_at_run_time_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("tx.event(f'pull.{what}')\n")
    with pytest.raises(AssertionError, match="built at run time"):
        emitted_names(tmp_path)
