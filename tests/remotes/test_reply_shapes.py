"""Reply shapes: a reply lacking a field syncd reads, or holding it with another type, is an
error naming the endpoint and the field; two documented shapes are both accepted."""

from __future__ import annotations

import pytest

from syncd.errors import PermanentError, ReplyShapeError
from syncd.remotes.shapes import basicai as basicai_shapes
from syncd.remotes.shapes import check_reply, journal, seen, shape_of
from syncd.remotes.shapes import deepen as deepen_shapes
from syncd.remotes.shapes import segments as segments_shapes
from syncd.remotes.shapes import xtreme1 as xtreme1_shapes

PAGE = {"list": [{"id": 7, "name": "a", "type": "SINGLE_DATA", "extra": 1}], "total": 1}


def test_a_good_reply_passes_unchanged_with_extra_fields() -> None:
    out = check_reply(xtreme1_shapes.ENDPOINTS, "xtreme1", "GET", "/data/findByPage", PAGE)
    assert out is PAGE


@pytest.mark.parametrize(
    ("reply", "field", "received"),
    [
        ({"list": [{"ident": 7, "name": "a"}], "total": 1}, "list[0].id", "keys {ident, name}"),
        ({"list": [{"id": 7, "name": "a"}]}, "total", "keys {list}"),
        ({"list": [{"id": 7, "name": "a"}], "total": "1"}, "total", "digits"),
        ({"list": [{"id": "x7", "name": "a"}], "total": 1}, "list[0].id", "string"),
    ],
)
def test_a_changed_reply_names_endpoint_and_field(
    reply: dict[str, object], field: str, received: str
) -> None:
    with pytest.raises(ReplyShapeError) as info:
        check_reply(xtreme1_shapes.ENDPOINTS, "xtreme1", "GET", "/data/findByPage", reply)
    err = info.value
    assert isinstance(err, PermanentError)
    assert err.endpoint == "GET /data/findByPage"
    assert err.field == field
    assert received in err.received
    assert "GET /data/findByPage" in str(err) and field in str(err)


def test_shapes_carry_no_values() -> None:
    assert shape_of({"token": "secret", "n": 3, "u": [{"url": "https://x"}]}) == (
        "{n: number, token: string, u: [{…}, … 1 items]}"
    )


def test_basicai_results_nested_and_flat_are_both_read_and_the_variant_recorded() -> None:
    path = "/dataset/batchDataAnnotationResult/5/"
    nested = [{"dataId": 1, "annotationStatus": "ANNOTATED", "results": [{"sourceId": 3}]}]
    with journal() as j:
        assert check_reply(basicai_shapes.ENDPOINTS, "basicai", "GET", path, nested) == nested
    assert seen("basicai")["results shape"].startswith("nested")
    assert j[0].endpoint == "GET /dataset/batchDataAnnotationResult/{id}/"
    flat = [{"dataId": 1, "sourceId": 3, "instances": []}, {"dataId": 1, "sourceId": 4}]
    out = check_reply(basicai_shapes.ENDPOINTS, "basicai", "GET", path, flat)
    assert [len(e["results"]) for e in out] == [2]
    assert seen("basicai")["results shape"].startswith("flat")
    with pytest.raises(ReplyShapeError) as info:
        check_reply(basicai_shapes.ENDPOINTS, "basicai", "GET", path, [{"dataId": 1}])
    assert info.value.endpoint == "GET /dataset/batchDataAnnotationResult/{id}/"


def test_basicai_dataset_type_naming_is_recorded() -> None:
    for kind, style in (("LIDAR", "worked example"), ("LIDAR_FUSION", "export docs")):
        reply = {"list": [{"id": 1, "name": "d", "type": kind}]}
        check_reply(basicai_shapes.ENDPOINTS, "basicai", "GET", "/dataset/listById", reply)
        assert style in seen("basicai")["dataset type"]


def test_deepen_labels_and_segments_samples() -> None:
    path = "/datasets/abc/labels"
    good = {"labels": {"f.json": [{"label_id": "L1", "label_type": "3d_bbox"}]}}
    assert check_reply(deepen_shapes.ENDPOINTS, "deepen", "GET", path, good) is good
    with pytest.raises(ReplyShapeError) as info:
        check_reply(deepen_shapes.ENDPOINTS, "deepen", "GET", path, {"labels": {"f": [{}]}})
    assert info.value.field == "labels.f[0].label_id"
    rows = [{"uuid": "u", "name": "n", "created_at": "2026-01-01T00:00:00Z", "label": None}]
    samples = "/datasets/me/ds/samples/"
    assert check_reply(segments_shapes.ENDPOINTS, "segments", "GET", samples, rows) is rows
    with pytest.raises(ReplyShapeError) as info:
        check_reply(segments_shapes.ENDPOINTS, "segments", "GET", samples, [{"uuid": "u"}])
    assert info.value.endpoint == "GET /datasets/{owner}/{name}/samples/"
    assert info.value.field == "[0].name"
