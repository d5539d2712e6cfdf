"""The unit file passes ``systemd-analyze verify`` silently and rates 2.0 or lower in
``systemd-analyze security --offline=yes`` (Debian's ``systemd`` package; no running
systemd needed). ``verify`` exits 0 even on unknown keys, so its output is checked.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[2] / "systemd" / "syncd.service"
EXEC = "/usr/local/bin/syncd"

analyze = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(
    analyze is None,
    reason="SKIPPED LOUDLY: systemd-analyze is missing (apt-get install systemd; .ci/run does)",
)


def run_verify(unit: Path, tmp_path: Path) -> str:
    """``systemd-analyze verify`` output (stdout + stderr) for ``unit``.

    verify insists that ExecStart's program exists. As root the test gives the
    unit exactly the path docs/operating.md installs to, in a private mount namespace
    (a tmpfs over /usr/local/bin holding only a link to this syncd); otherwise
    a copy of the unit names this syncd's path instead.
    """
    ours = str(Path(sys.executable).with_name("syncd"))
    assert os.access(ours, os.X_OK), ours
    if os.path.exists(EXEC):
        cmd = [str(analyze), "verify", str(unit)]
    elif os.geteuid() == 0 and shutil.which("unshare"):
        script = (
            'mount -t tmpfs tmpfs /usr/local/bin && ln -s "$1" /usr/local/bin/syncd && '
            'exec systemd-analyze verify "$2"'
        )
        cmd = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            ours,
            str(unit),
        ]
    else:
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace(EXEC, ours))
        cmd = [str(analyze), "verify", str(copy)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return (r.stdout + r.stderr).strip()


def test_verify_prints_nothing(tmp_path: Path, report: Callable[[str], None]) -> None:
    out = run_verify(UNIT, tmp_path)
    assert out == "", f"systemd-analyze verify complained:\n{out}"
    report("systemd-analyze verify systemd/syncd.service: no output")


def test_verify_catches_a_misspelled_key(tmp_path: Path) -> None:
    """The check above can fail: a typo is reported (while verify still exits 0)."""
    bad = tmp_path / "syncd.service"
    bad.write_text(UNIT.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict"))
    out = run_verify(bad, tmp_path)
    assert "ProtectSytem" in out


def test_security_rating_is_ok(report: Callable[[str], None]) -> None:
    r = subprocess.run(
        [str(analyze), "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = r.stdout + r.stderr
    m = re.search(r"Overall exposure level for syncd\.service: (\d+\.\d+) (\w+)", out)
    assert m, out
    score = float(m.group(1))
    report(f"systemd-analyze security --offline=yes systemd/syncd.service: {score} {m.group(2)}")
    assert score <= 2.0, out
    assert m.group(2) == "OK"


def test_the_unit_has_what_operators_rely_on() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(re.sub(r"(?m)^#.*$", "", UNIT.read_text()))
    svc = parser["Service"]
    assert svc["Type"] == "notify" and svc["NotifyAccess"] == "main"
    assert svc["WatchdogSec"] and svc["Restart"] == "on-failure"
    assert svc["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert svc["StateDirectory"] == "syncd" and svc["ProtectSystem"] == "strict"
    assert svc["CapabilityBoundingSet"] == "" and svc["NoNewPrivileges"] == "yes"
    assert svc["User"] == "syncd" and svc["LoadCredential"].startswith("xtreme1-token:")
    assert svc["ExecStart"].startswith(EXEC + " run ")
    # The drain must end before systemd's stop timeout: 30 s default + 5 s grace < 60 s.
    assert int(svc["TimeoutStopSec"].rstrip("s")) > 30 + 5
    # Bounded resources: descriptors and threads cannot grow without limit.
    assert int(svc["LimitNOFILE"]) >= 1024 and int(svc["TasksMax"]) > 0
