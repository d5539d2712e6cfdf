"""Segments.ai's replies, as syncd reads them.

Sources: the official SDK's models (``segments/typing.py`` in
https://github.com/segments-ai/segments-ai) and the API docs
(https://docs.segments.ai/reference/sample-and-label-types); docs/platforms/segments.md.
"""

from __future__ import annotations

from typing import Any

from pydantic import StrictInt

from syncd.remotes.shapes import Endpoint, Reply


class User(Reply):
    username: str


class Category(Reply):
    id: StrictInt
    name: str


class TaskAttributes(Reply):
    categories: list[Category] | None = None


class Labelset(Reply):
    name: str


class Dataset(Reply):
    name: str
    full_name: str
    task_type: str
    task_attributes: TaskAttributes | None = None
    labelsets: list[Labelset] | None = None


class PostForm(Reply):
    url: str
    fields: dict[str, Any]


class Asset(Reply):
    url: str
    presignedPostFields: PostForm


class Label(Reply):
    label_status: str
    updated_at: str | None = None
    attributes: dict[str, Any] | None = None


class Sample(Reply):
    uuid: str
    name: str
    created_at: str
    attributes: dict[str, Any] | None = None
    label: Label | None = None


class Created(Reply):
    uuid: str
    name: str


ENDPOINTS = (
    Endpoint("GET /user", User, "{username}"),
    Endpoint(
        "GET /datasets/{owner}/{name}/",
        Dataset,
        "{name, full_name, task_type, task_attributes: {categories: [{id: number, name}]}}",
    ),
    Endpoint(
        "PATCH /datasets/{owner}/{name}/",
        Dataset,
        "{name, full_name, task_type, task_attributes: {categories: [{id: number, name}]}}",
    ),
    Endpoint("POST /assets/", Asset, "{url, presignedPostFields: {url, fields}}"),
    Endpoint("POST /datasets/{owner}/{name}/samples_bulk/", list[Created], "[{uuid, name}]"),
    Endpoint(
        "GET /datasets/{owner}/{name}/samples/",
        list[Sample] | None,
        "[{uuid, name, created_at, attributes, label: {label_status, updated_at, attributes}}]",
    ),
    Endpoint(
        "GET /samples/{uuid}/",
        Sample,
        "{uuid, name, created_at, attributes, label: {label_status, updated_at, attributes}}",
    ),
    Endpoint(
        "GET /labels/{uuid}/{labelset}/",
        Label,
        "{label_status, updated_at, attributes}",
    ),
)
