"""The ``syncd`` command: run | once | check | status | events | sandbox | demo.

Exit codes (documented in docs/operating.md): 0 success; 1 something failed at run
time (a package failed, the platform unreachable, a token refused); 2 bad
configuration or usage. Errors are one line on stderr, never a traceback
(set ``SYNCD_DEBUG=1`` to see one).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from syncd import __version__
from syncd.config import Config, check_folders, config_path, folder_problem, load_config
from syncd.errors import AuthError, ConfigError, PermanentError, SyncdError
from syncd.log import configure
from syncd.remotes.registry import platform_names

if TYPE_CHECKING:
    from syncd.daemon import Daemon

F = TypeVar("F", bound=Callable[..., Any])

config_option = click.option(
    "--config",
    "-c",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config file (TOML). Default: $SYNCD_CONFIG.",
)


def die(message: str, code: int) -> NoReturn:
    click.echo(f"syncd: error: {message}", err=True)
    sys.exit(code)


def _load(config_file: str | None) -> Config:
    cfg = load_config(config_path(config_file))
    configure(cfg.log.format, cfg.log.level)
    return cfg


def guarded(fn: F) -> F:
    """Turn our errors into one-line messages and exit codes."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            die(str(exc), 2)
        except SyncdError as exc:
            if os.environ.get("SYNCD_DEBUG"):
                raise
            die(str(exc), 1)
        except KeyboardInterrupt:
            sys.exit(130)
        except Exception as exc:
            if os.environ.get("SYNCD_DEBUG"):
                raise
            die(f"unexpected {type(exc).__name__}: {exc} (set SYNCD_DEBUG=1 for details)", 1)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="syncd")
def cli() -> None:
    """Keep local sensor-data folders and annotation platforms in sync."""


@cli.command()
@config_option
@guarded
def run(config_file: str | None) -> None:
    """Run the daemon in the foreground until SIGTERM or Ctrl-C."""
    from syncd.daemon import Daemon

    # Until the daemon's own handlers are in place nothing is in flight: a
    # stop request during start-up is a clean exit.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    path = config_path(config_file)
    cfg = _load(str(path))
    check_folders(cfg)
    daemon = Daemon(cfg, config_file=path)
    try:
        _preflight(daemon, fatal_unreachable=False)
        code = daemon.run()
    finally:
        daemon.close()
    sys.exit(code)


@cli.command()
@config_option
@click.option("--timeout", default="1h", show_default=True, help="Give up waiting after this long.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="A progress bar on stdout (default: when stdout is a terminal).",
)
@guarded
def once(config_file: str | None, timeout: str, progress: bool | None) -> None:
    """One full cycle: upload every settled unit, wait for processing, pull; then exit.

    Exit code 0 when everything is done, 1 when something failed.
    """
    from syncd.config import parse_duration
    from syncd.daemon import Daemon

    try:
        seconds = parse_duration(timeout)
    except ValueError as exc:
        raise ConfigError(f"--timeout: {exc}") from None
    cfg = _load(config_file)
    check_folders(cfg)
    from syncd.progress import ProgressBar

    daemon = Daemon(cfg)
    bar = (
        ProgressBar(sys.stdout) if (sys.stdout.isatty() if progress is None else progress) else None
    )
    try:
        _preflight(daemon, fatal_unreachable=True)
        code = daemon.once(timeout=seconds, progress=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()
        daemon.close()
    sys.exit(code)


def _preflight(daemon: Daemon, *, fatal_unreachable: bool) -> None:
    """Reach every remote once: a refused token is always fatal; unreachable only for ``once``."""
    from syncd.remotes import build_remote

    with daemon.metrics.bound():  # the probes' requests count in the daemon's metrics
        for name, rc in daemon.cfg.remotes.items():
            probe = build_remote(name, rc)
            try:
                probe.check()
            except AuthError as exc:
                raise AuthError(f"remote {name!r}: {exc}") from None
            except PermanentError as exc:
                if exc.code == "tls":  # a setting to change, not an outage to wait out
                    raise ConfigError(f"remotes.{name}.ca_bundle: {exc}") from None
                raise type(exc)(f"remote {name!r}: {exc}") from None
            except SyncdError as exc:
                if fatal_unreachable:
                    raise type(exc)(f"remote {name!r}: {exc}") from None
                daemon.log.warning("remote.unreachable", remote=name, error=str(exc))
            finally:
                probe.close()


@cli.command()
@config_option
@click.option(
    "--live",
    is_flag=True,
    help="Check every reply syncd relies on against the platform: one row per assumption.",
)
@click.option("--remote", "remote_name", default=None, help="With --live: only this remote.")
@click.option(
    "--write",
    is_flag=True,
    help="With --live: push a tiny unit through a scratch dataset syncd-check-<random>.",
)
@click.option("--json", "as_json", is_flag=True, help="With --live: the rows as JSON.")
@guarded
def check(
    config_file: str | None, live: bool, remote_name: str | None, write: bool, as_json: bool
) -> None:
    """Check the config, the folders, the state dir, and reach every remote with its token.

    With --live: see docs/operating.md, "Verify against your platform".
    """
    from syncd.remotes import build_remote

    cfg = _load(config_file)
    if live or write or remote_name or as_json:
        if not live:
            raise ConfigError("--remote, --write and --json go with --live")
        from syncd import live as live_check
        from syncd.live import rows as live_rows
        from syncd.log import configure

        # The scratch push's own events would bury the table: warnings and errors only.
        configure(
            cfg.log.format, "warning" if cfg.log.level in ("debug", "info") else cfg.log.level
        )

        found = live_check.run(cfg, remote=remote_name, write=write)
        click.echo(live_rows.as_json(found) if as_json else live_rows.as_table(found))
        sys.exit(0 if live_rows.passed(found) else 1)
    problems = 0
    for s in cfg.syncs:
        problem = folder_problem(s)
        if problem:
            click.echo(f"FAIL {problem}", err=True)
            problems += 1
        else:
            click.echo(
                f"ok   sync {s.name}: {s.folder if s.push else 'pull only'} → {s.remote}/{s.dataset}"
            )
    if cfg.state.database_url is not None:
        from syncd.status import database_check

        try:
            click.echo(f"ok   database {database_check(cfg)}")
        except SyncdError as exc:
            click.echo(f"FAIL database: {exc}", err=True)
            problems += 1
    for name, rc in cfg.remotes.items():
        remote = build_remote(name, rc, max_retries=1)
        try:
            click.echo(f"ok   remote {name}: {remote.check()}")
        except SyncdError as exc:
            click.echo(f"FAIL remote {name}: {exc}", err=True)
            problems += 1
        finally:
            remote.close()
    if problems:
        sys.exit(1)


@cli.command()
@config_option
@click.option(
    "--max-age",
    default="60s",
    show_default=True,
    help="Unhealthy when the daemon's heartbeat is older than this.",
)
@guarded
def health(config_file: str | None, max_age: str) -> None:
    """Exit 0 when the running daemon's heartbeat is fresh and every stage alive, else 1.

    Reads ``<state.dir>/heartbeat.json``, which ``syncd run`` rewrites every few
    seconds (Docker's HEALTHCHECK runs this).
    """
    from syncd.config import parse_duration
    from syncd.health import read_heartbeat_file

    try:
        seconds = parse_duration(max_age)
    except ValueError as exc:
        raise ConfigError(f"--max-age: {exc}") from None
    cfg = load_config(config_path(config_file))
    ok, reason = read_heartbeat_file(cfg.state.dir, seconds)
    click.echo(reason, err=not ok)
    sys.exit(0 if ok else 1)


@cli.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@guarded
def status(config_file: str | None, as_json: bool) -> None:
    """Packages by state, the last pull of every sync, and recent errors."""
    from syncd.status import collect, render

    cfg = _load(config_file)
    report = collect(cfg)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        click.echo(render(report))


@cli.command()
@config_option
@click.option(
    "--limit",
    "-n",
    type=int,
    default=None,
    help="How many recent events (default 50, or all with --since).",
)
@click.option("--sync", "sync_name", default=None, help="Only this sync.")
@click.option(
    "--since", default=None, help="Only events of the last DURATION, e.g. 1h, 30m, 2h30m."
)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events.")
@guarded
def events(
    config_file: str | None,
    limit: int | None,
    sync_name: str | None,
    since: str | None,
    follow: bool,
) -> None:
    """Print recent events from the mirror's events table (JSON lines)."""
    from datetime import UTC, datetime, timedelta

    from syncd.config import parse_duration
    from syncd.status import read_events

    since_ts = None
    if since is not None:
        try:
            seconds = parse_duration(since)
        except ValueError as exc:
            raise ConfigError(f"--since: {exc}") from None
        since_ts = (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat(
            timespec="milliseconds"
        )
    if limit is None:
        limit = 50 if since is None else 1_000_000
    cfg = _load(config_file)
    last = 0
    for row in read_events(cfg, limit=limit, sync=sync_name, since=since_ts):
        click.echo(json.dumps(row, default=str))
        last = max(last, int(row["id"]))
    while follow:
        time.sleep(1.0)
        for row in read_events(cfg, after=last, sync=sync_name, limit=1000):
            click.echo(json.dumps(row, default=str))
            last = max(last, int(row["id"]))


@cli.command()
@config_option
@click.argument("package", type=int, required=False)
@click.option("--failed", "all_failed", is_flag=True, help="Every failed package.")
@click.option("--sync", "sync_name", default=None, help="With --failed: only this sync.")
@guarded
def retry(
    config_file: str | None, package: int | None, all_failed: bool, sync_name: str | None
) -> None:
    """Send a failed PACKAGE again (or every one with --failed); a waiting one is tried now.

    A failed package goes back to `detected`: the unit's files are packed and
    uploaded again as they are now. Safe while the daemon runs. Exit 0 when
    every package was requeued, 1 when one was refused (done, unknown, or its
    unit has another open package).
    """
    from syncd.retry import RetryRefused, failed_packages, retry_package
    from syncd.store import Store

    if (package is None) == (not all_failed):
        raise ConfigError("retry: give a PACKAGE id or --failed (not both)")
    if sync_name and not all_failed:
        raise ConfigError("retry: --sync goes with --failed")
    cfg = _load(config_file)
    if cfg.state.database_url is None and not cfg.state.db_path.exists():
        raise ConfigError(f"state.dir: no state database in {str(cfg.state.dir)!r} yet")
    store = Store(cfg.state.dir, database_url=cfg.state.database_url, host=cfg.state.host)
    refused = 0
    try:
        ids = failed_packages(store, sync_name) if all_failed else [package or 0]
        if all_failed and not ids:
            click.echo("no failed packages")
        for pid in ids:
            try:
                click.echo(retry_package(store, pid))
            except RetryRefused as exc:
                click.echo(f"syncd: error: {exc}", err=True)
                refused += 1
    finally:
        store.close()
    sys.exit(1 if refused else 0)


@cli.command()
@config_option
@click.option("--sync", "sync_name", default=None, help="Only this sync.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@guarded
def plan(config_file: str | None, sync_name: str | None, as_json: bool) -> None:
    """Dry run: which units would be packed, into how many packages, how large.

    Reads the folders and the state database only; changes nothing and calls
    no platform.
    """
    from syncd.plan import as_json as plan_json
    from syncd.plan import make_plan, render

    cfg = _load(config_file)
    if sync_name is not None and sync_name not in {s.name for s in cfg.syncs}:
        raise ConfigError(f"--sync: no sync named {sync_name!r}")
    for s in cfg.syncs:
        if sync_name in (None, s.name):
            problem = folder_problem(s)
            if problem:
                raise ConfigError(problem)
    plans = make_plan(cfg, sync_name)
    click.echo(json.dumps(plan_json(plans), indent=2) if as_json else render(plans))


@cli.command()
@click.argument("platform", type=click.Choice(platform_names()))
@click.option("--port", default=0, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
@click.option(
    "--token", default="sandbox-token", show_default=True, help="The API token it accepts."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where uploaded objects go (default: a temp dir).",
)
@guarded
def sandbox(platform: str, port: int, token: str, data_dir: str | None) -> None:
    """Serve a local stand-in for PLATFORM on 127.0.0.1; prints `READY <url>` when it serves."""
    from syncd.extras import require

    require("sandbox").serve(
        platform, port=port, token=token, data_dir=Path(data_dir) if data_dir else None
    )


@cli.command()
@click.option(
    "--dir",
    "work_dir",
    type=click.Path(file_okay=False),
    default="demo-run",
    show_default=True,
    help="Where the demo keeps its state and data.",
)
@guarded
def demo(work_dir: str) -> None:
    """Sandbox + daemon + sample data + annotator: labels end up in the mirror (about a minute)."""
    from syncd.demo import run_demo

    sys.exit(run_demo(Path(work_dir)))


def main() -> None:
    cli(prog_name="syncd")
