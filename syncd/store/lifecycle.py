"""The package state machine: every move a package may make, in one table.

Contract:

* :data:`TRANSITIONS` holds every edge :meth:`syncd.store.Tx.transition`
  accepts; any other move raises :class:`InvalidTransition`. The edges are
  the moves the pipeline makes:

  - forward, one stage at a time: ``detected → settled → packing → packed →
    uploading → uploaded → submitted → processing → done``;
  - back to ``detected`` from ``uploading``: a file changed under a packed
    package, which is packed again (the one backward edge);
  - to ``failed`` from every state that is not final.

* :data:`REOPEN` is the one edge out of a final state, taken only by an
  operator's ``syncd retry`` (:meth:`syncd.store.Tx.reopen`).
* :class:`InvalidTransition` is a programming error, not a condition to
  handle: the code asked for a move the state machine does not have. It is
  a ``ValueError`` (never a :class:`~syncd.errors.SyncdError`), so it is not
  mistaken for a store or platform problem and is reported with its
  traceback.
"""

from __future__ import annotations

from itertools import pairwise

from syncd.store.models import FINAL_STATES, PACKAGE_STATES

# The happy path, in order: PACKAGE_STATES lists it, then ``failed``.
FORWARD = tuple(s for s in PACKAGE_STATES if s != "failed")
# A file changed while it was uploaded: forget the file list and pack again.
REPACK = ("uploading", "detected")
# ``syncd retry``: a failed package starts again from the unit's files.
REOPEN = ("failed", "detected")
# Non-final states, oldest first: those a package may still leave.
LIVE_STATES = tuple(s for s in PACKAGE_STATES if s not in FINAL_STATES)

TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {*pairwise(FORWARD), REPACK, *((s, "failed") for s in LIVE_STATES)}
)


class InvalidTransition(ValueError):
    """A move the state machine does not have (a programming error; see module docstring)."""


def check_transition(package_id: int | None, from_state: str, to_state: str) -> None:
    """Raise :class:`InvalidTransition` unless ``from_state → to_state`` is in the table."""
    if to_state not in PACKAGE_STATES:
        raise InvalidTransition(f"unknown package state {to_state!r}")
    if from_state in FINAL_STATES:
        raise InvalidTransition(f"package {package_id} is already {from_state}")
    if (from_state, to_state) not in TRANSITIONS:
        raise InvalidTransition(
            f"package {package_id}: no transition {from_state} → {to_state} "
            "(syncd.store.lifecycle.TRANSITIONS)"
        )
