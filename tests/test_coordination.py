"""Coordination through the store: package claims, pull leases, a dead holder's work passing on.

PostgreSQL is the real case (a throwaway cluster); on SQLite everything is granted.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from syncd.store import Package, Store, utcnow
from syncd.store.coordination import LeaseLost
from tests.conftest import query


def new_pkg(store: Store, host: str) -> int:
    with store.tx() as tx:
        now = utcnow()
        p = Package(
            sync="s", unit="u", host=host, created_at=now, updated_at=now, state_changed_at=now
        )
        tx.session.add(p)
        tx.session.flush()
        assert p.id is not None
        return p.id


def test_sqlite_grants_everything(tmp_path: Path) -> None:
    store = Store(tmp_path, host="rig-a")
    pid = new_pkg(store, "rig-a")
    assert not store.coord.fleet
    assert store.coord.claim(pid) and store.coord.claim(pid)
    assert store.coord.acquire("pull:s")
    with store.tx() as tx:
        store.coord.check_lease(tx, "pull:s")
    store.close()


def test_a_package_is_worked_by_one_live_daemon_of_its_host(tmp_path: Path, pg_url: str) -> None:
    a1 = Store(tmp_path, database_url=pg_url, host="rig-a")
    a2 = Store(tmp_path, database_url=pg_url, host="rig-a")  # two daemons named alike
    b = Store(tmp_path, database_url=pg_url, host="rig-b")
    pid = new_pkg(a1, "rig-a")
    assert not b.coord.claim(pid), "another machine's package"
    assert a1.coord.claim(pid)
    assert a1.coord.claim(pid), "claiming again is idempotent"
    assert not a2.coord.claim(pid), "claimed by a live daemon"
    a1.coord.release(pid)
    assert a2.coord.claim(pid)
    a2.close()  # closing gives its claims up
    assert query(pg_url, "SELECT claimed_by FROM packages") == [(None,)]
    assert a1.coord.claim(pid)
    a1.close()
    b.close()


def test_claims_skip_a_row_being_claimed(tmp_path: Path, pg_url: str) -> None:
    """SKIP LOCKED: a claimer never waits for another's claiming transaction."""
    a1 = Store(tmp_path, database_url=pg_url, host="rig-a")
    a2 = Store(tmp_path, database_url=pg_url, host="rig-a")
    pid = new_pkg(a1, "rig-a")
    import psycopg

    from syncd.store.postgres import conninfo

    with psycopg.connect(conninfo(pg_url)) as other:
        other.execute("SELECT id FROM packages WHERE id = %s FOR UPDATE", (pid,))
        started = time.monotonic()
        assert not a2.coord.claim(pid)
        assert time.monotonic() - started < 2
    assert a2.coord.claim(pid)
    a1.close()
    a2.close()


def test_a_lease_stays_with_its_holder_and_fences_a_lost_one(tmp_path: Path, pg_url: str) -> None:
    a = Store(tmp_path, database_url=pg_url, host="rig-a")
    b = Store(tmp_path, database_url=pg_url, host="rig-b")
    assert a.coord.acquire("pull:s")
    assert a.coord.acquire("pull:s")
    assert not b.coord.acquire("pull:s")
    with a.tx() as tx:
        a.coord.check_lease(tx, "pull:s")
    with pytest.raises(LeaseLost, match="rig-a"), b.tx() as tx:
        b.coord.check_lease(tx, "pull:s")
    # a's presence ends (its connection to the server is cut): b takes over, a is fenced
    conn = a.coord._conn  # type: ignore[attr-defined]
    assert conn is not None
    conn.close()
    assert b.coord.acquire("pull:s")
    with pytest.raises(LeaseLost, match="rig-b"), a.tx() as tx:
        a.coord.check_lease(tx, "pull:s")
    rows = query(
        pg_url,
        "SELECT host, fields FROM events WHERE event = 'lease.acquired' ORDER BY id",
    )
    assert [r[0] for r in rows] == ["rig-a", "rig-b"]
    assert '"previous_host": "rig-a"' in rows[1][1]
    a.close()
    b.close()


def test_a_lease_given_up_passes_on(tmp_path: Path, pg_url: str) -> None:
    """A reload that drops a sync gives its pull to the fleet at once."""
    a = Store(tmp_path, database_url=pg_url, host="rig-a")
    b = Store(tmp_path, database_url=pg_url, host="rig-b")
    assert a.coord.acquire("pull:s") and not b.coord.acquire("pull:s")
    b.coord.give_up("pull:s")  # not its lease: nothing happens
    assert not b.coord.acquire("pull:s")
    a.coord.give_up("pull:s")
    assert b.coord.acquire("pull:s")
    a.close()
    b.close()


def test_a_takeover_waits_for_the_holders_commit(tmp_path: Path, pg_url: str) -> None:
    """A page being committed under the lease commits before anyone else can take it."""
    a = Store(tmp_path, database_url=pg_url, host="rig-a")
    b = Store(tmp_path, database_url=pg_url, host="rig-b")
    assert a.coord.acquire("pull:s")
    got: list[bool] = []
    with a.tx() as tx:
        a.coord.check_lease(tx, "pull:s")
        conn = a.coord._conn  # type: ignore[attr-defined]
        assert conn is not None
        conn.close()  # a is "dead" from here, but its transaction is still open
        taker = threading.Thread(target=lambda: got.append(b.coord.acquire("pull:s")))
        taker.start()
        time.sleep(0.5)
        assert got == [], "the takeover did not wait for the committing transaction"
    taker.join(10)
    assert got == [True]
    a.close()
    b.close()


def test_a_killed_daemon_frees_its_claims_and_leases_at_once(tmp_path: Path, pg_url: str) -> None:
    holder = Store(tmp_path, database_url=pg_url, host="rig-a")
    pid = new_pkg(holder, "rig-a")
    holder.close()
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from syncd.store import Store
        s = Store(Path({str(tmp_path)!r}), database_url={pg_url!r}, host="rig-a")
        assert s.coord.claim({pid}) and s.coord.acquire("pull:s")
        print("HELD", flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        while (line := proc.stdout.readline()) and line.strip() != "HELD":
            pass  # the lease.acquired log line comes first
        assert line.strip() == "HELD", "the holder did not start"
        other = Store(tmp_path, database_url=pg_url, host="rig-a")
        assert not other.coord.claim(pid) and not other.coord.acquire("pull:s")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 5
        while not other.coord.acquire("pull:s"):
            assert time.monotonic() < deadline, "the dead holder's lease stayed taken"
            time.sleep(0.05)
        assert other.coord.claim(pid)
        other.close()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_one_running_daemon_per_host_name(tmp_path: Path, pg_url: str) -> None:
    from syncd.errors import ConfigError

    a = Store(tmp_path, database_url=pg_url, host="rig-a")
    a.coord.hold_host(wait=0)
    twin = Store(tmp_path, database_url=pg_url, host="rig-a")
    with pytest.raises(ConfigError, match=r"state.host: 'rig-a' is in use by another running"):
        twin.coord.hold_host(wait=1)
    other = Store(tmp_path, database_url=pg_url, host="rig-b")
    other.coord.hold_host(wait=0)
    a.close()
    twin.coord.hold_host(wait=5)  # free as soon as the first one is gone
    twin.close()
    other.close()
