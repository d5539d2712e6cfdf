"""HTTP for every backend: one client factory, one retry policy, one rate limiter.

Contract:

* :func:`make_client` builds the httpx client every backend uses (timeouts,
  connection limits, a User-Agent; auth headers are added by the backend).
  Its pool keeps every connection it may open alive for reuse (HTTP/1.1
  keep-alive): :func:`platform_clients` sizes both of a remote's pools to
  :func:`pool_size`, the requests its settings allow in flight, so no
  request waits for a connection and none pays a new TCP/TLS handshake
  while the pool is warm.
* :meth:`Http.request` sends one logical request: it waits for the rate
  limiter (every window of the remote's ``rate_limits``, shared by all of
  that remote's API calls from every thread), retries :class:`~syncd.errors.TransientError` with exponential
  backoff and full jitter (tenacity), obeys ``Retry-After``, and gives up
  after ``max_retries`` tries by raising the last TransientError. It never
  retries a PermanentError or a cancellation (KeyboardInterrupt, SystemExit).
* ``classify`` (the backend's one mapping function) turns a response into the
  parsed payload or raises one of our errors; transport failures are mapped
  here (connect errors, timeouts, resets → TransientError).
* Replies are bounded (:func:`read_reply`): at most 16 MiB of API JSON (128
  MiB for listings and label documents), read in full within
  ``DEADLINE_FACTOR`` times the read timeout, JSON nested too deeply for the
  parser is a TransientError; each error names the endpoint.
* Nothing here logs a URL's query string or a header value: errors carry the
  method and path only.
* Every logical request's outcome (after its retries) goes to the remote's
  :class:`~syncd.remotes.reachability.Reachability` (``Http.reachability``):
  a transport failure or 5xx starts an outage, the next answer ends it.
"""

from __future__ import annotations

import email.utils
import os
import re
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import tenacity
from pyrate_limiter import Limiter, Rate

from syncd import __version__, metrics
from syncd.config import RemoteConfig
from syncd.errors import PermanentError, RateLimited, SyncdError, TransientError
from syncd.log import get_logger
from syncd.quiet import Quiet
from syncd.remotes.reachability import Reachability

T = TypeVar("T")

USER_AGENT = f"syncd/{__version__}"
_agent = USER_AGENT


def set_host(host: str) -> None:
    """Name this machine in the User-Agent of clients made from now on (``syncd/0.1 (rig-3)``):
    the platform's operators, and the sandbox, can tell a fleet's daemons apart."""
    global _agent
    _agent = f"{USER_AGENT} ({host})"


def tls_context(ca_bundle: str | os.PathLike[str] | None) -> ssl.SSLContext:
    """Certificate verification, always on: the system's CAs, or ``ca_bundle`` (PEM) instead."""
    if ca_bundle is None:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=os.fspath(ca_bundle))


# The smallest pool: the preflight check, the push loop and a few pull threads.
MIN_CONNECTIONS = 8


def pool_size(cfg: RemoteConfig) -> int:
    """Connections a remote's client may hold: one per request its settings allow in
    flight (``transfers`` files of each of ``upload_concurrency`` packages), at least
    :data:`MIN_CONNECTIONS`. They are opened on demand: the bound decides only whether
    a request waits for a free connection and whether a finished one is kept."""
    return max(MIN_CONNECTIONS, cfg.transfers * cfg.upload_concurrency)


def make_client(
    *,
    timeout: float,
    base_url: str = "",
    verify: ssl.SSLContext | None = None,
    remote: str | None = None,
    connections: int = MIN_CONNECTIONS,
) -> httpx.Client:
    """The httpx client every backend uses. Uploads pass their own longer timeouts.

    At most ``connections`` at once, every one kept alive between requests.
    With ``remote``, every response is counted in ``syncd_http_requests`` by status.
    """
    hooks: dict[str, list[Callable[[httpx.Response], None]]] = {}
    if remote is not None:
        hooks["response"] = [lambda r: metrics.http_request(remote, r.status_code)]
    return httpx.Client(
        event_hooks=hooks,
        verify=verify if verify is not None else tls_context(None),
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
        # Every connection is kept: besides the handshakes saved, a sync pool that closes
        # surplus keep-alive connections can close one already handed to a waiting thread
        # (https://github.com/encode/httpcore/issues/1110; seen here with 8/4 and 24
        # threads as a spurious "Bad file descriptor" ReadError).
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        headers={"User-Agent": _agent, "Accept": "application/json"},
        follow_redirects=False,
    )


# The platform timestamps a request when it arrives, a moment after we sent it;
# windows a little longer than the platform's keep that moment from causing 429s.
WINDOW_MARGIN = 1.02
WINDOW_MARGIN_MS = 20


def limiter_rates(windows: list[tuple[int, float]]) -> list[Rate]:
    """pyrate-limiter rates for (requests, seconds) windows, shortest first, with the margin."""
    return [
        Rate(n, int(seconds * 1000 * WINDOW_MARGIN) + WINDOW_MARGIN_MS)
        for n, seconds in sorted(windows, key=lambda w: w[1])
    ]


_limiters: dict[tuple[str, tuple[tuple[int, float], ...]], Limiter] = {}
_limiters_lock = threading.Lock()


def shared_limiter(key: str, windows: list[tuple[int, float]]) -> Limiter:
    """One limiter per remote (``key``) and windows in this process, whoever builds a client.

    The preflight check, the push loop and every pull thread then draw from
    the same budget, as the platform counts them.
    """
    with _limiters_lock:
        spec = (key, tuple(sorted(windows)))
        if spec not in _limiters:
            _limiters[spec] = Limiter(limiter_rates(windows))
        return _limiters[spec]


def platform_clients(
    name: str, cfg: RemoteConfig, platform: str, auth: str
) -> tuple[Http, httpx.Client]:
    """The two clients of a backend: the API one (``Authorization: auth``, retries, the
    remote's shared rate limiter) and one without credentials for object-store or
    upload-session URLs, which carry their own signature and must never see the token.
    """
    verify = tls_context(cfg.ca_bundle)
    pool = pool_size(cfg)
    client = make_client(timeout=cfg.timeout, verify=verify, remote=name, connections=pool)
    client.headers["Authorization"] = auth
    http = Http(
        client,
        platform=platform,
        max_retries=cfg.max_retries,
        windows=cfg.windows(),
        limiter_key=f"{name}:{cfg.url}",
        remote=name,
    )
    store = make_client(
        timeout=max(cfg.timeout, 300.0), verify=verify, remote=name, connections=pool
    )
    return http, store


def reachability_of(remote: object) -> Reachability | None:
    """The outage tracker of a backend built on :class:`Http` (its ``http``), else None."""
    http = getattr(remote, "http", None)
    return http.reachability if isinstance(http, Http) else None


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds (delta or HTTP date), or None."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def describe(request: httpx.Request) -> str:
    """``GET /api/data/findByPage``: method and path only, never the query or headers."""
    return f"{request.method} {request.url.path}"


class Http:
    """Rate-limited, retrying request runner shared by all backends."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        platform: str,
        max_retries: int = 6,
        windows: list[tuple[int, float]] | None = None,
        limiter_key: str | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        remote: str | None = None,
        reachability: Reachability | None = None,
    ) -> None:
        self.client = client
        self.platform = platform
        self.remote = remote or platform  # the metrics' ``remote`` label
        # one per remote: the object-store uploads share this Http, so its outages too
        self.reachability = reachability or Reachability(self.remote)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.limiter = shared_limiter(
            limiter_key or f"{platform}@{id(self)}", windows or [(20, 1.0)]
        )
        self.requests_sent = 0
        self._quiet = Quiet(QUIET_SECONDS, mask=r"\d+")

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return min(exc.retry_after, 300.0)
        backoff = tenacity.wait_random_exponential(
            multiplier=self.backoff_base, max=self.backoff_cap
        )
        return float(backoff(state))

    def call(
        self, send: Callable[[], T], *, idempotent: bool = True, max_retries: int | None = None
    ) -> T:
        """Run ``send`` (one try of a request, mapping its own errors) under the retry policy.

        A non-idempotent request is retried only when it surely never reached
        the platform (refused connection, 429); otherwise its TransientError
        (``request_sent``) goes to the caller, who must ask the platform first.
        ``max_retries``: this call's own limit (default: the remote's).
        """

        def retryable(exc: BaseException) -> bool:
            if not isinstance(exc, TransientError):
                return False
            return idempotent or not exc.request_sent

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(retryable),
            stop=tenacity.stop_after_attempt(
                (self.max_retries if max_retries is None else max_retries) + 1
            ),
            wait=self._wait,
            before_sleep=self._before_sleep,
            reraise=True,
            sleep=time.sleep,
        )
        try:
            result = retrying(send)
        except TransientError as exc:
            self._trouble(exc, None)
            self.reachability.failed(exc)
            raise
        self._recovered()
        self.reachability.succeeded()
        return result

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        metrics.http_retry(self.remote)
        if isinstance(exc, TransientError):
            self._trouble(exc, state.next_action.sleep if state.next_action else None)

    def _trouble(self, exc: TransientError, wait: float | None) -> None:
        """Log a failed try: a new kind of error at once, the same one at most every QUIET_SECONDS."""
        failures = self._quiet.failed("requests", str(exc))
        if failures is not None:
            get_logger().warning(
                "remote.retry",
                platform=self.platform,
                error=str(exc),
                failures=failures,
                retry_in=None if wait is None else round(wait, 2),
            )

    def _recovered(self) -> None:
        failures = self._quiet.succeeded("requests")
        if failures:
            get_logger().info("remote.recovered", platform=self.platform, after_failures=failures)

    def request(
        self,
        method: str,
        url: str,
        classify: Callable[[httpx.Response], T],
        *,
        idempotent: bool = True,
        max_retries: int | None = None,
        **kwargs: Any,
    ) -> T:
        """Send a request with rate limiting and retries; ``classify`` maps the response.

        ``idempotent=False`` and ``max_retries``: see :meth:`call`.
        """

        def once() -> T:
            waited = time.monotonic()
            self.limiter.try_acquire(self.platform)
            metrics.rate_limit_wait(self.remote, time.monotonic() - waited)
            self.requests_sent += 1
            where = f"{method} {httpx.URL(url).path}"
            try:
                request = self.client.build_request(method, url, **kwargs)
                streamed = self.client.send(request, stream=True)
                try:
                    response = read_reply(
                        streamed,
                        where=where,
                        platform=self.platform,
                        limit=reply_limit(request.url.path),
                        deadline=reply_deadline(request, self.client.timeout),
                    )
                finally:
                    streamed.close()
            except httpx.TimeoutException as exc:
                metrics.http_request(self.remote, "error")
                raise TransientError(
                    f"{method} {httpx.URL(url).path}: timed out ({type(exc).__name__})",
                    platform=self.platform,
                ) from exc
            except httpx.TransportError as exc:
                metrics.http_request(self.remote, "error")
                if is_tls_failure(exc):
                    raise PermanentError(
                        f"{method} {httpx.URL(url).path}: {transport_reason(exc)}",
                        platform=self.platform,
                        code="tls",
                    ) from exc
                raise TransientError(
                    f"{method} {httpx.URL(url).path}: {transport_reason(exc)}",
                    platform=self.platform,
                    request_sent=not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout),
                ) from exc
            try:
                return classify(response)
            except RecursionError:
                # json.loads of "[[[[…" 200 000 deep: a broken or hostile reply, not our bug
                raise TransientError(
                    f"{where}: the reply's JSON is nested too deeply to read",
                    platform=self.platform,
                    code="reply_too_deep",
                ) from None

        return self.call(once, idempotent=idempotent, max_retries=max_retries)

    def probe(self, url: str) -> bool:
        """One GET of ``url`` (the platform's address), no retry: does the platform answer?

        Any reply below 500 is an answer (a 401 or a 404 of the web root
        included: something serves there); a 5xx, a 429 or no reply is not.
        Reported to :attr:`reachability` like every request, so an outage
        ends with the first probe that is answered. Raises nothing.
        """

        def answered(response: httpx.Response) -> bool:
            error = status_error(response, self.platform)
            if error is not None:
                raise error
            return True

        try:
            return self.request("GET", url, answered, max_retries=0)
        except SyncdError:
            return False


# --- bounded replies -------------------------------------------------------------------------
# A platform (or something posing as one) decides how much it sends and how
# slowly; syncd decides how much it reads and for how long.

API_REPLY_MAX = 16 * 1024 * 1024
# Listings and label documents of a whole dataset or scene are the large
# replies (Deepen's /files and /labels, Xtreme1's getDataAndResult); a page
# of them stays far below this even for long sequences.
LISTING_REPLY_MAX = 128 * 1024 * 1024
_LISTING_PATH = re.compile(r"(?i)(/files|/labels?|/getDataAndResult|/export)\b")
# The whole reply must arrive within this many read timeouts (each read has
# its own timeout too: a trickle of one byte per read would never trip it).
DEADLINE_FACTOR = 3.0


def reply_limit(path: str) -> int:
    """The most bytes (decoded) syncd reads of a reply to ``path``."""
    return LISTING_REPLY_MAX if _LISTING_PATH.search(path) else API_REPLY_MAX


def reply_deadline(request: httpx.Request, default: httpx.Timeout) -> float:
    """The monotonic time by which the reply's body must be read in full."""
    timeout = request.extensions.get("timeout") or {}
    read = timeout.get("read", default.read) if isinstance(timeout, dict) else default.read
    return time.monotonic() + DEADLINE_FACTOR * float(read or 60.0)


def read_reply(
    response: httpx.Response, *, where: str, platform: str, limit: int, deadline: float
) -> httpx.Response:
    """The streamed ``response`` read into memory, bounded in size and time.

    Contract: at most ``limit`` decoded bytes are read (a larger
    ``Content-Length`` is refused before reading): more is a PermanentError
    naming the endpoint (the same request would get the same reply); a body
    still arriving at ``deadline`` is a TransientError (retried). The result
    is an ordinary response holding the body, for the backend's ``classify``.
    """
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(where, platform, limit, int(declared))
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limit:
            raise _too_large(where, platform, limit, None)
        if time.monotonic() > deadline:
            raise TransientError(
                f"{where}: the reply was still arriving after its deadline "
                f"({len(body)} bytes so far); the platform or the network is too slow",
                platform=platform,
                code="reply_deadline",
            )
    headers = response.headers.copy()
    headers.pop("Content-Encoding", None)  # the body is decoded already
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=bytes(body),
        request=response.request,
        extensions=response.extensions,
    )


def _too_large(where: str, platform: str, limit: int, declared: int | None) -> PermanentError:
    size = f"{declared} bytes" if declared is not None else "more"
    return PermanentError(
        f"{where}: the reply is too large ({size}; syncd reads at most {limit // 2**20} MiB "
        "of this kind of reply)",
        platform=platform,
        code="reply_too_large",
    )


def is_tls_failure(exc: httpx.TransportError) -> bool:
    """A certificate that is not trusted: retrying cannot help, the configuration must change."""
    return isinstance(exc, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in str(exc)


def transport_reason(exc: httpx.TransportError) -> str:
    """A short human reason for a transport failure, without URLs."""
    text = str(exc) or type(exc).__name__
    if is_tls_failure(exc):
        detail = text.split("certificate verify failed:")[-1].split("(")[0].strip() or "unknown CA"
        return (
            f"the platform's TLS certificate is not trusted ({detail}); give the CA's PEM file "
            "as the remote's ca_bundle"
        )
    if isinstance(exc, httpx.ConnectError):
        if "refused" in text.lower():
            return "connection refused (is the platform running and the url right?)"
        if "name or service not known" in text.lower() or "nodename" in text.lower():
            return "host name not found (check the url)"
        return f"cannot connect ({text})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"connection broken ({text})"
    return f"{type(exc).__name__}: {text}"


QUIET_SECONDS = 30.0


def status_error(response: httpx.Response, platform: str) -> TransientError | None:
    """The transient error for 429 / 5xx / 408 responses, else None."""
    code = response.status_code
    where = describe(response.request)
    if code == 429:
        return RateLimited(
            f"{where}: rate limited (HTTP 429)",
            platform=platform,
            code="429",
            retry_after=retry_after_seconds(response),
        )
    if code in (408, 425) or code >= 500:
        return TransientError(f"{where}: HTTP {code}", platform=platform, code=str(code))
    return None
