"""What durable commits cost: the state database's ``synchronous = FULL`` against NORMAL.

syncd commits every state change (and the intent before every side effect)
before acting on it. With ``FULL`` each commit syncs SQLite's write-ahead log,
so a commit survives a power loss too (see ``syncd.store.store.SYNCHRONOUS``).
This measures a write transaction with one event row, as the pipeline makes
them, under both settings on the same disk in the same run. The figure is
informational (no target): the price of surviving a power cut, per commit.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.common import Figure, median, say
from syncd.store import store as store_module
from syncd.store.store import Store

COMMITS = 400


def _per_commit(folder: Path, mode: str) -> float:
    """Seconds per write transaction (one event row) with ``synchronous = mode``."""
    before = store_module.SYNCHRONOUS
    store_module.SYNCHRONOUS = mode
    try:
        st = Store(folder)
        try:
            started = time.perf_counter()
            for n in range(COMMITS):
                with st.tx() as tx:
                    tx.event("bench.commit", n=n)
            return (time.perf_counter() - started) / COMMITS
        finally:
            st.close()
    finally:
        store_module.SYNCHRONOUS = before


def run(work: Path, repeat: int, notes: list[str]) -> list[Figure]:
    full: list[float] = []
    normal: list[float] = []
    for r in range(repeat):
        normal.append(_per_commit(work / f"normal-{r}", "NORMAL"))
        full.append(_per_commit(work / f"full-{r}", "FULL"))
    figure = Figure(
        bench="durability",
        name="commit (synchronous=FULL)",
        value=median(full) * 1000,
        unit="ms",
        reference=median(normal) * 1000,
        reference_name="synchronous=NORMAL",
        target=float("inf"),
        samples=[x * 1000 for x in full],
    )
    say(figure.line())
    notes.append(
        f"durability: a commit with one event takes {figure.value:.2f} ms with synchronous=FULL "
        f"and {figure.reference:.2f} ms with NORMAL on this disk ({COMMITS} commits, median of "
        f"{repeat})."
    )
    return [figure]
