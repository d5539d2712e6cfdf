"""Secrets and permissions: what syncd refuses, tightens, hides or warns about.

Contract:

* :func:`check_token_file`: a ``token_file`` that other users can read or
  write (its mode allows it and every folder above lets them in), or its
  group can change, is refused (ConfigError with the ``chmod`` that fixes
  it); one its group can read is accepted with a
  ``config.token_file_shared`` warning.
* :func:`tighten_state`: an existing state folder gets mode 0700, the
  database and its ``-wal``/``-shm`` files 0600 (they hold presigned URLs).
  A file syncd may not chmod (another owner) is left alone with a
  ``state.loose_permissions`` warning naming the command.
* :func:`redact_urls` hides the user and password of every URL in a text;
  config errors pass through it.
* :func:`warn_plain_http`: once per remote and process, a
  ``remote.plain_http`` warning when its token would travel unencrypted to
  a host that is not this machine.
* :func:`strip_escapes` removes terminal control sequences (and every other
  control character but newline and tab) from text shown to people: unit
  names and platform messages come from others.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from pathlib import Path
from urllib.parse import urlsplit

from syncd.errors import ConfigError
from syncd.log import get_logger

_warned: set[tuple[str, str]] = set()


def _once(kind: str, key: str) -> bool:
    if (kind, key) in _warned:
        return False
    _warned.add((kind, key))
    return True


def _can_enter(path: Path, bits: int) -> bool:
    """False when a folder above ``path`` has none of ``bits`` (``o+x``, ``g+x``): closed."""
    for parent in path.absolute().parents:
        try:
            if not os.stat(parent).st_mode & bits:
                return False
        except OSError:
            return True
    return True


def check_token_file(path: Path, key: str) -> None:
    """Refuse a token file others can read or write; warn when its group can read it."""
    try:
        st = os.stat(path)
    except OSError:
        return  # reading it reports the problem, naming the key
    if not stat.S_ISREG(st.st_mode):
        return
    mode = stat.S_IMODE(st.st_mode)
    others = _can_enter(path, stat.S_IXOTH)
    group = _can_enter(path, stat.S_IXOTH | stat.S_IXGRP)
    if (mode & stat.S_IWGRP and group) or (mode & (stat.S_IROTH | stat.S_IWOTH) and others):
        raise ConfigError(
            f"{key}: {str(path)!r} can be read or changed by other users (mode {mode:04o}); "
            f"the token is a secret: chmod 600 {str(path)!r}"
        )
    if mode & stat.S_IRGRP and group and _once("token_file", str(path)):
        get_logger().warning(
            "config.token_file_shared",
            key=key,
            path=str(path),
            mode=f"{mode:04o}",
            fix=f"chmod 600 {str(path)!r} unless the group must read it",
        )


def tighten_state(directory: Path, database: Path) -> None:
    """State folder 0700; database, ``-wal`` and ``-shm`` 0600 (see module doc)."""
    targets = [(directory, 0o700)] + [
        (database.with_name(database.name + suffix), 0o600) for suffix in ("", "-wal", "-shm")
    ]
    for path, private in targets:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            continue
        if not mode & 0o077:
            continue
        try:
            os.chmod(path, private)
        except OSError:
            if _once("state", str(path)):
                get_logger().warning(
                    "state.loose_permissions",
                    path=str(path),
                    mode=f"{mode:04o}",
                    fix=f"chmod {private:o} {str(path)!r} (as its owner)",
                )


# scheme://user:password@ (the password hidden), scheme://user@ (a bare user may be a token)
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/@\s:'\"]*):[^/@\s'\"]+@")
_URL_USER = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s:'\"]+@")


def redact_urls(text: str) -> str:
    """``https://admin:hunter2@host/x`` → ``https://admin:***@host/x`` and
    ``https://tok@host`` → ``https://***@host``, anywhere in ``text``."""
    return _URL_USER.sub(r"\1***@", _URL_PASSWORD.sub(r"\1:***@", text))


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8, ::1 (a name other than localhost is not trusted to be)."""
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(
        ".localhost"
    ):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warn_plain_http(remote: str, url: str) -> None:
    """Warn once when ``url`` is plain ``http://`` to a host that is not this machine."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "http" or is_loopback(parts.hostname or ""):
        return
    if _once("plain_http", remote):
        get_logger().warning(
            "remote.plain_http",
            remote=remote,
            host=parts.hostname,
            reason="the token and all data travel unencrypted; anyone on the network path "
            "can read and reuse them",
            fix=f"use https:// for remotes.{remote}.url",
        )


# CSI (ESC [ … final), OSC (ESC ] … BEL or ST), other ESC sequences, C1 controls,
# and C0 controls except newline and tab.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[@-_]?"
    r"|[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]"
)


def strip_escapes(text: str) -> str:
    """``text`` without terminal control sequences or control characters (newlines kept)."""
    return _ESCAPES.sub("", text)
