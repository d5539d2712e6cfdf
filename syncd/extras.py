"""The optional parts of syncd and the extras that install them.

A plain ``pip install syncd`` gives a working daemon. Two features need more:

* ``syncd[sandbox]`` — the fake platforms (package :mod:`syncd_sandbox`:
  Starlette, uvicorn) behind ``syncd sandbox`` and ``syncd demo``;
* ``syncd[postgres]`` — psycopg, for ``state.database_url`` (a fleet sharing
  one PostgreSQL store).

Contract: :func:`require` imports the module an extra provides, or raises a
:class:`~syncd.errors.ConfigError` (from :func:`missing`) that names the
feature, the extra and the command that installs it (exit code 2 in the CLI,
never a traceback). Modules that need an extra import it at their top inside
``try``/``except ImportError`` and raise :func:`missing`, so every way in
(``syncd run``, ``status``, ``retry`` …) gets the same message.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from syncd.errors import ConfigError

EXTRAS = {
    "sandbox": ("syncd_sandbox", "the sandbox platforms (syncd sandbox, syncd demo)"),
    "postgres": ("psycopg", "a PostgreSQL store (state.database_url)"),
}


def missing(extra: str, exc: ImportError) -> ConfigError:
    """The error for a feature whose extra is not installed (``exc``: the failed import)."""
    module, feature = EXTRAS[extra]
    return ConfigError(
        f"{feature} needs the '{extra}' extra ({exc.name or module} is not installed): "
        f"pip install 'syncd[{extra}]'"
    )


def require(extra: str) -> ModuleType:
    """Import what ``extra`` provides; a ConfigError with the install command if it is missing."""
    try:
        return importlib.import_module(EXTRAS[extra][0])
    except ImportError as exc:
        raise missing(extra, exc) from exc
