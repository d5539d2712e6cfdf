"""Against a sandbox that enforces rate-limit windows, syncd's own limiter keeps it at zero 429s.

The control runs prove the sandbox really enforces them: with the client's
limiter opened up, the same workload meets 429s, and still finishes (with and
without ``Retry-After``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.sampledata import write_fusion_unit
from tests.conftest import SandboxProcess, run_cli, write_config
from tests.reliability.invariants import assert_exactly_once

pytestmark = [pytest.mark.e2e]

WINDOWS = [[6, 1.0], [30, 6.0]]  # 6 per second and 30 per 6 seconds


def workload(tmp_path: Path, sandbox: SandboxProcess, client_limits: list[str]) -> tuple[int, int]:
    folder = tmp_path / "in"
    for k in range(6):
        write_fusion_unit(folder / f"u{k}", frames=2, cameras=0, seed=k)
    limits = ", ".join(f'"{r}"' for r in client_limits)
    cfg = write_config(
        tmp_path / "syncd.toml",
        sandbox.url,
        [{"name": "r", "dataset": "rate", "dataset_type": "LIDAR_BASIC", "folder": folder}],
        remote_extra=f"rate_limits = [{limits}]",
    )
    # Without Retry-After only backoff helps: allow the tries to span a 6 s window.
    cfg.write_text(cfg.read_text().replace("max_retries = 2", "max_retries = 8"))
    before = sandbox.admin("GET", "/counters")
    result = run_cli("once", "--config", str(cfg), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    after = sandbox.admin("GET", "/counters")
    sandbox.admin("POST", "/config", json={"rate_limits": None})  # the checks below are not counted
    assert_exactly_once(
        tmp_path / "state" / "syncd.db", folder, sandbox.url, "rate", expected_items=12
    )
    sent = sum(after["requests"].values()) - sum(before["requests"].values())
    return sent, after["rate_limited"] - before["rate_limited"]


def test_sustained_workload_meets_no_429(tmp_path: Path, sandbox_proc: SandboxProcess) -> None:
    sandbox_proc.admin("POST", "/config", json={"rate_limits": WINDOWS})
    sent, limited = workload(tmp_path, sandbox_proc, ["6/s", "30/6s"])
    assert sent >= 40  # long enough to fill the 6-second window several times
    assert limited == 0


@pytest.mark.parametrize("retry_after", [True, False])
def test_without_the_client_limiter_the_sandbox_answers_429(
    retry_after: bool, tmp_path: Path, sandbox_proc: SandboxProcess
) -> None:
    sandbox_proc.admin(
        "POST", "/config", json={"rate_limits": WINDOWS, "rate_limit_retry_after": retry_after}
    )
    _, limited = workload(tmp_path, sandbox_proc, ["1000/s"])
    assert limited > 0
