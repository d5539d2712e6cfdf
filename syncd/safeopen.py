"""Open a packaged file so that what is read is the file that was packed.

Other people and programs write the watched folders. Between the scan that
packed a unit and the moment its files are read, any path component can be
swapped for a symlink to a file syncd may read but the writer may not, or a
file for a FIFO that blocks its reader for ever. Checking a path and then
opening it by name loses that race, so files are opened here once, without
following symlinks, and everything is decided on the open descriptor.

Contract:

* :func:`open_packaged` opens ``folder/unit/rel_path`` relative to a
  descriptor of the watched folder, with ``openat2(RESOLVE_BENEATH |
  RESOLVE_NO_SYMLINKS)`` where the kernel has it, else one ``O_NOFOLLOW``
  ``openat`` per path component; always ``O_NONBLOCK`` (a FIFO never
  blocks the open) and ``O_NOCTTY``.
* A path that holds a symlink is resolved once with ``realpath``: when the
  target lies inside the watched folder it is opened by its real path under
  the same rules (links between a unit's own files keep working, as the
  scan allows them); otherwise :class:`UnsafeFile` ("a symlink that leads
  outside the watched folder").
* The open descriptor is ``fstat``-ed: anything but a regular file (FIFO,
  socket, device, directory) is :class:`UnsafeFile`; a regular file whose
  size, mtime, or (when recorded) device and inode differ from the package's
  record is :class:`ChangedFile`. Both are :class:`LocalDataError`, so the
  upload sends the package back to ``detected`` to be packed again (the next
  scan skips what is not data, with a ``unit.files_skipped`` event).
* :func:`stream_packaged` yields exactly the recorded number of bytes from
  that descriptor and checks the descriptor again at the end: content that
  changed while it was read is :class:`ChangedFile`, never sent as complete.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from syncd.errors import LocalDataError

READ_BUFFER = 1024 * 1024

# openat2(2): <linux/openat2.h>
_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437, "armv7l": 437, "ppc64le": 437, "s390x": 437}
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08

_FILE_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class Recorded(Protocol):
    """What a package recorded of one file (a :class:`syncd.store.PackageFile`)."""

    unit: str
    rel_path: str
    size: int
    mtime_ns: int
    dev: int | None
    ino: int | None


class UnsafeFile(LocalDataError):
    """The path is not a regular file inside the watched folder (a link out, a FIFO…)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name} is {reason}; the unit is packed again without it")
        self.name = name
        self.reason = reason


class ChangedFile(LocalDataError):
    """The file is not the one that was packed (replaced, grown, rewritten)."""


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


class _Openat2:
    """``openat2`` through ``syscall(2)``; ``available`` turns False on ENOSYS/EPERM."""

    def __init__(self) -> None:
        self.nr = _SYS_OPENAT2.get(os.uname().machine)
        self.available = self.nr is not None
        try:
            self.libc = ctypes.CDLL(None, use_errno=True)
            self.libc.syscall.restype = ctypes.c_long
        except OSError:
            self.available = False

    def __call__(self, dir_fd: int, rel: str, flags: int, resolve: int) -> int | None:
        """The new fd; None when the kernel (or a seccomp filter) lacks openat2."""
        how = _OpenHow(flags, 0, resolve)
        fd = self.libc.syscall(
            ctypes.c_long(self.nr or 0),
            ctypes.c_int(dir_fd),
            ctypes.c_char_p(os.fsencode(rel)),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err in (errno.ENOSYS, errno.EPERM):
            self.available = False  # never again in this process
            return None
        raise OSError(err, os.strerror(err), rel)


_openat2 = _Openat2()


def _walk_open(dir_fd: int, parts: Sequence[str]) -> int:
    """``O_NOFOLLOW`` on every component: ELOOP (or ENOTDIR) where one is a symlink."""
    cur = os.dup(dir_fd)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=cur)
            os.close(cur)
            cur = nxt
        return os.open(parts[-1], _FILE_FLAGS | os.O_NOFOLLOW, dir_fd=cur)
    finally:
        os.close(cur)


def open_beneath(dir_fd: int, rel: str) -> int:
    """Open ``rel`` below ``dir_fd`` with no symlink anywhere on the way (see module doc).

    Raises OSError: ELOOP for a symlink, EXDEV for a path leaving ``dir_fd``.
    """
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise OSError(errno.EXDEV, "not a plain relative path", rel)
    for _ in range(3):
        if not _openat2.available:
            break
        try:
            fd = _openat2(dir_fd, rel, _FILE_FLAGS, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
        except BlockingIOError:
            continue  # EAGAIN: a rename elsewhere raced the lookup; the kernel asks to retry
        if fd is not None:
            return fd
    try:
        return _walk_open(dir_fd, parts)
    except NotADirectoryError as exc:
        # O_DIRECTORY|O_NOFOLLOW on a symlink to a directory reports ENOTDIR on some kernels
        raise OSError(errno.ELOOP, "a path component is a symlink", rel) from exc


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO, not a regular file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a regular file"
    if stat.S_ISDIR(mode):
        return "now a directory, not a regular file"
    return "not a regular file"


def _rel(f: Recorded) -> str:
    return f.unit if f.rel_path == f.unit else f"{f.unit}/{f.rel_path}"


def _open_in(root_fd: int, folder: Path, rel: str, name: str) -> int:
    try:
        return open_beneath(root_fd, rel)
    except FileNotFoundError:
        raise ChangedFile(f"{name} vanished after it was packed") from None
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.EXDEV):
            raise LocalDataError(f"{name} cannot be read: {exc.strerror}") from exc
    # A symlink on the way: follow it only to a file inside the watched folder,
    # then open that file by its real path, again without following anything.
    real_root = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(folder, rel))
    if os.path.commonpath([real_root, target]) != real_root or target == real_root:
        raise UnsafeFile(name, "a symlink that leads outside the watched folder")
    try:
        return open_beneath(root_fd, os.path.relpath(target, real_root))
    except FileNotFoundError:
        raise ChangedFile(f"{name} vanished after it was packed") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EXDEV):
            raise ChangedFile(f"{name}: its symlinks changed after it was packed") from exc
        raise LocalDataError(f"{name} cannot be read: {exc.strerror}") from exc


def open_packaged(folder: Path, f: Recorded) -> tuple[int, os.stat_result]:
    """An open descriptor of the packed file and its ``fstat`` (see module doc)."""
    name = f"{f.unit}/{f.rel_path}"
    try:
        root_fd = os.open(folder, _DIR_FLAGS)
    except OSError as exc:
        raise LocalDataError(f"watched folder {str(folder)!r} cannot be opened: {exc}") from exc
    try:
        fd = _open_in(root_fd, folder, _rel(f), name)
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode) and f.rel_path == f.unit:
            # a unit folder holding a file named like itself, not a loose file
            os.close(fd)
            fd = _open_in(root_fd, folder, f"{f.unit}/{f.rel_path}", name)
            st = os.fstat(fd)
    finally:
        os.close(root_fd)
    try:
        check(name, st, f)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def check(name: str, st: os.stat_result, f: Recorded) -> None:
    """UnsafeFile unless ``st`` is a regular file; ChangedFile unless it is ``f`` as packed."""
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(name, _kind(st.st_mode))
    if f.ino is not None and (_signed(st.st_ino) != f.ino or _signed(st.st_dev) != f.dev):
        raise ChangedFile(f"{name} was replaced by another file after it was packed")
    if st.st_size != f.size or st.st_mtime_ns != f.mtime_ns:
        raise ChangedFile(f"{name} changed after it was packed (size {f.size} → {st.st_size})")


@contextmanager
def opened(folder: Path, f: Recorded) -> Iterator[int]:
    """:func:`open_packaged` as a context manager that closes the descriptor."""
    fd, _ = open_packaged(folder, f)
    try:
        yield fd
    finally:
        os.close(fd)


def verify(folder: Path, files: Sequence[Recorded]) -> None:
    """Open and check every file of ``files`` (see module doc); raise on the first bad one."""
    for f in files:
        with opened(folder, f):
            pass


def identify(folder: Path, files: Sequence[Recorded]) -> None:
    """Record the device and inode of each file, opened and checked as above."""
    for f in files:
        fd, st = open_packaged(folder, f)
        os.close(fd)
        f.dev, f.ino = _signed(st.st_dev), _signed(st.st_ino)


def _signed(n: int) -> int:
    """``n`` as a signed 64-bit integer: databases store no unsigned 64-bit values
    (overlayfs, for one, sets the high bits of inode numbers)."""
    return n - (1 << 64) if n >= 1 << 63 else n


def read_packaged(folder: Path, f: Recorded) -> bytes:
    """The whole content of a (small) packaged file, read through :func:`stream_packaged`."""
    return b"".join(stream_packaged(folder, f))


def stream_packaged(folder: Path, f: Recorded, chunk: int = READ_BUFFER) -> Iterator[bytes]:
    """Exactly ``f.size`` bytes of the packed file, from one checked descriptor.

    The file is opened when the first chunk is asked for (a generator), so
    an archive of many files holds one descriptor at a time.
    """
    name = f"{f.unit}/{f.rel_path}"
    fd, _ = open_packaged(folder, f)
    try:
        left = f.size
        while left > 0:
            try:
                data = os.read(fd, min(chunk, left))
            except OSError as exc:
                raise LocalDataError(f"{name}: reading failed: {exc.strerror}") from exc
            if not data:
                raise ChangedFile(f"{name} shrank while it was read (packed with {f.size} bytes)")
            left -= len(data)
            yield data
        # what was sent is what was packed: the same size and mtime at the end
        check(name, os.fstat(fd), f)
    finally:
        os.close(fd)
