"""A throwaway PostgreSQL cluster for the tests (Debian's ``postgresql`` package).

:class:`Cluster` runs ``initdb`` and ``pg_ctl`` from ``/usr/lib/postgresql/<newest>/bin``
in a fresh temporary folder, on a free loopback port, with password
authentication over TCP; :meth:`Cluster.database` makes one empty database per
test, and :meth:`Cluster.restart` restarts it on the same port (``fast``, or
``immediate`` and a start) for the tests of database restarts, each on a
server of its own (:func:`own_cluster`). PostgreSQL refuses to run as root, so as root the cluster runs as the
unprivileged ``nobody`` (through ``runuser``), owning only its own folder.
``.ci/run`` installs the package when it is missing; without it the
PostgreSQL tests are skipped and the SQLite ones run as always.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

USER = "syncd"
PASSWORD = "fleet-test-pw"
RUN_AS = "nobody"


def pg_bindir() -> Path | None:
    """The newest installed PostgreSQL's ``bin`` folder, or None."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")

    def version(p: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.split("/")[-3]))

    return Path(max(found, key=version)).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One running server; :meth:`stop` stops it and removes every file it wrote."""

    def __init__(self, bindir: Path, *, durable_commits: bool = False) -> None:
        """``durable_commits``: ``synchronous_commit = on``, for a server that will be
        killed (``restart("immediate")``): a commit is acknowledged only once its WAL
        record is written, as on any real server. Off (the default, faster), a crash of
        the server may lose the last commits the client was told were done."""
        self.bindir = bindir
        self.durable_commits = durable_commits
        self.root = Path(tempfile.mkdtemp(prefix="syncd-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.root, RUN_AS)
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self._as_root:
            shutil.chown(pwfile, RUN_AS)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            USER,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )
        pwfile.unlink()
        for _ in range(5):
            self.port = _free_port()
            if self._start(check=False).returncode == 0:
                return
        log = (self.root / "server.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"PostgreSQL did not start: {log}")

    def _options(self) -> str:
        return (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            # fsync off: the server is killed in the tests, the machine is not
            "-c fsync=off -c full_page_writes=off -c max_connections=200 "
            f"-c synchronous_commit={'on' if self.durable_commits else 'off'}"
        )

    def _start(self, *, check: bool) -> subprocess.CompletedProcess[str]:
        # -w: return once the server accepts connections
        return self._pg_ctl("start", check=check)

    def _pg_ctl(self, *action: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``pg_ctl`` on this cluster with its log and options, waiting (``-w``) up to 60 s."""
        return self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            self._options(),
            "-w",
            "-t",
            "60",
            *action,
            check=check,
        )

    def restart(self, mode: str = "fast", *, down: float = 0.0) -> None:
        """Restart the server on the same port, as an operator or a crash would.

        ``fast``: ``pg_ctl restart -m fast`` (sessions are told "terminating
        connection due to administrator command", the server shuts down cleanly
        and comes back). ``immediate``: ``pg_ctl stop -m immediate`` (every
        process killed at once, like a crash: crash recovery at the next start;
        create the cluster with ``durable_commits``). With ``down``, that many
        seconds with no server before ``pg_ctl start``. Returns once the server
        accepts connections again.
        """
        if mode == "fast" and not down:
            self._pg_ctl("-m", "fast", "restart")
            return
        self.shut_down(mode)
        time.sleep(down)
        self.start()

    def shut_down(self, mode: str = "immediate") -> None:
        """``pg_ctl stop -m <mode>``: the server is gone (its files stay) until :meth:`start`."""
        if mode not in ("fast", "immediate"):
            raise ValueError(f"shutdown mode {mode!r}: fast or immediate")
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def start(self) -> None:
        """Start the server again on its port; returns once it accepts connections."""
        self._start(check=True)

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / tool), *args]
        if self._as_root:
            cmd = ["runuser", "-u", RUN_AS, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{tool} failed: {proc.stderr or proc.stdout}")
        return proc

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql+psycopg://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user={USER} password={PASSWORD} dbname={database}",
            autocommit=True,
        ) as conn:
            cur = conn.execute(sql)  # type: ignore[call-overload]
            return list(cur.fetchall()) if cur.description else []

    def database(self) -> str:
        """A new empty database; returns its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def own_cluster() -> Iterator[Cluster]:
    """A server of the test's own, for a fixture of a test that restarts it (restarting
    the session's ``pg_cluster`` would cut every other test's connections)."""
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
    cluster = Cluster(bindir, durable_commits=True)
    yield cluster
    cluster.stop()
