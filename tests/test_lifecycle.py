"""The package state machine: the table, and ``Tx.transition`` enforcing it."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.store import FINAL_STATES, PACKAGE_STATES, Package, Store
from syncd.store.lifecycle import (
    FORWARD,
    LIVE_STATES,
    REOPEN,
    REPACK,
    TRANSITIONS,
    InvalidTransition,
)
from tests.test_package_step import new_pkg, row


def _move(store: Store, pid: int, to_state: str) -> None:
    with store.tx() as tx:
        p = tx.session.get(Package, pid)
        assert p is not None
        tx.transition(p, to_state)


def test_the_table_covers_exactly_the_states() -> None:
    assert FORWARD[0] == "detected" and FORWARD[-2:] == ("processing", "done")
    assert set(FORWARD) | {"failed"} == set(PACKAGE_STATES)
    assert {s for edge in TRANSITIONS for s in edge} == set(PACKAGE_STATES)
    # Every live state can move on, and can fail; nothing leaves a final state
    # through transition() (reopen is the operator's edge).
    assert {a for a, _ in TRANSITIONS} == set(LIVE_STATES)
    assert all((s, "failed") in TRANSITIONS for s in LIVE_STATES)
    assert not {a for a, _ in TRANSITIONS} & FINAL_STATES
    assert REPACK in TRANSITIONS and REOPEN not in TRANSITIONS
    backward = {
        (a, b) for a, b in TRANSITIONS if b != "failed" and FORWARD.index(b) < FORWARD.index(a)
    }
    assert backward == {REPACK}


def test_every_legal_edge_passes(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        for a, b in sorted(TRANSITIONS):
            pid = new_pkg(store, a)
            _move(store, pid, b)
            assert row(store, pid).state == b
    finally:
        store.close()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("detected", "packed"),  # a stage skipped
        ("packed", "settled"),  # backwards, not the repack edge
        ("processing", "detected"),
        ("uploaded", "uploading"),
        ("done", "failed"),  # out of a final state
        ("failed", "detected"),  # only through reopen
        ("packed", "lost"),  # no such state
    ],
)
def test_an_illegal_edge_raises_and_writes_nothing(tmp_path: Path, a: str, b: str) -> None:
    store = Store(tmp_path)
    try:
        pid = new_pkg(store, a)
        with pytest.raises(InvalidTransition):
            _move(store, pid, b)
        assert row(store, pid).state == a
    finally:
        store.close()


def test_reopen_is_the_one_edge_out_of_failed(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        pid = new_pkg(store, "failed")
        with store.tx() as tx:
            p = tx.session.get(Package, pid)
            assert p is not None
            tx.reopen(p)
            assert p.state == "detected"
        with pytest.raises(InvalidTransition), store.tx() as tx:
            p = tx.session.get(Package, pid)
            assert p is not None
            tx.reopen(p)
    finally:
        store.close()
