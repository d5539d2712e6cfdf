"""``python -m syncd.formats.measure UNIT_DIR [json|default|images]``: size of the converted archive.

Prints the unit's raw bytes (pre-labels excluded: they are not sent), the
exact size of the archive syncd would stream to Deepen, and their ratio. It
plans the archive the way the pipeline does (one pass over the point clouds)
and writes nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from syncd.formats.deepen import Format, convert
from syncd.store import PackageFile


def unit_files(unit_dir: Path) -> list[PackageFile]:
    """Every file of a unit as the package rows the pipeline would make."""
    out = []
    for p in sorted(unit_dir.rglob("*")):
        if p.is_file():
            rel = p.relative_to(unit_dir).as_posix()
            st = p.stat()
            out.append(
                PackageFile(
                    package_id=0,
                    sync="measure",
                    unit=unit_dir.name,
                    rel_path=rel,
                    arcname=f"{unit_dir.name}/{rel}",
                    item_key="",
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                )
            )
    return out


def main(argv: list[str]) -> int:
    if not argv or len(argv) > 2 or argv[-1] not in ("json", "default", "images", argv[0]):
        print(__doc__.splitlines()[0].strip("`: "), file=sys.stderr)
        return 2
    unit = Path(argv[0]).resolve()
    fmt: Format = "json" if len(argv) == 1 else argv[1]  # type: ignore[assignment]
    files = unit_files(unit)
    planned = convert(unit.parent, files, fmt)
    skipped = set(planned.prelabels_skipped)
    raw = sum(f.size for f in files if f.rel_path not in skipped)
    size = planned.size
    print(f"{unit.name}: {fmt} archive {size} bytes, raw files {raw} bytes, ratio {size / raw:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
