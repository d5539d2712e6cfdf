"""Folder observers: which units changed, without ever missing one silently.

Contract of :class:`FolderWatcher`:

* one watchdog observer per push sync: the platform's native one
  (inotify) or, for ``watch_mode = "poll"`` (network filesystems), a
  polling one every ``watch_poll_interval``;
* in ``auto`` mode, when the native observer cannot start because a kernel
  limit is reached (inotify instances: EMFILE; watches: ENOSPC), the folder
  falls back to polling and :meth:`take_notices` reports it once;
* :meth:`check` restarts an observer whose thread died and asks for a full
  rescan of its folder (events were lost meanwhile);
* when the kernel's event queue overflows (watchdog logs it and rebuilds its
  watches, but the events are gone), every natively watched sync is asked
  for a full rescan;
* it only marks units dirty and wakes the daemon; it never changes state;
* only changes are watched (:data:`CHANGES`): a file opened and closed
  without writing changes nothing, and syncd reads every file of a unit
  while it uploads it (with those events, a 4 GiB unit woke the detector
  and rescanned itself about 1 600 times while its bytes were being sent).
"""

from __future__ import annotations

import errno
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from watchdog import events as wd
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from syncd.pipeline.scan import unit_of

LIMIT_ERRNOS = (errno.EMFILE, errno.ENOSPC, errno.ENFILE)
# Every event that can change what a unit holds: all but FileOpenedEvent and
# FileClosedNoWriteEvent (inotify's IN_OPEN / IN_CLOSE_NOWRITE are then not even asked for).
CHANGES: list[type[FileSystemEvent]] = [
    wd.FileCreatedEvent,
    wd.FileModifiedEvent,
    wd.FileAttribEvent,
    wd.FileDeletedEvent,
    wd.FileMovedEvent,
    wd.FileClosedEvent,
    wd.DirCreatedEvent,
    wd.DirModifiedEvent,
    wd.DirAttribEvent,
    wd.DirDeletedEvent,
    wd.DirMovedEvent,
    wd.EventsLostEvent,
]
_WATCHDOG_LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")


@dataclass(frozen=True)
class Notice:
    """Something an operator should know about a folder's watching (becomes an event)."""

    event: str  # watch.fallback_polling | watch.restarted | watch.overflow
    sync: str
    reason: str


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: FolderWatcher, sync: str, folder: Path) -> None:
        self.watcher, self.sync, self.folder = watcher, sync, folder

    def on_any_event(self, event: FileSystemEvent) -> None:
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path:
                unit = unit_of(self.folder, str(path))
                if unit:
                    self.watcher.mark(self.sync, unit)


class _OverflowListener(logging.Handler):
    """watchdog reports a kernel queue overflow only as a log record: turn it into a rescan."""

    def __init__(self, watcher: FolderWatcher) -> None:
        super().__init__(logging.WARNING)
        self.watcher = watcher

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.watcher.overflowed()


@dataclass
class _Watch:
    folder: Path
    mode: str  # auto | native | poll
    poll_interval: float
    observer: BaseObserver | None = None
    using: str = ""  # native | poll


class FolderWatcher:
    """Observers on every push folder; collects dirty units and wakes the daemon."""

    def __init__(self, wake: threading.Event) -> None:
        self.wake = wake
        self._dirty: dict[str, set[str]] = {}
        self._rescan: set[str] = set()
        self._notices: list[Notice] = []
        self._watches: dict[str, _Watch] = {}
        self._lock = threading.Lock()
        self._listener = _OverflowListener(self)

    def add(self, sync: str, folder: Path, mode: str = "auto", poll_interval: float = 5.0) -> None:
        """Register a folder (started by :meth:`start`)."""
        self._watches[sync] = _Watch(folder, mode, poll_interval)

    def add_running(
        self, sync: str, folder: Path, mode: str = "auto", poll_interval: float = 5.0
    ) -> None:
        """Register and start a folder now (a sync added by a reload); its units get a full scan."""
        self.remove(sync)
        self.add(sync, folder, mode, poll_interval)
        try:
            self._start_one(sync)
        except OSError:
            self._watches.pop(sync, None)
            raise
        with self._lock:
            self._rescan.add(sync)
        self.wake.set()

    def remove(self, sync: str) -> None:
        """Stop watching the folder of ``sync`` (removed or changed by a reload)."""
        w = self._watches.pop(sync, None)
        with self._lock:
            self._dirty.pop(sync, None)
            self._rescan.discard(sync)
        if w is not None and w.observer is not None:
            w.observer.stop()
            if w.observer.is_alive():
                w.observer.join(timeout=5)

    def start(self) -> None:
        for name in _WATCHDOG_LOGGERS:
            logger = logging.getLogger(name)
            if logger.getEffectiveLevel() > logging.WARNING:
                logger.setLevel(logging.WARNING)
            logger.addHandler(self._listener)
        for sync in self._watches:
            self._start_one(sync)

    def _start_one(self, sync: str) -> None:
        w = self._watches[sync]
        if w.mode != "poll":
            try:
                w.observer = self._observe(Observer(), sync, w)
                w.using = "native"
                return
            except OSError as exc:
                if w.mode == "native" or exc.errno not in LIMIT_ERRNOS:
                    raise
                reason = (
                    f"native watching failed ({exc.strerror}: a kernel limit such as "
                    "fs.inotify.max_user_instances or max_user_watches is reached); "
                    f"polling {w.folder} every {w.poll_interval:g}s instead"
                )
                self._notice(Notice("watch.fallback_polling", sync, reason))
        w.observer = self._observe(PollingObserver(timeout=w.poll_interval), sync, w)
        w.using = "poll"

    def _observe(self, observer: BaseObserver, sync: str, w: _Watch) -> BaseObserver:
        observer.schedule(
            _Handler(self, sync, w.folder), str(w.folder), recursive=True, event_filter=CHANGES
        )
        try:
            observer.start()
        except BaseException:
            observer.stop()
            raise
        return observer

    def check(self) -> None:
        """Restart observers whose thread died; their folders get a full rescan."""
        for sync, w in self._watches.items():
            if w.observer is not None and not w.observer.is_alive():
                self._notice(
                    Notice("watch.restarted", sync, f"the observer of {w.folder} had stopped")
                )
                try:
                    self._start_one(sync)
                except OSError as exc:
                    self._notice(Notice("watch.restarted", sync, f"restart failed: {exc}"))
                with self._lock:
                    self._rescan.add(sync)
                self.wake.set()

    def overflowed(self) -> None:
        """The kernel dropped events: rescan every natively watched folder."""
        with self._lock:
            for sync, w in self._watches.items():
                if w.using == "native":
                    self._rescan.add(sync)
                    self._notices.append(
                        Notice(
                            "watch.overflow",
                            sync,
                            "the kernel's event queue overflowed: rescanning",
                        )
                    )
        self.wake.set()

    def _notice(self, notice: Notice) -> None:
        with self._lock:
            self._notices.append(notice)

    def mark(self, sync: str, unit: str) -> None:
        with self._lock:
            self._dirty.setdefault(sync, set()).add(unit)
        self.wake.set()

    def take(self, sync: str) -> set[str] | None:
        """The units of ``sync`` that changed since the last call; None = rescan everything."""
        with self._lock:
            dirty = self._dirty.pop(sync, set())
            if sync in self._rescan:
                self._rescan.discard(sync)
                return None
            return dirty

    def requeue(self, sync: str, units: set[str] | None) -> None:
        """Hand back ``units`` of ``sync`` that a failed step did not scan (None: all of it).

        They come out of the next :meth:`take` again. The loop is not woken: a
        step that keeps failing (a database restarting) is retried at the loop's
        pace, not in a spin.
        """
        with self._lock:
            if units is None:
                self._rescan.add(sync)
            else:
                self._dirty.setdefault(sync, set()).update(units)

    def take_notices(self) -> list[Notice]:
        with self._lock:
            notices, self._notices = self._notices, []
            return notices

    def using(self, sync: str) -> str:
        """``native`` or ``poll``: how the folder is watched now."""
        return self._watches[sync].using

    def stop(self) -> None:
        for name in _WATCHDOG_LOGGERS:
            logging.getLogger(name).removeHandler(self._listener)
        for w in self._watches.values():
            if w.observer is not None:
                w.observer.stop()
        for w in self._watches.values():
            if w.observer is not None and w.observer.is_alive():
                w.observer.join(timeout=5)

    def alive(self) -> bool:
        return all(w.observer is not None and w.observer.is_alive() for w in self._watches.values())
