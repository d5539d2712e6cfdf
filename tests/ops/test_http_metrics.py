"""``[server] listen``: /healthz from the heartbeats and /metrics through prometheus_client."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncd import metrics
from syncd.errors import TransientError
from syncd.remotes.http import Http, make_client
from syncd.sampledata import write_bulk_unit
from tests.conftest import TOKEN, admin_call, run_cli, wait_until, write_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` from the exposition text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


@pytest.mark.e2e
def test_healthz_and_metrics_of_a_running_daemon(tmp_path: Path, sandbox_url: str) -> None:
    port = free_port()
    folder = tmp_path / "in"
    folder.mkdir()
    name = f"metrics-{uuid.uuid4().hex[:8]}"
    cfg = write_config(
        tmp_path / "syncd.toml",
        sandbox_url,
        [
            {
                "name": "m",
                "dataset": name,
                "folder": folder,
                "dataset_type": "LIDAR_BASIC",
                "pull_interval": 2,
            }
        ],
        remote_extra="timeout = 60",
    )
    cfg.write_text(
        f'[daemon]\nstall_timeout = "3s"\n[server]\nlisten = "127.0.0.1:{port}"\n' + cfg.read_text()
    )
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "daemon.log").open("ab") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "--config", str(cfg)], stdout=out, stderr=out
        )
    try:

        def get(path: str) -> httpx.Response | None:
            try:
                return httpx.get(base + path, timeout=10)
            except httpx.TransportError:
                return None

        wait_until(
            lambda: (r := get("/healthz")) is not None and r.status_code == 200, 90, "/healthz 200"
        )
        body = httpx.get(base + "/healthz").json()
        assert body["status"] == "ok" and body["stale"] == []
        assert {"push", "watcher", "scheduler", "pull:m"} <= set(body["stages"])

        # One 429 (with Retry-After) on the next API call: retried, counted.
        admin_call(
            sandbox_url,
            "POST",
            "/faults",
            json={
                "method": "*",
                "path": "^/api/",
                "action": "status",
                "status": 429,
                "headers": {"Retry-After": "0"},
                "times": 1,
            },
        )
        write_bulk_unit(folder / "u1", total_bytes=300_000)

        def done() -> str | None:
            r = get("/metrics")
            if r is None:
                return None
            ok = value(r.text, "syncd_packages", sync="m", state="done") == 1
            pulled = value(r.text, "syncd_pull_records_total", sync="m", kind="new_items")
            return r.text if ok and pulled else None

        text = wait_until(done, 120, "the package done and its items pulled")
        files = len([p for p in (folder / "u1").rglob("*") if p.is_file()])
        assert value(text, "syncd_uploaded_files_total", sync="m") == files
        assert (value(text, "syncd_uploaded_bytes_total", sync="m") or 0) > 300_000
        assert value(text, "syncd_packages_finished_total", sync="m", state="done") == 1
        assert value(text, "syncd_upload_duration_seconds_count", sync="m") == 1
        assert value(text, "syncd_processing_duration_seconds_count", sync="m") == 1
        assert (value(text, "syncd_http_requests_total", remote="sb", status="200") or 0) > 3
        assert value(text, "syncd_http_requests_total", remote="sb", status="429") == 1
        assert (value(text, "syncd_http_retries_total", remote="sb") or 0) >= 1
        assert (value(text, "syncd_pulls_total", sync="m", result="ok") or 0) >= 1
        assert (value(text, "syncd_pull_duration_seconds_count", sync="m") or 0) >= 1
        last = value(text, "syncd_last_successful_pull_timestamp_seconds", sync="m")
        assert last is not None and abs(time.time() - last) < 60
        lag = value(text, "syncd_pull_lag_seconds", sync="m")
        assert lag is not None and 0 <= lag < 60
        assert value(text, "syncd_healthy") == 1
        assert "process_resident_memory_bytes" in text

        # A pull that hangs on the platform: /healthz says 503 and names it.
        admin_call(
            sandbox_url,
            "POST",
            "/faults",
            json={
                "method": "GET",
                "path": "^/api/data/findByPage",
                "action": "delay",
                "delay": 7,
                "times": 1,
            },
        )
        wait_until(
            lambda: (r := get("/healthz")) is not None and r.status_code == 503, 30, "/healthz 503"
        )
        stalled = httpx.get(base + "/healthz")
        if stalled.status_code == 503:  # it may have recovered in between
            assert stalled.json()["status"] == "stalled"
            assert any(s.startswith("pull:m ") for s in stalled.json()["stale"])
        wait_until(
            lambda: (r := get("/healthz")) is not None and r.status_code == 200,
            30,
            "/healthz 200 again",
        )
        assert httpx.get(base + "/nope").status_code == 404
        assert httpx.post(base + "/metrics").status_code == 405
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()


def test_rate_limit_waits_are_counted(sandbox_url: str) -> None:
    remote = f"rl-{uuid.uuid4().hex[:6]}"
    client = make_client(timeout=10, remote=remote)
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    http = Http(client, platform="xtreme1", windows=[(1, 0.5)], limiter_key=remote, remote=remote)

    def classify(r: httpx.Response) -> int:
        if r.status_code >= 500:
            raise TransientError("5xx")
        return r.status_code

    m = metrics.Metrics()
    try:
        with m.bound():  # what a daemon does around every stage step
            for _ in range(3):
                http.request("GET", f"{sandbox_url}/api/dataset/findByPage", classify)
        http.request("GET", f"{sandbox_url}/api/dataset/findByPage", classify)  # unbound
    finally:
        client.close()
    assert m.rate_limit_waits.labels(remote)._value.get() == 2
    assert m.rate_limit_wait_seconds.labels(remote)._value.get() >= 0.8
    assert m.http_requests.labels(remote, "200")._value.get() == 3


def test_listen_mistakes_are_config_errors(tmp_path: Path, sandbox_url: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    cfg = write_config(
        tmp_path / "syncd.toml", sandbox_url, [{"name": "x", "dataset": "x", "folder": folder}]
    )
    text = cfg.read_text()
    cfg.write_text('[server]\nlisten = "localhost"\n' + text)
    r = run_cli("run", "--config", str(cfg), timeout=60)
    assert r.returncode == 2
    assert "server.listen: not host:port: 'localhost'" in r.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg.write_text(f'[server]\nlisten = "127.0.0.1:{port}"\n' + text)
        r = run_cli("run", "--config", str(cfg), timeout=60)
    assert r.returncode == 2, r.stderr
    assert f"server.listen: '127.0.0.1:{port}': cannot listen there" in r.stderr
