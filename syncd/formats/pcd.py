"""Read PCD point clouds (ASCII and binary) as ``x y z [intensity]`` blocks, memory flat.

Contract:

* :func:`read_header` parses the header of a PCD v0.5-0.7 file (the format of
  https://pointclouds.org/documentation/tutorials/pcd_file_format.html) and
  returns the fields, their numpy types, the point count and where the data
  starts; a file that is not such a PCD raises :class:`BadPointCloud` naming it.
* :func:`iter_points` yields float64 arrays of shape ``(k, 4)`` (x, y, z,
  intensity; intensity 0 when the file has none) in blocks of at most
  ``block`` points, so a cloud of any size needs one block of memory.
  ``binary_compressed`` (LZF) is refused with :class:`BadPointCloud`.
* The intensity field is ``intensity``, else ``i``; the header says whether
  there is one (:attr:`PcdHeader.has_intensity`).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Protocol

import numpy as np
import numpy.typing as npt

from syncd.errors import LocalDataError


class Source(Protocol):
    """Where a point cloud is read from: a :class:`pathlib.Path`, or a packaged file
    opened safely (:class:`syncd.formats.deepen_frames.Packaged`)."""

    @property
    def name(self) -> str: ...

    def open(self, mode: str) -> IO[bytes]: ...


_TYPES = {
    ("F", 4): "<f4",
    ("F", 8): "<f8",
    ("I", 1): "i1",
    ("I", 2): "<i2",
    ("I", 4): "<i4",
    ("I", 8): "<i8",
    ("U", 1): "u1",
    ("U", 2): "<u2",
    ("U", 4): "<u4",
    ("U", 8): "<u8",
}
BLOCK = 16_384  # points per block: about 1.3 MB of JSON text at a time


class BadPointCloud(LocalDataError):
    """The file is not a PCD this reader can decode (the message names the file and why)."""


@dataclass(frozen=True)
class PcdHeader:
    fields: tuple[str, ...]
    dtype: np.dtype[np.void]
    points: int
    data: str  # ascii | binary | binary_compressed
    offset: int  # byte offset of the data section
    columns: dict[str, int]  # field → first column (ASCII) index

    @property
    def has_intensity(self) -> bool:
        return "intensity" in self.fields or "i" in self.fields

    @property
    def intensity_field(self) -> str | None:
        return "intensity" if "intensity" in self.fields else "i" if "i" in self.fields else None


def read_header(path: Source) -> PcdHeader:
    """The header of the PCD at ``path`` (see module docstring)."""
    values: dict[str, list[str]] = {}
    offset = 0
    with path.open("rb") as f:
        for raw in f:
            offset += len(raw)
            line = raw.decode("ascii", "replace").strip()
            if not line or line.startswith("#"):
                continue
            key, *rest = line.split()
            values[key.upper()] = rest
            if key.upper() == "DATA":
                break
            if offset > 64 * 1024:
                break
    if "DATA" not in values or "FIELDS" not in values:
        raise BadPointCloud(f"{path.name}: not a PCD file (no FIELDS/DATA header)")
    fields = tuple(values["FIELDS"])
    n = len(fields)
    sizes = [int(v) for v in values.get("SIZE", ["4"] * n)]
    types = values.get("TYPE", ["F"] * n)
    counts = [int(v) for v in values.get("COUNT", ["1"] * n)]
    if not len(sizes) == len(types) == len(counts) == n:
        raise BadPointCloud(f"{path.name}: FIELDS, SIZE, TYPE and COUNT differ in length")
    if "x" not in fields or "y" not in fields or "z" not in fields:
        raise BadPointCloud(f"{path.name}: the PCD has no x, y and z fields")
    spec: list[tuple[str, str] | tuple[str, str, tuple[int]]] = []
    columns: dict[str, int] = {}
    col = 0
    for name, size, kind, count in zip(fields, sizes, types, counts, strict=True):
        np_type = _TYPES.get((kind.upper(), size))
        if np_type is None:
            raise BadPointCloud(f"{path.name}: field {name} has an unknown type {kind}{size}")
        columns[name] = col
        col += count
        spec.append((name, np_type) if count == 1 else (name, np_type, (count,)))
    if "POINTS" in values:
        points = int(values["POINTS"][0])
    else:
        points = int(values.get("WIDTH", ["0"])[0]) * int(values.get("HEIGHT", ["1"])[0])
    data = values["DATA"][0].lower() if values["DATA"] else ""
    if data not in ("ascii", "binary", "binary_compressed"):
        raise BadPointCloud(f"{path.name}: unknown DATA kind {data!r}")
    return PcdHeader(fields, np.dtype(spec), points, data, offset, columns)


def iter_points(path: Source, block: int = BLOCK) -> Iterator[npt.NDArray[np.float64]]:
    """``(k, 4)`` float64 blocks of x, y, z, intensity (see module docstring)."""
    h = read_header(path)
    if h.data == "binary_compressed":
        raise BadPointCloud(
            f"{path.name}: binary_compressed PCD is not supported; save it as binary or ascii"
        )
    inten = h.intensity_field
    if h.data == "binary":
        expected = h.offset + h.points * h.dtype.itemsize
        if h.points == 0:
            return
        with path.open("rb") as fh:
            if os.fstat(fh.fileno()).st_size < expected:
                raise BadPointCloud(f"{path.name}: the file is shorter than its {h.points} points")
            # the mapping keeps its own reference to the file: the descriptor may close
            records = np.memmap(fh, dtype=h.dtype, mode="r", offset=h.offset, shape=(h.points,))
        for start in range(0, h.points, block):
            chunk = records[start : start + block]
            out = np.zeros((len(chunk), 4), dtype=np.float64)
            with np.errstate(invalid="ignore"):  # NaN fields stay NaN; the caller drops them
                for k, name in enumerate(("x", "y", "z")):
                    out[:, k] = chunk[name]
                if inten is not None:
                    out[:, 3] = chunk[inten]
            yield out
        del records
        return
    cols = [h.columns["x"], h.columns["y"], h.columns["z"]]
    if inten is not None:
        cols.append(h.columns[inten])
    with path.open("rb") as f:
        f.seek(h.offset)
        left = h.points
        while left > 0:
            lines = [ln for ln in itertools.islice(f, min(block, left)) if ln.strip()]
            if not lines:
                break
            left -= len(lines)
            try:
                arr = np.loadtxt(lines, dtype=np.float64, usecols=cols, ndmin=2)
            except ValueError as exc:
                raise BadPointCloud(f"{path.name}: bad ASCII point data: {exc}") from exc
            out = np.zeros((len(arr), 4), dtype=np.float64)
            out[:, : arr.shape[1]] = arr
            yield out
