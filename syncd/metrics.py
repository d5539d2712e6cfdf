"""Prometheus metrics (the official ``prometheus_client``), served at ``/metrics``.

Contract:

* Every metric lives in :data:`REGISTRY` (this process's own registry, so
  tests and embedded daemons do not collide with a host application's).
* Counters and histograms are fed from *committed* events
  (:func:`on_event`, registered with the store), so a metric never counts a
  step the database does not hold; HTTP counters are fed by
  :class:`~syncd.remotes.http.Http` itself.
* Gauges that describe the state (packages by state, last successful pull,
  pull lag, stage heartbeat ages) are computed at scrape time from the
  database and the heartbeats (:class:`StateCollector`), so they are right
  after a restart too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from syncd.store import Store

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

_DURATIONS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

UPLOADED_BYTES = Counter(
    "syncd_uploaded_bytes", "Bytes uploaded (archive or file bytes)", ["sync"], registry=REGISTRY
)
UPLOADED_FILES = Counter("syncd_uploaded_files", "Files uploaded", ["sync"], registry=REGISTRY)
UPLOAD_SECONDS = Histogram(
    "syncd_upload_duration_seconds",
    "Time to upload one package",
    ["sync"],
    buckets=_DURATIONS,
    registry=REGISTRY,
)
PROCESSING_SECONDS = Histogram(
    "syncd_processing_duration_seconds",
    "From submit to the platform's end of processing, per package",
    ["sync"],
    buckets=_DURATIONS,
    registry=REGISTRY,
)
PACKAGES_FINISHED = Counter(
    "syncd_packages_finished",
    "Packages that reached done or failed",
    ["sync", "state"],
    registry=REGISTRY,
)
PACKAGE_RETRIES = Counter(
    "syncd_package_retries",
    "Package steps that failed and wait to be retried",
    ["sync"],
    registry=REGISTRY,
)
PULLS = Counter(
    "syncd_pulls", "Pull cycles by result (ok, error)", ["sync", "result"], registry=REGISTRY
)
PULL_SECONDS = Histogram(
    "syncd_pull_duration_seconds",
    "Duration of one pull cycle",
    ["sync"],
    buckets=_DURATIONS,
    registry=REGISTRY,
)
PULL_RECORDS = Counter(
    "syncd_pull_records",
    "Records a pull changed in the mirror (kind: new_items, labels_changed, deleted)",
    ["sync", "kind"],
    registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    "syncd_http_requests",
    "API requests sent, by remote and HTTP status (or 'error' when no reply came)",
    ["remote", "status"],
    registry=REGISTRY,
)
HTTP_RETRIES = Counter(
    "syncd_http_retries",
    "Requests tried again after a transient error",
    ["remote"],
    registry=REGISTRY,
)
RATE_LIMIT_WAITS = Counter(
    "syncd_rate_limit_waits",
    "Requests that waited for the client-side rate limiter",
    ["remote"],
    registry=REGISTRY,
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "syncd_rate_limit_wait_seconds",
    "Time spent waiting for the client-side rate limiter",
    ["remote"],
    registry=REGISTRY,
)

_last_pull_ok: dict[str, float] = {}
_last_pull_lock = threading.Lock()


def on_event(name: str, fields: dict[str, Any]) -> None:
    """Feed the counters from one committed event (called by the store after commit)."""
    sync = fields.get("sync") or ""
    if name == "package.uploaded":
        sent = fields.get("upload_bytes_sent")  # a resumed upload counts what this run sent
        if sent is None:
            sent = fields.get("archive_bytes", fields.get("bytes"))
        UPLOADED_BYTES.labels(sync).inc(_num(sent))
        UPLOADED_FILES.labels(sync).inc(_num(fields.get("files")))
        if "seconds" in fields:
            UPLOAD_SECONDS.labels(sync).observe(_num(fields["seconds"]))
    elif name in ("package.done", "package.failed"):
        PACKAGES_FINISHED.labels(sync, name.split(".")[1]).inc()
        if name == "package.done" and fields.get("processing_seconds") is not None:
            PROCESSING_SECONDS.labels(sync).observe(_num(fields["processing_seconds"]))
    elif name == "package.retry":
        PACKAGE_RETRIES.labels(sync).inc()


def pull_finished(sync: str, seconds: float, stats: Any | None) -> None:
    """One pull cycle ended: ``stats`` is its PullStats, or None when it failed."""
    PULL_SECONDS.labels(sync).observe(seconds)
    if stats is None:
        PULLS.labels(sync, "error").inc()
        return
    PULLS.labels(sync, "ok").inc()
    for kind in ("new_items", "labels_changed", "deleted"):
        PULL_RECORDS.labels(sync, kind).inc(getattr(stats, kind, 0))
    with _last_pull_lock:
        _last_pull_ok[sync] = time.time()


def http_request(remote: str, status: int | str) -> None:
    HTTP_REQUESTS.labels(remote, str(status)).inc()


def http_retry(remote: str) -> None:
    HTTP_RETRIES.labels(remote).inc()


def rate_limit_wait(remote: str, seconds: float) -> None:
    """Record a limiter wait (only waits that held the request back count).

    Below 20 ms (the limiter's own safety margin) the time is the acquire's own
    cost, which a loaded machine can stretch to milliseconds: not a wait.
    """
    if seconds >= 0.02:
        RATE_LIMIT_WAITS.labels(remote).inc()
        RATE_LIMIT_WAIT_SECONDS.labels(remote).inc(seconds)


_state_collector: list[Collector] = []


def use_state_collector(collector: Collector | None) -> None:
    """Make ``collector`` the one state collector in :data:`REGISTRY` (None: remove it)."""
    while _state_collector:
        REGISTRY.unregister(_state_collector.pop())
    if collector is not None:
        REGISTRY.register(collector)
        _state_collector.append(collector)


def _num(value: Any) -> float:
    try:
        return max(0.0, float(value or 0))
    except (TypeError, ValueError):
        return 0.0


class StateCollector(Collector):
    """Gauges read at scrape time: packages by state, last pull, lag, heartbeats."""

    def __init__(
        self,
        store: Store,
        syncs: Callable[[], list[str]],
        heartbeat_ages: Callable[[], dict[str, float]],
        stalled: Callable[[], frozenset[str]],
    ) -> None:
        self.store = store
        self.syncs = syncs
        self.heartbeat_ages = heartbeat_ages
        self.stalled = stalled

    def describe(self) -> Iterator[Metric]:
        return iter(())  # computed on demand; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        packages = GaugeMetricFamily(
            "syncd_packages", "Packages by sync and state", labels=["sync", "state"]
        )
        last_ok = GaugeMetricFamily(
            "syncd_last_successful_pull_timestamp_seconds",
            "Unix time of the last pull cycle that ended without error",
            labels=["sync"],
        )
        lag = GaugeMetricFamily(
            "syncd_pull_lag_seconds",
            "Seconds since the last pull cycle that ended without error",
            labels=["sync"],
        )
        for sync, state, n in self.store.package_counts():
            packages.add_metric([sync, state], n)
        now = time.time()
        stored = self._stored_last_pulls()
        with _last_pull_lock:
            seen = dict(_last_pull_ok)
        for sync in self.syncs():
            ts = seen.get(sync, stored.get(sync))
            if ts is not None:
                last_ok.add_metric([sync], ts)
                lag.add_metric([sync], max(0.0, now - ts))
        ages = GaugeMetricFamily(
            "syncd_stage_heartbeat_age_seconds",
            "Seconds since each stage of the daemon last showed progress",
            labels=["stage"],
        )
        for stage, age in self.heartbeat_ages().items():
            ages.add_metric([stage], age)
        stalled = self.stalled()
        healthy = GaugeMetricFamily("syncd_healthy", "1 while every stage is alive, else 0")
        healthy.add_metric([], 0 if stalled else 1)
        yield from (packages, last_ok, lag, ages, healthy)

    def _stored_last_pulls(self) -> dict[str, float]:
        """``last_pull_at`` cursors (written at the end of every successful pull)."""
        out = {}
        for sync, value in self.store.cursor_values("last_pull_at").items():
            try:
                out[sync] = datetime.fromisoformat(value).timestamp()
            except ValueError:
                continue
        return out
