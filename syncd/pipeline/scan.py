"""Units on disk: what a watched folder holds, file by file.

A *unit* is one immediate sub-folder of a watched folder; a loose file at the
root is a unit of its own. Hidden and temporary files (the ``exclude`` globs,
matched against every path component) and the ready marker are never part of
a unit's content.
"""

from __future__ import annotations

import fnmatch
import functools
import operator
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from syncd.errors import LocalDataError
from syncd.log import get_logger


class DirStamp(NamedTuple):
    """One directory of a unit as a scan found it: path relative to the unit
    (``""`` for the unit itself), inode and ctime.

    Adding, removing or renaming an entry changes its directory's ctime (and a
    replaced directory has a new inode), so equal stamps mean the directory
    holds the same names; they say nothing of the files' contents.
    """

    rel_path: str
    ino: int
    ctime_ns: int


class FileStat(NamedTuple):
    """One file of a unit: its path relative to the unit, size and mtime.

    A named tuple, not a dataclass: a scan makes one per file, and building a
    tuple costs a fraction of a frozen dataclass.
    """

    rel_path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class UnitSnapshot:
    """A unit as scanned: its files and whether its ready marker is there."""

    name: str
    path: Path
    is_file: bool
    files: tuple[FileStat, ...]
    marker: bool
    # (path inside the unit, why) for entries that are not data: links that
    # leave the watched folder, names that are not UTF-8
    skipped: tuple[tuple[str, str], ...] = ()
    # every directory of the unit, stamped before it was listed (see dirs_unchanged)
    dirs: tuple[DirStamp, ...] = ()
    # a symlink anywhere in the unit, or the unit itself: its target can change
    # without any directory of the unit changing
    linked: bool = False

    @property
    def newest_mtime_ns(self) -> int:
        return max((f.mtime_ns for f in self.files), default=0)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def signature(self) -> tuple[tuple[str, int, int], ...]:
        return self.files


@functools.lru_cache(maxsize=32)
def _exclude_re(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    # One regex for all globs: the catch-up scan asks for every file it meets.
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def excluded(name: str, patterns: tuple[str, ...]) -> bool:
    """True when a path component matches one of the ``exclude`` globs (case-sensitive)."""
    rx = _exclude_re(patterns)
    return rx is not None and rx.match(name) is not None


def unit_of(folder: Path, path: str | os.PathLike[str]) -> str | None:
    """The unit a path inside ``folder`` belongs to (its first component), or None."""
    try:
        rel = Path(path).resolve().relative_to(folder.resolve())
    except ValueError:
        return None
    return rel.parts[0] if rel.parts else None


def list_units(folder: Path, exclude: tuple[str, ...]) -> list[str]:
    """Names of the units directly in ``folder`` (sorted; excluded names left out)."""
    try:
        with os.scandir(folder) as it:
            # a unit whose own name is not UTF-8 cannot be recorded or named on the platform
            names = [e.name for e in it if not excluded(e.name, exclude) and _utf8(e.name)]
    except FileNotFoundError as exc:
        raise LocalDataError(f"watched folder {str(folder)!r} does not exist") from exc
    except OSError as exc:
        raise LocalDataError(
            f"watched folder {str(folder)!r} cannot be read: {exc.strerror}"
        ) from exc
    return sorted(n for n in names if _safe_unit(folder, n))


def scan_unit(
    folder: Path,
    name: str,
    exclude: tuple[str, ...],
    marker: str | None,
    *,
    real_folder: str | None = None,
) -> UnitSnapshot | None:
    """Stat every file of one unit; None if the unit vanished.

    Files that vanish during the scan are skipped (the next scan sees the new
    state); unreadable directories raise LocalDataError naming the path.
    Names that are unsafe anywhere (:func:`unsafe_name`: ``\\``, ``:``,
    control characters) go to ``skipped`` (a folder with all it holds); a unit
    with such a name is not scanned (None; ``unit.skipped`` is logged once).
    Never followed: directory symlinks, and file symlinks whose target lies
    outside ``folder`` (they go to ``skipped``). FIFOs, sockets and devices
    are not data and go to ``skipped`` with what they are; names that are not valid UTF-8 cannot be
    named in an archive or on the platform and go to ``skipped``.
    ``real_folder`` is ``os.path.realpath(folder)`` when the caller has it (a
    full scan resolves it once, not once per unit).
    """
    root = folder / name
    if not _safe_unit(folder, name):
        return None
    try:
        st = root.stat()
    except FileNotFoundError:
        return None
    if root.is_symlink():
        real_folder = os.path.realpath(folder)
        if os.path.commonpath([real_folder, os.path.realpath(root)]) != real_folder:
            return None  # a link out of the watched folder is never followed
    if not os.path.isdir(root):
        if excluded(name, exclude):
            return None
        return UnitSnapshot(
            name=name,
            path=root,
            is_file=True,
            files=(FileStat(name, st.st_size, st.st_mtime_ns),),
            marker=False,
        )
    files: list[FileStat] = []
    skipped: list[tuple[str, str]] = []
    dirs: list[DirStamp] = []
    has_marker = False
    linked = root.is_symlink()
    real_folder = real_folder or os.path.realpath(folder)
    rx = _exclude_re(exclude)
    # (directory, its path relative to the unit with a trailing "/", or "")
    stack: list[tuple[str, str]] = [(str(root), "")]
    while stack:
        current, prefix = stack.pop()
        if _scan_plain_dir(current, prefix, rx, marker, files, dirs):
            continue
        try:
            # stamped before listing: a change made while listing gives a newer ctime
            dst = os.stat(current)
            entries = list(os.scandir(current))
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise LocalDataError(f"{current!r} cannot be read: {exc.strerror}") from exc
        dirs.append(DirStamp(prefix.rstrip("/"), dst.st_ino, dst.st_ctime_ns))
        for entry in entries:
            if rx is not None and rx.match(entry.name):
                continue
            rel = prefix + entry.name
            if marker and rel == marker:
                has_marker = True
                continue
            if not _utf8(rel):
                skipped.append((rel, "the name is not valid UTF-8"))
                continue
            why = unsafe_name(entry.name)
            if why:
                skipped.append((rel, why))
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, rel + "/"))
                    continue
                if entry.is_symlink():
                    linked = True
                    target = os.path.realpath(entry.path)
                    if os.path.commonpath([real_folder, target]) != real_folder:
                        skipped.append((rel, "a symlink that leads outside the watched folder"))
                        continue
                if not entry.is_file(follow_symlinks=True):
                    # sockets, FIFOs, devices: not data, and said so; dangling links: gone
                    kind = _special(entry)
                    if kind:
                        skipped.append((rel, kind))
                    continue
                est = entry.stat(follow_symlinks=True)
            except FileNotFoundError:
                continue
            files.append(FileStat(rel, est.st_size, est.st_mtime_ns))
    files.sort()  # by rel_path: paths are unique within a unit, so sizes never decide
    skipped.sort()
    dirs.sort()
    return UnitSnapshot(
        name=name,
        path=root,
        is_file=False,
        files=tuple(files),
        marker=has_marker,
        skipped=tuple(skipped),
        dirs=tuple(dirs),
        linked=linked,
    )


def dirs_unchanged(folder: Path, name: str, stamps: Sequence[DirStamp]) -> bool:
    """True when every directory in ``stamps`` still has its inode and ctime.

    Then no entry of the unit was added, removed or renamed since the stamps
    were taken (new sub-directories included: creating one changes its
    parent). In-place writes to existing files are *not* seen here: a caller
    that skips the unit on True must verify file sizes and mtimes later.
    Costs one ``lstat`` per directory, none per file.
    """
    if not stamps:
        return False
    base = os.path.join(folder, name)
    for rel, ino, ctime_ns in stamps:
        try:
            st = os.stat(os.path.join(base, rel) if rel else base, follow_symlinks=False)
        except OSError:
            return False
        if st.st_ino != ino or st.st_ctime_ns != ctime_ns or not stat.S_ISDIR(st.st_mode):
            return False
    return True


_IS_REGULAR = operator.methodcaller("is_file", follow_symlinks=False)
_STAT = operator.methodcaller("stat", follow_symlinks=False)
_NAME = operator.attrgetter("name")
_SIZE = operator.attrgetter("st_size")
_MTIME = operator.attrgetter("st_mtime_ns")
_as_filestat = functools.partial(tuple.__new__, FileStat)


def _scan_plain_dir(
    path: str,
    prefix: str,
    rx: re.Pattern[str] | None,
    marker: str | None,
    out: list[FileStat],
    dirs: list[DirStamp],
) -> bool:
    """The common case at C speed: a directory of regular files only, none excluded,
    none the marker, every name UTF-8. Stats them into ``out`` and returns True;
    returns False (``out`` and ``dirs`` untouched) when any entry needs the general rules, or
    on any error (the general loop lists the directory again and decides).

    The catch-up scan stats every file of the watched folder: per file, this
    path runs no Python bytecode (``map`` over C callables), and each stat is
    relative to the open directory (``fstatat``), not a full path resolved
    again, as ``find`` does.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        dst = os.fstat(fd)  # stamped before listing, as in the general loop
        with os.scandir(fd) as it:
            entries = list(it)
        if not all(map(_IS_REGULAR, entries)):
            return False
        names = list(map(_NAME, entries))
        if rx is not None and any(map(rx.match, names)):
            return False
        rels = [prefix + n for n in names] if prefix else names
        if marker and marker in rels:
            return False
        "".join(rels).encode("utf-8")
        if _UNSAFE.search("".join(names)):
            return False  # a name to skip: the general loop says why
        stats = list(map(_STAT, entries))  # regular files: stat and lstat agree
    except (UnicodeEncodeError, OSError):
        return False  # a name to skip, or a file that vanished: the general loop decides
    finally:
        os.close(fd)
    out.extend(map(_as_filestat, zip(rels, map(_SIZE, stats), map(_MTIME, stats), strict=True)))
    dirs.append(DirStamp(prefix.rstrip("/"), dst.st_ino, dst.st_ctime_ns))
    return True


def _special(entry: os.DirEntry[str]) -> str | None:
    """Why a non-regular entry is not data (a FIFO would block its reader), or None."""
    try:
        mode = entry.stat(follow_symlinks=True).st_mode
    except OSError:
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO, not a regular file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a regular file"
    return None


# Backslashes (a folder separator to Windows extractors: "x\\..\\..\\tmp\\x"
# escapes there), control characters (newlines included) and ':' (a drive or
# stream separator) are unsafe in archive member names and on platforms.
_UNSAFE = re.compile(r"[\\:\x00-\x1f\x7f]")
_warned_units: set[tuple[str, str]] = set()


def unsafe_name(name: str) -> str | None:
    """Why a file or folder name is unsafe to send anywhere, or None when it is safe."""
    m = _UNSAFE.search(name)
    if m is None:
        return None
    if m.group() == "\\":
        return "the name holds a backslash (a folder separator on Windows)"
    if m.group() == ":":
        return "the name holds ':' (a drive or stream separator on Windows)"
    return f"the name holds a control character ({m.group()!r})"


def _safe_unit(folder: Path, name: str) -> bool:
    """False for a unit whose name is unsafe; says so once per process (``unit.skipped``)."""
    why = unsafe_name(name)
    if why is None:
        return True
    if (str(folder), name) not in _warned_units:
        _warned_units.add((str(folder), name))
        get_logger().warning("unit.skipped", folder=str(folder), unit=name, reason=why)
    return False


def _utf8(name: str) -> bool:
    """False for names holding bytes that are not UTF-8 (surrogate escapes from os.scandir)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
