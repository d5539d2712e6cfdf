"""Podman for the container test: runc, ulimits, a debootstrapped base image (cached)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Bump the suffix when the base's package list changes; podman keeps the image
# between runs, so only the first run pays for debootstrap.
BASE_IMAGE = "localhost/syncd-test-base:bookworm-1"
BASE_PACKAGES = "python3,python3-venv,ca-certificates"
IMAGE = "localhost/syncd:test"

# crun fails on hybrid cgroups here; `podman run` needs explicit nofile/nproc limits.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
"""


def missing_tools() -> str | None:
    """Why the container test cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (rootful podman and debootstrap)"
    gone = [t for t in ("podman", "runc", "debootstrap") if shutil.which(t) is None]
    if gone:
        return f"{', '.join(gone)} missing (apt-get install podman runc debootstrap; .ci/run does)"
    return None


class Podman:
    def __init__(self, conf_dir: Path) -> None:
        conf = conf_dir / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def run(
        self, *args: str, check: bool = True, timeout: float = 600, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            ["podman", *args],
            env=self.env,
            capture_output=True,
            input=stdin.decode() if stdin is not None else None,
            text=True,
            timeout=timeout,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
        return r

    def ensure_base(self) -> str:
        """A Debian bookworm image (Python 3.11) from debootstrap + ``podman import``, cached."""
        if self.run("image", "exists", BASE_IMAGE, check=False).returncode == 0:
            return BASE_IMAGE
        with tempfile.TemporaryDirectory(prefix="syncd-rootfs-") as root:
            r = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={BASE_PACKAGES}",
                    "bookworm",
                    root,
                ],
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if r.returncode != 0:
                raise AssertionError(f"debootstrap failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for p in (Path(root) / junk).glob("*"):
                    if p.is_file():
                        p.unlink()
            tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
            imp = subprocess.run(
                ["podman", "import", "-", BASE_IMAGE],
                stdin=tar.stdout,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            tar.wait()
            assert imp.returncode == 0 and tar.returncode == 0, imp.stderr
        return BASE_IMAGE


def pip_ca_bundle() -> str | None:
    """The CA bundle pip on this machine trusts (its ``cert`` setting), if any.

    Passed to the build as the ``pip_ca`` secret, so pip inside the build
    trusts the same (possibly TLS-intercepting) proxy as pip out here.
    """
    for var in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        if os.environ.get(var) and Path(os.environ[var]).is_file():
            return os.environ[var]
    r = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    )
    m = re.search(r"^\S*\.cert='([^']+)'", r.stdout, re.MULTILINE)
    if m and Path(m.group(1)).is_file():
        return m.group(1)
    return None
