"""Whether a remote answers: a platform outage as one start and one end, from every thread.

Contract:

* :func:`outage_kind` reads a :class:`~syncd.errors.TransientError` that a
  request ended with (after its retries) and names the outage it shows:
  ``refused`` (nothing listens), ``dns`` (the host name does not resolve),
  ``tls`` (the TLS handshake failed), ``timeout`` (connect or read timed
  out), ``connection`` (the connection broke before a reply: the platform
  went away mid-request) or ``http_5xx`` (the platform, or the proxy in
  front of it, answered 500 to 599). Anything else is ``None``: a 4xx, a 429, a
  reply too slow or malformed, and every PermanentError — an untrusted
  certificate included: it is a setting to change (``ca_bundle``), the
  package fails at once with that advice, and waiting would not end it, so it
  is no outage.
* :class:`Reachability` (one per remote, shared by every thread that
  sends its requests): :meth:`~Reachability.failed` with an outage kind
  starts an outage when none is on; the listener hears of it once
  (:class:`Change` with ``reachable=False``). Further failures only count.
  :meth:`~Reachability.succeeded` (a request got its answer) ends the
  outage; the listener hears of it once, with the outage's seconds and
  failed requests. Failures that are not outages change nothing.
* Thread-safe: the state changes under a lock, so of racing threads exactly
  one starts (or ends) an outage. The listener runs outside that lock (a
  request that succeeds never waits for it) but under a second one, in the
  order the changes happened: an end is never heard before its start. A
  listener that raises is logged, never passed to the request.
* Without a listener (``syncd check``, the start's reachability probe) the
  changes go nowhere: the error of the request itself tells the caller.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from syncd.errors import TransientError
from syncd.log import get_logger

KINDS = ("refused", "dns", "tls", "timeout", "connection", "http_5xx")


@dataclass(frozen=True)
class Change:
    """An outage of ``remote`` started (``reachable=False``) or ended."""

    remote: str
    reachable: bool
    kind: str  # what started the outage (one of KINDS)
    error: str  # the message of the request that started it
    seconds: float = 0.0  # the outage's length (at its end)
    failed_requests: int = 0  # requests that failed during it (at its end)


Listener = Callable[[Change], None]


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes (``raise … from``, then the implicit context), each once."""
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def outage_kind(exc: BaseException) -> str | None:
    """The outage ``exc`` shows (one of :data:`KINDS`), or None (see the module docstring)."""
    if not isinstance(exc, TransientError):
        return None
    code = exc.code or ""
    if code.isdigit() and 500 <= int(code) <= 599:
        return "http_5xx"
    chain = _chain(exc)
    if not any(isinstance(e, httpx.TransportError) for e in chain):
        return None  # no transport failure below it: a 429, a slow or malformed reply
    for e in chain:
        if isinstance(e, socket.gaierror):
            return "dns"
        if isinstance(e, ConnectionRefusedError):
            return "refused"
        if isinstance(e, ssl.SSLError):
            return "tls"
        if isinstance(e, httpx.TimeoutException | TimeoutError):
            return "timeout"
    # httpcore does not always keep the OSError in the chain: its text still says
    text = " ".join(str(e) for e in chain).lower()
    if "refused" in text:
        return "refused"
    if "name or service not known" in text or "name resolution" in text or "nodename" in text:
        return "dns"
    if "ssl" in text or "tls" in text:
        return "tls"
    return "connection"


@dataclass
class _Outage:
    kind: str
    error: str
    started: float  # monotonic
    failed: int = 1


class Reachability:
    """The outage state of one remote (see the module docstring)."""

    def __init__(self, remote: str, listener: Listener | None = None) -> None:
        self.remote = remote
        self._listener = listener
        self._lock = threading.Lock()  # the state
        self._deliver_lock = threading.Lock()  # the listener, one change at a time, in order
        self._outage: _Outage | None = None
        self._pending: list[Change] = []

    def listen(self, listener: Listener | None) -> None:
        """Tell ``listener`` of every change from now on (None: log them)."""
        self._listener = listener

    @property
    def unreachable(self) -> bool:
        """True during an outage."""
        return self._outage is not None

    def failed(self, exc: BaseException) -> None:
        """A request failed after its retries with ``exc``."""
        kind = outage_kind(exc)
        if kind is None:
            return
        with self._lock:
            if self._outage is not None:
                self._outage.failed += 1
                return
            self._outage = _Outage(kind, str(exc), time.monotonic())
            self._pending.append(Change(self.remote, False, kind, str(exc)))
        self._deliver()

    def succeeded(self) -> None:
        """A request got its answer."""
        with self._lock:
            outage = self._outage
            if outage is None:
                return
            self._outage = None
            self._pending.append(
                Change(
                    self.remote,
                    True,
                    outage.kind,
                    outage.error,
                    seconds=round(time.monotonic() - outage.started, 3),
                    failed_requests=outage.failed,
                )
            )
        self._deliver()

    def _deliver(self) -> None:
        with self._deliver_lock:
            while True:
                with self._lock:
                    if not self._pending:
                        return
                    change = self._pending.pop(0)
                listener = self._listener
                if listener is None:
                    continue
                try:
                    listener(change)
                except Exception as exc:  # the request that saw it must not fail for this
                    get_logger().error(
                        "daemon.stage_error",
                        stage=f"reachability:{self.remote}",
                        error=f"{type(exc).__name__}: {exc}",
                    )
