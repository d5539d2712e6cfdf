"""Reply shapes: every reply syncd reads is checked against a model before it is used.

Each backend declares, per endpoint, the pydantic model of the reply's
payload (after the platform's envelope is removed) in one module of this
package (:mod:`.xtreme1`, :mod:`.basicai`, :mod:`.deepen`, :mod:`.segments`)
and passes every reply through :func:`check_reply`. The models are strict
about the fields syncd reads and permissive about the rest (platforms add
fields).

Contract:
- A reply that lacks a field syncd reads, or holds one with another type,
  raises :class:`~syncd.errors.ReplyShapeError` naming the endpoint, the
  field's path in the reply and the shape received (types and keys, never
  values: the message may carry no token or URL). Never a silent empty result.
- Numbers syncd computes with must be JSON numbers (a string is an error);
  ids may be numbers or digit strings (Java longs are often sent as strings).
- Where the public docs show two plausible shapes, both are accepted: the
  endpoint's ``normalize`` turns the other one into the first, and
  ``variant`` names which one came; the last variant seen per platform and
  assumption is kept in :func:`seen` (``syncd check --live`` reports it).
- An endpoint without a declared shape passes unchanged (syncd does not read
  that reply).
- While a :func:`journal` is open, every checked reply is appended to it
  (``syncd check --live`` builds its table from it).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StrictInt, StringConstraints, TypeAdapter
from pydantic import ValidationError as _ValidationError

from syncd.errors import ReplyShapeError

# An id as platforms send it: a JSON number or a string (digits for numeric ids).
NumericId = StrictInt | Annotated[str, StringConstraints(pattern=r"^\d+$")]
AnyId = StrictInt | str


class Reply(BaseModel):
    """A reply object: extra fields are allowed (and kept), the declared ones are checked."""

    model_config = ConfigDict(extra="allow", strict=False)


@dataclass(frozen=True)
class Endpoint:
    """The shape of one endpoint's reply payload.

    ``template`` is ``"GET /data/findByPage"`` with ``{name}`` for path
    parameters (``{name*}`` may hold slashes); ``expects`` says in a few words
    what syncd reads (the ``--live`` table's "expected" column).
    """

    template: str
    model: Any  # a type TypeAdapter accepts: a Reply subclass, list[...], a union
    expects: str
    normalize: Callable[[Any], Any] | None = None
    variant: Callable[[Any], dict[str, str]] | None = None
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)
    adapter: TypeAdapter[Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        method, _, path = self.template.partition(" ")
        regex = re.escape(path)
        regex = re.sub(r"\\\{[a-zA-Z_]+\\\*\\\}", ".+", regex)
        regex = re.sub(r"\\\{[a-zA-Z_]+\\\}", "[^/]+", regex)
        object.__setattr__(self, "pattern", re.compile(f"{re.escape(method)} {regex}"))
        object.__setattr__(self, "adapter", TypeAdapter(self.model))


@dataclass
class Checked:
    """One reply checked while a :func:`journal` was open."""

    platform: str
    endpoint: str
    expects: str
    received: str
    error: ReplyShapeError | None = None
    variants: dict[str, str] = field(default_factory=dict)


_lock = threading.Lock()
_seen: dict[str, dict[str, str]] = {}
_journal: list[Checked] | None = None


def seen(platform: str) -> dict[str, str]:
    """The variant last seen per assumption of ``platform`` (``{"results": "flat …"}``)."""
    with _lock:
        return dict(_seen.get(platform, {}))


@contextlib.contextmanager
def journal() -> Iterator[list[Checked]]:
    """Collect every reply checked inside the block (one process-wide journal at a time)."""
    global _journal
    entries: list[Checked] = []
    with _lock:
        previous, _journal = _journal, entries
    try:
        yield entries
    finally:
        with _lock:
            _journal = previous


def _record(entry: Checked) -> None:
    with _lock:
        if entry.variants:
            _seen.setdefault(entry.platform, {}).update(entry.variants)
        if _journal is not None:
            _journal.append(entry)


def shape_of(value: Any, depth: int = 2) -> str:
    """The shape of a JSON value: types and keys, never values (safe to log)."""
    if isinstance(value, dict):
        if depth <= 0:
            return "{…}"
        keys = sorted(value)[:8]
        inner = ", ".join(f"{k}: {shape_of(value[k], depth - 1)}" for k in keys)
        more = ", …" if len(value) > len(keys) else ""
        return "{" + inner + more + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        return f"[{shape_of(value[0], depth - 1)}, … {len(value)} items]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "digits" if value.isdigit() else "string"
    return type(value).__name__


def _walk(data: Any, loc: tuple[int | str, ...]) -> tuple[str, Any]:
    """A pydantic error location as a path in the reply, and the value there (or, for a
    missing key, its parent). Parts that name a union member or type are not keys: dropped."""
    path, node = "", data
    for i, part in enumerate(loc):
        if isinstance(part, int):
            if isinstance(node, list) and part < len(node):
                path, node = path + f"[{part}]", node[part]
            continue
        if isinstance(node, dict) and part in node:
            path, node = path + ("." if path else "") + part, node[part]
        elif i == len(loc) - 1 and isinstance(node, dict):
            path += ("." if path else "") + part  # the missing key
    return path, node


def find(table: tuple[Endpoint, ...], method: str, path: str) -> Endpoint | None:
    """The declared shape of this request, or None."""
    key = f"{method} {path}"
    return next((e for e in table if e.pattern.fullmatch(key)), None)


def check_reply(
    table: tuple[Endpoint, ...], platform: str, method: str, path: str, data: Any
) -> Any:
    """``data`` once it has passed its endpoint's model (normalized where two shapes exist).

    Raises ReplyShapeError naming the endpoint and field (see the module docstring).
    """
    endpoint = find(table, method, path)
    if endpoint is None:
        return data
    try:
        endpoint.adapter.validate_python(data)
    except _ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        where, node = _walk(data, loc)
        where = where or "(the whole reply)"
        problem = str(first["msg"]).rstrip(".").lower()
        if first["type"] == "missing" and isinstance(node, dict):
            keys = sorted(node)
            received = "keys {" + ", ".join(keys[:20]) + (", …" if len(keys) > 20 else "") + "}"
        else:
            received = shape_of(node)
        error = ReplyShapeError(
            f"{endpoint.template}: reply field {where}: {problem}; received {received} "
            f"(syncd expects {endpoint.expects}; the platform's API may have changed: "
            "run `syncd check --live` and report it)",
            platform=platform,
            endpoint=endpoint.template,
            field=where,
            received=received,
            problem=problem,
        )
        _record(Checked(platform, endpoint.template, endpoint.expects, received, error))
        raise error from None
    variants = endpoint.variant(data) if endpoint.variant else {}
    out = endpoint.normalize(data) if endpoint.normalize else data
    _record(Checked(platform, endpoint.template, endpoint.expects, shape_of(data), None, variants))
    return out
