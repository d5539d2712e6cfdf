"""The rows of ``syncd check --live``: one per assumption, rendered as a table or JSON.

Contract:
- A row says what syncd expects, what the platform answered (shapes and
  counts, never tokens or signed URLs: :func:`short` cuts and redacts) and a
  status: ``ok`` (✔), ``fail`` (✘) or ``skip`` (``-``, the assumption does not
  apply to this platform or configuration; it does not fail the check).
- The check passes only when no row failed (:func:`passed`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from syncd.log import redact_text
from syncd.remotes.shapes import Checked

Status = Literal["ok", "fail", "skip"]
MARKS = {"ok": "✔", "fail": "✘", "skip": "-"}
_URL = re.compile(r"https?://[^\s\"']+")


@dataclass(frozen=True)
class Row:
    remote: str
    check: str
    endpoint: str
    expects: str
    answered: str
    status: Status


def short(text: str, limit: int = 160) -> str:
    """``text`` on one line, secrets masked, URLs cut to scheme, host and path."""
    # "token accepted" is not a token: keep the words the redaction would eat
    text = redact_text(" ".join(text.split()).replace("token accepted", "token-accepted"))
    text = _URL.sub(lambda m: m.group(0).split("?")[0], text).replace(
        "token-accepted", "token accepted"
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def journal_rows(remote: str, entries: Sequence[Checked], seen: set[str]) -> list[Row]:
    """One row per endpoint checked (the first failure, else the first answer), then one per
    shape variant recorded; endpoints already in ``seen`` are left out (and added to it)."""
    rows: list[Row] = []
    by_endpoint: dict[str, Checked] = {}
    for e in entries:
        prior = by_endpoint.get(e.endpoint)
        if prior is None or (prior.error is None and e.error is not None):
            by_endpoint[e.endpoint] = e
    for endpoint, e in by_endpoint.items():
        if endpoint in seen and e.error is None:
            continue
        seen.add(endpoint)
        if e.error is None:
            rows.append(Row(remote, "reply shape", endpoint, e.expects, short(e.received), "ok"))
        else:
            answered = f"field {e.error.field}: {e.error.problem}; received {e.error.received}"
            rows.append(
                Row(remote, "reply shape", endpoint, e.expects, short(answered, 300), "fail")
            )
    variants: dict[str, tuple[str, str]] = {}
    for e in entries:
        for key, value in e.variants.items():
            variants[key] = (e.endpoint, value)
    for key, (endpoint, value) in variants.items():
        label = f"variant: {key}"
        if label in seen:
            continue
        seen.add(label)
        rows.append(Row(remote, label, endpoint, "either documented shape", short(value), "ok"))
    return rows


def passed(rows: Sequence[Row]) -> bool:
    return all(r.status != "fail" for r in rows)


def as_json(rows: Sequence[Row]) -> str:
    return json.dumps(
        {"ok": passed(rows), "rows": [asdict(r) for r in rows]}, indent=2, ensure_ascii=False
    )


def as_table(rows: Sequence[Row]) -> str:
    """A plain-text table: status, remote, check, endpoint, expected, answered."""
    head = ("", "remote", "check", "endpoint", "syncd expects", "platform answered")
    body = [
        (
            MARKS[r.status],
            r.remote,
            r.check,
            r.endpoint,
            short(r.expects, 60),
            # a ✘ row keeps its whole answer: the field and the shape received
            short(r.answered, 300 if r.status == "fail" else 70),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in [head, *body]
    ]
    failed = sum(r.status == "fail" for r in rows)
    lines.append(
        f"{len(rows)} checks, {failed} failed" if failed else f"{len(rows)} checks, all passed"
    )
    return "\n".join(lines)
