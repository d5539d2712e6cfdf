"""Chaos on PostgreSQL with database restarts: the daemon is killed with SIGKILL at random
moments, most of them while the server restarts, and still gets it right.

The workload and the checks are the chaos test's (:mod:`tests.reliability.test_chaos`):
units arriving while the daemon runs, an annotator labelling on the platform,
then nothing lost and nothing twice on the platform, the mirror equal to the
platform, the items cursor never backwards. What differs is each round:

* a kill while the server restarts (``pg_ctl restart -m fast``, or ``pg_ctl
  stop -m immediate``, some time down, ``pg_ctl start``): the daemon dies
  with its transactions cut by the server, or while it waits for it;
* a restart the daemon (up and running) lives through, then a kill later;
* a plain kill.

The server has to be back before the next start (a daemon that cannot reach
its store at start exits, and its supervisor starts it again).

Replay a failure with ``SYNCD_CHAOS_SEED=<the printed seed>``; change the
number of kills with ``SYNCD_CHAOS_KILLS``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import SandboxProcess, wait_until
from tests.postgres_support import Cluster, own_cluster
from tests.reliability.test_chaos import (
    Annotator,
    _started,
    chaos_config,
    make_unit,
    observe,
    run_to_the_end,
    start,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    yield from own_cluster()


KILLS = 12
UNITS = 16


def restart_in(
    pool: ThreadPoolExecutor, cluster: Cluster, rng: random.Random
) -> tuple[str, Future[None]]:
    """Start a restart of the server in the background: (mode, its future)."""
    mode = rng.choice(["fast", "immediate"])
    down = rng.uniform(0, 2) if mode == "immediate" else 0.0
    return mode, pool.submit(cluster.restart, mode, down=down)


def up_since(url: str, started: int) -> bool:
    """A daemon started since ``started`` daemon.started events were counted."""
    return _started(url) > started


def kill(daemon: subprocess.Popen[bytes]) -> None:
    daemon.send_signal(signal.SIGKILL)
    daemon.wait(timeout=30)


def test_chaos_sigkill_during_database_restarts(
    tmp_path: Path, cluster: Cluster, sandbox_proc: SandboxProcess
) -> None:
    seed = int(os.environ.get("SYNCD_CHAOS_SEED") or random.SystemRandom().randrange(10**9))
    kills_wanted = int(os.environ.get("SYNCD_CHAOS_KILLS") or KILLS)
    print(f"chaos seed {seed} (replay with SYNCD_CHAOS_SEED={seed})")
    rng = random.Random(seed)
    url = cluster.database()
    folder = tmp_path / "in"
    folder.mkdir()
    cfg = chaos_config(tmp_path, sandbox_proc.url, folder, url)
    log = tmp_path / "daemon.log"
    expected = sum(make_unit(folder, k, rng) for k in range(6))
    units = 6
    sandbox_proc.admin("POST", "/config", json={"processing_step_delay": 0.1})
    annotator = Annotator(sandbox_proc, random.Random(seed + 1))
    annotator.start()
    cursors: list[int] = []
    caught: Counter[str] = Counter()
    rounds: Counter[str] = Counter()  # what each kill came with
    kills = 0
    try:
        with ThreadPoolExecutor(1) as pool:
            while kills < kills_wanted:
                started = _started(url)
                daemon = start(cfg, log)
                time.sleep(rng.uniform(0.5, 3.0))
                luck = rng.random()
                if luck < 0.6:  # killed while the server restarts
                    mode, restarting = restart_in(pool, cluster, rng)
                    time.sleep(rng.uniform(0, 0.8))
                    kill(daemon)
                    restarting.result(timeout=120)
                    rounds[f"kill during restart ({mode})"] += 1
                elif luck < 0.8:  # lives through a restart, killed later
                    # up and running first: one that is still starting exits 1 when it
                    # cannot reach its store (its supervisor starts it again)
                    wait_until(partial(up_since, url, started), 60, "the daemon to start")
                    mode, restarting = restart_in(pool, cluster, rng)
                    restarting.result(timeout=120)
                    time.sleep(rng.uniform(0.2, 3.0))
                    assert daemon.poll() is None, "the daemon exited during a database restart"
                    kill(daemon)
                    rounds[f"kill after restart ({mode})"] += 1
                else:
                    kill(daemon)
                    rounds["plain kill"] += 1
                kills += 1
                if units < UNITS and rng.random() < 0.6:
                    expected += make_unit(folder, units, rng)
                    units += 1
                observe(url, caught, cursors)
        while units < UNITS:
            expected += make_unit(folder, units, rng)
            units += 1
        figures = run_to_the_end(
            cfg, url, log, folder, sandbox_proc, annotator, units, expected, cursors
        )
    finally:
        annotator.halt.set()
    print(f"chaos seed {seed}: {kills} kills survived, {units} units, {figures}, duplicates 0")
    print(f"rounds: {dict(rounds)}; kills that interrupted packages: {dict(caught)}")
