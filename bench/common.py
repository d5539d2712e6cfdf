"""What every benchmark shares: results, medians, timing, peak RSS, the sandbox, configs.

A :class:`Figure` is one measured quantity next to the reference measured in
the same run, their ratio and the target ratio. Benchmarks repeat each
measurement and keep medians; the machine is shared, so ratios are what count.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from syncd_sandbox import SandboxProcess

TOKEN = "bench-token"


@dataclass
class Figure:
    """One line of the results table.

    ``ratio`` is ``value / reference``; the target is met when it is at most
    ``target`` (every target here is an upper bound). ``reference`` may be a
    fixed bound (an RSS budget, a request budget) instead of a measurement;
    ``reference_name`` says which.
    """

    bench: str
    name: str
    value: float
    unit: str
    reference: float
    reference_name: str
    target: float
    samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.reference if self.reference else float("inf")

    @property
    def met(self) -> bool:
        return self.ratio <= self.target + 1e-9

    def line(self) -> str:
        verdict = "met" if self.met else "MISSED"
        return (
            f"{self.bench}: {self.name} = {fmt(self.value)} {self.unit}; "
            f"reference {self.reference_name} = {fmt(self.reference)} {self.unit}; "
            f"ratio {self.ratio:.2f} (target ≤ {self.target:g}) {verdict}"
        )


def fmt(x: float) -> str:
    if x == int(x) and abs(x) >= 10:
        return str(int(x))
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def say(*parts: object) -> None:
    print(*parts, flush=True)


# --------------------------------------------------------------------------- processes


def curl_put(path: Path, url: str, content_type: str | None = None) -> list[str]:
    """The reference's upload of one ready file: ``curl -T`` as a user would type it
    (no ``Expect: 100-continue`` round trip, the body discarded, a failure is an error)."""
    typed = ["-H", f"Content-Type: {content_type}"] if content_type else []
    return ["curl", "-sS", "-f", "-o", "/dev/null", "-H", "Expect:", *typed, "-T", str(path), url]


def timed(cmd: Sequence[str], **kw: Any) -> float:
    """Wall seconds of one command; raises if it fails."""
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, **kw)
    return time.perf_counter() - t0


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (``VmHWM``) in MB, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class RssWatch:
    """Polls a process's peak RSS until it exits (VmHWM only grows: the last read wins)."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        self.pid, self.every, self.peak = pid, every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            v = peak_rss_mb(self.pid)
            if v is None:
                return
            self.peak = max(self.peak, v)
            time.sleep(self.every)

    def stop(self) -> float:
        v = peak_rss_mb(self.pid)
        if v is not None:
            self.peak = max(self.peak, v)
        self._stop.set()
        self._thread.join()
        return self.peak


# Set by ``python -m bench --profile DIR``: every syncd process runs under pyinstrument
# and leaves its profile (text) there. Profiled runs are slower: their figures are not kept.
PROFILE_DIR: Path | None = None
_profiles = iter(range(1, 1_000_000))


def syncd_cmd(*args: str) -> list[str]:
    """The command line of one syncd process (under pyinstrument when profiling)."""
    if PROFILE_DIR is None:
        return [sys.executable, "-m", "syncd", *args]
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    out = PROFILE_DIR / f"syncd-{next(_profiles):03d}-{args[0]}.txt"
    return [
        sys.executable,
        "-m",
        "pyinstrument",
        "--show-all",
        "-o",
        str(out),
        "-m",
        "syncd",
        *args,
    ]


# --------------------------------------------------------------------------- sandbox


@contextlib.contextmanager
def sandbox(platform_name: str, data_dir: Path) -> Iterator[SandboxProcess]:
    data_dir.mkdir(parents=True, exist_ok=True)
    sb = SandboxProcess(
        platform_name, token=TOKEN, data_dir=data_dir, log=data_dir.parent / "sandbox.log"
    )
    try:
        yield sb
    finally:
        sb.stop()


def admin(url: str, method: str, path: str, body: Any = None, timeout: float = 600) -> Any:
    r = httpx.request(method, f"{url}/__sandbox/{path}", json=body, timeout=timeout)
    r.raise_for_status()
    return r.json()


def api_requests(url: str) -> dict[str, int]:
    """The sandbox's per-route API request counters."""
    return dict(admin(url, "GET", "counters")["requests"])


# --------------------------------------------------------------------------- syncd


def write_config(
    path: Path,
    *,
    url: str,
    state: Path,
    sync: dict[str, Any],
    platform: str = "xtreme1",
    remote: dict[str, Any] | None = None,
) -> Path:
    """A syncd config with one remote ``bench`` and one sync ``bench`` (TOML written by hand)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))

    # The client-side rate limit is lifted: the benchmarks measure the data path,
    # against references that have none (bench/ratelimit_basicai.py measures the limiter).
    remote_keys: dict[str, Any] = {"rate_limits": ["100000/s"], "poll_interval": 0.2}
    remote_keys.update(remote or {})

    lines = [
        "[state]",
        f"dir = {value(state)}",
        "[log]",
        'format = "json"',
        'level = "info"',
        "[remotes.bench]",
        f"platform = {value(platform)}",
        f"url = {value(url)}",
        f"token = {value(TOKEN)}",
        *(f"{k} = {value(v)}" for k, v in remote_keys.items()),
        "[[syncs]]",
        'name = "bench"',
        'remote = "bench"',
    ]
    lines += [f"{k} = {value(v)}" for k, v in sync.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def event_times(db: Path, event: str, unit: str | None = None) -> list[float]:
    """Epoch seconds of every ``event`` row (optionally for one unit), oldest first."""
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        q = "SELECT ts FROM events WHERE event = ?"
        args: list[Any] = [event]
        if unit is not None:
            q += " AND unit = ?"
            args.append(unit)
        rows = con.execute(q + " ORDER BY id", args).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()
    return [datetime.fromisoformat(r[0]).timestamp() for r in rows]


def wait_for(cond: Callable[[], bool], timeout: float, what: str, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


# --------------------------------------------------------------------------- machine


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores{mem}, "
        f"Python {platform.python_version()}"
    )


def disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def run_until_uploaded(work: Path, rep: int, cfg: Path, db: Path) -> tuple[float, float]:
    """``syncd run`` on ``cfg`` until its one package is uploaded (then SIGTERM):
    seconds from ``package.settled`` to ``package.uploaded``, and the daemon's peak RSS."""
    return run_until(work, f"syncd-{rep}", cfg, db, "package.uploaded")


def run_until(
    work: Path, tag: str, cfg: Path, db: Path, event: str, count: int = 1
) -> tuple[float, float]:
    """``syncd run`` on ``cfg`` until ``count`` packages logged ``event`` (then SIGTERM):
    seconds from the first ``package.settled`` to the ``count``-th ``event``, and the
    daemon's peak RSS. A ``package.failed`` or an exit of the daemon ends the wait and
    raises (its log is ``work/TAG.log``)."""
    log_path = work / f"{tag}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            syncd_cmd("run", "--config", str(cfg)), stdout=log, stderr=subprocess.STDOUT
        )
    rss = RssWatch(proc.pid)
    try:
        wait_for(
            lambda: (
                len(event_times(db, event)) >= count
                or bool(event_times(db, "package.failed"))
                or proc.poll() is not None
            ),
            timeout=3600,
            what=event,
            every=0.1,
        )
    finally:
        peak = rss.stop()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    reached = event_times(db, event)
    settled = event_times(db, "package.settled")
    if len(reached) < count or not settled:
        raise RuntimeError(f"syncd did not reach {count} x {event}; see {log_path}")
    return reached[count - 1] - settled[0], peak
