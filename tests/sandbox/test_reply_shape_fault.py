"""The ``reply_shape`` fault: one field of a reply renamed, dropped or sent as a string."""

from __future__ import annotations

import pytest

from syncd_sandbox.faults import FaultRules, reshape


def _doc() -> dict[str, object]:
    return {"code": "OK", "data": {"total": 2, "list": [{"id": 1}, {"id": 2, "x": 0}]}}


def test_rename_drop_and_string() -> None:
    renamed = reshape(_doc(), {"op": "rename", "field": "data.list.*.id", "to": "ident"})
    assert renamed["data"]["list"] == [{"ident": 1}, {"ident": 2, "x": 0}]
    dropped = reshape(_doc(), {"op": "drop", "field": "data.list.*.x"})
    assert dropped["data"]["list"] == [{"id": 1}, {"id": 2}]
    assert reshape(_doc(), {"op": "string", "field": "data.total"})["data"]["total"] == "2"
    assert reshape(_doc(), {"op": "drop", "field": "data.nothing.here"}) == _doc()
    assert reshape([{"a": 1}], {"op": "drop", "field": "*.a"}) == [{}]


@pytest.mark.parametrize(
    "edit",
    [None, {"op": "swap", "field": "a"}, {"op": "rename", "field": "a"}, {"op": "drop"}],
)
def test_a_bad_edit_is_refused(edit: object) -> None:
    with pytest.raises(ValueError, match="reply_shape needs edit"):
        FaultRules().add({"action": "reply_shape", "edit": edit})
