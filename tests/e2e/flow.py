"""The core e2e flow's shared steps, so every platform's e2e test checks the same promises.

Each platform test runs the same story through the real CLI (three units, a
run, the annotator labels, a second run, a third run that does nothing) and
adds what only its platform can show (its own counters of what was stored).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from syncd.sampledata import write_fusion_unit, write_image_unit, write_scene_unit
from tests.conftest import TOKEN, query

TRANSITIONS = [
    "detected",
    "settled",
    "packing",
    "packed",
    "uploading",
    "uploaded",
    "submitted",
    "processing",
    "done",
]

# the box the annotator draws on the late labels (rotation0 and neutral form)
LATE_BOX: dict[str, Any] = {
    "center3D": {"x": 1, "y": 2, "z": 0},
    "size3D": {"x": 8, "y": 2.5, "z": 3},
    "rotation3D": {"x": 0, "y": 0, "z": 0},
}


class Units:
    """The three units of the core e2e story, written under ``tmp``."""

    def __init__(self, tmp: Path, *, scene_cameras: int = 0, image_results: bool = False) -> None:
        self.lidar, self.images = tmp / "lidar", tmp / "images"
        self.fusion = write_fusion_unit(
            self.lidar / "drive_0001", frames=3, cameras=2, with_result=True
        )
        self.scene = write_scene_unit(
            self.lidar / "drive_0002", scene="scene_01", frames=3, cameras=scene_cameras
        )
        self.pics = write_image_unit(self.images / "batch_01", images=3, with_result=image_results)

    def syncs(self) -> list[dict[str, Any]]:
        return [
            {
                "name": "lidar",
                "dataset": "e2e-fusion",
                "dataset_type": "LIDAR_FUSION",
                "folder": self.lidar,
            },
            {
                "name": "images",
                "dataset": "e2e-images",
                "dataset_type": "IMAGE",
                "folder": self.images,
            },
        ]

    def expected_prelabels(self, *, with_images: bool = False) -> dict[str, list[str]]:
        """Item name → sorted class names of its ``result/`` pre-label."""
        units = [(self.lidar / "drive_0001", self.fusion)]
        if with_images:
            units.append((self.images / "batch_01", self.pics))
        out: dict[str, list[str]] = {}
        for unit, names in units:
            for name in names:
                doc = json.loads((unit / "result" / f"{name}.json").read_text())
                out[name] = sorted(o["className"] for o in doc["objects"])
        return out


def assert_no_secrets(db: Path, output: str, signature: str) -> None:
    """The token and URL signatures (``signature`` regex) are in neither output nor events."""
    events_text = " ".join(
        f for (f,) in query(db, "SELECT fields || COALESCE(message, '') FROM events")
    )
    for text in (output, events_text):
        assert TOKEN not in text
        assert not re.search(signature, text, re.IGNORECASE)


def assert_all_done(db: Path) -> None:
    assert query(db, "SELECT unit, state FROM packages ORDER BY unit") == [
        ("batch_01", "done"),
        ("drive_0001", "done"),
        ("drive_0002", "done"),
    ]


def prelabel_classes(db: Path, shape_of: Any = lambda name: "3D_BOX") -> dict[str, list[str]]:
    """Item name → sorted class names in the mirror; every object has the shape expected."""
    got: dict[str, list[str]] = {}
    rows = query(
        db,
        "SELECT i.name, o.class_name, o.shape_type FROM objects o JOIN items i ON i.id = o.item_id",
    )
    for name, cls, shape in rows:
        assert shape == shape_of(name), (name, shape)
        got.setdefault(name, []).append(cls)
    return {k: sorted(v) for k, v in got.items()}


def frame_ids(db: Path, scene_frame: str, single: str) -> tuple[str, str]:
    """Remote ids of a frame inside a scene and of a frame that is its own item."""
    in_scene = query(
        db,
        "SELECT remote_id FROM items WHERE name = ? AND parent_remote_id IS NOT NULL",
        scene_frame,
    )[0][0]
    alone = query(
        db, "SELECT remote_id FROM items WHERE name = ? AND parent_remote_id IS NULL", single
    )[0][0]
    return str(in_scene), str(alone)


def late_trucks(db: Path) -> list[tuple[Any, ...]]:
    """(name, is top-level, class, track) of every ``Truck`` object, by track id."""
    return query(
        db,
        "SELECT i.name, i.parent_remote_id IS NULL, o.class_name, o.track_id FROM objects o "
        "JOIN items i ON i.id = o.item_id WHERE o.class_name = 'Truck' ORDER BY o.track_id",
    )


def object_count(db: Path, remote_id: str) -> int:
    return int(
        query(
            db,
            "SELECT COUNT(*) FROM objects WHERE item_id = "
            "(SELECT id FROM items WHERE remote_id = ?)",
            remote_id,
        )[0][0]
    )


def assert_transitions(db: Path, *, not_states: tuple[str, ...] = ()) -> None:
    """Every package's events hold every transition of the state machine, in order."""
    skipped = ("package.retry", *not_states)
    marks = ", ".join("?" for _ in skipped)
    for (pid,) in query(db, "SELECT id FROM packages"):
        states = [
            row[0]
            for row in query(
                db,
                "SELECT to_state FROM events WHERE package_id = ? AND event LIKE 'package.%' "
                f"AND event NOT IN ({marks}) AND to_state IS NOT NULL ORDER BY id",
                pid,
                *skipped,
            )
        ]
        assert states == TRANSITIONS, (pid, states)
