"""Who read a dataset, when: the sandbox's record of pull traversals, to find overlapping ones.

A *traversal* is one client's run of reading requests on one dataset (its
listing pages, label batches and statistics) with no pause longer than
``gap`` seconds between them: one pull cycle. Clients are told apart by their
``User-Agent`` (syncd names its machine there). Two traversals of one dataset
by different clients *overlap* when their time spans intersect: two daemons
pulled the same dataset at the same time, which a fleet must never do.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Read:
    """One reading request: the dataset, who sent it, and when it started and ended (monotonic)."""

    dataset: int
    client: str
    start: float
    end: float


class TraversalLog:
    """Thread-safe list of :class:`Read`; :meth:`report` groups them and finds overlaps."""

    def __init__(self) -> None:
        self._reads: list[Read] = []
        self._lock = threading.Lock()

    def record(self, dataset: int, client: str, start: float, end: float) -> None:
        with self._lock:
            self._reads.append(Read(dataset, client, start, end))

    def clear(self) -> None:
        with self._lock:
            self._reads.clear()

    def traversals(self, gap: float) -> list[dict[str, Any]]:
        """Every traversal: dataset, client, start, end (monotonic seconds) and request count."""
        with self._lock:
            reads = sorted(self._reads, key=lambda r: r.start)
        by_key: dict[tuple[int, str], list[Read]] = defaultdict(list)
        for r in reads:
            by_key[(r.dataset, r.client)].append(r)
        out: list[dict[str, Any]] = []
        for (dataset, client), rs in by_key.items():
            current: dict[str, Any] | None = None
            for r in rs:
                if current is not None and r.start - current["end"] <= gap:
                    current["end"] = max(current["end"], r.end)
                    current["requests"] += 1
                    continue
                current = {
                    "dataset": dataset,
                    "client": client,
                    "start": r.start,
                    "end": r.end,
                    "requests": 1,
                }
                out.append(current)
        return sorted(out, key=lambda t: t["start"])

    def report(self, gap: float) -> dict[str, Any]:
        """``{"traversals": [...], "overlaps": [[a, b], ...]}`` (pairs of overlapping traversals)."""
        ts = self.traversals(gap)
        overlaps = [
            [a, b]
            for i, a in enumerate(ts)
            for b in ts[i + 1 :]
            if a["dataset"] == b["dataset"]
            and a["client"] != b["client"]
            and b["start"] < a["end"]
            and a["start"] < b["end"]
        ]
        return {"traversals": ts, "overlaps": overlaps}
