"""Configuration: TOML → ``${VAR}`` expansion → one validation pass → :class:`Config`.

Contract:

* :func:`load_config` reads the file named by ``--config`` or ``SYNCD_CONFIG``;
  every problem raises :class:`~syncd.errors.ConfigError` whose message starts
  with the key path and names the bad value, e.g.
  ``syncs[front-lidar].remote: no remote named 'lab2'``.
* ``${VAR}`` in any string is replaced by the environment variable (``$$``
  stands for a literal ``$``); an unset variable is an error naming the key.
* A remote takes ``token`` or ``token_file`` (a path; relative paths resolve
  against ``$CREDENTIALS_DIRECTORY`` when systemd sets it, else against the
  config file's folder). The file's content, stripped, is the token.
* A ``[remotes.NAME]`` table is validated by the model its ``platform`` names
  (:data:`PlatformConfig`: the shared :class:`RemoteConfig` keys plus the
  platform's own); a key of another platform is an error naming it, e.g.
  ``remotes.lab.client_id: not a key of platform "xtreme1" (it belongs to deepen)``.
* Durations are ``"90s"``, ``"5m"``, ``"1h30m"`` or a number of seconds;
  sizes are ``"512MiB"``, ``"2GB"`` or a number of bytes.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from syncd.errors import ConfigError
from syncd.protect import check_token_file, redact_urls, warn_plain_http

_DURATION_RE = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$"
)
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_RATE_RE = re.compile(
    r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$",
    re.IGNORECASE,
)
_RATE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_VAR_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

DEFAULT_EXCLUDE = (".*", "*~", "*.tmp", "*.part", "*.partial", "*.swp", "~$*", "__MACOSX")


def parse_duration(value: Any) -> float:
    """Seconds from ``"90s"``, ``"5m"``, ``"1h30m"`` or a plain number."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value!r}")
        return float(value)
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m and any(m.groups()):
            h, mi, s = (float(g) if g else 0.0 for g in m.groups())
            return h * 3600 + mi * 60 + s
        try:
            return parse_duration(float(value))
        except ValueError:
            pass
    raise ValueError(f"not a duration: {value!r} (use e.g. '90s', '5m', '1h30m')")


def parse_size(value: Any) -> int:
    """Bytes from ``"512MiB"``, ``"2GB"`` or a plain number."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value!r}")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            unit = (m.group(2) or "b").lower()
            return int(float(m.group(1)) * _SIZE_UNITS[unit])
    raise ValueError(f"not a size: {value!r} (use e.g. '512MiB', '4GiB')")


def parse_rate(value: Any) -> tuple[int, float]:
    """``"100/s"``, ``"3000/min"``, ``"40/5s"`` → (requests, window seconds)."""
    m = _RATE_RE.match(value) if isinstance(value, str) else None
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"not a rate limit: {value!r} (use e.g. '100/s', '3000/min', '72000/h')")
    per = float(m.group(2) or 1) * _RATE_UNITS[m.group(3)[0].lower()]
    if per <= 0:
        raise ValueError(f"not a rate limit: {value!r} (the window must be longer than 0)")
    return int(m.group(1)), per


def _check_rate(value: Any) -> str:
    parse_rate(value)
    return str(value)


# The task types of a Segments.ai dataset (the SDK's TaskType).
SegmentsTaskType = Literal[
    "segmentation-bitmap",
    "segmentation-bitmap-highres",
    "bboxes",
    "vector",
    "keypoints",
    "image-segmentation-sequence",
    "image-vector-sequence",
    "pointcloud-cuboid",
    "pointcloud-segmentation",
    "pointcloud-vector",
    "pointcloud-cuboid-sequence",
    "pointcloud-segmentation-sequence",
    "pointcloud-vector-sequence",
    "multisensor-sequence",
]

Duration = Annotated[float, BeforeValidator(parse_duration)]
RateLimit = Annotated[str, BeforeValidator(_check_rate)]
Size = Annotated[int, BeforeValidator(parse_size)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_PG_SCHEMES = ("postgresql+psycopg", "postgresql")
_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    return re.sub(r"^([a-z0-9+]+://[^:/@]*):[^@]*@", r"\1:***@", url, flags=re.IGNORECASE)


class StateConfig(_Model):
    """``[state]``: where the database lives (a new folder is created 0700).

    ``database_url`` unset: SQLite at ``<dir>/syncd.db`` (one daemon). Set to
    ``postgresql+psycopg://user@host:5432/db``: a PostgreSQL store shared by a
    fleet of daemons (``dir`` is then only the spool). ``host`` names this
    machine in events and owns the packages of its folders; it defaults to
    the system's host name.
    """

    dir: Path = Path("/var/lib/syncd")
    database_url: str | None = Field(default=None, repr=False)
    host: str = Field(default_factory=socket.gethostname)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        scheme, sep, rest = v.partition("://")
        if not sep or scheme.lower() not in _PG_SCHEMES or not rest.strip("/"):
            raise ValueError(
                f"not a PostgreSQL URL: {masked_url(v)!r} (use "
                "'postgresql+psycopg://USER@HOST:5432/DATABASE'; leave it out for SQLite in state.dir)"
            )
        # psycopg 3 is the driver syncd ships; a bare postgresql:// means the same server.
        return f"postgresql+psycopg://{rest}"

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not _HOST_RE.match(v):
            raise ValueError(f"not a host name: {v!r} (letters, digits, '.', '_', '-')")
        return v

    @property
    def db_path(self) -> Path:
        return self.dir / "syncd.db"

    @property
    def database(self) -> str:
        """What to name the database in messages: the SQLite file, or the URL without password."""
        return masked_url(self.database_url) if self.database_url else str(self.db_path)


class LogConfig(_Model):
    """``[log]``: ``auto`` renders for people on a TTY and JSON lines otherwise."""

    format: Literal["json", "console", "auto"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class DaemonConfig(_Model):
    """``[daemon]``: how ``syncd run`` behaves as a service."""

    # SIGTERM: the step in flight may finish for this long, then transfers are
    # cut at their last checkpoint (systemd's TimeoutStopSec must be longer).
    shutdown_timeout: Duration = 30.0
    # A stage (the push loop, the watcher, the scheduler, a running pull) that
    # shows no progress for this long is stalled: systemd's watchdog pings
    # stop, /healthz answers 503, ``syncd health`` fails. Long enough for a
    # request's whole retry plan (timeouts, backoff, Retry-After).
    stall_timeout: Duration = 900.0

    @field_validator("stall_timeout")
    @classmethod
    def _stall(cls, v: float) -> float:
        if v < 1:
            raise ValueError(f"must be at least 1s, got {v:g}s")
        return v


class ServerConfig(_Model):
    """``[server]``: the optional HTTP listener for ``/healthz`` and ``/metrics`` (off by default)."""

    listen: str | None = None  # "127.0.0.1:9187"; "[::1]:9187"; "0.0.0.0:9187" in a container

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        if v is not None:
            parse_listen(v)
        return v

    def address(self) -> tuple[str, int] | None:
        return None if self.listen is None else parse_listen(self.listen)


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9187"`` / ``"[::1]:9187"`` → (host, port)."""
    m = re.match(r"^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$", value.strip())
    if not m or not 0 < int(m.group(3)) < 65536:
        raise ValueError(f"not host:port: {value!r} (use e.g. '127.0.0.1:9187')")
    return m.group(1) or m.group(2), int(m.group(3))


class RemoteConfig(_Model):
    """``[remotes.NAME]``: the keys of every platform (endpoint, credentials, HTTP behaviour).

    Each platform's model below adds its own keys; a remote is validated by
    the model its ``platform`` names (:data:`PlatformConfig`), so a key of
    another platform is an error naming the key and the platform it belongs to.
    """

    platform: str  # one Literal per platform model: the discriminator of PlatformConfig
    url: str
    token: str | None = Field(default=None, repr=False)
    token_file: Path | None = None
    timeout: Duration = 30.0
    # PEM file of the CA that signed the platform's certificate (a private CA);
    # verification itself is always on
    ca_bundle: Path | None = None
    max_retries: int = Field(default=6, ge=0, le=100)
    # Client-side windows shared by all of this remote's API calls; None = the platform's default.
    rate_limits: tuple[RateLimit, ...] | None = None
    poll_interval: Duration = 3.0
    # Files stored at once by a per-file push (BasicAI, Segments.ai): the object
    # store's PUTs/POSTs in flight for this remote; API calls still pass the rate limiter.
    transfers: int = Field(default=8, ge=1, le=64)
    # Packages of this remote worked on at once (uploading, submitting, following
    # processing), so one that waits on the platform never holds up the next.
    upload_concurrency: int = Field(default=3, ge=1, le=32)

    # The windows the platform documents; a platform that documents none gets a
    # gentle default that protects a self-hosted installation.
    default_rate_limits: ClassVar[tuple[str, ...]] = ("20/s",)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"not an http(s) URL: {v!r}")
        return v.rstrip("/")

    @field_validator("ca_bundle")
    @classmethod
    def _ca(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"no such file: {str(v)!r}")
        return v

    @model_validator(mode="after")
    def _one_token(self) -> Self:
        if (self.token is None) == (self.token_file is None):
            raise ValueError("give exactly one of 'token' or 'token_file'")
        return self

    def windows(self) -> list[tuple[int, float]]:
        """The rate-limit windows in force: (requests, seconds), as configured or by platform."""
        limits = self.rate_limits if self.rate_limits is not None else self.default_rate_limits
        return [parse_rate(r) for r in limits]

    def resolved_token(self) -> str:
        """The token, reading ``token_file`` now; raises ConfigError if unreadable."""
        if self.token is not None:
            return self.token
        assert self.token_file is not None
        check_token_file(self.token_file, "token_file")
        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"token_file {str(self.token_file)!r}: {exc.strerror}") from exc
        if not token:
            raise ConfigError(f"token_file {str(self.token_file)!r}: the file is empty")
        return token


class Xtreme1Config(RemoteConfig):
    """``platform = "xtreme1"``: the shared keys only (a self-hosted installation, 20/s)."""

    platform: Literal["xtreme1"]


class BasicAIConfig(RemoteConfig):
    """``platform = "basicai"``: the shared keys; BasicAI's documented rate limits by default."""

    platform: Literal["basicai"]
    # The four windows per API key of BasicAI's OpenAPI guide.
    default_rate_limits: ClassVar[tuple[str, ...]] = ("100/s", "3000/min", "72000/h", "864000/d")


class DeepenConfig(RemoteConfig):
    """``platform = "deepen"``: the workspace, how datasets are created, chunked resumable uploads."""

    platform: Literal["deepen"]
    client_id: str | None = None
    # What goes inside the zip of a LiDAR sync: Deepen's JSON input format (the
    # default, recommended by Deepen) or its PCD format (docs/platforms/deepen-formats.md).
    dataset_format: Literal["default", "json"] = "json"
    labelling_mode: Literal["frame_by_frame", "label_by_label"] = "frame_by_frame"
    upload_chunk_size: Size = 8 * 2**20
    pull_all_datasets: bool = False

    @field_validator("upload_chunk_size")
    @classmethod
    def _chunk(cls, v: int) -> int:
        # GCS takes only multiples of 256 KiB for every chunk but the last.
        if v <= 0 or v % (256 * 1024):
            raise ValueError(f"must be a positive multiple of 256KiB, got {v} bytes")
        return v

    @model_validator(mode="after")
    def _client_id(self) -> Self:
        if not self.client_id:
            raise ValueError("client_id is required for deepen (Deepen issues it with the token)")
        return self


class SegmentsConfig(RemoteConfig):
    """``platform = "segments"``: the organisation that owns the datasets (default: the API
    key's user); the task type and categories of a dataset syncd creates (task_type default
    by dataset_type); the labelset pulled and the one pre-labels go to."""

    platform: Literal["segments"]
    organization: str | None = None
    task_type: SegmentsTaskType | None = None
    categories: tuple[str, ...] = ()
    labelset: str = Field(default="ground-truth", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    prelabel_labelset: str = Field(
        default="ground-truth", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
    )

    @field_validator("categories")
    @classmethod
    def _categories(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            if not name.strip():
                raise ValueError("a category name must not be empty")
            if v.count(name) > 1:
                raise ValueError(f"the category {name!r} is listed twice")
        return v


# The one list of platforms: a remote is validated by the model its ``platform`` names.
# syncd.remotes.registry pairs each model with its backend class.
PlatformConfig = Annotated[
    Xtreme1Config | BasicAIConfig | DeepenConfig | SegmentsConfig,
    Field(discriminator="platform"),
]
PLATFORM_CONFIGS: tuple[type[RemoteConfig], ...] = get_args(get_args(PlatformConfig)[0])


def platform_name(model: type[RemoteConfig]) -> str:
    """The ``platform`` value a platform's model takes (its Literal)."""
    return str(get_args(model.model_fields["platform"].annotation)[0])


def remote_config(**keys: Any) -> PlatformConfig:
    """One ``[remotes.NAME]`` table validated by its platform's model (for tools and tests)."""
    return _REMOTE_ADAPTER.validate_python(keys)


_REMOTE_ADAPTER: TypeAdapter[PlatformConfig] = TypeAdapter(PlatformConfig)


class SyncConfig(_Model):
    """``[[syncs]]``: one watched folder bound to one dataset of one remote."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    remote: str
    dataset: str = Field(min_length=1, max_length=200)
    dataset_type: Literal["LIDAR_FUSION", "LIDAR_BASIC", "IMAGE"] = "LIDAR_FUSION"
    folder: Path | None = None
    push: bool = True
    pull: bool = True
    settle_seconds: Duration = 10.0
    ready_marker: str | None = None
    # auto: native (inotify), polling when a kernel limit is reached; poll: for
    # network filesystems, where native events do not arrive
    watch_mode: Literal["auto", "native", "poll"] = "auto"
    watch_poll_interval: Duration = 5.0
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    max_package_bytes: Size = 4 * 2**30
    name_collision: Literal["rename", "refuse"] = "rename"
    result_type: Literal["GROUND_TRUTH", "MODEL_RUN"] = "GROUND_TRUTH"
    pull_interval: Duration = 60.0
    full_sweep_interval: Duration = 3600.0
    processing_timeout: Duration = 1800.0
    submit_uncertain_wait: Duration = 300.0

    @model_validator(mode="after")
    def _folder_when_push(self) -> SyncConfig:
        if self.push and self.folder is None:
            raise ValueError("'folder' is required when push is on (set push = false to only pull)")
        if self.max_package_bytes < 1024:
            raise ValueError(f"max_package_bytes: {self.max_package_bytes} is too small")
        return self


class Config(_Model):
    """The whole validated configuration."""

    state: StateConfig = StateConfig()
    log: LogConfig = LogConfig()
    daemon: DaemonConfig = DaemonConfig()
    server: ServerConfig = ServerConfig()
    remotes: dict[str, PlatformConfig] = Field(default_factory=dict)
    syncs: list[SyncConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross(self) -> Config:
        seen: set[str] = set()
        for s in self.syncs:
            if s.name in seen:
                raise _KeyError(f"syncs[{s.name}].name", f"the name {s.name!r} is used twice")
            seen.add(s.name)
            if s.remote not in self.remotes:
                known = ", ".join(sorted(self.remotes)) or "none defined"
                raise _KeyError(
                    f"syncs[{s.name}].remote", f"no remote named {s.remote!r} (known: {known})"
                )
        return self

    def sync(self, name: str) -> SyncConfig:
        for s in self.syncs:
            if s.name == name:
                return s
        raise KeyError(name)


class _KeyError(ValueError):
    """A cross-field error that knows its own key path."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def _expand(value: Any, key: str) -> Any:
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            var = m.group(1)
            if var not in os.environ:
                raise ConfigError(f"{key}: environment variable {var} is not set")
            return os.environ[var]

        return _VAR_RE.sub(repl, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{key}.{k}" if key else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


def _key_path(loc: tuple[int | str, ...], raw: dict[str, Any]) -> str:
    """``('syncs', 0, 'remote')`` → ``syncs[front-lidar].remote`` (the sync's name, if any)."""
    parts: list[str] = []
    node: Any = raw
    for i, part in enumerate(loc):
        if isinstance(part, int):
            label = str(part)
            if isinstance(node, list) and 0 <= part < len(node):
                item = node[part]
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    label = item["name"]
                node = item
            else:
                node = None
            parts.append(f"[{label}]")
        else:
            if i == 0 or not parts:
                parts.append(str(part))
            else:
                parts.append(f".{part}")
            node = node.get(part) if isinstance(node, dict) else None
    return "".join(parts)


def _format_validation(exc: ValidationError, raw: dict[str, Any]) -> str:
    lines = []
    for err in exc.errors():
        ctx_err = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_err, _KeyError):
            lines.append(f"{ctx_err.key}: {ctx_err.message}")
            continue
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        platform = None
        if loc[:1] == ("remotes",) and len(loc) > 2 and loc[2] in _PLATFORM_KEYS:
            # remotes.NAME.<platform>.key: the union's tag is not part of the key path
            platform, loc = str(loc[2]), loc[:2] + loc[3:]
        key = _key_path(loc, raw) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = _unknown_key(str(loc[-1]), platform)
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "union_tag_not_found":
            key, msg = f"{key}.platform", "required key is missing"
        elif err["type"] == "union_tag_invalid":
            got = (err.get("ctx") or {}).get("tag")
            key, msg = (
                f"{key}.platform",
                f"not a platform: {got!r} (known: {', '.join(_PLATFORM_KEYS)})",
            )
        elif (
            "input" in err
            and repr(err["input"]) not in msg
            and err["type"] != "model_type"
            and err["loc"][-1:] != ("database_url",)  # may hold a password: the message masks it
            and err["loc"][-1:] != ("token",)  # a secret, even when it is not a string
            # a whole section (a model-level check) is not echoed: it may hold the token
            and not isinstance(err["input"], dict)
        ):
            msg = f"{msg} (got {err['input']!r})"
        lines.append(f"{key}: {msg}")
    return redact_urls("; ".join(lines))  # user:password@ in a URL is a secret too


# platform → the keys of its model that the shared RemoteConfig does not have
_PLATFORM_KEYS: dict[str, frozenset[str]] = {
    platform_name(m): frozenset(m.model_fields) - frozenset(RemoteConfig.model_fields)
    for m in PLATFORM_CONFIGS
}


def _unknown_key(key: str, platform: str | None) -> str:
    """Why ``key`` is not accepted: another platform's key, or a misspelling."""
    owners = [p for p, keys in _PLATFORM_KEYS.items() if key in keys and p != platform]
    if platform is not None and owners:
        return f'not a key of platform "{platform}" (it belongs to {" and ".join(owners)})'
    return "unknown key (check its spelling against config/syncd.example.toml)"


def folder_problem(sync: SyncConfig) -> str | None:
    """Why a push sync's folder cannot be watched now (one line naming key and value), or None."""
    if not sync.push or sync.folder is None:
        return None
    key = f"syncs[{sync.name}].folder: {str(sync.folder)!r}"
    if not sync.folder.exists():
        return f"{key} does not exist (create it, or fix the path)"
    if not sync.folder.is_dir():
        return f"{key} is not a folder"
    if not os.access(sync.folder, os.R_OK | os.X_OK):
        return f"{key} cannot be read by this user (permission denied)"
    return None


def check_folders(cfg: Config) -> None:
    """Raise ConfigError for the first push folder that cannot be watched (``run``, ``once``)."""
    for s in cfg.syncs:
        problem = folder_problem(s)
        if problem:
            raise ConfigError(problem)


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """The config file to use: ``--config``, else ``$SYNCD_CONFIG``, else an error."""
    value = explicit or os.environ.get("SYNCD_CONFIG")
    if not value:
        raise ConfigError("no configuration: pass --config FILE or set SYNCD_CONFIG")
    return Path(value)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, expand and validate a TOML config file; raise ConfigError on any problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {str(p)!r} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"config file {str(p)!r} cannot be read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {str(p)!r} is not UTF-8 text") from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from exc
    return parse_config(raw, base_dir=p.resolve().parent)


def parse_config(raw: dict[str, Any], *, base_dir: Path) -> Config:
    """Validate an already-parsed TOML document (see :func:`load_config`)."""
    expanded = _expand(raw, "")
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    for name, remote in (expanded.get("remotes") or {}).items():
        if isinstance(remote, dict) and isinstance(remote.get("token_file"), str):
            tf = Path(remote["token_file"])
            if not tf.is_absolute():
                tf = Path(cred_dir) / tf if cred_dir else base_dir / tf
            remote["token_file"] = str(tf)
        if isinstance(remote, dict) and isinstance(remote.get("ca_bundle"), str):
            ca = Path(remote["ca_bundle"])
            remote["ca_bundle"] = str(ca if ca.is_absolute() else base_dir / ca)
        del name
    state = expanded.get("state")
    if isinstance(state, dict) and isinstance(state.get("dir"), str):
        d = Path(state["dir"])
        state["dir"] = str(d if d.is_absolute() else base_dir / d)
    for sync in expanded.get("syncs") or []:
        if isinstance(sync, dict) and isinstance(sync.get("folder"), str):
            f = Path(sync["folder"])
            sync["folder"] = str(f if f.is_absolute() else base_dir / f)
    try:
        cfg = Config.model_validate(expanded)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, expanded)) from None
    for name, remote in cfg.remotes.items():
        try:
            remote.resolved_token()
        except ConfigError as exc:
            raise ConfigError(f"remotes.{name}.{exc}") from None
        warn_plain_http(name, remote.url)
    return cfg
