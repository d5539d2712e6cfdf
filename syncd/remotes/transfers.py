"""Several files stored at once: the pool a per-file push (BasicAI, Segments.ai) sends through.

A per-file push stores many small files; over a real network each one costs a
round trip or two, so one after another they add up (250 files, 305 round
trips). :class:`Transfers` keeps up to the remote's ``transfers`` of them in
flight. The object store's PUTs/POSTs do not pass the API rate limiter (the
platforms meter their API, not their storage); API calls a job makes (a fresh
URL, Segments.ai's ``POST /assets/``) still do, from every thread alike.

Contract of :class:`Transfers` (one per ``upload_files`` call, used as a
``with`` block):

* :meth:`Transfers.submit` queues one file's job; at most ``size`` run at
  once, each on a thread of the pool. With ``size == 1`` each job runs at once
  in the calling thread: the push is sequential, exactly as without a pool.
  :meth:`Transfers.results` waits for every job and returns their results in
  the order they were submitted.
* The first job to fail decides: :meth:`Transfers.results` (or the next
  :meth:`Transfers.submit`) raises its exception unchanged, so it keeps its
  type (PermanentError, TransientError, LocalDataError, Cancelled …). Jobs not
  started are dropped; running ones stop at their next chunk, because
  :meth:`Transfers.body` raises :class:`~syncd.errors.Cancelled` in them (that
  secondary error is never the one reported). A job in a retry's backoff
  stops when it wakes.
* Jobs run in a copy of the submitting thread's context (``contextvars``), so
  requests they send count in the daemon's metrics as the caller's would.
* Leaving the ``with`` block waits for every thread of the pool, also when
  the caller's own code raised (a failed presign request): no thread outlives
  the call.
* The crash point ``upload.file_stored`` (:mod:`syncd.failpoints`) is reached
  after each job that succeeded, on the thread that ran it.
* While a job runs, the daemon's gauge ``syncd_transfers_in_flight{remote}``
  counts it (:func:`syncd.metrics.transfer_running`).
* Memory: a queued job holds its file's body *function*, not its bytes; a
  running one holds the chunk being sent. A push holds about ``size`` chunks.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from types import TracebackType
from typing import Generic, TypeVar

from syncd import failpoints, metrics
from syncd.errors import Cancelled
from syncd.remotes.base import ByteSource

T = TypeVar("T")


class Transfers(Generic[T]):
    """Up to ``size`` store jobs at once; the first failure stops the rest (module docstring)."""

    def __init__(self, size: int, platform: str, *, remote: str | None = None) -> None:
        self.size = size
        self.platform = platform
        self.remote = remote or platform  # the metrics' label
        self._pool = (
            ThreadPoolExecutor(size, thread_name_prefix=f"syncd-{platform}-transfer")
            if size > 1
            else None
        )
        self._futures: list[Future[T]] = []
        self._inline: list[T] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self) -> Transfers[T]:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()  # after results() nothing runs; after an error, stop what does
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, job: Callable[[], T]) -> None:
        """Run ``job`` (one file's store) when a slot is free; raises a failure seen so far."""
        if self._pool is None:
            self._inline.append(self._run(job))
            return
        if self._error is not None:
            raise self._error
        # The caller's context goes along: the daemon's metrics are bound in it.
        self._futures.append(self._pool.submit(contextvars.copy_context().run, self._run, job))

    def results(self) -> list[T]:
        """Every job's result in submission order, or the first failure (see the contract)."""
        if self._pool is None:
            return list(self._inline)
        wait(self._futures, return_when=FIRST_EXCEPTION)
        if self._error is not None:
            raise self._error
        return [f.result() for f in self._futures]

    def body(self, source: ByteSource) -> ByteSource:
        """``source`` that stops between chunks once another job failed."""

        def guarded() -> Iterator[bytes]:
            for chunk in source():
                if self._stop.is_set():
                    raise Cancelled(f"{self.platform}: stopped: another file of the batch failed")
                yield chunk

        return guarded

    def _run(self, job: Callable[[], T]) -> T:
        if self._stop.is_set():
            raise Cancelled(f"{self.platform}: not started: another file of the batch failed")
        try:
            with metrics.transfer_running(self.remote):
                result = job()
        except BaseException as exc:
            with self._lock:
                if self._error is None and not self._stop.is_set():
                    self._error = exc
                self._stop.set()
            raise
        failpoints.reached("upload.file_stored")  # on this thread, others may be in flight
        return result
