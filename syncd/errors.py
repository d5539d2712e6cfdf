"""The error tree of syncd.

Every error that reaches a user is one of these, with a message that says
what happened and what to do next::

    SyncdError
    ├── ConfigError            bad configuration or usage (exit code 2)
    ├── StoreError             the state database cannot be opened or written
    │   └── StoreUnavailable   the database server cannot be reached now (restarting, down)
    ├── LocalDataError         a unit's files vanished, changed or cannot be read
    └── RemoteError            anything the platform (or the way to it) said
        ├── TransientError     worth retrying: network, timeouts, 429, 5xx
        │   └── RateLimited    429 / a rate-limit code; carries retry_after
        └── PermanentError     retrying will not help: the reason is kept
            ├── AuthError      401 / bad token
            ├── NotFoundError  the dataset, item or serial does not exist
            ├── RemoteRejected a business error or a failed processing
            ├── ReplyShapeError a reply syncd cannot read (a field missing or of another type)
            └── UploadSessionExpired  a resumable upload session is dead: open a new one

Lower-level exceptions (httpx, OSError, sqlite3) are mapped to the most
specific class with ``raise … from exc`` so the cause stays in the chain.
"""

from __future__ import annotations


class SyncdError(Exception):
    """Base of every error syncd raises on purpose."""


class ConfigError(SyncdError):
    """The configuration or the command line is wrong. The CLI exits with 2."""


class StoreError(SyncdError):
    """The state database could not be opened, migrated or written."""


class StoreUnavailable(StoreError):
    """The database server cannot be reached now (restarting, down, connection cut).

    A wait, not a fault of the step: the daemon reports the outage once
    (``store.unavailable`` / ``store.available``) and runs the step again.
    ``counted``: the store has counted this failure in the outage already.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.counted = False


class LocalDataError(SyncdError):
    """A unit's files vanished, changed while being read, or are unreadable."""


class RemoteError(SyncdError):
    """The platform answered with an error, or could not be reached.

    ``platform`` names the backend, ``code`` is the platform's own error code
    (or the HTTP status) when there is one.
    """

    def __init__(self, message: str, *, platform: str = "", code: str | None = None) -> None:
        super().__init__(message)
        self.platform = platform
        self.code = code


class TransientError(RemoteError):
    """Retrying later may succeed: network errors, timeouts, 5xx, 429.

    ``request_sent`` is False only when the request certainly never reached
    the platform (connection refused, 429): callers of non-idempotent calls
    use it to know whether the platform may have acted.
    """

    def __init__(
        self,
        message: str,
        *,
        platform: str = "",
        code: str | None = None,
        request_sent: bool = True,
    ) -> None:
        super().__init__(message, platform=platform, code=code)
        self.request_sent = request_sent


class RateLimited(TransientError):
    """The platform asked us to slow down; ``retry_after`` is in seconds, if given."""

    def __init__(
        self,
        message: str,
        *,
        platform: str = "",
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, platform=platform, code=code, request_sent=False)
        self.retry_after = retry_after


class PermanentError(RemoteError):
    """Retrying the same request will fail again; the package goes to ``failed``."""


class AuthError(PermanentError):
    """The token is missing, wrong, revoked or expired."""


class NotFoundError(PermanentError):
    """The dataset, item or record does not exist on the platform."""


class RemoteRejected(PermanentError):
    """The platform refused the request (business error) or processing failed."""


class ReplyShapeError(PermanentError):
    """A reply lacks a field syncd reads, or holds it with another type.

    ``endpoint`` is the request (``GET /data/findByPage``), ``field`` the
    path of the field in the reply (``list[0].id``, ``""`` for the whole
    reply), ``received`` the shape that came instead (types and keys, no
    values; for a missing field, the keys of the object that lacks it). Permanent, because the same request gets the same reply: retrying
    at once cannot help, and guessing would turn an unknown shape into a
    silent empty result. A push step fails with the reason (``syncd retry``
    after an upgrade); a pull cycle fails before committing anything of the
    page (``pull.failed``), and the next scheduled cycle asks again.
    """

    def __init__(
        self,
        message: str,
        *,
        platform: str = "",
        endpoint: str,
        field: str,
        received: str,
        problem: str = "",
    ) -> None:
        super().__init__(message, platform=platform, code="REPLY_SHAPE")
        self.endpoint = endpoint
        self.field = field
        self.received = received
        self.problem = problem  # "field required", "input should be a valid integer", …


class UploadSessionExpired(PermanentError):
    """A resumable upload session is gone (expired, cancelled, unknown).

    Permanent for that session; the pipeline records it and opens a new one.
    """


class Cancelled(SyncdError):
    """The daemon's drain deadline passed: stop the step in flight, keep its state.

    Never retried. The step's last committed state is its checkpoint; the
    next start takes the package up again from there.
    """
