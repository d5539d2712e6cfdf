"""The annotation object as Xtreme1 writes it, and BasicAI Cloud (its hosted sibling) too.

Contract: :func:`remote_object` turns one object of a result (Xtreme1's
``getDataAndResult`` ``objects``, BasicAI's ``instances``) into the neutral
:class:`~syncd.remotes.base.RemoteObject`: the class by name (``className``,
else the model's ``modelClass``) and id, the shape type, the track, the
model's confidence when it is a number, the geometry (``contour``) and the
attribute values (``classValues``). Missing keys become None or empty; a
reply whose objects lack what syncd reads is caught before this, by the
reply shapes of :mod:`syncd.remotes.shapes`.
"""

from __future__ import annotations

from typing import Any

from syncd.remotes.base import RemoteObject


def remote_object(o: dict[str, Any]) -> RemoteObject:
    """One Xtreme1-format object as the mirror's ``objects`` row (see module docstring)."""
    conf = o.get("modelConfidence")
    class_id = o.get("classId")
    return RemoteObject(
        remote_id=str(o["id"]) if o.get("id") is not None else None,
        class_name=o.get("className") or o.get("modelClass"),
        class_id=str(class_id) if class_id is not None else None,
        shape_type=o.get("type"),
        track_id=str(o["trackId"]) if o.get("trackId") is not None else None,
        track_name=str(o["trackName"]) if o.get("trackName") is not None else None,
        confidence=float(conf) if isinstance(conf, int | float) else None,
        geometry=o.get("contour") or {},
        attributes=o.get("classValues") or [],
    )
