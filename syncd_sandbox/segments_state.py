"""The Segments.ai sandbox's data: users, datasets, labelsets, samples, labels, releases, assets.

Everything is in memory behind one lock; uploaded assets and release files
live in the shared object store. Replies carry every field the official SDK's
pydantic models require (docs/platforms/segments.md), so the SDK
parses each one; timestamps come from one clock that never repeats, so the
``created_at`` and ``gt_label__updated_at`` sorts are total.

Validation follows the SDK's models: sample attributes must have the shape of
the dataset's task type (image, image sequence, point cloud, point-cloud
sequence, multi-sensor), label attributes the shape of the label type. Two
checks go beyond what the public docs state and are marked [unverified]: a
sample URL on the sandbox's own asset host must name an uploaded asset (a
client that registers before uploading is caught), and an annotation's
``category_id`` must be one of the dataset's categories.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from syncd_sandbox.objectstore import ObjectStore
from syncd_sandbox.ratelimit import RateWindows

USER = "sandbox-user"
ORGANIZATION = "sandbox-org"
BUCKET = "segmentsai-sandbox"
GROUND_TRUTH = "ground-truth"
MAX_PER_PAGE = 1000
# Not published by Segments: a generous default; tests tighten it through the admin API.
RATE_WINDOWS: list[tuple[int, float]] = [(200, 1.0)]

IMAGE_TASKS = (
    "segmentation-bitmap",
    "segmentation-bitmap-highres",
    "bboxes",
    "vector",
    "keypoints",
)
IMAGE_SEQUENCE_TASKS = ("image-segmentation-sequence", "image-vector-sequence")
POINTCLOUD_TASKS = ("pointcloud-cuboid", "pointcloud-segmentation", "pointcloud-vector")
POINTCLOUD_SEQUENCE_TASKS = (
    "pointcloud-cuboid-sequence",
    "pointcloud-segmentation-sequence",
    "pointcloud-vector-sequence",
)
MULTISENSOR_TASKS = ("multisensor-sequence",)
TASK_TYPES = (
    *IMAGE_TASKS,
    *IMAGE_SEQUENCE_TASKS,
    *POINTCLOUD_TASKS,
    *POINTCLOUD_SEQUENCE_TASKS,
    *MULTISENSOR_TASKS,
)
LABEL_STATUSES = (
    "REVIEWED",
    "REVIEWING_IN_PROGRESS",
    "LABELED",
    "LABELING_IN_PROGRESS",
    "REJECTED",
    "PRELABELED",
    "SKIPPED",
    "VERIFIED",
    "UNLABELED",
)
CATEGORIES = (
    "street_scenery",
    "garden",
    "agriculture",
    "satellite",
    "people",
    "medical",
    "fruit",
    "other",
)
PCD_TYPES = ("pcd", "binary-xyzi", "kitti", "binary-xyzir", "nuscenes", "ply", "las", "splat")
VECTOR_TYPES = ("bbox", "polygon", "polyline", "point")
SORT_KEYS = ("name", "created_at", "priority", "gt_label__updated_at", "updated_at")
DATASET_FLAGS: dict[str, bool] = {
    "enable_ratings": False,
    "enable_skip_labeling": True,
    "enable_skip_reviewing": False,
    "enable_save_button": False,
    "enable_label_status_verified": False,
    "enable_same_dimensions_track_constraint": False,
    "enable_3d_region_of_interest": False,
    "enable_3d_cuboid_rotation": False,
    "enable_confirm_on_submit": False,
    "enable_interpolation": True,
    "use_timestamps_for_interpolation": False,
    "enable_object_linking": False,
    "enable_object_link_category_restrictions": False,
    "enable_extrapolation": False,
    "archived": False,
}


class ApiError(Exception):
    """An HTTP error with a DRF-style JSON body (the SDK maps errors by the body's words)."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(str(detail))
        self.status = status
        self.body = detail if isinstance(detail, dict) else {"detail": detail}


def not_found() -> ApiError:
    return ApiError(404, "Not found.")


def invalid(field_name: str, message: str) -> ApiError:
    return ApiError(400, {field_name: [message]})


@dataclass
class LabelsetRow:
    name: str
    description: str
    created_at: str

    def dto(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "is_groundtruth": self.name == GROUND_TRUTH,
            "created_at": self.created_at,
        }


@dataclass
class DatasetRow:
    owner: str
    name: str
    created_at: str
    description: str = ""
    task_type: str = "segmentation-bitmap"
    task_attributes: dict[str, Any] = field(default_factory=dict)
    category: str = "other"
    public: bool = False
    readme: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    flags: dict[str, bool] = field(default_factory=lambda: dict(DATASET_FLAGS))
    labelsets: dict[str, LabelsetRow] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class SampleRow:
    uuid: str
    dataset: str  # full name
    name: str
    attributes: dict[str, Any]
    metadata: dict[str, Any]
    priority: float
    created_at: str
    created_by: str
    seq: int  # creation order: breaks ties in every sort
    readme: str = ""
    assigned_labeler: str | None = None
    assigned_reviewer: str | None = None

    def dto(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "name": self.name,
            "attributes": self.attributes,
            "metadata": self.metadata,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "priority": self.priority,
            "readme": self.readme,
            "assigned_labeler": self.assigned_labeler,
            "assigned_reviewer": self.assigned_reviewer,
            "dataset_full_name": self.dataset,
        }


@dataclass
class LabelRow:
    sample_uuid: str
    labelset: str
    label_type: str
    label_status: str
    attributes: dict[str, Any] | None
    created_at: str
    created_by: str
    updated_at: str
    updated_by: str
    score: float | None = None

    def dto(self) -> dict[str, Any]:
        return {
            "sample_uuid": self.sample_uuid,
            "label_type": self.label_type,
            "label_status": self.label_status,
            "labelset": self.labelset,
            "attributes": self.attributes,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
            "score": self.score,
            "rating": None,
            "reviewed_at": None,
            "reviewed_by": None,
        }

    def summary(self) -> dict[str, Any]:
        return {
            "label_status": self.label_status,
            "score": self.score,
            "updated_at": self.updated_at,
            "created_by": self.created_by,
            "reviewed_by": None,
        }


@dataclass
class ReleaseRow:
    uuid: str
    dataset: str
    name: str
    description: str
    created_at: str
    ready_at: float  # monotonic time when the build "finishes"
    samples_count: int
    key: str  # the release file's object key
    status: str = "PENDING"

    def dto(self, url: str | None) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "name": self.name,
            "description": self.description,
            "release_type": "JSON",
            "attributes": {"url": url if self.status == "SUCCEEDED" else None},
            "status": self.status,
            "created_at": self.created_at,
            "samples_count": self.samples_count,
        }


@dataclass
class AssetRow:
    uuid: str
    filename: str
    key: str
    content_type: str
    created_at: str
    expires: float  # wall-clock end of the presigned POST's policy


class SegmentsState:
    """All sandbox state: one user (plus one organisation), its rate windows, the store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.lock = threading.RLock()
        self.datasets: dict[str, DatasetRow] = {}
        self.samples: dict[str, SampleRow] = {}
        self.labels: dict[tuple[str, str], LabelRow] = {}
        self.releases: dict[tuple[str, str], ReleaseRow] = {}
        self.assets: dict[str, AssetRow] = {}
        self.requests: dict[str, int] = {}
        # dataset → sample names in creation order (a second creation would show twice)
        self.created_samples: dict[str, list[str]] = {}
        self.limits = RateWindows(RATE_WINDOWS)
        # Other shapes the docs leave possible (syncd must read them all):
        # bulk_existing: what samples_bulk does with a name that exists, "returned" (the
        # SDK's docstring: unchanged in the reply), "rejected" (400 "already exists", as
        # its Raises section says) or "omitted" (left out of the reply); full_label:
        # "listed" (include_full_label honoured) or "summary" (listings carry only the
        # label's summary: the label endpoint has the rest).
        self.config: dict[str, Any] = {
            "release_seconds": 0.3,
            "bulk_existing": "returned",
            "full_label": "listed",
        }
        self.user_created_at = "2026-01-05T09:00:00.000000Z"
        self._seq = 0
        self._last_stamp = 0.0

    def set_windows(self, windows: list[tuple[int, float]]) -> None:
        with self.lock:
            self.limits = RateWindows(windows)

    def stamp(self) -> str:
        """Now, as Segments writes it; strictly later than the previous stamp."""
        with self.lock:
            now = max(time.time(), self._last_stamp + 1e-6)
            self._last_stamp = now
        return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def next_seq(self) -> int:
        with self.lock:
            self._seq += 1
            return self._seq

    def user_dto(self, name: str = USER) -> dict[str, Any]:
        if name not in (USER, ORGANIZATION):
            raise not_found()
        return {
            "username": name,
            "email": f"{name}@example.com" if name == USER else None,
            "created_at": self.user_created_at,
            "is_organization": name == ORGANIZATION,
            "organizations": [self.user_dto(ORGANIZATION)] if name == USER else None,
        }

    # --- datasets ------------------------------------------------------------------

    def dataset(self, owner: str, name: str) -> DatasetRow:
        row = self.datasets.get(f"{owner}/{name}")
        if row is None:
            raise not_found()
        return row

    def dataset_dto(self, d: DatasetRow) -> dict[str, Any]:
        samples = [s for s in self.samples.values() if s.dataset == d.full_name]
        stats: dict[str, int] = {}
        for s in samples:
            lab = self.labels.get((s.uuid, GROUND_TRUTH))
            status = lab.label_status if lab else "UNLABELED"
            stats[status] = stats.get(status, 0) + 1
        stats["TOTAL"] = len(samples)
        return {
            "name": d.name,
            "full_name": d.full_name,
            "cloned_from": None,
            "description": d.description,
            "data_type": "IMAGE",
            "category": d.category,
            "public": d.public,
            "owner": {"username": d.owner, "created_at": self.user_created_at},
            "created_at": d.created_at,
            **d.flags,
            "task_type": d.task_type,
            "label_stats": stats,
            "labeling_inactivity_timeout_seconds": 300,
            "samples_count": len(samples),
            "collaborators_count": 0,
            "task_attributes": d.task_attributes,
            "labelsets": [ls.dto() for ls in d.labelsets.values()],
            "role": "owner",
            "readme": d.readme,
            "metadata": d.metadata,
            "noncollaborator_can_label": False,
            "noncollaborator_can_review": False,
        }

    def create_dataset(self, owner: str, body: dict[str, Any]) -> DatasetRow:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise invalid("name", "This field is required.")
        if "/" in name or name != name.strip():
            raise invalid("name", "Enter a valid name: no slashes or surrounding spaces.")
        with self.lock:
            if f"{owner}/{name}" in self.datasets:
                raise ApiError(400, {"name": ["A dataset with this name already exists."]})
            now = self.stamp()
            row = DatasetRow(owner=owner, name=name, created_at=now)
            row.labelsets[GROUND_TRUTH] = LabelsetRow(GROUND_TRUTH, "Ground truth labels.", now)
            self._apply_dataset_fields(row, body, creating=True)
            self.datasets[row.full_name] = row
            return row

    def update_dataset(self, row: DatasetRow, body: dict[str, Any]) -> None:
        with self.lock:
            if "name" in body and body["name"] != row.name:
                raise invalid("name", "Renaming a dataset is not supported by the sandbox.")
            self._apply_dataset_fields(row, body, creating=False)

    def _apply_dataset_fields(self, row: DatasetRow, body: dict[str, Any], creating: bool) -> None:
        task_type = body.get("task_type", row.task_type if not creating else "segmentation-bitmap")
        if task_type not in TASK_TYPES:
            raise invalid("task_type", f'"{task_type}" is not a valid choice.')
        category = body.get("category", row.category)
        if not isinstance(category, str) or (
            category not in CATEGORIES and not category.startswith("custom-")
        ):
            raise invalid("category", f'"{category}" is not a valid choice.')
        attrs = body.get("task_attributes", row.task_attributes if not creating else None)
        if attrs is None:
            attrs = {"format_version": "0.1", "categories": [{"id": 1, "name": "object"}]}
        check_task_attributes(attrs)
        for key in DATASET_FLAGS:
            if key in body:
                if not isinstance(body[key], bool):
                    raise invalid(key, "Must be a valid boolean.")
                row.flags[key] = body[key]
        for key in ("description", "readme"):
            if key in body:
                if not isinstance(body[key], str):
                    raise invalid(key, "Not a valid string.")
                setattr(row, key, body[key])
        if "public" in body:
            if not isinstance(body["public"], bool):
                raise invalid("public", "Must be a valid boolean.")
            row.public = body["public"]
        if "metadata" in body:
            if not isinstance(body["metadata"], dict):
                raise invalid("metadata", "Must be an object.")
            row.metadata = body["metadata"]
        row.task_type, row.category, row.task_attributes = task_type, category, attrs

    def delete_dataset(self, row: DatasetRow) -> None:
        with self.lock:
            for s in [s for s in self.samples.values() if s.dataset == row.full_name]:
                self.delete_sample(s)
            for key in [k for k in self.releases if k[0] == row.full_name]:
                del self.releases[key]
            del self.datasets[row.full_name]

    def add_labelset(self, row: DatasetRow, body: dict[str, Any]) -> LabelsetRow:
        name = body.get("name")
        if not isinstance(name, str) or not name or "/" in name:
            raise invalid("name", "This field is required.")
        with self.lock:
            if name in row.labelsets:
                raise ApiError(400, {"name": ["A labelset with this name already exists."]})
            ls = LabelsetRow(name, str(body.get("description") or ""), self.stamp())
            row.labelsets[name] = ls
            return ls

    # --- samples -------------------------------------------------------------------

    def create_samples(
        self, row: DatasetRow, bodies: list[Any], *, bulk: bool
    ) -> tuple[list[SampleRow], bool]:
        """Validate every body, then create them all; returns (samples, any created).

        Single creation refuses an existing name; bulk creation returns the
        existing sample unchanged (the SDK's ``add_samples`` contract).
        """
        with self.lock:
            taken = {s.name: s for s in self.samples.values() if s.dataset == row.full_name}
            seen: set[str] = set()
            checked: list[tuple[str, dict[str, Any]]] = []
            for i, body in enumerate(bodies):
                where = f"[{i}]" if bulk else ""
                if not isinstance(body, dict):
                    raise ApiError(400, {f"non_field_errors{where}": ["Expected an object."]})
                name = body.get("name")
                if not isinstance(name, str) or not name.strip():
                    raise invalid(f"name{where}", "This field is required.")
                if name in seen:
                    raise invalid(f"name{where}", f"The sample name {name!r} appears twice.")
                seen.add(name)
                if name in taken and not bulk:
                    raise ApiError(400, {"name": ["A sample with this name already exists."]})
                if name not in taken:
                    self.check_sample_attributes(row, body.get("attributes"))
                    for key in ("metadata",):
                        if key in body and not isinstance(body[key], dict):
                            raise invalid(f"{key}{where}", "Must be an object.")
                    if "priority" in body and not isinstance(body["priority"], int | float):
                        raise invalid(f"priority{where}", "A valid number is required.")
                checked.append((name, body))
            out: list[SampleRow] = []
            created = False
            for name, body in checked:
                if name in taken:
                    out.append(taken[name])
                    continue
                sample = SampleRow(
                    uuid=str(uuid.uuid4()),
                    dataset=row.full_name,
                    name=name,
                    attributes=body["attributes"],
                    metadata=dict(body.get("metadata") or {}),
                    priority=float(body.get("priority") or 0),
                    created_at=self.stamp(),
                    created_by=USER,
                    seq=self.next_seq(),
                    readme=str(body.get("readme") or ""),
                    assigned_labeler=body.get("assigned_labeler"),
                    assigned_reviewer=body.get("assigned_reviewer"),
                )
                self.samples[sample.uuid] = sample
                self.created_samples.setdefault(row.full_name, []).append(name)
                taken[name] = sample
                out.append(sample)
                created = True
            return out, created

    def sample(self, sample_uuid: str) -> SampleRow:
        s = self.samples.get(sample_uuid)
        if s is None:
            raise not_found()
        return s

    def update_sample(self, s: SampleRow, body: dict[str, Any]) -> None:
        with self.lock:
            row = self.datasets[s.dataset]
            if "name" in body:
                name = body["name"]
                if not isinstance(name, str) or not name.strip():
                    raise invalid("name", "This field may not be blank.")
                if any(
                    o.name == name and o.dataset == s.dataset and o.uuid != s.uuid
                    for o in self.samples.values()
                ):
                    raise ApiError(400, {"name": ["A sample with this name already exists."]})
                s.name = name
            if "attributes" in body:
                self.check_sample_attributes(row, body["attributes"])
                s.attributes = body["attributes"]
            if "metadata" in body:
                if not isinstance(body["metadata"], dict):
                    raise invalid("metadata", "Must be an object.")
                s.metadata = body["metadata"]
            if "priority" in body:
                if not isinstance(body["priority"], int | float):
                    raise invalid("priority", "A valid number is required.")
                s.priority = float(body["priority"])
            for key in ("assigned_labeler", "assigned_reviewer", "readme"):
                if key in body:
                    setattr(s, key, body[key])

    def delete_sample(self, s: SampleRow) -> None:
        with self.lock:
            self.samples.pop(s.uuid, None)
            for key in [k for k in self.labels if k[0] == s.uuid]:
                del self.labels[key]

    def list_samples(self, row: DatasetRow, query: dict[str, str]) -> list[SampleRow]:
        """Filtered and sorted (not yet paged) samples of a dataset."""
        labelset = query.get("labelset") or GROUND_TRUTH
        if labelset not in row.labelsets:
            raise not_found()
        rows = [s for s in self.samples.values() if s.dataset == row.full_name]
        name = query.get("name__contains")
        if name:
            rows = [s for s in rows if name.lower() in s.name.lower()]
        filters = query.get("filters")
        if filters:
            for f in filters.split(","):
                key, sep, value = f.partition(":")
                if not sep:
                    raise invalid("filters", f"{f!r}: expected key:value")
                rows = [s for s in rows if str(s.metadata.get(key)) == value]
        statuses = query.get("label_status")
        if statuses:
            wanted = set(statuses.split(","))
            unknown = wanted - set(LABEL_STATUSES)
            if unknown:
                raise invalid("label_status", f"unknown status {sorted(unknown)[0]!r}")
            rows = [s for s in rows if self._status(s, labelset) in wanted]
        sort = query.get("sort") or "name"
        desc = sort.startswith("-")
        key = sort.lstrip("-")
        if key not in SORT_KEYS:
            raise invalid("sort", f"cannot sort by {key!r}; one of {', '.join(SORT_KEYS)}")
        if key == "gt_label__updated_at":
            # As PostgreSQL orders NULLs: last ascending, first descending.
            def gt(s: SampleRow) -> tuple[int, str, int]:
                lab = self.labels.get((s.uuid, GROUND_TRUTH))
                return (1, "", s.seq) if lab is None else (0, lab.updated_at, s.seq)

            return sorted(rows, key=gt, reverse=desc)
        if key == "updated_at":
            key = "created_at"  # samples keep no update time of their own
        return sorted(rows, key=lambda s: (getattr(s, key), s.seq), reverse=desc)

    def _status(self, s: SampleRow, labelset: str) -> str:
        lab = self.labels.get((s.uuid, labelset))
        return lab.label_status if lab else "UNLABELED"

    # --- labels --------------------------------------------------------------------

    def put_label(
        self, s: SampleRow, labelset: str, body: dict[str, Any], *, by: str, partial: bool
    ) -> tuple[LabelRow, bool]:
        """Create or replace (PUT) or update (PATCH, ``partial``) a label; returns (label, created)."""
        with self.lock:
            row = self.datasets[s.dataset]
            if labelset not in row.labelsets:
                raise not_found()
            old = self.labels.get((s.uuid, labelset))
            if partial and old is None:
                raise not_found()
            status = body.get("label_status", old.label_status if old else "PRELABELED")
            if status not in LABEL_STATUSES:
                raise invalid("label_status", f'"{status}" is not a valid choice.')
            if "attributes" in body or not partial:
                attrs = body.get("attributes")
                check_label_attributes(row, attrs)
            else:
                assert old is not None
                attrs = old.attributes
            score = body.get("score", old.score if (old and partial) else None)
            if score is not None and not isinstance(score, int | float):
                raise invalid("score", "A valid number is required.")
            now = self.stamp()
            label = LabelRow(
                sample_uuid=s.uuid,
                labelset=labelset,
                label_type=row.task_type,
                label_status=str(status),
                attributes=attrs,
                created_at=old.created_at if old else now,
                created_by=old.created_by if old else by,
                updated_at=now,
                updated_by=by,
                score=float(score) if score is not None else None,
            )
            self.labels[(s.uuid, labelset)] = label
            return label, old is None

    def label(self, s: SampleRow, labelset: str) -> LabelRow:
        row = self.datasets[s.dataset]
        if labelset not in row.labelsets:
            raise not_found()
        lab = self.labels.get((s.uuid, labelset))
        if lab is None:
            raise not_found()
        return lab

    # --- sample and label shapes ----------------------------------------------------

    def check_sample_attributes(self, row: DatasetRow, attrs: Any) -> None:
        """The attributes must have the shape the dataset's task type takes."""
        if not isinstance(attrs, dict):
            raise invalid("attributes", "This field is required and must be an object.")
        task = row.task_type
        try:
            if task in IMAGE_TASKS:
                self._image(attrs)
            elif task in IMAGE_SEQUENCE_TASKS:
                self._frames(attrs, self._image)
            elif task in POINTCLOUD_TASKS:
                self._pointcloud(attrs)
            elif task in POINTCLOUD_SEQUENCE_TASKS:
                self._frames(attrs, self._pointcloud)
            else:
                sensors = attrs.get("sensors")
                if not isinstance(sensors, list) or not sensors:
                    raise ValueError("a multisensor sample needs a non-empty 'sensors' list")
                names = set()
                for sensor in sensors:
                    if not isinstance(sensor, dict) or not isinstance(sensor.get("name"), str):
                        raise ValueError("each sensor needs a name")
                    if sensor["name"] in names:
                        raise ValueError(f"sensor {sensor['name']!r} appears twice")
                    names.add(sensor["name"])
                    kind = sensor.get("task_type")
                    if kind in POINTCLOUD_SEQUENCE_TASKS:
                        self._frames(sensor.get("attributes"), self._pointcloud)
                    elif kind in IMAGE_SEQUENCE_TASKS:
                        self._frames(sensor.get("attributes"), self._image)
                    else:
                        raise ValueError(f"sensor {sensor['name']!r}: task_type {kind!r}")
        except ValueError as exc:
            raise invalid("attributes", f"not a valid {task} sample: {exc}") from None

    def _url(self, value: Any, what: str) -> None:
        if not isinstance(value, dict) or not isinstance(value.get("url"), str):
            raise ValueError(f"{what} needs a 'url'")
        url = value["url"]
        marker = f"/s3/{BUCKET}/"
        if marker in url:
            key = url.split(marker, 1)[1]
            if f"{BUCKET}/{key}" not in self.store.objects:
                raise ValueError(f"{what}: no uploaded asset at {url}")

    def _image(self, attrs: Any) -> None:
        if not isinstance(attrs, dict):
            raise ValueError("an image frame must be an object")
        self._url(attrs.get("image"), "image")

    def _pointcloud(self, attrs: Any) -> None:
        if not isinstance(attrs, dict):
            raise ValueError("a point-cloud frame must be an object")
        pcd = attrs.get("pcd")
        self._url(pcd, "pcd")
        assert isinstance(pcd, dict)
        if pcd.get("type") not in PCD_TYPES:
            raise ValueError(f"pcd.type must be one of {', '.join(PCD_TYPES)}")
        images = attrs.get("images", [])
        if not isinstance(images, list):
            raise ValueError("images must be a list")
        for img in images:
            self._url(img, "images[]")

    def _frames(self, attrs: Any, frame: Any) -> None:
        if not isinstance(attrs, dict):
            raise ValueError("a sequence must be an object")
        frames = attrs.get("frames")
        if not isinstance(frames, list) or not frames:
            raise ValueError("a sequence needs a non-empty 'frames' list")
        for f in frames:
            frame(f)


def check_task_attributes(attrs: Any) -> None:
    if not isinstance(attrs, dict):
        raise invalid("task_attributes", "Must be an object.")
    cats = attrs.get("categories", [])
    if not isinstance(cats, list):
        raise invalid("task_attributes", "categories must be a list.")
    ids = set()
    for c in cats:
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            raise invalid("task_attributes", "each category needs a name.")
        if not isinstance(c.get("id"), int) or isinstance(c.get("id"), bool):
            raise invalid("task_attributes", f"category {c.get('name')!r} needs an integer id.")
        if c["id"] in ids:
            raise invalid("task_attributes", f"category id {c['id']} is used twice.")
        ids.add(c["id"])


def _xyz(value: Any, what: str) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(value.get(k), int | float) for k in ("x", "y", "z")
    ):
        raise ValueError(f"{what} needs numbers x, y and z")


def _annotations(anns: Any, kind: str, categories: set[int], *, sequence: bool) -> None:
    if not isinstance(anns, list):
        raise ValueError("annotations must be a list")
    for a in anns:
        if not isinstance(a, dict) or not isinstance(a.get("id"), int):
            raise ValueError("each annotation needs an integer id")
        if not isinstance(a.get("category_id"), int):
            raise ValueError("each annotation needs an integer category_id")
        if a["category_id"] not in categories:
            # [unverified] the real API's handling of unknown categories is not documented
            raise ValueError(f"category_id {a['category_id']} is not a category of the dataset")
        if sequence and not isinstance(a.get("track_id"), int):
            raise ValueError("a sequence annotation needs an integer track_id")
        if kind == "cuboid":
            if a.get("type") not in ("cuboid", "cuboid-sync"):
                raise ValueError("a cuboid annotation has type 'cuboid'")
            _xyz(a.get("position"), "position")
            _xyz(a.get("dimensions"), "dimensions")
            if not isinstance(a.get("yaw"), int | float):
                raise ValueError("a cuboid needs a numeric yaw")
        elif kind == "vector":
            if a.get("type") not in VECTOR_TYPES:
                raise ValueError(f"a vector annotation's type is one of {', '.join(VECTOR_TYPES)}")
            points = a.get("points")
            if not isinstance(points, list) or not all(
                isinstance(p, list) and all(isinstance(v, int | float) for v in p) for p in points
            ):
                raise ValueError("points must be a list of coordinate lists")


def _label_kind(task: str) -> str:
    if task in ("vector", "bboxes", "keypoints", "image-vector-sequence", "pointcloud-vector"):
        return "vector"
    if task.startswith("pointcloud-cuboid"):
        return "cuboid"
    return "other"


def check_label_attributes(row: DatasetRow, attrs: Any) -> None:
    """Label attributes of the dataset's task type (the SDK's LabelAttributes union)."""
    cats = {
        c["id"] for c in row.task_attributes.get("categories", []) if isinstance(c.get("id"), int)
    }
    task = row.task_type
    try:
        if not isinstance(attrs, dict):
            raise ValueError("attributes must be an object")
        if task in MULTISENSOR_TASKS:
            sensors = attrs.get("sensors")
            if not isinstance(sensors, list):
                raise ValueError("a multisensor label needs a 'sensors' list")
            for sensor in sensors:
                if not isinstance(sensor, dict) or not isinstance(sensor.get("name"), str):
                    raise ValueError("each sensor label needs a name")
                kind = sensor.get("task_type")
                if kind not in (*POINTCLOUD_SEQUENCE_TASKS, *IMAGE_SEQUENCE_TASKS):
                    raise ValueError(f"sensor {sensor['name']!r}: task_type {kind!r}")
                inner = sensor.get("attributes")
                if inner == []:
                    continue
                _frames_label(inner, _label_kind(str(kind)), cats)
        elif task.endswith("-sequence"):
            _frames_label(attrs, _label_kind(task), cats)
        else:
            _annotations(attrs.get("annotations"), _label_kind(task), cats, sequence=False)
            if task.startswith("segmentation-bitmap") and not isinstance(
                attrs.get("segmentation_bitmap"), dict
            ):
                raise ValueError("a segmentation label needs segmentation_bitmap.url")
    except ValueError as exc:
        raise invalid("attributes", f"not a valid {task} label: {exc}") from None


def _frames_label(attrs: Any, kind: str, cats: set[int]) -> None:
    if not isinstance(attrs, dict) or not isinstance(attrs.get("frames"), list):
        raise ValueError("a sequence label needs a 'frames' list")
    for f in attrs["frames"]:
        if not isinstance(f, dict):
            raise ValueError("each frame must be an object")
        _annotations(f.get("annotations"), kind, cats, sequence=True)
