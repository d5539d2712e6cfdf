"""Prometheus metrics (the official ``prometheus_client``), served at ``/metrics``.

Contract:

* Every metric lives in one :class:`Metrics` object per daemon, in its own
  registry (:attr:`Metrics.registry`): two daemons in one process, or a host
  application embedding one, never count into each other's metrics. Nothing
  is registered at import time.
* Counters and histograms are fed from *committed* events
  (:meth:`Metrics.on_event`, which the daemon adds to its store with
  ``Store.add_commit_listener``), so a metric never counts a step the
  database does not hold.
* HTTP counters are fed by :class:`~syncd.remotes.http.Http` through the
  module functions :func:`http_request`, :func:`http_retry` and
  :func:`rate_limit_wait`; they count into the :class:`Metrics` bound to the
  calling thread (:meth:`Metrics.bound`: the daemon binds its own around
  every stage step), and into nothing outside one.
* Gauges that describe the state (packages by state, last successful pull,
  pull lag, stage heartbeat ages) are computed at scrape time from the
  database and the heartbeats (:class:`StateCollector`), so they are right
  after a restart too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from syncd.store import Store

_DURATIONS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class Metrics:
    """One daemon's metrics: its own registry, counters, last pulls and state collector."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self.uploaded_bytes = Counter(
            "syncd_uploaded_bytes",
            "Bytes uploaded (archive or file bytes)",
            ["sync"],
            registry=registry,
        )
        self.uploaded_files = Counter(
            "syncd_uploaded_files", "Files uploaded", ["sync"], registry=registry
        )
        self.upload_seconds = Histogram(
            "syncd_upload_duration_seconds",
            "Time to upload one package",
            ["sync"],
            buckets=_DURATIONS,
            registry=registry,
        )
        self.processing_seconds = Histogram(
            "syncd_processing_duration_seconds",
            "From submit to the platform's end of processing, per package",
            ["sync"],
            buckets=_DURATIONS,
            registry=registry,
        )
        self.packages_finished = Counter(
            "syncd_packages_finished",
            "Packages that reached done or failed",
            ["sync", "state"],
            registry=registry,
        )
        self.package_retries = Counter(
            "syncd_package_retries",
            "Package steps that failed and wait to be retried",
            ["sync"],
            registry=registry,
        )
        self.pulls = Counter(
            "syncd_pulls",
            "Pull cycles by result (ok, error)",
            ["sync", "result"],
            registry=registry,
        )
        self.pull_seconds = Histogram(
            "syncd_pull_duration_seconds",
            "Duration of one pull cycle",
            ["sync"],
            buckets=_DURATIONS,
            registry=registry,
        )
        self.pull_records = Counter(
            "syncd_pull_records",
            "Records a pull changed in the mirror (kind: new_items, labels_changed, deleted)",
            ["sync", "kind"],
            registry=registry,
        )
        self.http_requests = Counter(
            "syncd_http_requests",
            "API requests sent, by remote and HTTP status (or 'error' when no reply came)",
            ["remote", "status"],
            registry=registry,
        )
        self.http_retries = Counter(
            "syncd_http_retries",
            "Requests tried again after a transient error",
            ["remote"],
            registry=registry,
        )
        self.rate_limit_waits = Counter(
            "syncd_rate_limit_waits",
            "Requests that waited for the client-side rate limiter",
            ["remote"],
            registry=registry,
        )
        self.rate_limit_wait_seconds = Counter(
            "syncd_rate_limit_wait_seconds",
            "Time spent waiting for the client-side rate limiter",
            ["remote"],
            registry=registry,
        )
        self.transfers_in_flight = Gauge(
            "syncd_transfers_in_flight",
            "Files a per-file push is storing now (at most the remote's transfers per package)",
            ["remote"],
            registry=registry,
        )
        self._last_pull_ok: dict[str, float] = {}
        self._last_pull_lock = threading.Lock()
        self._state_collector: Collector | None = None

    @contextmanager
    def bound(self) -> Iterator[Metrics]:
        """HTTP requests sent by the calling thread inside the block count here."""
        token = _BOUND.set(self)
        try:
            yield self
        finally:
            _BOUND.reset(token)

    def on_event(self, name: str, fields: dict[str, Any]) -> None:
        """Feed the counters from one committed event (called by the store after commit)."""
        sync = fields.get("sync") or ""
        if name == "package.uploaded":
            sent = fields.get("upload_bytes_sent")  # a resumed upload counts what this run sent
            if sent is None:
                sent = fields.get("archive_bytes", fields.get("bytes"))
            self.uploaded_bytes.labels(sync).inc(_num(sent))
            self.uploaded_files.labels(sync).inc(_num(fields.get("files")))
            if "seconds" in fields:
                self.upload_seconds.labels(sync).observe(_num(fields["seconds"]))
        elif name in ("package.done", "package.failed"):
            self.packages_finished.labels(sync, name.split(".")[1]).inc()
            if name == "package.done" and fields.get("processing_seconds") is not None:
                self.processing_seconds.labels(sync).observe(_num(fields["processing_seconds"]))
        elif name == "package.retry":
            self.package_retries.labels(sync).inc()

    def pull_finished(self, sync: str, seconds: float, stats: Any | None) -> None:
        """One pull cycle ended: ``stats`` is its PullStats, or None when it failed."""
        self.pull_seconds.labels(sync).observe(seconds)
        if stats is None:
            self.pulls.labels(sync, "error").inc()
            return
        self.pulls.labels(sync, "ok").inc()
        for kind in ("new_items", "labels_changed", "deleted"):
            self.pull_records.labels(sync, kind).inc(getattr(stats, kind, 0))
        with self._last_pull_lock:
            self._last_pull_ok[sync] = time.time()

    def last_pulls(self) -> dict[str, float]:
        """sync → Unix time of its last pull cycle without error in this process."""
        with self._last_pull_lock:
            return dict(self._last_pull_ok)

    def use_state_collector(self, collector: Collector | None) -> None:
        """Make ``collector`` the one state collector in :attr:`registry` (None: remove it)."""
        if self._state_collector is not None:
            self.registry.unregister(self._state_collector)
            self._state_collector = None
        if collector is not None:
            self.registry.register(collector)
            self._state_collector = collector


# The daemon whose stage step the current thread runs (see Metrics.bound).
_BOUND: ContextVar[Metrics | None] = ContextVar("syncd_metrics", default=None)


def http_request(remote: str, status: int | str) -> None:
    m = _BOUND.get()
    if m is not None:
        m.http_requests.labels(remote, str(status)).inc()


@contextmanager
def transfer_running(remote: str) -> Iterator[None]:
    """One file transfer of a per-file push runs in the block (``syncd_transfers_in_flight``)."""
    m = _BOUND.get()
    gauge = m.transfers_in_flight.labels(remote) if m is not None else None
    if gauge is not None:
        gauge.inc()
    try:
        yield
    finally:
        if gauge is not None:
            gauge.dec()


def http_retry(remote: str) -> None:
    m = _BOUND.get()
    if m is not None:
        m.http_retries.labels(remote).inc()


def rate_limit_wait(remote: str, seconds: float) -> None:
    """Record a limiter wait (only waits that held the request back count).

    Below 20 ms (the limiter's own safety margin) the time is the acquire's own
    cost, which a loaded machine can stretch to milliseconds: not a wait.
    """
    m = _BOUND.get()
    if m is not None and seconds >= 0.02:
        m.rate_limit_waits.labels(remote).inc()
        m.rate_limit_wait_seconds.labels(remote).inc(seconds)


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
        last_pulls: Callable[[], dict[str, float]],
        in_flight: Callable[[], dict[str, tuple[int, int]]] = dict,
    ) -> None:
        """``in_flight()``: remote → (packages in flight, upload_concurrency)."""
        self.store = store
        self.in_flight = in_flight
        self.last_pulls = last_pulls
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
        seen = self.last_pulls()
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
        flying = GaugeMetricFamily(
            "syncd_packages_in_flight",
            "Packages an upload worker is on now (uploading, submitting, following processing)",
            labels=["remote"],
        )
        slots = GaugeMetricFamily(
            "syncd_upload_slots",
            "Packages of the remote that may be in flight at once (upload_concurrency)",
            labels=["remote"],
        )
        for remote, (n, limit) in sorted(self.in_flight().items()):
            flying.add_metric([remote], n)
            slots.add_metric([remote], limit)
        yield from (packages, last_ok, lag, ages, healthy, flying, slots)

    def _stored_last_pulls(self) -> dict[str, float]:
        """``last_pull_at`` cursors (written at the end of every successful pull)."""
        out = {}
        for sync, value in self.store.cursor_values("last_pull_at").items():
            try:
                out[sync] = datetime.fromisoformat(value).timestamp()
            except ValueError:
                continue
        return out
