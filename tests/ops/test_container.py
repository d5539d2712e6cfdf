"""The image, built and run for real with podman (runc) on a debootstrapped Debian base.

The container runs against ``syncd sandbox xtreme1`` on the host: it must
report healthy through its HEALTHCHECK, upload a unit from the mounted data
folder, and stop on SIGTERM within the drain deadline with exit code 0.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from syncd.sampledata import write_bulk_unit
from tests.conftest import TOKEN, SandboxProcess, query, wait_until
from tests.ops.containers import IMAGE, Podman, missing_tools, pip_ca_bundle
from tests.ops.test_http_metrics import free_port

REPO = Path(__file__).parents[2]
UID = 10001
SHUTDOWN_TIMEOUT = 10

why_not = missing_tools()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.skipif(why_not is not None, reason=f"SKIPPED LOUDLY: container test {why_not}"),
]


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    return Podman(tmp_path_factory.mktemp("podman"))


@pytest.fixture(scope="module")
def image(podman: Podman) -> str:
    from tests.ops.conftest import MEASURED

    started = time.monotonic()
    base = podman.ensure_base()
    based = time.monotonic()
    args = [
        "build",
        "--format",
        "docker",
        "--network",
        "host",
        "--build-arg",
        f"BASE_IMAGE={base}",
        "-t",
        IMAGE,
    ]
    ca = pip_ca_bundle()
    if ca:
        args += ["--secret", f"id=pip_ca,src={ca}"]
    podman.run(*args, str(REPO), timeout=1800)
    # Each rebuild after a source change leaves the previous image untagged.
    podman.run("image", "prune", "--force", check=False)
    MEASURED.append(
        f"container: base image {based - started:.0f}s (cached after the first run), "
        f"image build {time.monotonic() - based:.0f}s"
    )
    return IMAGE


@pytest.fixture
def container_name(podman: Podman) -> Iterator[str]:
    name = f"syncd-test-{uuid.uuid4().hex[:8]}"
    yield name
    podman.run("rm", "--force", "--time", "0", name, check=False)


def test_image_is_non_root_with_healthcheck_and_volumes(podman: Podman, image: str) -> None:
    info = json.loads(podman.run("image", "inspect", image).stdout)[0]
    cfg = info["Config"]
    assert cfg["User"] == f"{UID}:{UID}"
    assert set(cfg["Volumes"]) == {"/var/lib/syncd", "/data"}
    assert info["Healthcheck"]["Test"] == ["CMD", "syncd", "health"]
    assert cfg["Entrypoint"] == ["syncd"] and cfg["Cmd"] == ["run"]
    assert cfg["StopSignal"] == "SIGTERM"
    out = podman.run("run", "--rm", "--network", "none", image, "--version").stdout
    assert out.startswith("syncd, version")


def test_container_runs_healthy_uploads_and_drains_on_sigterm(
    tmp_path: Path,
    podman: Podman,
    image: str,
    container_name: str,
    sandbox_proc: SandboxProcess,
    report: Callable[[str], None],
) -> None:
    data = tmp_path / "data"
    (data / "in").mkdir(parents=True)
    data.chmod(0o755)
    (data / "in").chmod(0o755)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, UID, UID)
    port = free_port()
    config = tmp_path / "syncd.toml"
    dataset = f"container-{uuid.uuid4().hex[:8]}"
    config.write_text(
        f"""
[state]
dir = "/var/lib/syncd"
[log]
format = "json"
[daemon]
shutdown_timeout = "{SHUTDOWN_TIMEOUT}s"
[server]
listen = "127.0.0.1:{port}"
[remotes.lab]
platform = "xtreme1"
url = "{sandbox_proc.url}"
token = "${{XTREME1_TOKEN}}"
poll_interval = 0.5
[[syncs]]
name = "box"
remote = "lab"
dataset = "{dataset}"
dataset_type = "LIDAR_BASIC"
folder = "/data/in"
settle_seconds = 1
pull_interval = "5s"
"""
    )
    config.chmod(0o644)
    podman.run(
        "run", "--detach", "--name", container_name, "--network", "host",
        "--volume", f"{config}:/etc/syncd/syncd.toml:ro",
        "--volume", f"{data}:/data:ro",
        "--volume", f"{state}:/var/lib/syncd",
        "--env", f"XTREME1_TOKEN={TOKEN}",
        image,
    )  # fmt: skip

    def healthy() -> bool:
        r = podman.run("healthcheck", "run", container_name, check=False, timeout=60)
        if r.returncode != 0 and "not running" in (r.stdout + r.stderr):
            logs = podman.run("logs", container_name, check=False).stderr
            raise AssertionError(f"the container stopped:\n{logs[-4000:]}")
        return r.returncode == 0

    wait_until(healthy, 180, "the container's HEALTHCHECK to pass")
    assert podman.run("exec", container_name, "id", "-u").stdout.strip() == str(UID)
    pid1 = podman.run("exec", container_name, "cat", "/proc/1/cmdline").stdout
    assert pid1.split("\0")[:3][1:] == ["/opt/syncd/bin/syncd", "run"]
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200

    write_bulk_unit(data / "in" / "u1", total_bytes=500_000)
    for p in (data / "in").rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    db = state / "syncd.db"
    wait_until(
        lambda: query(db, "SELECT 1 FROM packages WHERE unit = 'u1' AND state = 'done'"),
        180,
        "the unit uploaded and processed",
    )
    ds = [
        d
        for d in sandbox_proc.api("/dataset/findByPage", pageNo=1, pageSize=100)["list"]
        if d["name"] == dataset
    ]
    assert ds and ds[0]["itemCount"] >= 1, ds

    # A second unit whose upload outlasts the drain deadline (a slow uplink):
    # SIGTERM while it is in flight cuts it at the deadline, exit 0.
    sandbox_proc.admin("POST", "/faults", json={
        "method": "PUT", "path": "^/minio/", "action": "throttle", "rate": 1_000_000})  # fmt: skip
    write_bulk_unit(data / "in" / "u2", total_bytes=40_000_000, file_bytes=4_000_000)
    for p in (data / "in").rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    wait_until(
        lambda: query(db, "SELECT 1 FROM packages WHERE unit = 'u2' AND state = 'uploading'"),
        180,
        "u2 uploading",
    )
    started = time.monotonic()
    podman.run("stop", "--time", str(SHUTDOWN_TIMEOUT + 30), container_name, timeout=120)
    took = time.monotonic() - started
    exit_code = podman.run(
        "inspect", container_name, "--format", "{{.State.ExitCode}}"
    ).stdout.strip()
    logs = podman.run("logs", container_name).stderr
    report(
        f"container: SIGTERM during an upload to exit {took:.1f}s "
        f"(drain deadline {SHUTDOWN_TIMEOUT}s + 5s grace), exit code {exit_code}"
    )
    assert exit_code == "0", logs[-4000:]
    # cut at the deadline, not killed by podman's timeout (SHUTDOWN_TIMEOUT + 30)
    assert SHUTDOWN_TIMEOUT - 1 <= took < SHUTDOWN_TIMEOUT + 5 + 5, took
    assert query(db, "SELECT state FROM packages WHERE unit = 'u2'") == [("uploading",)]
    assert query(db, "SELECT 1 FROM events WHERE event = 'package.checkpointed'")
    assert '"event": "daemon.stopped"' in logs
